//! One token exchange per quirk class, against the fake provider set to behave like a real
//! provider of that class, with the broker's entry for it written as data only. Quirks do not
//! depend on the backend, so these run on the embedded one.

use std::collections::HashMap;

use broker_tests::harness::{FakeEntry, location};
use broker_tests::{Backend, Broker, Browser, Knobs, query_of};
use serde_json::{Value, json};

async fn broker(keys: &[(&str, &str)], tables: &str, knobs: Knobs) -> Broker {
    let broker = Broker::start_custom(Backend::Embedded, &[], &FakeEntry { keys, tables }).await;
    broker.provider.set_knobs(knobs);
    broker
}

/// initiateOAuth with `extra` fields, the browser's round trip, and the callback's redirect query.
async fn flow(broker: &Broker, extra: Value) -> HashMap<String, String> {
    let mut body = broker.initiate_body();
    for (k, v) in extra.as_object().into_iter().flatten() {
        body[k] = v.clone();
    }
    let consent = broker.initiate(&body).await;
    let mut browser = Browser::default();
    let callback = broker.through_provider(&mut browser, &consent).await;
    let resp = browser.get(&callback).await;
    assert_eq!(resp.status().as_u16(), 303);
    query_of(&location(&resp))
}

/// The stored token document of a successful flow, checked against what the provider issued.
async fn stored(broker: &Broker, params: &HashMap<String, String>) -> Value {
    let secret_id = params
        .get("secret_id")
        .unwrap_or_else(|| panic!("no tokens: {params:?}"));
    let issued = broker.provider.ledger().issued_tokens().pop().unwrap();
    let doc = broker.read_secret(secret_id, &issued).await;
    assert_eq!(doc["access_token"], issued);
    doc
}

#[tokio::test]
async fn comma_separated_scopes_and_extra_authorize_params_reach_the_provider() {
    // Slack, Zoho, Facebook join scopes with commas; Google, Dropbox, Atlassian add parameters
    let broker = broker(
        &[
            ("scope_separator", "\",\""),
            (
                "authorize_params",
                "{ access_type = \"offline\", prompt = \"consent\", token_access_type = \"offline\", audience = \"api.example\" }",
            ),
        ],
        "",
        Knobs::default(),
    )
    .await;
    let params = flow(&broker, json!({ "requestedOptionalScopes": ["write"] })).await;
    stored(&broker, &params).await;
    let auth = &broker.provider.ledger().authorize_requests[0];
    assert_eq!(auth["scope"], "read,write");
    assert_eq!(auth["access_type"], "offline");
    assert_eq!(auth["prompt"], "consent");
    assert_eq!(auth["token_access_type"], "offline");
    assert_eq!(auth["audience"], "api.example");
}

#[tokio::test]
async fn pkce_required_provider_gets_challenge_and_verifier() {
    // X and Airtable refuse an authorization request without PKCE
    let broker = broker(
        &[],
        "",
        Knobs {
            require_pkce: true,
            ..Knobs::default()
        },
    )
    .await;
    let params = flow(&broker, json!({})).await;
    stored(&broker, &params).await;
    let ledger = broker.provider.ledger();
    assert_eq!(
        ledger.authorize_requests[0]["code_challenge_method"],
        "S256"
    );
    assert!(ledger.token_requests[0].form.contains_key("code_verifier"));
}

#[tokio::test]
async fn provider_refusing_pkce_gets_none() {
    let broker = broker(
        &[("pkce", "\"unsupported\"")],
        "",
        Knobs {
            refuse_pkce: true,
            ..Knobs::default()
        },
    )
    .await;
    let params = flow(&broker, json!({})).await;
    stored(&broker, &params).await;
    let ledger = broker.provider.ledger();
    assert!(!ledger.authorize_requests[0].contains_key("code_challenge"));
    assert!(!ledger.token_requests[0].form.contains_key("code_verifier"));
}

#[tokio::test]
async fn post_authenticating_provider_gets_the_secret_in_the_body_only() {
    // GitHub, Slack, HubSpot: client_secret in the form, no Basic header
    let broker = broker(
        &[("client_auth", "\"post\"")],
        "",
        Knobs {
            post_auth_only: true,
            ..Knobs::default()
        },
    )
    .await;
    let params = flow(&broker, json!({})).await;
    stored(&broker, &params).await;
    let token = &broker.provider.ledger().token_requests[0];
    assert!(token.basic_auth.is_none());
    assert!(token.form.contains_key("client_secret"));
}

#[tokio::test]
async fn json_body_provider_gets_a_json_token_request() {
    // Notion and Atlassian take JSON token requests
    let broker = broker(
        &[("token_body", "\"json\"")],
        "",
        Knobs {
            json_body_only: true,
            ..Knobs::default()
        },
    )
    .await;
    let params = flow(&broker, json!({})).await;
    stored(&broker, &params).await;
    let token = &broker.provider.ledger().token_requests[0];
    assert_eq!(token.encoding, "json");
    assert_eq!(token.form["grant_type"], "authorization_code");
}

#[tokio::test]
async fn optional_scopes_travel_in_their_own_parameter() {
    // HubSpot's optional_scope
    let broker = broker(
        &[("optional_scope_param", "\"optional_scope\"")],
        "",
        Knobs::default(),
    )
    .await;
    let params = flow(&broker, json!({ "requestedOptionalScopes": ["write"] })).await;
    stored(&broker, &params).await;
    let auth = &broker.provider.ledger().authorize_requests[0];
    assert_eq!(auth["scope"], "read");
    assert_eq!(auth["optional_scope"], "write");
}

#[tokio::test]
async fn slack_style_nested_tokens_are_lifted_and_ok_false_is_an_error() {
    let broker = broker(
        &[
            ("client_auth", "\"post\""),
            ("pkce", "\"unsupported\""),
            ("scope_param", "\"user_scope\""),
            ("token_response_path", "\"authed_user\""),
            ("success_field", "\"ok\""),
            ("keep_token_fields", "[\"team\"]"),
        ],
        "",
        Knobs {
            slack_style: true,
            post_auth_only: true,
            ..Knobs::default()
        },
    )
    .await;
    let params = flow(&broker, json!({})).await;
    let doc = stored(&broker, &params).await;
    assert_eq!(doc["metadata"]["team"]["id"], "T1");
    let auth = &broker.provider.ledger().authorize_requests[0];
    assert_eq!(auth["user_scope"], "read");
    assert!(!auth.contains_key("scope"));

    // A refused code arrives as a 200 with ok: false, and ends the flow with that error
    broker.provider.set_knobs(Knobs {
        slack_style: true,
        post_auth_only: true,
        token_error: Some("invalid_code".into()),
        ..Knobs::default()
    });
    let params = flow(&broker, json!({})).await;
    assert_eq!(params["error"], "invalid_code", "{params:?}");
    assert!(!params.contains_key("secret_id"));
}

#[tokio::test]
async fn form_encoded_token_response_is_read() {
    // GitHub answers form-encoded unless it honours Accept: application/json
    let broker = broker(
        &[],
        "",
        Knobs {
            respond_form: true,
            ..Knobs::default()
        },
    )
    .await;
    let params = flow(&broker, json!({})).await;
    let doc = stored(&broker, &params).await;
    assert!(
        doc["refresh_token"]
            .as_str()
            .unwrap()
            .starts_with("fake_rt_")
    );
    assert!(doc["expires_at"].is_i64());
}

#[tokio::test]
async fn metadata_is_kept_from_the_token_response_and_the_redirect() {
    // Salesforce's instance_url, QuickBooks' realmId
    let broker = broker(
        &[
            ("keep_token_fields", "[\"instance_url\"]"),
            ("keep_redirect_fields", "[\"realmId\"]"),
        ],
        "",
        Knobs {
            extra_token_fields: vec![(
                "instance_url".into(),
                "https://acme.my.salesforce.com".into(),
            )],
            redirect_extra: vec![("realmId".into(), "4620816365".into())],
            ..Knobs::default()
        },
    )
    .await;
    let params = flow(&broker, json!({})).await;
    let doc = stored(&broker, &params).await;
    assert_eq!(
        doc["metadata"]["instance_url"],
        "https://acme.my.salesforce.com"
    );
    assert_eq!(doc["metadata"]["realmId"], "4620816365");
    assert!(
        !params.contains_key("realmId"),
        "the platform gets references only"
    );
}

#[tokio::test]
async fn regional_endpoints_follow_the_region_input() {
    // Intercom's and Zoho's data centers
    let tables = r#"
[provider.regions.eu]
authorization_url = "{base}/eu/authorize"
token_url = "{base}/eu/token"

[provider.inputs.region]
pattern = "us|eu"
required = false
"#;
    let broker = broker(&[], tables, Knobs::default()).await;
    let params = flow(
        &broker,
        json!({ "oAuthInputConfiguration": { "region": "eu" } }),
    )
    .await;
    stored(&broker, &params).await;
    let params = flow(
        &broker,
        json!({ "oAuthInputConfiguration": { "region": "us" } }),
    )
    .await;
    stored(&broker, &params).await;
    let paths: Vec<String> = broker
        .provider
        .ledger()
        .token_requests
        .iter()
        .map(|t| t.path.clone())
        .collect();
    assert_eq!(paths, ["/eu/token", "/token"]);
    let (status, body) = broker
        .post(
            "/v1/sources/initiateOAuth",
            Some(&broker.key),
            &json!({ "sourceType": "fake", "workspaceId": "ws-1", "redirectUrl": broker.redirect_url,
                     "oAuthInputConfiguration": { "region": "mars" } }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn code_in_a_renamed_parameter_is_redeemed() {
    // Amazon SP-API's spapi_oauth_code
    let broker = broker(
        &[("code_param", "\"spapi_oauth_code\"")],
        "",
        Knobs {
            code_param: Some("spapi_oauth_code".into()),
            ..Knobs::default()
        },
    )
    .await;
    let params = flow(&broker, json!({})).await;
    stored(&broker, &params).await;
}

#[tokio::test]
async fn oauth1_provider_is_listed_but_refused_with_a_clear_error() {
    let broker = Broker::start(Backend::Embedded).await;
    let (status, body) = broker
        .post(
            "/v1/sources/initiateOAuth",
            Some(&broker.key),
            &json!({ "sourceType": "trello", "workspaceId": "ws-1", "redirectUrl": broker.redirect_url }),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("OAuth 1.0a"),
        "{body}"
    );
    assert!(broker.provider.ledger().authorize_requests.is_empty());
}

#[tokio::test]
async fn providers_file_entry_overrides_the_builtin_of_the_same_slug() {
    // Given a providers file that points `github` somewhere else
    let dir = std::env::temp_dir().join(format!("providers-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("providers.toml");
    std::fs::write(
        &file,
        r#"[[provider]]
slug = "github"
name = "GitHub Enterprise (acme)"
authorization_url = "http://127.0.0.1:9/login/oauth/authorize"
token_url = "http://127.0.0.1:9/login/oauth/access_token"
scopes = ["repo"]
client_auth = "post"
"#,
    )
    .unwrap();
    let broker = Broker::start_with(
        Backend::Embedded,
        &[("BROKER_PROVIDERS_FILE", file.to_str().unwrap())],
    )
    .await;
    broker
        .admin
        .app_set("github", "gh-client", "gh-secret".into(), None, None)
        .await
        .unwrap();

    // When a flow starts for github, the browser is sent to the file's endpoint
    let consent = broker
        .initiate(&json!({ "sourceType": "github", "workspaceId": "ws-1", "redirectUrl": broker.redirect_url }))
        .await;
    let resp = Browser::default().get(&consent).await;
    assert_eq!(resp.status().as_u16(), 302);
    let target = location(&resp);
    assert!(
        target.starts_with("http://127.0.0.1:9/login/oauth/authorize?"),
        "{target}"
    );
    assert_eq!(query_of(&target)["scope"], "repo");
    let _ = std::fs::remove_dir_all(dir);
}
