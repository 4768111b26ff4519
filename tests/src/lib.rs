//! Test support for the end-to-end suites: a fake OAuth provider with a ledger, and a harness
//! that runs the broker's router (the one `brokerctl serve` runs) over either backend, and
//! `infra/openapi.yaml` as the oracle every response is checked against.

pub mod aws_requests;
pub mod contract;
pub mod fake_provider;
pub mod fault_proxy;
pub mod gateway;
pub mod harness;
pub mod logs;
pub mod outage;
pub mod python;
pub mod stream;
pub mod webhook_receiver;

pub use fake_provider::{FakeProvider, Knobs, Ledger};
pub use harness::{Backend, Broker, Browser, query_of};

/// Generates one `#[tokio::test]` per backend for each listed `async fn name(Backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Embedded).await
                }
            )*
        }
        mod aws {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Aws).await
                }
            )*
        }
    };
}
