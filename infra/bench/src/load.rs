//! `brokerctl serve` (release) under load on loopback: initiateOAuth requests from `wrk`, at 8
//! and 64 connections. Each request authenticates the key and writes a connection and a flow.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::report::Table;

pub async fn run(table: &mut Table, seconds: u64) {
    let brokerctl = crate::root().join("target/release/brokerctl");
    assert!(
        brokerctl.exists(),
        "{} is missing: ./infra/benchmark builds it",
        brokerctl.display()
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let data = std::env::temp_dir().join(format!("bench-serve-{}", uuid::Uuid::new_v4().simple()));
    let mut serve = tokio::process::Command::new(&brokerctl)
        .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
        .env("BROKER_DATA_DIR", &data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("brokerctl serve");
    // The development key is printed once, on the line after its announcement.
    let mut lines = BufReader::new(serve.stdout.take().unwrap()).lines();
    let mut key = None;
    while let Some(line) = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("serve printed its key")
        .unwrap()
    {
        if line.trim().starts_with("obk_") {
            key = Some(line.trim().to_string());
            break;
        }
    }
    let key = key.expect("development key");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let script = data.join("initiate.lua");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n\
             wrk.headers[\"X-API-Key\"] = \"{key}\"\n\
             wrk.body = '{{\"sourceType\":\"sandbox\",\"workspaceId\":\"dev-workspace\",\"redirectUrl\":\"http://127.0.0.1:{port}/done\"}}'\n\
             done = function(summary, latency, requests)\n\
               io.write(string.format(\"RESULT %f %d %d %d %d\\n\", summary.requests / (summary.duration / 1e6), latency:percentile(50), latency:percentile(99), summary.errors.status, summary.requests))\n\
             end\n"
        ),
    )
    .unwrap();
    // Attribution: the same route refused at the key check (one store read, no writes).
    let refused = data.join("refused.lua");
    let refused_text = std::fs::read_to_string(&script)
        .unwrap()
        .replace(&key, "obk_unknown");
    std::fs::write(&refused, refused_text).unwrap();
    for (connections, script, label) in [
        (8, &script, "serve initiateOAuth, 8 connections"),
        (64, &script, "serve initiateOAuth, 64 connections"),
        (
            8,
            &refused,
            "  attribution: unknown key (401), 8 connections",
        ),
    ] {
        let out = tokio::process::Command::new("wrk")
            .args([
                "-t2",
                &format!("-c{connections}"),
                &format!("-d{seconds}s"),
                "-s",
            ])
            .arg(script)
            .arg(format!("http://127.0.0.1:{port}/v1/sources/initiateOAuth"))
            .output()
            .await
            .expect("wrk (./infra/benchmark installs it)");
        let text = String::from_utf8_lossy(&out.stdout);
        let result: Vec<f64> = text
            .lines()
            .find_map(|l| l.strip_prefix("RESULT "))
            .unwrap_or_else(|| panic!("wrk output: {text}"))
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        let (rps, p50_us, p99_us, non_2xx) = (result[0], result[1], result[2], result[3]);
        let p99 = p99_us / 1000.0;
        let budgeted = connections == 8 && !label.starts_with(' ');
        let met = rps >= 20_000.0 && p99 <= 2.0;
        table.row(
            label,
            format!(
                "{rps:.0} req/s, p50 {:.2} ms, p99 {p99:.2} ms, {non_2xx} non-2xx",
                p50_us / 1000.0
            ),
            if budgeted {
                ">= 20,000/s, p99 <= 2 ms"
            } else {
                ""
            },
            budgeted.then_some(met),
        );
    }
    drop(serve);
    let _ = std::fs::remove_dir_all(data);
}
