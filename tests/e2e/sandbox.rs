//! What a newcomer does with `brokerctl serve`: connect the sandbox account through the real
//! pages and the sandbox provider, read the connection and its token, and watch the two-minute
//! token refresh with a rotating refresh token; then revoke it, after which the sandbox's own
//! userinfo route refuses the token.

use broker_tests::harness::{Browser, http_client, location, query_of, status_and_json};
use brokerctl::{pages, sandbox};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_connection_is_read_and_refreshed_through_serve() {
    // Given `serve`'s wiring on a free port: the sandbox provider, the development
    // organization and its key, the pages
    let (listener, addr) = brokerctl::server::bind(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("broker-sandbox-{}", uuid::Uuid::new_v4()));
    // `serve`'s configuration, through a lookup rather than the process environment.
    let config = broker::Config::from_lookup(|name| match name {
        "BROKER_BACKEND" => Some("embedded".into()),
        "BROKER_PUBLIC_URL" => Some(format!("http://{addr}")),
        "BROKER_ALLOW_LOOPBACK_HTTP" => Some("1".into()),
        "BROKER_REFRESH_MARGIN_SECS" => Some(brokerctl::LOCAL_REFRESH_MARGIN_SECS.to_string()),
        "BROKER_DATA_DIR" => Some(dir.display().to_string()),
        _ => None,
    })
    .unwrap();
    let served = brokerctl::server::prepare(config).await.unwrap();
    let app = served.app.clone();
    let key = served.first_key.clone().expect("a first key");
    tokio::spawn(brokerctl::server::serve(
        listener,
        brokerctl::server::router(app.clone(), Some(served.console)),
    ));
    let base = format!("http://{addr}");
    let http = http_client();

    // When the newcomer starts a flow, allows access on the sandbox's consent page and lands
    let started = http
        .post(format!("{base}/v1/sources/initiateOAuth"))
        .header("x-api-key", &key)
        .header("content-type", "application/json")
        .body(
            serde_json::json!({
                "sourceType": "sandbox",
                "workspaceId": pages::DEV_WORKSPACE,
                "redirectUrl": format!("{base}{}", pages::DONE_PATH),
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    let (status, started) = status_and_json(started).await;
    assert_eq!(status, 200, "{started}");
    let mut browser = Browser::default();
    let to_sandbox = browser.get(started["consentUrl"].as_str().unwrap()).await;
    let consent = location(&to_sandbox);
    let allowed = browser.get(&format!("{consent}&decision=allow")).await;
    let landed = browser.get(&location(&allowed)).await;
    assert_eq!(landed.status().as_u16(), 303);
    assert!(query_of(&location(&landed)).contains_key("secret_id"));

    // Then the connection is listed, and its token is handed out as issued
    let get = |path: String| {
        let (http, key, base) = (http.clone(), key.clone(), base.clone());
        async move {
            status_and_json(
                http.get(format!("{base}{path}"))
                    .header("x-api-key", key)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let (status, listed) = get("/v1/connections".into()).await;
    assert_eq!(status, 200, "{listed}");
    let id = listed["connections"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(listed["connections"][0]["provider"], "sandbox");
    let (_, first) = get(format!("/v1/connections/{id}/token")).await;
    let (_, again) = get(format!("/v1/connections/{id}/token")).await;
    assert_eq!(first["access_token"], again["access_token"], "not yet due");

    // And once the two-minute token is within the margin, the next read refreshes it, and the
    // rotated refresh token works for the refresh after that
    for _ in 0..2 {
        app.clock.advance(100);
        let (status, refreshed) = get(format!("/v1/connections/{id}/token")).await;
        assert_eq!(status, 200, "{refreshed}");
        assert_ne!(refreshed["access_token"], first["access_token"]);
        let (_, connection) = get(format!("/v1/connections/{id}")).await;
        assert!(connection["last_refreshed_at"].is_string());
        assert_eq!(connection["refresh_failures"], 0);
    }

    // When the newcomer revokes it (the README's curl), the sandbox was asked to revoke, and its
    // userinfo route, which took the token before, refuses it now
    let (_, current) = get(format!("/v1/connections/{id}/token")).await;
    let token = current["access_token"].as_str().unwrap().to_string();
    let userinfo = |token: String| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            http.get(format!("{base}{}", sandbox::USERINFO_PATH))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(userinfo(token.clone()).await, 200);
    let deleted = http
        .delete(format!("{base}/v1/connections/{id}"))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    let (status, deleted) = status_and_json(deleted).await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["provider_revocation"], "revoked");
    assert_eq!(userinfo(token).await, 401);
    let (status, _) = get(format!("/v1/connections/{id}/token")).await;
    assert_eq!(status, 404);
    let _ = std::fs::remove_dir_all(&dir);
}
