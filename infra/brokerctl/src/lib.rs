//! `brokerctl`: admin commands for either backend, and `serve`, which runs every route of every
//! function on loopback through the same handler code the Lambdas run.

pub mod admin;
pub mod console;
pub mod local;
pub mod pages;
pub mod sandbox;
pub mod server;

use std::net::SocketAddr;

/// The embedded backend's refresh margin, unless `BROKER_REFRESH_MARGIN_SECS` says otherwise.
pub const LOCAL_REFRESH_MARGIN_SECS: i64 = 30;

/// Configuration for `brokerctl`: the environment, with the backend from `--backend`, loopback
/// http allowed (local serving, and registering loopback redirect URLs), for `serve` a public
/// URL defaulting to the listening address, and on the embedded backend a 30 s refresh margin
/// (the sandbox's tokens live two minutes: the default 300 s would refresh them at every read).
pub fn config(backend: &str, serve_addr: Option<SocketAddr>) -> broker::Result<broker::Config> {
    broker::Config::from_lookup(|name| match name {
        "BROKER_BACKEND" => Some(backend.to_string()),
        "BROKER_ALLOW_LOOPBACK_HTTP" => Some("1".to_string()),
        "BROKER_PUBLIC_URL" => std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .or_else(|| {
                Some(format!(
                    "http://{}",
                    serve_addr.unwrap_or(([127, 0, 0, 1], 3000).into())
                ))
            }),
        "BROKER_REFRESH_MARGIN_SECS" => std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .or_else(|| (backend == "embedded").then(|| LOCAL_REFRESH_MARGIN_SECS.to_string())),
        _ => std::env::var(name).ok(),
    })
}
