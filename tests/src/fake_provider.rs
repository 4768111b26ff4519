//! A fake OAuth 2.0 provider on loopback that behaves like a strict real one (Basic client
//! authentication, exact redirect_uri, S256 PKCE, single-use codes) and writes down every request
//! it receives, so tests assert on what the broker asked, not only on what it answered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::json;
use sha2::{Digest, Sha256};
use url::Url;

pub const CLIENT_ID: &str = "fake-client";
pub const CLIENT_SECRET: &str = "fake-secret-do-not-log";

/// One switch per misbehaviour (or per real provider's quirk).
#[derive(Debug, Clone, Default)]
pub struct Knobs {
    /// The user denies consent: the authorize step redirects with `error=access_denied`.
    pub deny: bool,
    /// The token endpoint refuses every code with this OAuth error.
    pub token_error: Option<String>,
    /// Client credentials only in the body, Basic refused (GitHub, Slack).
    pub post_auth_only: bool,
    /// Token requests only as JSON bodies (Notion, Atlassian).
    pub json_body_only: bool,
    /// Token responses form-encoded (GitHub without `Accept: application/json`).
    pub respond_form: bool,
    /// Slack's shape: `ok`, the user token nested in `authed_user`, errors as 200 `ok: false`.
    pub slack_style: bool,
    /// Extra fields in the token response (Salesforce `instance_url`, Pipedrive `api_domain`).
    pub extra_token_fields: Vec<(String, String)>,
    /// Extra parameters on the redirect (QuickBooks `realmId`).
    pub redirect_extra: Vec<(String, String)>,
    /// The name of the code parameter on the redirect (Amazon SP-API `spapi_oauth_code`).
    pub code_param: Option<String>,
    /// An authorization request without a PKCE challenge is refused (X, Airtable).
    pub require_pkce: bool,
    /// Any PKCE parameter is refused (providers that do not support it).
    pub refuse_pkce: bool,
    /// Lifetime of issued access tokens (`expires_in`); default 3600.
    pub expires_in: Option<u64>,
    /// Token responses carry no `expires_in`.
    pub omit_expires_in: bool,
    /// Refresh responses carry no new refresh token (the old one stays valid: no rotation).
    pub no_rotation: bool,
    /// The refresh grant answers this OAuth error (`invalid_grant`, `invalid_client`, ...).
    pub refresh_error: Option<String>,
    /// The refresh grant answers this HTTP status with a non-JSON body (a 5xx, a proxy page).
    pub refresh_status: Option<u16>,
    /// Every token request waits this long before it is answered.
    pub delay: Option<std::time::Duration>,
    /// The revocation endpoint answers this HTTP status (and revokes nothing).
    pub revocation_status: Option<u16>,
    /// TikTok's Business API: `app_id` at authorize; a JSON token body `{app_id, secret,
    /// auth_code}`; answers in an envelope `{code, message, data}` (0 is success, errors too
    /// come as 200), tokens without expiry or refresh token, the scope a list of ids.
    pub tiktok_style: bool,
}

/// One RFC 7009 revocation request.
#[derive(Debug, Clone)]
pub struct RevocationRequest {
    pub token: String,
    pub token_type_hint: Option<String>,
    /// Client id and secret from HTTP Basic, if sent that way.
    pub basic_auth: Option<(String, String)>,
    /// The HTTP status answered.
    pub status: u16,
}

#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The `Host` the request was sent to (one server under two names stands for two servers).
    pub host: String,
    /// The request path (regional endpoints live under their own prefix).
    pub path: String,
    /// `form` or `json`: how the body was encoded.
    pub encoding: String,
    /// The body's fields, whatever the encoding.
    pub form: HashMap<String, String>,
    /// Client id and secret from HTTP Basic, if sent that way.
    pub basic_auth: Option<(String, String)>,
    /// `issued` or the OAuth error answered.
    pub outcome: String,
    /// The access token issued, if any.
    pub access_token: Option<String>,
    /// The refresh token issued, if any.
    pub refresh_token: Option<String>,
}

/// Everything the provider was asked.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    pub authorize_requests: Vec<HashMap<String, String>>,
    pub token_requests: Vec<TokenRequest>,
    /// Codes redeemed successfully.
    pub redeemed: Vec<String>,
    /// Grants revoked because a used refresh token was presented again (RFC 9700 §4.14).
    pub revoked_grants: usize,
    pub revocations: Vec<RevocationRequest>,
    /// Every token and revocation request in arrival order: `code`, `refresh` or `revoke`.
    pub order: Vec<&'static str>,
    /// Stripe Connect deauthorizations: the Bearer credential and the form.
    pub deauthorizations: Vec<(Option<String>, HashMap<String, String>)>,
}

impl Ledger {
    /// The refresh-grant requests, in order.
    pub fn refreshes(&self) -> Vec<&TokenRequest> {
        self.token_requests
            .iter()
            .filter(|t| t.form.get("grant_type").map(String::as_str) == Some("refresh_token"))
            .collect()
    }

    pub fn issued_tokens(&self) -> Vec<String> {
        self.token_requests
            .iter()
            .filter_map(|t| t.access_token.clone())
            .collect()
    }
}

struct Issued {
    redirect_uri: String,
    code_challenge: Option<String>,
    scope: String,
}

/// One authorization: its tokens live and die together.
#[derive(Debug, Clone)]
struct Grant {
    scope: String,
    revoked: bool,
}

#[derive(Default)]
struct Inner {
    ledger: Ledger,
    knobs: Knobs,
    codes: HashMap<String, Issued>,
    counter: u64,
    grants: Vec<Grant>,
    /// Refresh tokens: their grant, and whether they were used (rotation makes them single use).
    refresh_tokens: HashMap<String, (usize, bool)>,
    /// Access tokens and their grant.
    access_tokens: HashMap<String, usize>,
}

#[derive(Clone)]
pub struct FakeProvider {
    pub base_url: String,
    inner: Arc<Mutex<Inner>>,
}

impl FakeProvider {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake provider");
        let base_url = format!("http://{}", listener.local_addr().expect("addr"));
        let inner = Arc::new(Mutex::new(Inner::default()));
        // Regional endpoints: the same provider under a prefix, as Intercom's or Zoho's hosts.
        let router = Router::new()
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/eu/authorize", get(authorize))
            .route("/eu/token", post(token))
            .route("/api/me", get(me))
            .route("/revoke", post(revoke))
            .route("/deauthorize", post(deauthorize))
            .route("/metadata", get(metadata))
            .with_state(inner.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        FakeProvider { base_url, inner }
    }

    pub fn ledger(&self) -> Ledger {
        self.inner.lock().unwrap().ledger.clone()
    }

    pub fn set_knobs(&self, knobs: Knobs) {
        self.inner.lock().unwrap().knobs = knobs;
    }

    /// Whether the provider's API accepts `access_token` now (its grant is alive).
    pub fn accepts(&self, access_token: &str) -> bool {
        let inner = self.inner.lock().unwrap();
        inner
            .access_tokens
            .get(access_token)
            .is_some_and(|g| !inner.grants[*g].revoked)
    }
}

/// The provider's API: who am I, with a Bearer access token.
async fn me(State(inner): Shared, headers: HeaderMap) -> Response {
    api_answer(inner, &headers, "Bearer ", json!({ "id": "user-1" }))
}

/// `body` to a request carrying a live access token under `scheme`, else 401.
fn api_answer(
    inner: Arc<Mutex<Inner>>,
    headers: &HeaderMap,
    scheme: &str,
    body: serde_json::Value,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix(scheme))
        .unwrap_or_default()
        .to_string();
    let provider = FakeProvider {
        base_url: String::new(),
        inner,
    };
    if provider.accepts(&token) {
        axum::Json(body).into_response()
    } else {
        StatusCode::UNAUTHORIZED.into_response()
    }
}

type Shared = State<Arc<Mutex<Inner>>>;

async fn authorize(
    State(inner): Shared,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let mut inner = inner.lock().unwrap();
    inner.ledger.authorize_requests.push(params.clone());
    let (Some(redirect_uri), Some(state)) = (params.get("redirect_uri"), params.get("state"))
    else {
        return (StatusCode::BAD_REQUEST, "missing redirect_uri or state").into_response();
    };
    let client_id = if inner.knobs.tiktok_style {
        "app_id"
    } else {
        "client_id"
    };
    if params.get(client_id).map(String::as_str) != Some(CLIENT_ID)
        || params.get("response_type").map(String::as_str) != Some("code")
    {
        return (StatusCode::BAD_REQUEST, "bad client_id or response_type").into_response();
    }
    let mut target = Url::parse(redirect_uri).expect("redirect_uri is a URL");
    let pkce_sent = params.contains_key("code_challenge");
    let pkce_refused =
        (inner.knobs.require_pkce && !pkce_sent) || (inner.knobs.refuse_pkce && pkce_sent);
    if pkce_refused {
        target
            .query_pairs_mut()
            .append_pair("error", "invalid_request")
            .append_pair("state", state);
    } else if inner.knobs.deny {
        target
            .query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair("error_description", "The user said no")
            .append_pair("state", state);
    } else {
        inner.counter += 1;
        let code = format!("code-{}-{}", inner.counter, uuid::Uuid::new_v4().simple());
        let issued = Issued {
            redirect_uri: redirect_uri.clone(),
            code_challenge: params.get("code_challenge").cloned(),
            scope: params.get("scope").cloned().unwrap_or_default(),
        };
        inner.codes.insert(code.clone(), issued);
        let code_param = inner.knobs.code_param.clone().unwrap_or("code".into());
        let mut q = target.query_pairs_mut();
        q.append_pair(&code_param, &code)
            .append_pair("state", state);
        for (k, v) in &inner.knobs.redirect_extra {
            q.append_pair(k, v);
        }
    }
    Redirect::to(target.as_str()).into_response()
}

async fn token(
    State(inner): Shared,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let delay = inner.lock().unwrap().knobs.delay;
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let mut inner = inner.lock().unwrap();
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    let mut form: HashMap<String, String> = if json_body {
        serde_json::from_slice::<HashMap<String, String>>(&body).unwrap_or_default()
    } else {
        url::form_urlencoded::parse(&body).into_owned().collect()
    };
    let basic_auth = basic(&headers);
    let knobs = inner.knobs.clone();
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if knobs.tiktok_style {
        // TikTok's names, read as the standard ones; a standard name is not understood.
        for standard in ["client_id", "client_secret", "code"] {
            form.remove(standard);
        }
        for (theirs, standard) in [
            ("app_id", "client_id"),
            ("secret", "client_secret"),
            ("auth_code", "code"),
        ] {
            if let Some(v) = form.remove(theirs) {
                form.insert(standard.to_string(), v);
            }
        }
    }
    let refresh = form.get("grant_type").map(String::as_str) == Some("refresh_token");
    inner
        .ledger
        .order
        .push(if refresh { "refresh" } else { "code" });
    if let (true, Some(status)) = (refresh, knobs.refresh_status) {
        inner.ledger.token_requests.push(TokenRequest {
            host,
            path: uri.path().to_string(),
            encoding: if json_body { "json" } else { "form" }.to_string(),
            form,
            basic_auth,
            outcome: format!("http_{status}"),
            access_token: None,
            refresh_token: None,
        });
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
        return (status, "<html>upstream trouble</html>").into_response();
    }
    // Facebook's exchange of a short-lived token for a long-lived one.
    let upgrade = form.get("grant_type").map(String::as_str) == Some("fb_exchange_token");
    let outcome = if (knobs.json_body_only || knobs.tiktok_style) && !json_body {
        Err("invalid_request".to_string())
    } else if upgrade {
        check_upgrade_request(&inner, &form, &basic_auth)
    } else if refresh {
        check_refresh_request(&mut inner, &form, &basic_auth)
    } else {
        check_token_request(&mut inner, &form, &basic_auth).map(|scope| {
            inner.grants.push(Grant {
                scope,
                revoked: false,
            });
            (inner.grants.len() - 1, true)
        })
    };
    let (status, body, access_token) = match outcome {
        Ok((grant, new_refresh_token)) => {
            inner.counter += 1;
            let n = inner.counter;
            let access = format!("fake_at_{n}_{}", uuid::Uuid::new_v4().simple());
            inner.access_tokens.insert(access.clone(), grant);
            let lifetime = if upgrade {
                5_183_944
            } else {
                knobs.expires_in.unwrap_or(3600)
            };
            let mut tokens = json!({
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": lifetime,
                "scope": inner.grants[grant].scope,
            });
            if knobs.omit_expires_in || knobs.tiktok_style {
                tokens.as_object_mut().unwrap().remove("expires_in");
            }
            if knobs.tiktok_style {
                tokens["scope"] = json!([4, 5]);
                tokens["advertiser_ids"] = json!(["7001"]);
            }
            if new_refresh_token && !knobs.tiktok_style && !upgrade {
                let rt = format!("fake_rt_{n}_{}", uuid::Uuid::new_v4().simple());
                inner.refresh_tokens.insert(rt.clone(), (grant, false));
                tokens["refresh_token"] = json!(rt);
            }
            for (k, v) in &knobs.extra_token_fields {
                tokens[k] = json!(v);
            }
            let body = if knobs.slack_style && !refresh {
                json!({ "ok": true, "team": { "id": "T1" }, "authed_user": tokens })
            } else if knobs.slack_style {
                // A rotated user token comes back flat, beside `ok` (token rotation).
                tokens["ok"] = json!(true);
                tokens
            } else if knobs.tiktok_style {
                json!({ "code": 0, "message": "OK", "data": tokens })
            } else {
                tokens
            };
            (StatusCode::OK, body, Some(access))
        }
        // Slack answers errors with a 200 and `ok: false`, TikTok with a non-zero `code`.
        Err(error) if knobs.slack_style => {
            (StatusCode::OK, json!({ "ok": false, "error": error }), None)
        }
        Err(error) if knobs.tiktok_style => (
            StatusCode::OK,
            json!({ "code": 40001, "message": error, "data": {} }),
            None,
        ),
        Err(error) => {
            let status = if error == "invalid_client" {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::BAD_REQUEST
            };
            (status, json!({ "error": error }), None)
        }
    };
    let outcome = body["error"].as_str().unwrap_or("issued").to_string();
    if access_token.is_some() && !refresh {
        inner
            .ledger
            .redeemed
            .push(form.get("code").cloned().unwrap_or_default());
    }
    inner.ledger.token_requests.push(TokenRequest {
        host,
        path: uri.path().to_string(),
        encoding: if json_body { "json" } else { "form" }.to_string(),
        form,
        basic_auth,
        outcome,
        access_token: access_token.clone(),
        refresh_token: body["refresh_token"]
            .as_str()
            .or(body["authed_user"]["refresh_token"].as_str())
            .map(str::to_string),
    });
    if knobs.respond_form {
        let encoded: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(body.as_object().into_iter().flatten().map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str().map(str::to_string).unwrap_or(v.to_string()),
                )
            }))
            .finish();
        return (
            status,
            [(header::CONTENT_TYPE, "application/x-www-form-urlencoded")],
            encoded,
        )
            .into_response();
    }
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(body),
    )
        .into_response()
}

fn authenticated(
    inner: &Inner,
    form: &HashMap<String, String>,
    auth: &Option<(String, String)>,
) -> bool {
    let expected = (CLIENT_ID.to_string(), CLIENT_SECRET.to_string());
    let in_body = form
        .get("client_id")
        .zip(form.get("client_secret"))
        .map(|(id, secret)| (id.clone(), secret.clone()));
    if inner.knobs.post_auth_only {
        auth.is_none() && in_body == Some(expected)
    } else {
        auth.as_ref() == Some(&expected)
    }
}

/// Facebook's upgrade: the app's credentials in the body and a live access token in
/// `fb_exchange_token`; a long-lived access token of the same grant comes back, no refresh token.
fn check_upgrade_request(
    inner: &Inner,
    form: &HashMap<String, String>,
    auth: &Option<(String, String)>,
) -> Result<(usize, bool), String> {
    let in_body = form.get("client_id").map(String::as_str) == Some(CLIENT_ID)
        && form.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET);
    if !in_body || auth.is_some() {
        return Err("invalid_client".into());
    }
    let presented = form.get("fb_exchange_token").cloned().unwrap_or_default();
    match inner.access_tokens.get(&presented) {
        Some(grant) if !inner.grants[*grant].revoked => Ok((*grant, false)),
        _ => Err("invalid_grant".into()),
    }
}

/// The refresh grant, rotating: a refresh token works once; presenting a used one again revokes
/// the whole grant (RFC 9700 §4.14). Returns the grant and whether a new refresh token is issued.
fn check_refresh_request(
    inner: &mut Inner,
    form: &HashMap<String, String>,
    auth: &Option<(String, String)>,
) -> Result<(usize, bool), String> {
    if !authenticated(inner, form, auth) {
        return Err("invalid_client".into());
    }
    if let Some(error) = &inner.knobs.refresh_error {
        return Err(error.clone());
    }
    let presented = form.get("refresh_token").cloned().unwrap_or_default();
    let Some((grant, used)) = inner.refresh_tokens.get(&presented).copied() else {
        return Err("invalid_grant".into());
    };
    if inner.grants[grant].revoked {
        return Err("invalid_grant".into());
    }
    if used {
        inner.grants[grant].revoked = true;
        inner.ledger.revoked_grants += 1;
        return Err("invalid_grant".into());
    }
    let rotate = !inner.knobs.no_rotation;
    if rotate {
        inner.refresh_tokens.insert(presented, (grant, true));
    }
    Ok((grant, rotate))
}

fn check_token_request(
    inner: &mut Inner,
    form: &HashMap<String, String>,
    auth: &Option<(String, String)>,
) -> Result<String, String> {
    if !authenticated(inner, form, auth) {
        return Err("invalid_client".into());
    }
    if inner.knobs.refuse_pkce && form.contains_key("code_verifier") {
        return Err("invalid_request".into());
    }
    if form.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return Err("unsupported_grant_type".into());
    }
    if let Some(error) = &inner.knobs.token_error {
        return Err(error.clone());
    }
    // Single use: a code is removed on its first presentation, whatever the outcome.
    let issued = form
        .get("code")
        .and_then(|c| inner.codes.remove(c))
        .ok_or("invalid_grant".to_string())?;
    if form.get("redirect_uri") != Some(&issued.redirect_uri) {
        return Err("invalid_grant".into());
    }
    if let Some(challenge) = &issued.code_challenge {
        let verifier = form
            .get("code_verifier")
            .ok_or("invalid_grant".to_string())?;
        if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != *challenge {
            return Err("invalid_grant".into());
        }
    }
    Ok(issued.scope)
}

/// RFC 7009: the client authenticates as at the token endpoint (Basic here); revoking any token
/// of a grant ends the whole grant; an unknown token is still a 200.
async fn revoke(State(inner): Shared, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let mut inner = inner.lock().unwrap();
    inner.ledger.order.push("revoke");
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let basic_auth = basic(&headers);
    // The Bearer style (Dropbox, Slack): the access token revokes itself, no body.
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let authenticated =
        bearer.is_some() || basic_auth == Some((CLIENT_ID.to_string(), CLIENT_SECRET.to_string()));
    let token = bearer
        .or_else(|| form.get("token").cloned())
        .unwrap_or_default();
    let status = match inner.knobs.revocation_status {
        Some(status) => status,
        None if !authenticated => 401,
        None if token.is_empty() => 400,
        None => {
            let grant = inner
                .refresh_tokens
                .get(&token)
                .map(|(g, _)| *g)
                .or_else(|| inner.access_tokens.get(&token).copied());
            if let Some(g) = grant {
                inner.grants[g].revoked = true;
            }
            200
        }
    };
    inner.ledger.revocations.push(RevocationRequest {
        token,
        token_type_hint: form.get("token_type_hint").cloned(),
        basic_auth,
        status,
    });
    StatusCode::from_u16(status)
        .unwrap_or(StatusCode::BAD_GATEWAY)
        .into_response()
}

/// Mailchimp's account metadata, for an access token under the `OAuth` scheme: the data center
/// that names the account's API host.
async fn metadata(State(inner): Shared, headers: HeaderMap) -> Response {
    let body = json!({ "dc": "us6", "api_endpoint": "https://us6.api.mailchimp.com", "login": { "login_id": 1 } });
    api_answer(inner, &headers, "OAuth ", body)
}

/// Stripe Connect's deauthorization: the platform's secret key as Bearer, `client_id` and the
/// connected account's `stripe_user_id` in the form; the account is disconnected.
async fn deauthorize(
    State(inner): Shared,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let mut inner = inner.lock().unwrap();
    inner.ledger.order.push("revoke");
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let known = bearer.as_deref() == Some(CLIENT_SECRET)
        && form.get("client_id").map(String::as_str) == Some(CLIENT_ID);
    let account = form.get("stripe_user_id").cloned();
    inner.ledger.deauthorizations.push((bearer, form));
    match (known, account) {
        (true, Some(account)) => axum::Json(json!({ "stripe_user_id": account })).into_response(),
        _ => StatusCode::UNAUTHORIZED.into_response(),
    }
}

fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let decoded = STANDARD.decode(value.strip_prefix("Basic ")?).ok()?;
    let (id, secret) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("v={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((unescape(id)?, unescape(secret)?))
}
