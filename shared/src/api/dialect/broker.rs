//! The broker's own API shapes: connections, their listing and their tokens (DESIGN §4.5).

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use serde_json::Value;

use super::rfc3339;
use crate::connection::{AccessToken, Connection, ConnectionStatus, ListFilters, Page, Revocation};
use crate::flow::Started;
use crate::{Error, Result, api};

/// A connection as the platform sees it: never a token.
#[derive(Serialize)]
struct ConnectionView<'a> {
    id: &'a str,
    provider: &'a str,
    organization_id: &'a str,
    workspace_id: Option<&'a str>,
    user_id: u64,
    end_user_id: Option<&'a str>,
    status: ConnectionStatus,
    identifier: Option<&'a str>,
    scopes: &'a [String],
    requested_scopes: &'a [String],
    token_expires_at: Option<String>,
    last_refreshed_at: Option<String>,
    refresh_failures: u32,
    metadata: &'a std::collections::BTreeMap<String, Value>,
    secret_id: Option<&'a str>,
    created_at: String,
    updated_at: String,
}

fn view(c: &Connection) -> ConnectionView<'_> {
    ConnectionView {
        id: &c.id,
        provider: &c.provider,
        organization_id: &c.organization_id,
        workspace_id: c.workspace_id.as_deref(),
        user_id: c.user_id,
        end_user_id: c.end_user_id.as_deref(),
        status: c.status,
        identifier: c.identifier.as_deref(),
        scopes: &c.scopes,
        requested_scopes: &c.requested_scopes,
        token_expires_at: c.token_expires_at.map(rfc3339),
        last_refreshed_at: c.last_refreshed_at.map(rfc3339),
        refresh_failures: c.refresh_failures,
        metadata: &c.metadata,
        secret_id: c.secret_id.as_deref(),
        created_at: rfc3339(c.created_at),
        updated_at: rfc3339(c.updated_at),
    }
}

/// `GET /v1/connections?workspace_id=&provider=&status=&limit=&cursor=`
pub fn list_filters(req: &Request) -> Result<ListFilters> {
    let mut query = api::query(req)?;
    let mut take = |name: &str| query.remove(name).filter(|v| !v.is_empty());
    let status = take("status")
        .map(|s| {
            ConnectionStatus::parse(&s).ok_or_else(|| Error::field("status", "is not a status"))
        })
        .transpose()?;
    let limit = take("limit")
        .map(|l| {
            l.parse::<usize>()
                .map_err(|_| Error::field("limit", "must be a number"))
        })
        .transpose()?;
    Ok(ListFilters {
        workspace_id: take("workspace_id"),
        provider: take("provider"),
        status,
        end_user_id: take("end_user_id"),
        limit,
        cursor: take("cursor"),
    })
}

/// The listing body; `brokerctl connections list --json` prints the same.
pub fn listed_body(page: &Page) -> Value {
    let connections: Vec<ConnectionView> = page.connections.iter().map(view).collect();
    serde_json::json!({ "connections": connections, "next_cursor": page.next_cursor })
}

pub fn listed(page: &Page) -> Result<Response<Body>> {
    api::json(StatusCode::OK, &listed_body(page))
}

/// One connection's body; `brokerctl connections show` prints the same.
pub fn connection_body(c: &Connection) -> Value {
    serde_json::to_value(view(c)).unwrap_or_default()
}

pub fn connection(c: &Connection) -> Result<Response<Body>> {
    api::json(StatusCode::OK, &view(c))
}

/// `?force_refresh=true`
pub fn force_refresh(req: &Request) -> Result<bool> {
    match api::query(req)?.get("force_refresh").map(String::as_str) {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(_) => Err(Error::field("force_refresh", "must be true or false")),
    }
}

/// The token body (the one place a token leaves the broker); `brokerctl connections token`
/// prints the same.
pub fn token_body(t: &AccessToken) -> Value {
    serde_json::json!({
        "connection_id": t.connection_id,
        "access_token": t.access_token.expose(),
        "token_type": t.token_type,
        "expires_at": t.expires_at.map(rfc3339),
        "scope": t.scope,
        "metadata": t.metadata,
    })
}

/// `Cache-Control: no-store`, as every JSON response has.
pub fn token(t: &AccessToken) -> Result<Response<Body>> {
    api::json(StatusCode::OK, &token_body(t))
}

/// The delete's body; `brokerctl connections revoke` prints the same.
pub fn revoked_body(r: &Revocation) -> Value {
    serde_json::json!({
        "connection_id": r.connection_id,
        "status": ConnectionStatus::Revoked,
        "provider_revocation": r.provider_revocation,
    })
}

pub fn revoked(r: &Revocation) -> Result<Response<Body>> {
    api::json(StatusCode::OK, &revoked_body(r))
}

/// `POST /v1/connections/{id}/reconnect {"redirect_url"}`
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReconnectBody {
    redirect_url: String,
}

pub fn reconnect_redirect_url(req: &Request) -> Result<String> {
    let body: ReconnectBody = api::json_body(req)?;
    Ok(body.redirect_url)
}

/// The reconnect's answer: where the user's browser goes to re-authorize.
pub fn reconnect_started(started: &Started) -> Result<Response<Body>> {
    api::json(
        StatusCode::OK,
        &serde_json::json!({
            "authorization_url": started.consent_url.expose().as_str(),
            "connection_id": started.connection_id,
            "expires_at": rfc3339(started.expires_at),
        }),
    )
}

/// `POST /v1/connect/sessions`: 201 with the session's token (the frontend's, once), the page's
/// URL and the expiry.
pub fn connect_session_created(
    token: &crate::secret::Sensitive<String>,
    url: &url::Url,
    expires_at: i64,
) -> Result<Response<Body>> {
    api::json(
        StatusCode::CREATED,
        &serde_json::json!({
            "token": token.expose(),
            "connect_url": url.as_str(),
            "expires_at": rfc3339(expires_at),
        }),
    )
}
