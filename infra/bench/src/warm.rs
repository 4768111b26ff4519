//! Warm cost per step, in-process: each function's handler called with API Gateway events on the
//! embedded backend, against the in-process fake provider. Wall time per call, and the CPU time
//! of this (single) thread.

use std::time::{Duration, Instant};

use broker::App;
use broker_tests::gateway::{self, event, header, json_body as json};
use broker_tests::harness::location;
use broker_tests::{Backend, Broker, query_of};
use lambda_http::{Body, Response};

use crate::report::{Table, mean, micros, percentile};

/// CPU time this thread has run (CLOCK_THREAD_CPUTIME_ID: exact, unlike the tick-based
/// schedstat accounting).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[derive(Default)]
struct Samples {
    wall: Vec<Duration>,
    cpu: Vec<Duration>,
}

impl Samples {
    async fn time<F: Future<Output = Response<Body>>>(&mut self, call: F) -> Response<Body> {
        let (cpu, wall) = (thread_cpu(), Instant::now());
        let resp = call.await;
        self.wall.push(wall.elapsed());
        self.cpu.push(thread_cpu() - cpu);
        resp
    }

    /// One row; `budget` is the mean CPU the step may take.
    fn report(&self, table: &mut Table, step: &str, budget: Option<Duration>) {
        let cpu = mean(&self.cpu);
        table.row(
            &format!("warm {step} (embedded, {} calls)", self.wall.len()),
            format!(
                "CPU mean {}; wall mean {} p99 {}",
                micros(cpu),
                micros(mean(&self.wall)),
                micros(percentile(&self.wall, 99.0))
            ),
            &budget
                .map(|b| format!("CPU <= {} µs", b.as_micros()))
                .unwrap_or_default(),
            budget.map(|b| cpu <= b),
        );
    }
}

pub async fn run(table: &mut Table, calls: usize) {
    let broker = Broker::start(Backend::Embedded).await;
    let app: &App = &broker.app;
    let vars = [
        ("API_KEY", broker.key.as_str()),
        ("PROVIDER", "fake"),
        ("REDIRECT_URL", broker.redirect_url.as_str()),
    ];

    // initiate: a flow per call
    let mut initiate = Samples::default();
    let mut consents = vec![];
    for _ in 0..calls {
        let resp = initiate
            .time(initiate::handle(app, event("initiate-oauth.json", &vars)))
            .await;
        assert_eq!(resp.status(), 200);
        consents.push(json(&resp)["consentUrl"].as_str().unwrap().to_string());
    }
    initiate.report(table, "initiate", Some(STEP_BUDGET));
    store_costs(table, app, &broker, calls).await;

    // authorize: binds each flow
    let mut authorize = Samples::default();
    let mut bound = vec![];
    for consent in &consents {
        let flow = query_of(consent)["flow"].clone();
        let resp = authorize
            .time(authorize::handle(
                app,
                event("authorize.json", &[("FLOW", &flow)]),
            ))
            .await;
        assert_eq!(resp.status(), 302);
        let cookie = header(&resp, "set-cookie")
            .split(';')
            .next()
            .unwrap()
            .to_string();
        bound.push((cookie, header(&resp, "location")));
    }
    authorize.report(table, "authorize", Some(STEP_BUDGET));

    // callback: the code exchange goes to the fake provider over loopback; its round trip is
    // measured on its own and taken out
    let mut callback = Samples::default();
    let exchanges = calls.min(500);
    for (cookie, provider_url) in bound.iter().take(exchanges) {
        let at_provider = broker.http.get(provider_url).send().await.unwrap();
        let back = query_of(&location(&at_provider));
        let vars = [
            ("CODE", back["code"].as_str()),
            ("STATE", back["state"].as_str()),
            ("COOKIE", cookie.as_str()),
        ];
        let resp = callback
            .time(callback::handle(app, event("callback.json", &vars)))
            .await;
        assert_eq!(resp.status(), 303);
    }
    let mut provider_rtt = vec![];
    for _ in 0..exchanges {
        let started = Instant::now();
        let _ = broker
            .http
            .post(format!("{}/token", broker.provider.base_url))
            .form(&[("grant_type", "authorization_code"), ("code", "none")])
            .send()
            .await
            .unwrap()
            .bytes()
            .await;
        provider_rtt.push(started.elapsed());
    }
    let rtt = mean(&provider_rtt);
    let wall = mean(&callback.wall);
    table.row(
        &format!("warm callback (embedded, {exchanges} calls)"),
        format!(
            "wall mean {} less provider round trip {} = {}",
            micros(wall),
            micros(rtt),
            micros(wall.saturating_sub(rtt))
        ),
        "",
        None,
    );

    // complete: personal flows, each finished by its state token
    let mut complete = Samples::default();
    for _ in 0..exchanges {
        let token = personal_state_token(&broker).await;
        let vars = [
            ("API_KEY", broker.key.as_str()),
            ("ORG", broker.org.as_str()),
            ("STATE_TOKEN", token.as_str()),
        ];
        let resp = complete
            .time(complete::handle(
                app,
                event("complete-personal.json", &vars),
            ))
            .await;
        assert_eq!(resp.status(), 200);
    }
    complete.report(table, "complete", Some(STEP_BUDGET));

    connections(table, &broker, calls).await;
}

/// The flow steps' warm CPU budget.
const STEP_BUDGET: Duration = Duration::from_micros(50);

/// The token route: a read that needs no refresh (the document held by this process), then one
/// refresh asked for by 50 callers at once.
async fn connections(table: &mut Table, broker: &Broker, calls: usize) {
    let app: &App = &broker.app;
    let (connection_id, _) = broker.authorized_personal_connection().await;
    let vars = [
        ("API_KEY", broker.key.as_str()),
        ("CONNECTION_ID", connection_id.as_str()),
    ];
    let mut token = Samples::default();
    for _ in 0..calls {
        let resp = token
            .time(connections::handle(
                app,
                event("connection-token.json", &vars),
            ))
            .await;
        assert_eq!(resp.status(), 200);
    }
    token.report(
        table,
        "token read, no refresh",
        Some(Duration::from_micros(30)),
    );

    // Inside the refresh margin, 50 callers at once.
    app.clock.advance(3600 - 100);
    let before = broker.provider.ledger().refreshes().len();
    let started = Instant::now();
    let answers =
        futures_util::future::join_all((0..50).map(|_| broker.token(&connection_id, false))).await;
    let wall = started.elapsed();
    let made = broker.provider.ledger().refreshes().len() - before;
    let ok = answers.iter().filter(|(status, _)| *status == 200).count();
    table.row(
        "refresh under 50 concurrent callers (embedded)",
        format!(
            "{made} provider request(s), {ok}/50 answered 200 in {}",
            micros(wall)
        ),
        "1 provider request",
        Some(made == 1 && ok == 50),
    );
}

/// A personal flow through its callback (not timed): its single-use state token.
async fn personal_state_token(broker: &Broker) -> String {
    let app: &App = &broker.app;
    let vars = [
        ("API_KEY", broker.key.as_str()),
        ("ORG", broker.org.as_str()),
        ("PROVIDER", "fake"),
        ("REDIRECT_URL", broker.redirect_url.as_str()),
    ];
    let resp = initiate::handle(app, event("personal-authorize.json", &vars)).await;
    let url = json(&resp)["authorization_url"]
        .as_str()
        .unwrap()
        .to_string();
    let resp = gateway::browser_steps(
        &broker.http,
        &url,
        |req| authorize::handle(app, req),
        |req| callback::handle(app, req),
    )
    .await;
    query_of(&header(&resp, "location"))["state_token"].clone()
}

/// Attribution for the warm figures: one embedded-store read and one write, alone.
async fn store_costs(table: &mut Table, app: &App, broker: &Broker, calls: usize) {
    let (mut read, mut write) = (Samples::default(), Samples::default());
    let org = app.orgs.get_org(&broker.org).await.unwrap().unwrap();
    for _ in 0..calls {
        let (cpu, wall) = (thread_cpu(), Instant::now());
        app.orgs.get_org(&broker.org).await.unwrap();
        read.wall.push(wall.elapsed());
        read.cpu.push(thread_cpu() - cpu);
        // A new item under a random key, as flows and connections are written.
        let mut fresh = org.clone();
        fresh.id = uuid::Uuid::new_v4().to_string();
        let (cpu, wall) = (thread_cpu(), Instant::now());
        app.orgs.put_org(&fresh).await.unwrap();
        write.wall.push(wall.elapsed());
        write.cpu.push(thread_cpu() - cpu);
    }
    for (label, s) in [("read", read), ("write", write)] {
        table.row(
            &format!("  attribution: one embedded-store {label} (one transaction)"),
            format!(
                "CPU mean {}; wall mean {}",
                micros(mean(&s.cpu)),
                micros(mean(&s.wall))
            ),
            "attribution",
            None,
        );
    }
}
