//! What the broker refuses, on both backends, and proof from the fake provider's ledger that a
//! refused step asked the provider nothing.

use broker_tests::harness::{location, status_and_json};
use broker_tests::{Backend, Broker, Browser, Knobs, on_both_backends, query_of};
use serde_json::{Value, json};

on_both_backends!(
    callback_with_reused_state_makes_no_second_token_request,
    many_concurrent_callbacks_on_one_state_redeem_the_code_once,
    expired_flow_is_refused_although_its_item_still_exists,
    unregistered_redirect_url_is_refused_before_any_flow_exists,
    provider_access_denied_redirects_with_error_and_makes_no_token_request,
    provider_refusing_the_code_redirects_with_its_error,
    callback_from_another_browser_is_refused_and_the_right_browser_can_still_finish,
    second_browser_at_authorize_is_refused,
    unknown_or_malformed_state_gets_a_static_page_never_a_redirect,
    other_organizations_state_token_is_indistinguishable_from_a_missing_one,
    bad_api_keys_are_refused_with_401,
    malformed_oversized_and_mistyped_bodies_are_refused,
    unknown_provider_input_and_undeclared_scope_are_refused,
    unknown_route_and_wrong_method_use_the_envelope,
    key_limited_to_workspaces_cannot_start_flows_elsewhere,
    overlong_query_and_key_are_refused,
    redirect_url_unregistered_after_initiate_is_not_followed,
    repeated_protocol_parameters_are_refused_before_the_flow_is_touched,
);

async fn callback_with_reused_state_makes_no_second_token_request(backend: Backend) {
    let broker = Broker::start(backend).await;
    let (mut browser, callback) = broker.flow_at_provider().await;
    assert_eq!(browser.get(&callback).await.status().as_u16(), 303);

    let replay = browser.get(&callback).await;

    assert_static_refusal(replay).await;
    assert_eq!(broker.provider.ledger().token_requests.len(), 1);
}

async fn many_concurrent_callbacks_on_one_state_redeem_the_code_once(backend: Backend) {
    let broker = Broker::start(backend).await;
    let (browser, callback) = broker.flow_at_provider().await;
    let cookie = browser.cookie_header();

    let attempts = (0..16).map(|_| {
        let (http, url, cookie) = (broker.http.clone(), callback.clone(), cookie.clone());
        tokio::spawn(async move {
            http.get(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    });
    let mut statuses = Vec::new();
    for a in attempts {
        statuses.push(a.await.unwrap());
    }

    assert_eq!(
        statuses.iter().filter(|s| **s == 303).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 400).count(),
        15,
        "{statuses:?}"
    );
    let ledger = broker.provider.ledger();
    assert_eq!(ledger.token_requests.len(), 1);
    assert_eq!(ledger.redeemed.len(), 1);
}

async fn expired_flow_is_refused_although_its_item_still_exists(backend: Backend) {
    let broker = Broker::start(backend).await;
    let mut browser = Browser::default();
    let consent = broker.initiate(&broker.initiate_body()).await;
    let callback = broker.through_provider(&mut browser, &consent).await;

    // Past the flow's lifetime, neither step accepts it, though TTL has deleted nothing.
    broker.app.clock.advance(601);
    assert_static_refusal(Browser::default().get(&consent).await).await;
    assert_static_refusal(browser.get(&callback).await).await;
    assert_eq!(broker.provider.ledger().token_requests.len(), 0);

    // Back inside its lifetime the same callback succeeds: the item was there all along and only
    // the expiry check refused it.
    broker.app.clock.advance(-601);
    assert_eq!(browser.get(&callback).await.status().as_u16(), 303);
    assert_eq!(broker.provider.ledger().token_requests.len(), 1);
}

async fn unregistered_redirect_url_is_refused_before_any_flow_exists(backend: Backend) {
    let broker = Broker::start(backend).await;
    for bad in [
        "https://evil.example/done",
        "http://127.0.0.1:1/platform/done/../../evil",
        "http://127.0.0.1:2/platform/done",
        "http://user@127.0.0.1:1/platform/done",
        "http://127.0.0.1:1/platform/done#x",
        "not a url",
    ] {
        let body = json!({ "sourceType": "fake", "workspaceId": "ws-1", "redirectUrl": bad });
        let (status, err) = broker
            .post("/v1/sources/initiateOAuth", Some(&broker.key), &body)
            .await;
        assert_eq!(status, 400, "{bad}: {err}");
        assert_eq!(err["error"]["code"], "VALIDATION_ERROR");
    }
    assert_eq!(broker.provider.ledger().authorize_requests.len(), 0);
}

async fn provider_access_denied_redirects_with_error_and_makes_no_token_request(backend: Backend) {
    let broker = Broker::start(backend).await;
    broker.provider.set_knobs(Knobs {
        deny: true,
        ..Knobs::default()
    });
    let (mut browser, callback) = broker.flow_at_provider().await;

    let resp = browser.get(&callback).await;

    assert_eq!(resp.status().as_u16(), 303);
    let target = location(&resp);
    assert!(target.starts_with(&broker.redirect_url));
    let params = query_of(&target);
    assert_eq!(params["error"], "access_denied");
    assert_eq!(params["error_description"], "The user said no");
    assert!(!params.contains_key("secret_id"));
    assert_eq!(broker.provider.ledger().token_requests.len(), 0);
    // The flow is spent: a replay is refused, not redirected again.
    assert_static_refusal(browser.get(&callback).await).await;
}

async fn provider_refusing_the_code_redirects_with_its_error(backend: Backend) {
    let broker = Broker::start(backend).await;
    broker.provider.set_knobs(Knobs {
        token_error: Some("invalid_grant".into()),
        ..Knobs::default()
    });
    let (mut browser, callback) = broker.flow_at_provider().await;

    let resp = browser.get(&callback).await;

    assert_eq!(resp.status().as_u16(), 303);
    let params = query_of(&location(&resp));
    assert_eq!(params["error"], "invalid_grant");
    assert!(!params.contains_key("secret_id"));
    let ledger = broker.provider.ledger();
    assert_eq!(ledger.token_requests.len(), 1);
    assert_eq!(ledger.token_requests[0].outcome, "invalid_grant");
}

async fn callback_from_another_browser_is_refused_and_the_right_browser_can_still_finish(
    backend: Backend,
) {
    let broker = Broker::start(backend).await;
    let mut victim = Browser::default();
    let consent = broker.initiate(&broker.initiate_body()).await;
    let callback = broker.through_provider(&mut victim, &consent).await;

    // Another browser (no binding cookie, or a forged one) presents the victim's callback.
    let mut attacker = Browser::default();
    assert_static_refusal(attacker.get(&callback).await).await;
    let forged: Vec<String> = victim
        .cookies()
        .keys()
        .map(|k| format!("{k}=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"))
        .collect();
    let resp = broker
        .http
        .get(&callback)
        .header("cookie", forged.join("; "))
        .send()
        .await
        .unwrap();
    assert_static_refusal(resp).await;
    assert_eq!(broker.provider.ledger().token_requests.len(), 0);

    assert_eq!(victim.get(&callback).await.status().as_u16(), 303);
    assert_eq!(broker.provider.ledger().token_requests.len(), 1);
}

async fn second_browser_at_authorize_is_refused(backend: Backend) {
    let broker = Broker::start(backend).await;
    let consent = broker.initiate(&broker.initiate_body()).await;
    let mut first = Browser::default();
    assert_eq!(first.get(&consent).await.status().as_u16(), 302);
    // The first browser may come back; a second may not take the flow over.
    assert_eq!(first.get(&consent).await.status().as_u16(), 302);
    assert_static_refusal(Browser::default().get(&consent).await).await;
}

async fn unknown_or_malformed_state_gets_a_static_page_never_a_redirect(backend: Backend) {
    let broker = Broker::start(backend).await;
    let unknown = "A".repeat(43);
    for query in [
        String::new(),
        "?code=x".to_string(),
        format!("?code=x&state={unknown}"),
        "?code=x&state=short".to_string(),
        format!("?error=access_denied&state={unknown}"),
    ] {
        assert_static_refusal(
            Browser::default()
                .get(&broker.url(&format!("/v1/oauth/callback{query}")))
                .await,
        )
        .await;
    }
    assert_static_refusal(
        Browser::default()
            .get(&broker.url(&format!("/v1/oauth/authorize?flow={unknown}")))
            .await,
    )
    .await;
    assert_eq!(broker.provider.ledger().token_requests.len(), 0);
}

async fn other_organizations_state_token_is_indistinguishable_from_a_missing_one(backend: Backend) {
    let broker = Broker::start(backend).await;
    let (other_org, other_key) = broker.other_org().await;
    let path = format!(
        "/v1/personal-connectors/authorize?organization_id={}",
        broker.org
    );
    let (_, started) = broker
        .post(
            &path,
            Some(&broker.key),
            &json!({ "app_key": "fake", "redirect_url": broker.redirect_url }),
        )
        .await;
    let mut browser = Browser::default();
    let callback = broker
        .through_provider(&mut browser, started["authorization_url"].as_str().unwrap())
        .await;
    let state_token = query_of(&location(&browser.get(&callback).await))["state_token"].clone();

    // The other organization, on its own path, with our token and with a made-up one
    let theirs = format!("/v1/personal-connectors/complete-oauth?organization_id={other_org}");
    let (s1, foreign) = broker
        .post(
            &theirs,
            Some(&other_key),
            &json!({ "state_token": state_token }),
        )
        .await;
    let (s2, missing) = broker
        .post(
            &theirs,
            Some(&other_key),
            &json!({ "state_token": "B".repeat(43) }),
        )
        .await;
    assert_eq!((s1, s2), (400, 400));
    assert_eq!(strip_volatile(foreign), strip_volatile(missing));

    // naming our organization with its key is forbidden outright
    let ours = format!(
        "/v1/personal-connectors/complete-oauth?organization_id={}",
        broker.org
    );
    let (status, _) = broker
        .post(
            &ours,
            Some(&other_key),
            &json!({ "state_token": state_token }),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = broker
        .post(
            &path,
            Some(&other_key),
            &json!({ "app_key": "fake", "redirect_url": broker.redirect_url }),
        )
        .await;
    assert_eq!(status, 403);

    // and none of it used the token up
    let (status, done) = broker
        .post(
            &ours,
            Some(&broker.key),
            &json!({ "state_token": state_token }),
        )
        .await;
    assert_eq!(status, 200, "{done}");
}

async fn bad_api_keys_are_refused_with_401(backend: Backend) {
    let broker = Broker::start(backend).await;
    let body = broker.initiate_body();
    let url = broker.url("/v1/sources/initiateOAuth");
    let requests = [
        broker.http.post(&url),
        broker.http.post(&url).header("x-api-key", "obk_unknown"),
        broker
            .http
            .post(&url)
            .header("authorization", "Bearer obk_unknown"),
        broker
            .http
            .post(&url)
            .header("authorization", format!("Basic {}", broker.key)),
        broker.http.post(&url).header("x-api-key", ""),
    ];
    for req in requests {
        let resp = req
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let (status, v) = status_and_json(resp).await;
        assert_eq!(status, 401);
        assert_eq!(v["error"]["code"], "AUTHENTICATION_REQUIRED");
    }
    // The right key in the Bearer form works
    let resp = broker
        .http
        .post(&url)
        .header("authorization", format!("Bearer {}", broker.key))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

async fn malformed_oversized_and_mistyped_bodies_are_refused(backend: Backend) {
    let broker = Broker::start(backend).await;
    let url = broker.url("/v1/sources/initiateOAuth");
    let send = |body: Vec<u8>, content_type: &'static str| {
        broker
            .http
            .post(&url)
            .header("x-api-key", &broker.key)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let cases: Vec<(Vec<u8>, &str, u16, &str)> = vec![
        (
            b"{not json".to_vec(),
            "application/json",
            400,
            "VALIDATION_ERROR",
        ),
        (b"{}".to_vec(), "application/json", 400, "VALIDATION_ERROR"),
        (
            format!("{}{}", "[".repeat(64), "]".repeat(64)).into_bytes(),
            "application/json",
            400,
            "VALIDATION_ERROR",
        ),
        (
            vec![b' '; 70 * 1024],
            "application/json",
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        (
            b"sourceType=fake".to_vec(),
            "application/x-www-form-urlencoded",
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
    ];
    for (body, content_type, expected, code) in cases {
        let resp = send(body, content_type).await.unwrap();
        let (status, v) = status_and_json(resp).await;
        assert_eq!(status, expected, "{code}");
        assert_eq!(v["error"]["code"], code);
        assert_eq!(v["success"], false);
        assert!(!v["error"]["trace_id"].as_str().unwrap().is_empty());
    }
    // Far over the limit the server stops reading at 64 KiB: the client sees the 413 or, when it
    // is still writing as the connection closes, a reset. Either way nothing is buffered and the
    // server goes on serving.
    match send(vec![b'x'; 8 * 1024 * 1024], "application/json").await {
        Ok(resp) => assert_eq!(resp.status().as_u16(), 413),
        Err(e) => assert!(e.is_request() || e.is_body(), "{e}"),
    }
    let (status, _) = broker
        .post(
            "/v1/sources/initiateOAuth",
            Some(&broker.key),
            &broker.initiate_body(),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(broker.provider.ledger().authorize_requests.len(), 0);
}

async fn unknown_provider_input_and_undeclared_scope_are_refused(backend: Backend) {
    let broker = Broker::start(backend).await;
    let mut body = broker.initiate_body();
    body["oAuthInputConfiguration"] = json!({ "subdomain": "acme" });
    let (status, v) = broker
        .post("/v1/sources/initiateOAuth", Some(&broker.key), &body)
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("VALIDATION_ERROR")),
        "{v}"
    );

    let mut body = broker.initiate_body();
    body["requestedScopes"] = json!(["admin"]);
    let (status, _) = broker
        .post("/v1/sources/initiateOAuth", Some(&broker.key), &body)
        .await;
    assert_eq!(status, 400);

    let mut body = broker.initiate_body();
    body["sourceType"] = json!("no-such-provider");
    let (status, v) = broker
        .post("/v1/sources/initiateOAuth", Some(&broker.key), &body)
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("NOT_FOUND"))
    );

    // A templated host refuses anything but one DNS label, before any flow exists.
    broker
        .admin
        .app_set("zendesk-support", "id", "secret".into(), None, None)
        .await
        .unwrap();
    for evil in ["evil.com#", "127.0.0.1", "a/b", "x.evil"] {
        let body = json!({ "sourceType": "zendesk-support", "workspaceId": "ws-1", "redirectUrl": broker.redirect_url,
                           "oAuthInputConfiguration": { "subdomain": evil } });
        let (status, _) = broker
            .post("/v1/sources/initiateOAuth", Some(&broker.key), &body)
            .await;
        assert_eq!(status, 400, "{evil}");
    }
    let body = json!({ "sourceType": "zendesk-support", "workspaceId": "ws-1", "redirectUrl": broker.redirect_url,
                       "oAuthInputConfiguration": { "subdomain": "acme" } });
    let consent = broker.initiate(&body).await;
    let resp = Browser::default().get(&consent).await;
    assert!(
        location(&resp).starts_with("https://acme.zendesk.com/oauth/authorizations/new?"),
        "{}",
        location(&resp)
    );
}

async fn unknown_route_and_wrong_method_use_the_envelope(backend: Backend) {
    let broker = Broker::start(backend).await;
    let resp = broker
        .http
        .get(broker.url("/v1/nope"))
        .send()
        .await
        .unwrap();
    let (status, v) = status_and_json(resp).await;
    assert_eq!(status, 404);
    assert_eq!(v["error"]["code"], "NOT_FOUND");
    let resp = broker
        .http
        .get(broker.url("/v1/sources/initiateOAuth"))
        .header("x-api-key", &broker.key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 405);
}

async fn key_limited_to_workspaces_cannot_start_flows_elsewhere(backend: Backend) {
    let broker = Broker::start(backend).await;
    let limited = broker
        .admin
        .key_create(&broker.org, 9, vec!["ws-1".into()], vec![])
        .await
        .unwrap();
    let mut body = broker.initiate_body();
    body["workspaceId"] = json!("ws-2");
    let (status, v) = broker
        .post("/v1/sources/initiateOAuth", Some(&limited), &body)
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (403, Some("FORBIDDEN"))
    );
    let (status, _) = broker
        .post(
            "/v1/sources/initiateOAuth",
            Some(&limited),
            &broker.initiate_body(),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(broker.provider.ledger().authorize_requests.len(), 0);
}

async fn overlong_query_and_key_are_refused(backend: Backend) {
    let broker = Broker::start(backend).await;
    let long = "x".repeat(9 * 1024);
    assert_static_refusal(
        Browser::default()
            .get(&broker.url(&format!("/v1/oauth/callback?state={long}")))
            .await,
    )
    .await;
    let path = format!(
        "/v1/personal-connectors/authorize?organization_id={}&pad={long}",
        broker.org
    );
    let (status, v) = broker.post(&path, Some(&broker.key), &json!({})).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("VALIDATION_ERROR"))
    );
    let (status, _) = broker
        .post(
            "/v1/sources/initiateOAuth",
            Some(&"k".repeat(300)),
            &broker.initiate_body(),
        )
        .await;
    assert_eq!(status, 401);
}

async fn redirect_url_unregistered_after_initiate_is_not_followed(backend: Backend) {
    let broker = Broker::start(backend).await;
    let (mut browser, callback) = broker.flow_at_provider().await;

    // The organization drops the URL while the user is at the provider.
    broker
        .admin
        .org_create(&broker.org, &["https://new.example.com/done".into()])
        .await
        .unwrap();

    assert_static_refusal(browser.get(&callback).await).await;
    assert_eq!(
        broker.provider.ledger().token_requests.len(),
        0,
        "no code redeemed for a flow that cannot finish"
    );
}

async fn repeated_protocol_parameters_are_refused_before_the_flow_is_touched(backend: Backend) {
    // Given a flow the browser took to the provider, and the callback URL it came back with
    let broker = Broker::start(backend).await;
    let (mut browser, callback) = broker.flow_at_provider().await;
    let (base, query) = callback.split_once('?').unwrap();

    // When the callback arrives with a protocol parameter twice, either order (RFC 6749 §3.1)
    let forged = [
        format!("{base}?state=forged-state-value-aaaaaaaaaaaaaaaaaaaaaaaaaaaa&{query}"),
        format!("{base}?{query}&state=forged-state-value-aaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
        format!("{base}?{query}&code=another-code"),
        format!("{base}?iss=https%3A%2F%2Fevil.example&{query}&iss=https%3A%2F%2Ffake.example"),
        format!("{base}?{query}&error=access_denied&error=server_error"),
    ];
    for url in &forged {
        // Then each gets the static 400 page, and the provider is never asked for a token
        assert_static_refusal(browser.get(url).await).await;
    }
    assert!(broker.provider.ledger().token_requests.is_empty());

    // And the flow was not touched: the clean callback still finishes it, once
    let resp = browser.get(&callback).await;
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(broker.provider.ledger().redeemed.len(), 1);

    // And an authorize request naming `flow` twice is refused before any flow is bound
    let consent = broker.initiate(&broker.initiate_body()).await;
    let flow = query_of(&consent)["flow"].clone();
    let mut fresh = Browser::default();
    let twice = format!("{consent}&flow={flow}");
    assert_static_refusal(fresh.get(&twice).await).await;
    assert!(fresh.cookies().is_empty(), "no binding cookie set");
    let mut other = Browser::default();
    assert_eq!(
        other.get(&consent).await.status().as_u16(),
        302,
        "still unbound"
    );
}

/// A browser step that cannot trust the flow: a small static page, never a redirect.
async fn assert_static_refusal(resp: oauth2::reqwest::Response) {
    assert_eq!(resp.status().as_u16(), 400);
    assert!(resp.headers().get("location").is_none());
    assert_eq!(resp.headers()["referrer-policy"], "no-referrer");
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let body = resp.text().await.unwrap();
    assert!(body.contains("no longer valid"));
}

fn strip_volatile(mut v: Value) -> Value {
    v["error"]["trace_id"] = Value::Null;
    v["error"]["timestamp"] = Value::Null;
    v
}
