//! The logs, as the functions write them (JSON): every token handed out is one audit line naming
//! the key's id, the connection, the organization, whether it was refreshed and the trace id; and
//! no line of a whole run (a flow, token reads, a refresh, a refused refresh) carries a secret.

use broker_tests::fake_provider::CLIENT_SECRET;
use broker_tests::logs::Captured;
use broker_tests::{Backend, Broker, Knobs};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_token_handed_out_is_an_audit_line_and_no_line_carries_a_secret() {
    // Given the functions' JSON log format at DEBUG (more than the template's INFO), captured
    let captured = Captured::install(tracing::Level::DEBUG);
    let broker = Broker::start(Backend::Embedded).await;

    // When a connection is made, its token read, force-refreshed, and refused a refresh
    let (id, _) = broker.authorized_personal_connection().await;
    let (plain, _) = broker.token(&id, false).await;
    let (refreshed, _) = broker.token(&id, true).await;
    broker.provider.set_knobs(Knobs {
        refresh_error: Some("invalid_grant".into()),
        ..Knobs::default()
    });
    let (refused, _) = broker.token(&id, true).await;
    assert_eq!((plain, refreshed, refused), (200, 200, 409));

    // Then each token handed out is one audit line, with the key's id and never the key
    let text = captured.text();
    let lines = captured.lines();
    let audits: Vec<&Value> = lines
        .iter()
        .filter(|l| l["fields"]["audit"] == "token_issued")
        .collect();
    assert_eq!(audits.len(), 2, "two tokens handed out: {audits:?}");
    for (audit, was_refreshed) in audits.iter().zip([false, true]) {
        let f = &audit["fields"];
        assert_eq!(f["connection_id"], id.as_str());
        assert_eq!(f["organization_id"], broker.org.as_str());
        assert_eq!(f["refreshed"], was_refreshed);
        assert!(f["key_id"].as_str().unwrap().starts_with("key_"));
        assert!(!f["trace_id"].as_str().unwrap().is_empty());
    }

    // And no line anywhere carries a token, a code, a verifier, the client secret or the key
    let ledger = broker.provider.ledger();
    let mut secrets: Vec<String> = vec![broker.key.clone(), CLIENT_SECRET.to_string()];
    for t in &ledger.token_requests {
        secrets.extend(t.access_token.clone());
        secrets.extend(t.refresh_token.clone());
        for field in ["code", "code_verifier", "refresh_token"] {
            secrets.extend(t.form.get(field).cloned());
        }
    }
    for a in &ledger.authorize_requests {
        secrets.extend(a.get("state").cloned());
    }
    assert!(secrets.len() >= 8, "{}", secrets.len());
    for secret in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "a log line carries a secret ({}...)",
            &secret[..6.min(secret.len())]
        );
    }
}
