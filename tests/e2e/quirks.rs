//! One token exchange per quirk class, against the fake provider set to behave like a real
//! provider of that class, with the broker's entry for it written as data only. Quirks do not
//! depend on the backend, so these run on the embedded one.

use std::collections::HashMap;

use broker_tests::harness::{FakeEntry, location};
use broker_tests::{Backend, Broker, Browser, Knobs, Ledger, query_of};
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

/// One quirk class: the entry's fields (as providers-file TOML values), how the fake provider
/// behaves, what the platform sends, and what the provider must have been asked and the vault hold.
struct Case {
    /// The class, and the real providers it stands for.
    name: &'static str,
    entry: &'static [(&'static str, &'static str)],
    knobs: fn() -> Knobs,
    initiate: fn() -> Value,
    then: fn(&Ledger, &Value, &HashMap<String, String>),
}

const CASES: &[Case] = &[
    Case {
        name: "comma-separated scopes and extra authorize params (Slack, Zoho, Facebook; Google, Dropbox, Atlassian)",
        entry: &[
            ("scope_separator", "\",\""),
            (
                "authorize_params",
                "{ access_type = \"offline\", prompt = \"consent\", token_access_type = \"offline\", audience = \"api.example\" }",
            ),
        ],
        knobs: Knobs::default,
        initiate: || json!({ "requestedOptionalScopes": ["write"] }),
        then: |ledger, _, _| {
            let auth = &ledger.authorize_requests[0];
            assert_eq!(auth["scope"], "read,write");
            assert_eq!(auth["access_type"], "offline");
            assert_eq!(auth["prompt"], "consent");
            assert_eq!(auth["token_access_type"], "offline");
            assert_eq!(auth["audience"], "api.example");
        },
    },
    Case {
        name: "PKCE required (X, Airtable)",
        entry: &[],
        knobs: || Knobs {
            require_pkce: true,
            ..Knobs::default()
        },
        initiate: || json!({}),
        then: |ledger, _, _| {
            assert_eq!(
                ledger.authorize_requests[0]["code_challenge_method"],
                "S256"
            );
            assert!(ledger.token_requests[0].form.contains_key("code_verifier"));
        },
    },
    Case {
        name: "PKCE refused",
        entry: &[("pkce", "\"unsupported\"")],
        knobs: || Knobs {
            refuse_pkce: true,
            ..Knobs::default()
        },
        initiate: || json!({}),
        then: |ledger, _, _| {
            assert!(!ledger.authorize_requests[0].contains_key("code_challenge"));
            assert!(!ledger.token_requests[0].form.contains_key("code_verifier"));
        },
    },
    Case {
        name: "client secret in the body only (GitHub, Slack, HubSpot)",
        entry: &[("client_auth", "\"post\"")],
        knobs: || Knobs {
            post_auth_only: true,
            ..Knobs::default()
        },
        initiate: || json!({}),
        then: |ledger, _, _| {
            let token = &ledger.token_requests[0];
            assert!(token.basic_auth.is_none());
            assert!(token.form.contains_key("client_secret"));
        },
    },
    Case {
        name: "JSON token requests (Notion, Atlassian)",
        entry: &[("token_body", "\"json\"")],
        knobs: || Knobs {
            json_body_only: true,
            ..Knobs::default()
        },
        initiate: || json!({}),
        then: |ledger, _, _| {
            let token = &ledger.token_requests[0];
            assert_eq!(token.encoding, "json");
            assert_eq!(token.form["grant_type"], "authorization_code");
        },
    },
    Case {
        name: "optional scopes in their own parameter (HubSpot's optional_scope)",
        entry: &[("optional_scope_param", "\"optional_scope\"")],
        knobs: Knobs::default,
        initiate: || json!({ "requestedOptionalScopes": ["write"] }),
        then: |ledger, _, _| {
            let auth = &ledger.authorize_requests[0];
            assert_eq!(auth["scope"], "read");
            assert_eq!(auth["optional_scope"], "write");
        },
    },
    Case {
        name: "form-encoded token response (GitHub without Accept: application/json)",
        entry: &[],
        knobs: || Knobs {
            respond_form: true,
            ..Knobs::default()
        },
        initiate: || json!({}),
        then: |_, doc, _| {
            assert!(
                doc["refresh_token"]
                    .as_str()
                    .unwrap()
                    .starts_with("fake_rt_")
            );
            assert!(doc["expires_at"].is_i64());
        },
    },
    Case {
        name: "metadata kept from the token response and the redirect (Salesforce's instance_url, QuickBooks' realmId)",
        entry: &[
            ("keep_token_fields", "[\"instance_url\"]"),
            ("keep_redirect_fields", "[\"realmId\"]"),
        ],
        knobs: || Knobs {
            extra_token_fields: vec![(
                "instance_url".into(),
                "https://acme.my.salesforce.com".into(),
            )],
            redirect_extra: vec![("realmId".into(), "4620816365".into())],
            ..Knobs::default()
        },
        initiate: || json!({}),
        then: |_, doc, params| {
            assert_eq!(
                doc["metadata"]["instance_url"],
                "https://acme.my.salesforce.com"
            );
            assert_eq!(doc["metadata"]["realmId"], "4620816365");
            assert!(
                !params.contains_key("realmId"),
                "the platform gets references only"
            );
        },
    },
    Case {
        name: "code in a renamed parameter (Amazon SP-API's spapi_oauth_code)",
        entry: &[("code_param", "\"spapi_oauth_code\"")],
        knobs: || Knobs {
            code_param: Some("spapi_oauth_code".into()),
            ..Knobs::default()
        },
        initiate: || json!({}),
        then: |_, _, _| {},
    },
];

#[tokio::test]
async fn each_quirk_class_exchanges_by_its_providers_rules() {
    for case in CASES {
        // Captured, and shown with the failure: which class broke.
        println!("quirk class: {}", case.name);
        let broker = broker(case.entry, "", (case.knobs)()).await;
        let params = flow(&broker, (case.initiate)()).await;
        let doc = stored(&broker, &params).await;
        (case.then)(&broker.provider.ledger(), &doc, &params);
    }
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

// One exchange (and refresh or revocation where the shape has one) per request shape the
// catalog's providers need beyond RFC 6749.

#[tokio::test]
async fn tiktok_style_names_and_envelope_are_spoken_and_read() {
    // Given an entry shaped like TikTok's Business API, and a provider that understands only
    // its own names
    let tiktok_knobs = || Knobs {
        tiktok_style: true,
        post_auth_only: true,
        refuse_pkce: true,
        code_param: Some("auth_code".into()),
        ..Knobs::default()
    };
    let broker = broker(
        &[
            ("pkce", "\"unsupported\""),
            ("client_auth", "\"post\""),
            ("token_body", "\"json\""),
            (
                "param_names",
                "{ client_id = \"app_id\", client_secret = \"secret\", code = \"auth_code\" }",
            ),
            ("code_param", "\"auth_code\""),
            ("token_response_path", "\"data\""),
            ("success_field", "\"code\""),
            ("keep_token_fields", "[\"advertiser_ids\"]"),
        ],
        "",
        tiktok_knobs(),
    )
    .await;

    // When a flow runs
    let params = flow(&broker, json!({})).await;

    // Then authorize named the app `app_id`, the code went as JSON under TikTok's names, and the
    // vault holds the token from inside the envelope: no expiry, no refresh token, the scope ids
    let doc = stored(&broker, &params).await;
    let ledger = broker.provider.ledger();
    let auth = &ledger.authorize_requests[0];
    assert_eq!(auth["app_id"], broker_tests::fake_provider::CLIENT_ID);
    assert!(!auth.contains_key("client_id"));
    assert_eq!(ledger.token_requests[0].encoding, "json");
    assert_eq!(ledger.token_requests[0].outcome, "issued");
    assert_eq!(doc["scope"], "4 5");
    assert_eq!(doc["metadata"]["advertiser_ids"], json!(["7001"]));
    assert!(doc.get("expires_at").is_none() && doc.get("refresh_token").is_none());

    // And a refused code, a 200 whose `code` is not 0, ends the flow without tokens
    broker.provider.set_knobs(Knobs {
        token_error: Some("invalid_grant".into()),
        ..tiktok_knobs()
    });
    let params = flow(&broker, json!({})).await;
    assert_eq!(params["error"], "invalid_grant", "{params:?}");
    assert!(!params.contains_key("secret_id"));
}

#[tokio::test]
async fn zoho_style_the_code_is_redeemed_and_refreshed_at_the_server_the_callback_names() {
    // Given an entry whose callback names the accounts server (Zoho's `accounts-server`), and a
    // user whose data center is the second of two listed servers (the provider under its name)
    let broker = broker(
        &[
            ("token_server_param", "\"accounts-server\""),
            ("token_servers", "[\"{base}\", \"{base_by_name}\"]"),
        ],
        "",
        Knobs::default(),
    )
    .await;
    let by_name = broker.provider.base_url.replace("127.0.0.1", "localhost");
    let server = Knobs {
        redirect_extra: vec![
            ("accounts-server".into(), by_name.clone()),
            ("location".into(), "eu".into()),
        ],
        ..Knobs::default()
    };
    broker.provider.set_knobs(server.clone());

    // When a connection is made and later refreshed
    let (id, _) = broker.authorized_personal_connection().await;
    let (status, _) = broker.token(&id, true).await;
    assert_eq!(status, 200);

    // Then the code and the refresh token both went to that server, and the connection keeps
    // its endpoints there
    let hosts: Vec<String> = broker
        .provider
        .ledger()
        .token_requests
        .iter()
        .map(|t| t.host.clone())
        .collect();
    let named = by_name.trim_start_matches("http://").to_string();
    assert_eq!(hosts, [named.clone(), named]);
    let kept = broker.connection(&id).await.endpoints.unwrap();
    assert_eq!(kept.token_url, format!("{by_name}/token"));
    assert_eq!(kept.revocation_url, Some(format!("{by_name}/revoke")));

    // And a callback naming a server the entry does not list ends the flow; the code is never sent
    broker.provider.set_knobs(Knobs {
        redirect_extra: vec![(
            "accounts-server".into(),
            "https://accounts.evil.example".into(),
        )],
        ..Knobs::default()
    });
    let before = broker.provider.ledger().token_requests.len();
    let params = flow(&broker, json!({})).await;
    assert_eq!(params["error"], "invalid_request", "{params:?}");
    assert_eq!(broker.provider.ledger().token_requests.len(), before);
}

#[tokio::test]
async fn slack_style_a_rotated_user_token_comes_back_flat_and_replaces_the_old_one() {
    // Given Slack's shape with HTTP Basic, and token rotation on
    let broker = broker(
        &[
            ("pkce", "\"unsupported\""),
            ("scope_param", "\"user_scope\""),
            ("token_response_path", "\"authed_user\""),
            ("success_field", "\"ok\""),
        ],
        "",
        Knobs {
            slack_style: true,
            ..Knobs::default()
        },
    )
    .await;
    let (id, _) = broker.authorized_personal_connection().await;

    // When the connection is refreshed twice
    for _ in 0..2 {
        let (status, body) = broker.token(&id, true).await;
        assert_eq!(status, 200, "{body}");
    }

    // Then each refresh authenticated with Basic, read the flat answer, and the second one sent
    // the refresh token the first received: a rotated token is never sent twice
    let ledger = broker.provider.ledger();
    let code = &ledger.token_requests[0];
    let refreshes = ledger.refreshes();
    assert_eq!(refreshes.len(), 2);
    assert!(refreshes.iter().all(|r| r.basic_auth.is_some()));
    assert_eq!(
        refreshes[0].form["refresh_token"],
        code.refresh_token.clone().unwrap()
    );
    assert_eq!(
        refreshes[1].form["refresh_token"],
        refreshes[0].refresh_token.clone().unwrap()
    );
    assert_eq!(ledger.revoked_grants, 0);
    let (_, token) = broker.token(&id, false).await;
    assert_eq!(
        token["access_token"],
        refreshes[1].access_token.clone().unwrap()
    );
}

#[tokio::test]
async fn dropbox_style_the_refresh_token_is_kept_and_revocation_is_the_access_token_alone() {
    // Given Dropbox's shape: refresh answers without a new refresh token, revocation by Bearer
    let broker = broker(
        &[("revocation_style", "\"bearer\"")],
        "",
        Knobs {
            no_rotation: true,
            ..Knobs::default()
        },
    )
    .await;
    let (id, _) = broker.authorized_personal_connection().await;

    // When it is refreshed twice and then deleted
    for _ in 0..2 {
        assert_eq!(broker.token(&id, true).await.0, 200);
    }
    let (status, body) = broker.delete_connection(&id).await;

    // Then both refreshes sent the original refresh token, and the provider was asked to revoke
    // with the latest access token as Bearer and nothing else
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["provider_revocation"], "revoked");
    let ledger = broker.provider.ledger();
    let original = ledger.token_requests[0].refresh_token.clone().unwrap();
    let refreshes = ledger.refreshes();
    assert!(
        refreshes
            .iter()
            .all(|r| r.form["refresh_token"] == original)
    );
    let latest = refreshes.last().unwrap().access_token.clone().unwrap();
    assert_eq!(ledger.revocations.len(), 1);
    assert_eq!(ledger.revocations[0].token, latest);
    assert!(ledger.revocations[0].basic_auth.is_none());
    assert!(ledger.revocations[0].token_type_hint.is_none());
    assert!(!broker.provider.accepts(&latest));
}

#[tokio::test]
async fn stripe_style_a_connection_ends_by_deauthorizing_the_account() {
    // Given Stripe Connect's shape: the account id kept from the token response, and a
    // deauthorization by the platform's secret key
    let broker = broker(
        &[
            ("pkce", "\"unsupported\""),
            ("client_auth", "\"post\""),
            ("revocation_url", "\"{base}/deauthorize\""),
            ("revocation_style", "\"stripe_deauthorize\""),
            ("keep_token_fields", "[\"stripe_user_id\"]"),
        ],
        "",
        Knobs {
            post_auth_only: true,
            refuse_pkce: true,
            extra_token_fields: vec![("stripe_user_id".into(), "acct_1Fake".into())],
            ..Knobs::default()
        },
    )
    .await;
    let (id, _) = broker.authorized_personal_connection().await;

    // When the connection is deleted
    let (status, body) = broker.delete_connection(&id).await;

    // Then Stripe was asked once, with the secret key as Bearer, the app's client id and the
    // account, and no token was sent
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["provider_revocation"], "revoked");
    let ledger = broker.provider.ledger();
    assert_eq!(ledger.deauthorizations.len(), 1);
    let (bearer, form) = &ledger.deauthorizations[0];
    assert_eq!(
        bearer.as_deref(),
        Some(broker_tests::fake_provider::CLIENT_SECRET)
    );
    assert_eq!(form["client_id"], broker_tests::fake_provider::CLIENT_ID);
    assert_eq!(form["stripe_user_id"], "acct_1Fake");
    assert_eq!(form.len(), 2);
    assert!(ledger.revocations.is_empty());
}

#[tokio::test]
async fn mailchimp_style_a_token_without_lifetime_and_the_data_center_read_after_the_exchange() {
    // Given Mailchimp's shape: `expires_in` 0 on tokens that never expire, and the account's data
    // center behind a metadata endpoint that takes the token under the `OAuth` scheme
    let broker = broker(
        &[
            ("pkce", "\"unsupported\""),
            ("client_auth", "\"post\""),
            ("metadata_url", "\"{base}/metadata\""),
            ("metadata_auth_scheme", "\"OAuth\""),
            ("keep_metadata_fields", "[\"dc\", \"api_endpoint\"]"),
        ],
        "",
        Knobs {
            post_auth_only: true,
            refuse_pkce: true,
            expires_in: Some(0),
            ..Knobs::default()
        },
    )
    .await;

    // When a flow runs
    let params = flow(&broker, json!({})).await;

    // Then the stored document has no expiry and carries the data center and API host
    let doc = stored(&broker, &params).await;
    assert!(doc.get("expires_at").is_none(), "{doc}");
    assert_eq!(doc["metadata"]["dc"], "us6");
    assert_eq!(
        doc["metadata"]["api_endpoint"],
        "https://us6.api.mailchimp.com"
    );
    assert!(
        doc["metadata"].get("login").is_none(),
        "only the declared fields"
    );
}

#[tokio::test]
async fn facebook_style_the_first_token_is_traded_for_a_long_lived_one() {
    // Given Facebook's shape: the code gives an hour-long token, which the app's credentials
    // trade for a token that lives about 60 days (`fb_exchange_token`)
    let broker = broker(
        &[
            ("client_auth", "\"post\""),
            ("upgrade_grant", "\"fb_exchange_token\""),
        ],
        "",
        Knobs {
            post_auth_only: true,
            ..Knobs::default()
        },
    )
    .await;

    // When a flow runs
    let params = flow(&broker, json!({})).await;

    // Then the provider was asked for the code, then for the upgrade of the token it issued, with
    // the credentials in the body; the vault holds the long-lived token (about 60 days)
    let ledger = broker.provider.ledger();
    assert_eq!(ledger.token_requests.len(), 2);
    let (code, upgrade) = (&ledger.token_requests[0], &ledger.token_requests[1]);
    assert_eq!(upgrade.form["grant_type"], "fb_exchange_token");
    assert_eq!(
        upgrade.form["fb_exchange_token"],
        code.access_token.clone().unwrap()
    );
    assert!(upgrade.basic_auth.is_none() && upgrade.form.contains_key("client_secret"));
    let doc = stored(&broker, &params).await;
    let lifetime = doc["expires_at"].as_i64().unwrap() - broker.app.clock.now();
    assert!((5_180_000..=5_184_000).contains(&lifetime), "{lifetime}");
}
