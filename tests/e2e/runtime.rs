//! The real Lambda runtime path, without Docker: `cargo lambda watch` runs the function binaries
//! behind its Lambda runtime API emulator, configured (environment only, as the template
//! does) against the moto emulator and a providers file naming the fake provider; the test sends
//! the API Gateway v2 events under `tests/events/` with `cargo lambda invoke` and drives the
//! browser's steps itself.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use broker_tests::harness::{event_text, fake_entry_toml};
use broker_tests::stream::{self, Dlq};
use broker_tests::webhook_receiver::{Receiver, add_endpoint};
use broker_tests::{Backend, Broker, query_of};
use serde_json::Value;
use tokio::process::Command;

/// `cargo lambda watch` in its own process group, killed with everything it started.
struct Watch {
    child: std::process::Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn cargo_lambda_available() -> bool {
    std::process::Command::new("cargo")
        .args(["lambda", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts the runtime emulator with the functions configured like the template configures them.
fn watch(broker: &Broker, dead_letters: &str) -> Watch {
    assert!(
        cargo_lambda_available(),
        "the runtime-path test needs cargo-lambda; run ./infra/test, which installs the pinned one"
    );
    let dir = std::env::temp_dir().join(format!("runtime-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let providers = dir.join("providers.toml");
    std::fs::write(&providers, fake_entry_toml(&broker.provider.base_url)).unwrap();
    let config = &broker.app.config;
    let port = free_port();
    let workspace = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    // The variables `sam local` gives the functions (infra/sam-local/env.json), with this run's
    // table, prefix, URL and emulator in place of the file's values: the two paths share one list.
    let file: BTreeMap<String, BTreeMap<String, String>> = serde_json::from_str(
        &std::fs::read_to_string(format!("{workspace}/infra/sam-local/env.json")).unwrap(),
    )
    .unwrap();
    let mut env = file["InitiateFunction"].clone();
    for (name, value) in [
        ("BROKER_TABLE", config.table.as_str()),
        ("BROKER_SECRET_PREFIX", config.secret_prefix.as_str()),
        ("BROKER_PUBLIC_URL", config.public_url.as_str()),
        (
            "AWS_ENDPOINT_URL",
            &std::env::var("AWS_ENDPOINT_URL").unwrap(),
        ),
    ] {
        let slot = env
            .get_mut(name)
            .unwrap_or_else(|| panic!("env.json sets {name}"));
        *slot = value.to_string();
    }
    assert!(
        file.values().all(|f| *f == file["InitiateFunction"]),
        "every function's entry alike, so one watch serves them all"
    );
    let child = std::process::Command::new("cargo")
        .current_dir(workspace)
        .args(["lambda", "watch", "--invoke-address", "127.0.0.1"])
        .args(["--invoke-port", &port.to_string()])
        .envs(&env)
        // The template's own literal (env.json need not repeat it), and the fake provider.
        .env("BROKER_BACKEND", "aws")
        .env("BROKER_PROVIDERS_FILE", &providers)
        // The events function's queue, which the template sets on that function alone.
        .env("BROKER_EVENTS_DLQ_URL", dead_letters)
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .stdout(std::fs::File::create(dir.join("watch.log")).unwrap())
        .stderr(std::fs::File::create(dir.join("watch.err")).unwrap())
        .process_group(0)
        .spawn()
        .expect("cargo lambda watch");
    let watch = Watch { child, port, dir };
    let deadline = Instant::now() + Duration::from_secs(120);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "cargo lambda watch did not listen: {}",
            std::fs::read_to_string(watch.dir.join("watch.err")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    watch
}

/// `cargo lambda invoke FUNCTION --data-file EVENT`: the function's API Gateway v2 response.
async fn invoke(watch: &Watch, function: &str, event: &str, vars: &[(&str, &str)]) -> Value {
    invoke_with(watch, function, event, &event_text(event, vars)).await
}

/// The same with the event's text given (`name` only labels it).
async fn invoke_with(watch: &Watch, function: &str, name: &str, text: &str) -> Value {
    let event = name;
    let file = watch
        .dir
        .join(format!("{}-{event}", uuid::Uuid::new_v4().simple()));
    std::fs::write(&file, text).unwrap();
    let out = Command::new("cargo")
        .args(["lambda", "invoke", function])
        .args(["--invoke-address", "127.0.0.1"])
        .args(["--invoke-port", &watch.port.to_string()])
        .arg("--data-file")
        .arg(&file)
        .output()
        .await
        .expect("cargo lambda invoke");
    assert!(
        out.status.success(),
        "{function} {event}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(watch.dir.join("watch.err")).unwrap_or_default()
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{function} {event}: not a response ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn body(response: &Value) -> Value {
    serde_json::from_str(response["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_functions_run_a_whole_flow_under_the_lambda_runtime_against_moto() {
    // Given the stack's state in moto (table, organization, key, app credentials) and the
    // functions running under the runtime emulator
    let broker = Broker::start(Backend::Aws).await;
    let dlq = Dlq::create().await;
    let watch = watch(&broker, &dlq.url);
    // and a webhook endpoint for the events function to post to
    let receiver = Receiver::start().await;
    add_endpoint(&broker, &receiver, vec![]).await;

    // Refusals arrive as API Gateway responses
    let refused = invoke(&watch, "broker-initiate", "initiate-oauth-no-key.json", &[]).await;
    assert_eq!(refused["statusCode"], 401);
    assert_eq!(body(&refused)["error"]["trace_id"], "evt-nokey");
    let unknown = invoke(
        &watch,
        "broker-callback",
        "callback-unknown-state.json",
        &[],
    )
    .await;
    assert_eq!(unknown["statusCode"], 400);
    assert_eq!(unknown["headers"]["referrer-policy"], "no-referrer");

    // When the platform initiates
    let vars = [
        ("API_KEY", broker.key.as_str()),
        ("PROVIDER", "fake"),
        ("REDIRECT_URL", broker.redirect_url.as_str()),
    ];
    let started = invoke(&watch, "broker-initiate", "initiate-oauth.json", &vars).await;
    assert_eq!(started["statusCode"], 200, "{started}");
    let consent = body(&started)["consentUrl"].as_str().unwrap().to_string();

    // and the browser goes through authorize, the provider and the callback
    let flow = query_of(&consent)["flow"].clone();
    let authorized = invoke(
        &watch,
        "broker-authorize",
        "authorize.json",
        &[("FLOW", &flow)],
    )
    .await;
    assert_eq!(authorized["statusCode"], 302, "{authorized}");
    // API Gateway v2 carries Set-Cookie in `cookies`
    let cookie = authorized["cookies"][0]
        .as_str()
        .or_else(|| authorized["headers"]["set-cookie"].as_str())
        .expect("binding cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let provider_url = authorized["headers"]["location"].as_str().unwrap();
    assert!(provider_url.starts_with(&broker.provider.base_url));
    let at_provider = broker.http.get(provider_url).send().await.unwrap();
    let back = query_of(at_provider.headers()["location"].to_str().unwrap());
    let callback_vars = [
        ("CODE", back["code"].as_str()),
        ("STATE", back["state"].as_str()),
        ("COOKIE", cookie.as_str()),
    ];
    let done = invoke(&watch, "broker-callback", "callback.json", &callback_vars).await;

    // Then the browser is sent back with references, and the tokens are in Secrets Manager
    assert_eq!(done["statusCode"], 303, "{done}");
    let params = query_of(done["headers"]["location"].as_str().unwrap());
    assert_eq!(params["workspace_id"], "ws-events");
    let ledger = broker.provider.ledger();
    assert_eq!(ledger.token_requests.len(), 1);
    let issued = ledger.issued_tokens()[0].clone();
    let stored = broker.read_secret(&params["secret_id"], &issued).await;
    assert_eq!(stored["access_token"], issued);

    // and the same callback again is refused without a second token request
    let again = invoke(&watch, "broker-callback", "callback.json", &callback_vars).await;
    assert_eq!(again["statusCode"], 400);
    assert_eq!(broker.provider.ledger().token_requests.len(), 1);

    // The complete function answers under the runtime too
    let import = invoke(
        &watch,
        "broker-complete",
        "import-user-connection.json",
        &[
            ("API_KEY", broker.key.as_str()),
            ("PROVIDER", "fake"),
            ("ACCESS_TOKEN", "runtime-imported-token"),
        ],
    )
    .await;
    assert_eq!(import["statusCode"], 201, "{import}");

    // The connections function answers API Gateway and the keep-alive schedule alike
    let listed = invoke(
        &watch,
        "broker-connections",
        "list-connections.json",
        &[("API_KEY", broker.key.as_str())],
    )
    .await;
    assert_eq!(listed["statusCode"], 200, "{listed}");
    assert!(body(&listed)["connections"].is_array(), "{listed}");
    let swept = invoke(&watch, "broker-connections", "scheduled-sweep.json", &[]).await;
    assert_eq!(swept["failed"], 0, "{swept}");
    assert!(swept["examined"].is_u64(), "{swept}");

    // The events function takes the table's stream records as Lambda's event source mapping
    // hands them, posts each status change, and answers a batch response with no failure
    let records = stream::records(&broker.app.config.table).await;
    let batch = serde_json::json!({ "Records": records }).to_string();
    let delivered = invoke_with(&watch, "broker-events", "stream.json", &batch).await;
    assert_eq!(
        delivered["batchItemFailures"],
        serde_json::json!([]),
        "{delivered}"
    );
    let types: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap_or_default().to_string())
        .collect();
    // (the flow above authorized a connection; the import wrote an active one, with no change)
    assert_eq!(types, ["connection.authorized"], "{types:?}");
    assert!(dlq.letters().await.is_empty());
}
