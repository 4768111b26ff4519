//! The tests' Python side: scripts run with the tools' venv (`./infra/test` puts it on PATH),
//! implementations we did not write (the Standard Webhooks verifier, Playwright driving Chromium).

use std::process::Stdio;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

/// Runs `script`: JSON in on stdin, JSON out on stdout.
pub async fn run(script: &str, input: &Value) -> Value {
    let mut child = tokio::process::Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (./infra/test puts the tools' venv on PATH)");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.to_string().as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}
