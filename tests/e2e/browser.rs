//! The hosted connect page and the console in a real browser: Debian's Chromium, driven by
//! Playwright (`tests/browser/connect.py`), with axe-core checking accessibility. A platform page
//! on a registered origin opens the connect popup through `connect.js` and receives the
//! `postMessage` result; the same page on an unregistered origin receives nothing; redirect mode
//! with a Zendesk-style input refuses a bad subdomain in the page; a spent session shows the error
//! page; the console connects, fetches a fresh token and revokes. Screenshots go to
//! `target/browser-screenshots/` (not committed).

use broker_tests::harness::FakeEntry;
use broker_tests::{Backend, Broker};
use serde_json::{Value, json};

/// A platform's page on its own origin: a button that opens the connect page with `connect.js`,
/// and every message the window receives, from any origin.
async fn platform_page(broker_base: &str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let html = format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Platform</title></head>
<body><main><h1>Platform</h1><button id="connect">Connect</button><pre id="result"></pre><pre id="messages"></pre></main>
<script type="module">
import {{ openConnect }} from "{broker_base}/v1/connect/connect.js";
const params = new URLSearchParams(location.search);
window.addEventListener("message", (e) => {{
  document.getElementById("messages").textContent += JSON.stringify({{origin: e.origin, data: e.data}}) + "\n";
}});
document.getElementById("connect").addEventListener("click", async () => {{
  try {{
    const result = await openConnect(params.get("connect_url"));
    document.getElementById("result").textContent = JSON.stringify(result);
  }} catch (e) {{
    document.getElementById("result").textContent = "error: " + e.message;
  }}
}});
</script></body></html>"#
    );
    let router = axum::Router::new()
        .route(
            "/app.html",
            axum::routing::get(move || {
                let html = html.clone();
                async move { axum::response::Html(html) }
            }),
        )
        .route("/done", axum::routing::get(|| async { "done" }));
    tokio::spawn(async move { axum::serve(listener, router).await });
    origin
}

async fn session(broker: &Broker, body: Value) -> (String, String) {
    let (status, created) = broker
        .post("/v1/connect/sessions", Some(&broker.key), &body)
        .await;
    assert_eq!(status, 201, "{created}");
    (
        created["token"].as_str().unwrap().to_string(),
        created["connect_url"].as_str().unwrap().to_string(),
    )
}

fn app_url(origin: &str, connect_url: &str) -> String {
    let encoded: String = url::form_urlencoded::byte_serialize(connect_url.as_bytes()).collect();
    format!("{origin}/app.html?connect_url={encoded}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connect_page_and_the_console_work_in_chromium() {
    // Given a broker whose provider asks for an optional Zendesk-style subdomain, a platform page
    // on a registered origin and one on an unregistered origin, and the console on its own port
    let entry = FakeEntry {
        keys: &[],
        tables: "[provider.inputs.subdomain]\npattern = \"[a-z0-9][a-z0-9-]{0,62}\"\ndescription = \"Your Zendesk subdomain, as in acme.zendesk.com\"\n",
    };
    let broker = Broker::start_custom(Backend::Embedded, &[], &entry).await;
    let platform = platform_page(&broker.base_url).await;
    let foreign = platform_page(&broker.base_url).await;
    let (console_listener, console_addr) = brokerctl::server::bind(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let console_base = format!("http://{console_addr}");
    broker
        .admin
        .org_create(
            &broker.org,
            &[
                broker.redirect_url.clone(),
                format!("{platform}/done"),
                format!("{console_base}/"),
            ],
        )
        .await
        .unwrap();
    let console = brokerctl::local::Console {
        api_base: console_base.clone(),
        key: broker.key.clone(),
        organization_id: broker.org.clone(),
        workspace: "ws-console".into(),
        http: oauth2::reqwest::Client::new(),
    };
    tokio::spawn(brokerctl::server::serve(
        console_listener,
        brokerctl::server::router(broker.app.clone(), Some(console)),
    ));
    let popup_body = |user: &str| {
        json!({"workspace_id": "ws-1", "end_user": {"id": user, "display_name": "Ada"},
               "allowed_providers": ["fake"], "origin": platform})
    };
    let (_, popup_url) = session(&broker, popup_body("user-popup")).await;
    let (_, foreign_url) = session(&broker, popup_body("user-foreign")).await;
    let (_, redirect_url) = session(
        &broker,
        json!({"workspace_id": "ws-1", "end_user": {"id": "user-redirect"},
               "allowed_providers": ["fake"], "redirect_url": format!("{platform}/done")}),
    )
    .await;

    // When a user goes through each in Chromium
    let screenshots = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/browser-screenshots");
    let input = json!({
        "chromium": std::env::var("BROKER_TEST_CHROMIUM").unwrap_or("/usr/bin/chromium".into()),
        "screenshots": screenshots,
        "popup": {"app_url": app_url(&platform, &popup_url)},
        "foreign": {"app_url": app_url(&foreign, &foreign_url)},
        "redirect": {"connect_url": redirect_url, "done": format!("{platform}/done")},
        "spent_url": popup_url,
        "console_url": format!("{console_base}/"),
    });
    let seen = drive_chromium(&input).await;
    eprintln!("{}", serde_json::to_string_pretty(&seen).unwrap());

    // Then the registered page got the result by postMessage, from the broker's origin only
    let popup: Value = serde_json::from_str(seen["popup"]["result"].as_str().unwrap())
        .unwrap_or_else(|_| panic!("a result, not {}", seen["popup"]["result"]));
    assert_eq!(popup["type"], "oauth-broker:connection");
    assert_eq!(popup["status"], "authorized");
    let id = popup["connection_id"].as_str().unwrap();
    let messages = seen["popup"]["messages"].as_str().unwrap();
    assert!(
        messages.contains(&format!("\"origin\":\"{}\"", broker.base_url)),
        "{messages}"
    );
    assert_eq!(seen["connect_page_title"], "Connect an account");
    assert_eq!(seen["visible_after_search"], 1);
    assert_eq!(seen["search_none_shown"], true);
    // and the connection is listed with the session's end user
    let (_, listed) = broker
        .get("/v1/connections?end_user_id=user-popup", Some(&broker.key))
        .await;
    assert_eq!(listed["connections"][0]["id"], id, "{listed}");

    // and the page on an unregistered origin received nothing, though the popup completed
    assert_eq!(
        seen["foreign"]["result"], "error: the connect window was closed",
        "{seen}"
    );
    assert_eq!(seen["foreign"]["messages"], "");
    let (_, foreign_listed) = broker
        .get(
            "/v1/connections?end_user_id=user-foreign",
            Some(&broker.key),
        )
        .await;
    assert_eq!(foreign_listed["connections"].as_array().unwrap().len(), 1);

    // and redirect mode refused the bad subdomain in the page, then landed with references
    assert_eq!(seen["bad_input_stayed"], true);
    assert_eq!(seen["bad_input_invalid"], true);
    let landed = seen["redirect_final_url"].as_str().unwrap();
    let query = broker_tests::query_of(landed);
    assert_eq!(query["status"], "authorized", "{landed}");
    assert!(query["connection_id"].starts_with("conn_"));

    // and the spent session showed the error page
    assert_eq!(
        seen["spent_heading"],
        "This sign-in link is no longer valid"
    );

    // and the console connected, handed a masked token, and revoked
    assert!(
        seen["console_after_connect"]
            .as_str()
            .unwrap()
            .starts_with("Connected conn_")
    );
    assert_eq!(seen["console_rows"], 4);
    let notice = seen["console_token_notice"].as_str().unwrap();
    assert!(
        notice.starts_with("Fresh token for conn_") && notice.contains("characters"),
        "{notice}"
    );
    for token in broker.provider.ledger().issued_tokens() {
        assert!(
            !notice.contains(&token),
            "the console shows a token masked only"
        );
    }
    assert!(
        seen["console_after_revoke"]
            .as_str()
            .unwrap()
            .starts_with("Revoked conn_")
    );
    assert_eq!(seen["console_statuses"][0], "revoked");

    // and axe-core found no serious or critical violation on either page
    assert_eq!(seen["connect_page_axe"], json!([]), "connect page");
    assert_eq!(seen["console_axe"], json!([]), "console");
    for shot in ["connect-page.png", "console.png", "console-revoked.png"] {
        assert!(
            std::path::Path::new(screenshots).join(shot).exists(),
            "{shot}"
        );
    }
}

async fn drive_chromium(input: &Value) -> Value {
    broker_tests::python::run(
        concat!(env!("CARGO_MANIFEST_DIR"), "/browser/connect.py"),
        input,
    )
    .await
}
