//! The sandbox provider of `brokerctl serve`: a real (if tiny) OAuth 2.0 authorization server on
//! the same loopback port, with an Allow/Deny consent page, single-use codes and PKCE checks, so a
//! whole flow runs locally with no third-party account. Its access tokens live two minutes and its
//! refresh tokens rotate, so a newcomer sees a refresh happen. It honours RFC 7009 revocation,
//! and its userinfo route refuses a revoked grant's tokens, so a delete can be seen to work.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use broker::api::html;
use broker::crypto::random_token;
use broker::provider::Provider;
use broker::secret::Sensitive;
use broker::vault::{AppCredentials, names};
use broker::{App, Result};
use oauth2::{PkceCodeChallenge, PkceCodeVerifier};
use serde::Deserialize;
use serde_json::json;
use url::Url;

use crate::local::to_axum;

pub const SLUG: &str = "sandbox";
pub const AUTHORIZE_PATH: &str = "/sandbox/authorize";
pub const TOKEN_PATH: &str = "/sandbox/token";
pub const REVOKE_PATH: &str = "/sandbox/revoke";
pub const USERINFO_PATH: &str = "/sandbox/userinfo";
const CODE_LIFETIME: Duration = Duration::from_secs(60);
/// Short, so the broker's refresh shows within minutes of connecting.
pub const ACCESS_TOKEN_SECS: u64 = 120;

/// The catalog entry pointing at this server (fields it leaves out take the catalog defaults).
pub fn provider(public_url: &Url) -> Provider {
    let at = |path: &str| format!("{}{path}", public_url.as_str().trim_end_matches('/'));
    serde_json::from_value(serde_json::json!({
        "slug": SLUG,
        "name": "Sandbox (local)",
        "authorization_url": at(AUTHORIZE_PATH),
        "token_url": at(TOKEN_PATH),
        "revocation_url": at(REVOKE_PATH),
        "userinfo_url": at(USERINFO_PATH),
        "scopes": ["read"],
        "optional_scopes": ["write"],
        "pkce": "required",
        "client_auth": "basic",
    }))
    .expect("the sandbox entry is a valid provider")
}

/// Stores the sandbox's app credentials in the vault if they are missing.
pub async fn ensure_app(app: &App) -> Result<()> {
    let name = names::app(&app.config.secret_prefix, SLUG, None, None);
    if app.vault.get_secret(&name).await?.is_none() {
        let creds = AppCredentials {
            client_id: "sandbox-client".into(),
            client_secret: Sensitive::new(random_token()?),
        };
        let doc = Sensitive::new(serde_json::to_string(&creds).map_err(broker::Error::internal)?);
        app.vault
            .put_secret(&name, &doc, &[("provider", SLUG)], &random_token()?)
            .await?;
    }
    Ok(())
}

struct Grant {
    redirect_uri: String,
    code_challenge: String,
    scope: String,
    issued: Instant,
}

/// The sandbox provider's state: the broker it serves (for its app credentials), the codes
/// issued and not yet redeemed, and the tokens of each authorization (a grant).
pub struct Sandbox {
    app: Arc<App>,
    grants: Mutex<HashMap<String, Grant>>,
    tokens: Mutex<Tokens>,
}

#[derive(Default)]
struct Tokens {
    /// Live refresh tokens: their scope and grant. Each works once (rotation).
    refresh: HashMap<String, (String, String)>,
    /// Access tokens and their grant.
    access: HashMap<String, String>,
    /// Grants revoked: every token of theirs is refused.
    revoked: HashSet<String>,
}

impl Sandbox {
    pub fn new(app: Arc<App>) -> Self {
        Sandbox {
            app,
            grants: Mutex::new(HashMap::new()),
            tokens: Mutex::new(Tokens::default()),
        }
    }

    /// A fresh token pair of `grant` for `scope`; the refresh token is remembered for one use.
    fn issue(&self, grant: String, scope: String) -> Response {
        let (Ok(access), Ok(refresh)) = (random_token(), random_token()) else {
            return token_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error");
        };
        let (access, refresh) = (format!("sbx_at_{access}"), format!("sbx_rt_{refresh}"));
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens
                .refresh
                .insert(refresh.clone(), (scope.clone(), grant.clone()));
            tokens.access.insert(access.clone(), grant);
        }
        let body = json!({
            "access_token": access,
            "refresh_token": refresh,
            "token_type": "bearer",
            "expires_in": ACCESS_TOKEN_SECS,
            "scope": scope,
        });
        ([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
    }
}

fn token_error(status: StatusCode, code: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({ "error": code })),
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct AuthorizeQuery {
    response_type: String,
    client_id: String,
    redirect_uri: String,
    #[serde(default)]
    scope: String,
    state: String,
    #[serde(default)]
    code_challenge: String,
    #[serde(default)]
    code_challenge_method: String,
    /// `allow` or `deny`; absent shows the consent page.
    decision: Option<String>,
}

async fn sandbox_credentials(app: &App) -> Option<AppCredentials> {
    let raw = app
        .vault
        .get_secret(&names::app(&app.config.secret_prefix, SLUG, None, None))
        .await
        .ok()??;
    serde_json::from_str(raw.expose()).ok()
}

pub async fn authorize(
    State(sandbox): State<Arc<Sandbox>>,
    Query(q): Query<AuthorizeQuery>,
) -> Response {
    let app = sandbox.app.as_ref();
    let known_client = sandbox_credentials(app)
        .await
        .is_some_and(|c| c.client_id == q.client_id);
    // Like a real provider, only the registered redirect_uri (the broker's callback) is used.
    let registered = q.redirect_uri == app.config.callback_url().as_str();
    if q.response_type != "code"
        || !known_client
        || !registered
        || q.code_challenge_method != "S256"
        || q.code_challenge.is_empty()
    {
        return to_axum(html::page(
            StatusCode::BAD_REQUEST,
            "Sandbox: invalid authorization request",
            "Unknown client, unregistered redirect_uri, or missing S256 PKCE challenge.",
        ));
    }
    let Ok(mut target) = Url::parse(&q.redirect_uri) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    match q.decision.as_deref() {
        Some("allow") => {
            let Ok(code) = random_token() else {
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            };
            if let Ok(mut grants) = sandbox.grants.lock() {
                grants.retain(|_, g| g.issued.elapsed() < CODE_LIFETIME);
                grants.insert(
                    code.clone(),
                    Grant {
                        redirect_uri: q.redirect_uri.clone(),
                        code_challenge: q.code_challenge.clone(),
                        scope: q.scope.clone(),
                        issued: Instant::now(),
                    },
                );
            }
            target
                .query_pairs_mut()
                .append_pair("code", &code)
                .append_pair("state", &q.state);
            Redirect::to(target.as_str()).into_response()
        }
        Some(_) => {
            target
                .query_pairs_mut()
                .append_pair("error", "access_denied")
                .append_pair("error_description", "The user denied access.")
                .append_pair("state", &q.state);
            Redirect::to(target.as_str()).into_response()
        }
        None => to_axum(consent_page(&q)),
    }
}

fn consent_page(q: &AuthorizeQuery) -> lambda_http::Response<lambda_http::Body> {
    let link = |decision: &str| {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", &q.response_type)
            .append_pair("client_id", &q.client_id)
            .append_pair("redirect_uri", &q.redirect_uri)
            .append_pair("scope", &q.scope)
            .append_pair("state", &q.state)
            .append_pair("code_challenge", &q.code_challenge)
            .append_pair("code_challenge_method", &q.code_challenge_method)
            .append_pair("decision", decision)
            .finish();
        html::escape(&format!("{AUTHORIZE_PATH}?{query}"))
    };
    let body = format!(
        "The application asks for access to your sandbox account with the scopes <code>{}</code>.</p>\
         <p><a href=\"{}\" style=\"padding:.5rem 1rem;background:#1a7f37;color:#fff;text-decoration:none;border-radius:4px\">Allow</a> \
         <a href=\"{}\" style=\"padding:.5rem 1rem;background:#ccc;color:#000;text-decoration:none;border-radius:4px\">Deny</a>",
        html::escape(&q.scope),
        link("allow"),
        link("deny")
    );
    html::page(StatusCode::OK, "Sandbox: authorize access?", &body)
}

/// The token endpoint: HTTP Basic client authentication; the code grant with single-use codes,
/// exact redirect_uri and S256 PKCE; the refresh grant with rotating refresh tokens.
pub async fn token(
    State(sandbox): State<Arc<Sandbox>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let error = token_error;
    let Some(creds) = sandbox_credentials(&sandbox.app).await else {
        return error(StatusCode::UNAUTHORIZED, "invalid_client");
    };
    if basic_credentials(&headers)
        != Some((
            creds.client_id.clone(),
            creds.client_secret.expose().clone(),
        ))
    {
        return error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {}
        Some("refresh_token") => {
            let live = form.get("refresh_token").and_then(|rt| {
                let mut tokens = sandbox.tokens.lock().ok()?;
                let (scope, grant) = tokens.refresh.remove(rt)?;
                (!tokens.revoked.contains(&grant)).then_some((grant, scope))
            });
            return match live {
                Some((grant, scope)) => sandbox.issue(grant, scope),
                None => error(StatusCode::BAD_REQUEST, "invalid_grant"),
            };
        }
        _ => return error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
    }
    let grant = form
        .get("code")
        .and_then(|code| sandbox.grants.lock().ok()?.remove(code))
        .filter(|g| g.issued.elapsed() < CODE_LIFETIME);
    let Some(grant) = grant else {
        return error(StatusCode::BAD_REQUEST, "invalid_grant");
    };
    let verifier_ok = form.get("code_verifier").is_some_and(|v| {
        PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(v.clone())).as_str()
            == grant.code_challenge
    });
    if form.get("redirect_uri") != Some(&grant.redirect_uri) || !verifier_ok {
        return error(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    let Ok(id) = random_token() else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "server_error");
    };
    sandbox.issue(id, grant.scope)
}

/// RFC 7009 revocation: HTTP Basic client authentication; revoking either token of a grant ends
/// the grant; an unknown token is still a 200.
pub async fn revoke(
    State(sandbox): State<Arc<Sandbox>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let Some(creds) = sandbox_credentials(&sandbox.app).await else {
        return token_error(StatusCode::UNAUTHORIZED, "invalid_client");
    };
    if basic_credentials(&headers) != Some((creds.client_id, creds.client_secret.expose().clone()))
    {
        return token_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let Some(token) = form.get("token") else {
        return token_error(StatusCode::BAD_REQUEST, "invalid_request");
    };
    if let Ok(mut tokens) = sandbox.tokens.lock() {
        let grant = tokens
            .refresh
            .get(token)
            .map(|(_, g)| g.clone())
            .or_else(|| tokens.access.get(token).cloned());
        if let Some(grant) = grant {
            tokens.revoked.insert(grant);
        }
    }
    StatusCode::OK.into_response()
}

/// The sandbox's API: who the Bearer token's user is; 401 for an unknown or revoked token.
pub async fn userinfo(State(sandbox): State<Arc<Sandbox>>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let live = token.is_some_and(|t| {
        sandbox.tokens.lock().is_ok_and(|tokens| {
            tokens
                .access
                .get(t)
                .is_some_and(|g| !tokens.revoked.contains(g))
        })
    });
    if live {
        axum::Json(json!({ "sub": "sandbox-user", "name": "Sandbox User" })).into_response()
    } else {
        token_error(StatusCode::UNAUTHORIZED, "invalid_token")
    }
}

/// RFC 6749 §2.3.1: Basic credentials are form-url-encoded before base64.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((unescape(id)?, unescape(secret)?))
}
