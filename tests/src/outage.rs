//! A loopback TCP relay in front of the emulator that a test can take down and bring back: while
//! it is down, new connections are refused and the open ones are cut, as when the emulator stops.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

pub struct Outage {
    addr: SocketAddr,
    target: SocketAddr,
    /// The accept loop and every relayed connection, aborted together by [`Outage::stop`].
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Outage {
    /// A relay on a free loopback port to `target`, up.
    pub async fn start(target: SocketAddr) -> Outage {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let outage = Outage {
            addr: listener.local_addr().expect("relay address"),
            target,
            tasks: Arc::default(),
        };
        outage.serve(listener);
        outage
    }

    /// The emulator in `AWS_ENDPOINT_URL` (./infra/test starts it), behind a relay.
    pub async fn in_front_of_emulator() -> Outage {
        let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL (./infra/test)");
        let target = endpoint
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("AWS_ENDPOINT_URL is http://127.0.0.1:PORT");
        Self::start(target).await
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Down: the port refuses connections and every open connection is closed.
    pub fn stop(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    /// Up again, on the same port.
    pub async fn resume(&self) {
        let listener = TcpListener::bind(self.addr).await.expect("rebind relay");
        self.serve(listener);
    }

    fn serve(&self, listener: TcpListener) {
        let (target, tasks) = (self.target, self.tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let relay = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().unwrap().push(relay.abort_handle());
            }
        });
        self.tasks.lock().unwrap().push(accept.abort_handle());
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        self.stop();
    }
}
