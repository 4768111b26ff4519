//! Cold start per function against the bare hello-world, through the runtime API emulator:
//! spawn -> first poll (init), then the first invocation; and peak RSS after 1,000 warm ones.
//! The events are refused before any I/O, so no backend latency enters the figures; the functions
//! are configured for the AWS backend, as deployed, so SDK client construction is part of init.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use broker_tests::harness::event_text;

use crate::report::{Table, mb, millis, percentile};
use crate::runtime_api::{RuntimeApi, peak_rss};

struct Subject {
    name: &'static str,
    binary: PathBuf,
    event: String,
}

/// The functions as `sam build` left them (what users deploy), the hello-world as cargo lambda
/// builds it with the same profile.
fn subjects() -> Vec<Subject> {
    let root = crate::root();
    let hello = root.join("target/lambda/bench-hello/bootstrap");
    let sam = |logical_id: &str| {
        root.join(".aws-sam/build")
            .join(logical_id)
            .join("bootstrap")
    };
    vec![
        Subject {
            name: "hello-world (lambda_runtime)",
            binary: hello,
            event: "{}".into(),
        },
        Subject {
            name: "initiate",
            binary: sam("InitiateFunction"),
            event: event_text("initiate-oauth-no-key.json", &[]),
        },
        Subject {
            name: "authorize",
            binary: sam("AuthorizeFunction"),
            event: event_text("authorize.json", &[("FLOW", "not-a-flow")]),
        },
        Subject {
            name: "callback",
            binary: sam("CallbackFunction"),
            event: event_text(
                "callback.json",
                &[("CODE", "c"), ("STATE", "not-a-state"), ("COOKIE", "x=y")],
            ),
        },
        Subject {
            name: "connections",
            binary: sam("ConnectionsFunction"),
            event: event_text(
                "connection-token.json",
                &[("API_KEY", ""), ("CONNECTION_ID", "conn_x")],
            ),
        },
        Subject {
            name: "complete",
            binary: sam("CompleteFunction"),
            event: event_text(
                "complete-personal.json",
                &[("API_KEY", ""), ("ORG", "o"), ("STATE_TOKEN", "t")],
            ),
        },
    ]
}

fn env() -> Vec<(String, String)> {
    [
        ("BROKER_BACKEND", "aws"),
        ("BROKER_TABLE", "bench"),
        ("BROKER_PUBLIC_URL", "https://broker.example"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "bench"),
        ("AWS_SECRET_ACCESS_KEY", "bench"),
        // Never reached by these events; set so nothing looks for a real endpoint.
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

pub async fn run(table: &mut Table, runs: usize) {
    let mut hello_init = Duration::ZERO;
    for s in subjects() {
        assert!(
            s.binary.exists(),
            "{} is missing: ./infra/benchmark builds it",
            s.binary.display()
        );
        let (mut inits, mut firsts) = (vec![], vec![]);
        for _ in 0..runs {
            let mut api = RuntimeApi::start().await;
            let spawned = Instant::now();
            let child = api.spawn(&s.binary, &env());
            inits.push(api.polled().await - spawned);
            firsts.push(api.invoke(&s.event).await);
            drop(child);
        }
        let (p50, p90) = (percentile(&inits, 50.0), percentile(&inits, 90.0));
        if s.name.starts_with("hello") {
            hello_init = p50;
            table.row(
                &format!("cold init, {}", s.name),
                format!("p50 {} p90 {}", millis(p50), millis(p90)),
                "baseline",
                None,
            );
        } else {
            let ratio = p50.as_secs_f64() / hello_init.as_secs_f64();
            table.row(
                &format!("cold init, {}", s.name),
                format!("p50 {} p90 {} ({ratio:.2}x)", millis(p50), millis(p90)),
                "p50 <= 1.25x hello-world",
                Some(ratio <= 1.25),
            );
        }
        table.row(
            &format!("first invocation, {}", s.name),
            format!(
                "p50 {} p90 {}",
                millis(percentile(&firsts, 50.0)),
                millis(percentile(&firsts, 90.0))
            ),
            "",
            None,
        );

        // Peak memory after 1,000 warm invocations
        let mut api = RuntimeApi::start().await;
        let child = api.spawn(&s.binary, &env());
        api.polled().await;
        for _ in 0..1000 {
            api.invoke(&s.event).await;
        }
        let rss = peak_rss(child.id().unwrap_or(0));
        drop(child);
        table.row(
            &format!("peak RSS after 1,000 calls, {}", s.name),
            mb(rss),
            "<= 12 MB",
            (!s.name.starts_with("hello")).then_some(rss <= 12 * 1000 * 1000),
        );

        let (size, zipped) = sizes(&s.binary);
        table.row(
            &format!("size, {}", s.name),
            format!("{} binary, {} zip", mb(size), mb(zipped)),
            "zip <= 3 MB",
            (!s.name.starts_with("hello")).then_some(zipped <= 3 * 1000 * 1000),
        );
    }
}

/// The binary's size, and its size zipped as Lambda takes it (deflate, via Python's zipfile).
fn sizes(binary: &std::path::Path) -> (u64, u64) {
    let size = std::fs::metadata(binary).map_or(0, |m| m.len());
    let zip = std::env::temp_dir().join(format!("bench-{}.zip", uuid::Uuid::new_v4().simple()));
    let status = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile\nwith zipfile.ZipFile(sys.argv[2], 'w', zipfile.ZIP_DEFLATED, compresslevel=9) as z: z.write(sys.argv[1], 'bootstrap')",
        ])
        .arg(binary)
        .arg(&zip)
        .status()
        .expect("python3 for zip sizes");
    assert!(status.success());
    let zipped = std::fs::metadata(&zip).map_or(0, |m| m.len());
    let _ = std::fs::remove_file(zip);
    (size, zipped)
}
