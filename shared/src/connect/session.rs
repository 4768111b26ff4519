//! A connect session: one end user's permission, for a short time, to connect one account of the
//! allowed providers to the platform's workspace. Stored hashed with a TTL, like a flow; spent by
//! the first successful connection.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::auth::Caller;
use crate::crypto::{random_token, sha256_hex};
use crate::flow::{self, FlowKind, StartRequest, Started};
use crate::redirect::RedirectUrl;
use crate::secret::Sensitive;
use crate::{App, ConnectionId, Error, OrgId, Result};

/// The session port.
#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn create_session(&self, session: &ConnectSession) -> Result<()>;
    /// The session, unless it expired (checked here, not left to the TTL).
    async fn get_session(&self, token_hash: &str, now: i64) -> Result<Option<ConnectSession>>;
    /// Records the session's connection: `false` when another connection spent it first.
    async fn spend_session(&self, token_hash: &str, connection_id: &ConnectionId) -> Result<bool>;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndUser {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectSession {
    /// SHA-256 (hex) of the token; the token itself is never stored.
    pub token_hash: String,
    pub organization_id: OrgId,
    pub workspace_id: String,
    /// The key's user: flows started from the page are the platform's, on the end user's behalf.
    pub user_id: u64,
    pub end_user: EndUser,
    /// Provider slugs; empty: every OAuth 2.0 provider of the catalog.
    pub allowed_providers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_url: Option<String>,
    /// The only target of the result's `postMessage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// The connection that spent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<ConnectionId>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// `POST /v1/connect/sessions`, as parsed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    pub workspace_id: String,
    pub end_user: EndUser,
    #[serde(default)]
    pub allowed_providers: Vec<String>,
    #[serde(default)]
    pub redirect_url: Option<String>,
    #[serde(default)]
    pub origin: Option<String>,
}

/// Checks the request against the caller and the organization's registered URLs, stores the
/// session, and returns its token and the page's URL.
pub async fn create_session(
    app: &App,
    caller: &Caller,
    req: SessionRequest,
) -> Result<(Sensitive<String>, Url, i64)> {
    if req.workspace_id.trim().is_empty() || req.workspace_id.len() > 128 {
        return Err(Error::field("workspace_id", "must be 1 to 128 characters"));
    }
    caller.require_workspace(&req.workspace_id)?;
    let bounded = |field: &str, value: &Option<String>, max: usize| match value {
        Some(v) if v.chars().count() > max || v.chars().any(char::is_control) => Err(Error::field(
            field,
            format!("must be at most {max} printable characters"),
        )),
        _ => Ok(()),
    };
    if req.end_user.id.trim().is_empty() {
        return Err(Error::field("end_user.id", "is required"));
    }
    bounded("end_user.id", &Some(req.end_user.id.clone()), 256)?;
    bounded("end_user.email", &req.end_user.email, 320)?;
    bounded("end_user.display_name", &req.end_user.display_name, 200)?;
    if req.allowed_providers.len() > 100 {
        return Err(Error::field("allowed_providers", "at most 100"));
    }
    let mut allowed = Vec::new();
    for name in &req.allowed_providers {
        let provider = app
            .catalog
            .resolve(name)
            .map_err(|_| Error::field("allowed_providers", "names an unknown provider"))?;
        provider.require_usable()?;
        if !allowed.contains(&provider.slug) {
            allowed.push(provider.slug.clone());
        }
    }
    if req.redirect_url.is_none() && req.origin.is_none() {
        return Err(Error::field(
            "origin",
            "or redirect_url is required: the result goes to one of them",
        ));
    }
    let org = app
        .orgs
        .get_org(&caller.organization_id)
        .await?
        .ok_or_else(|| Error::field("redirect_url", "is not registered for this organization"))?;
    let redirect_url = match &req.redirect_url {
        Some(raw) => Some(
            RedirectUrl::registered(raw, &org, &app.config)?
                .as_str()
                .to_string(),
        ),
        None => None,
    };
    let origin = match &req.origin {
        Some(raw) => Some(registered_origin(app, &org, raw)?),
        None => None,
    };
    let token = random_token()?;
    let now = app.clock.now();
    let session = ConnectSession {
        token_hash: sha256_hex(&token),
        organization_id: caller.organization_id.clone(),
        workspace_id: req.workspace_id,
        user_id: caller.user_id,
        end_user: req.end_user,
        allowed_providers: allowed,
        redirect_url,
        origin,
        connection_id: None,
        created_at: now,
        expires_at: now + app.config.connect_session_ttl_secs,
    };
    app.sessions.create_session(&session).await?;
    let mut url = app.config.connect_url();
    url.query_pairs_mut().append_pair("session", &token);
    tracing::info!(organization_id = %session.organization_id, "connect session created");
    Ok((Sensitive::new(token), url, session.expires_at))
}

/// `origin` as the origin of one of the organization's registered redirect URLs.
fn registered_origin(app: &App, org: &crate::org::Org, raw: &str) -> Result<String> {
    let refused = || Error::field("origin", "is not the origin of a registered redirect URL");
    let url = Url::parse(raw).map_err(|_| refused())?;
    let origin = url.origin().ascii_serialization();
    // Exactly an origin: no path, query, fragment or credentials.
    if raw.trim_end_matches('/') != origin {
        return Err(refused());
    }
    app.config.check_url_policy(&url, "origin")?;
    org.redirect_urls
        .iter()
        .filter_map(|r| Url::parse(r).ok())
        .any(|r| r.origin().ascii_serialization() == origin)
        .then_some(origin)
        .ok_or_else(refused)
}

/// The session a browser presents: known, unexpired and unspent, or the page's refusal.
pub async fn valid_session(app: &App, token: &str) -> Result<(String, ConnectSession)> {
    if !crate::flow::is_handle(token) {
        return Err(Error::FlowRejected);
    }
    let hash = sha256_hex(token);
    let session = app
        .sessions
        .get_session(&hash, app.clock.now())
        .await?
        .ok_or(Error::FlowRejected)?;
    if session.connection_id.is_some() {
        return Err(Error::FlowRejected);
    }
    Ok((hash, session))
}

/// The page's form: a provider of the session and its inputs (checked again here, whatever the
/// page checked), an ordinary flow started for the session's workspace and end user.
pub async fn start_from_page(
    app: &App,
    token: &str,
    provider: &str,
    inputs: BTreeMap<String, String>,
) -> Result<Started> {
    let (hash, session) = valid_session(app, token).await?;
    let entry = app.catalog.resolve(provider)?;
    if !session.allowed_providers.is_empty() && !session.allowed_providers.contains(&entry.slug) {
        return Err(Error::field(
            "provider",
            "is not offered by this connect session",
        ));
    }
    let caller = Caller {
        key_id: format!("connect-session:{}", &hash[..12]),
        organization_id: session.organization_id.clone(),
        workspaces: vec![session.workspace_id.clone()],
        user_id: session.user_id,
        scopes: crate::auth::Scope::all(),
    };
    flow::start(
        app,
        &caller,
        StartRequest {
            kind: FlowKind::Connect,
            provider: entry.slug.clone(),
            definition_id: None,
            workspace_id: Some(session.workspace_id.clone()),
            redirect_url: String::new(),
            inputs,
            requested_scopes: vec![],
            requested_optional_scopes: vec![],
            connect: Some(flow::ConnectOrigin {
                session_hash: hash,
                end_user_id: session.end_user.id.clone(),
            }),
        },
    )
    .await
}
