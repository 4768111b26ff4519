//! Reading a connection and handing out its access token, refreshed first when it is about to
//! expire (DESIGN §4.5). The refresh itself is [`super::refresh`].

use std::collections::BTreeMap;

use serde_json::Value;

use super::{Connection, refresh};
use crate::auth::Caller;
use crate::secret::Sensitive;
use crate::{App, Error, Result};

/// A token handed to the platform: never the refresh token.
#[derive(Debug)]
pub struct AccessToken {
    pub connection_id: String,
    pub access_token: Sensitive<String>,
    pub token_type: String,
    pub expires_at: Option<i64>,
    pub scope: Option<String>,
    pub metadata: BTreeMap<String, Value>,
    /// Whether this request refreshed the tokens (for the audit line).
    pub refreshed: bool,
}

/// The caller's connection `id`: another organization's does not exist (404); a workspace-limited
/// key sees only connections of its workspaces (403).
pub async fn get(app: &App, caller: &Caller, id: &str) -> Result<Connection> {
    let connection = app
        .connections
        .get_connection(&caller.organization_id, id)
        .await?
        .ok_or_else(|| Error::NotFound("connection".into()))?;
    if !caller.workspaces.is_empty() {
        caller.require_workspace(connection.workspace_id.as_deref().unwrap_or_default())?;
    }
    Ok(connection)
}

/// The connection's access token, refreshed first when it expires within the margin or when
/// `force` asks. Every token handed out is an audit line (never the token).
pub async fn token(
    app: &App,
    caller: &Caller,
    id: &str,
    force: bool,
    trace_id: &str,
) -> Result<AccessToken> {
    let connection = get(app, caller, id).await?;
    let (tokens, refreshed) = refresh::fresh(app, connection, force).await?;
    tracing::info!(
        audit = "token_issued",
        key_id = %caller.key_id,
        connection_id = %id,
        organization_id = %caller.organization_id,
        refreshed,
        %trace_id,
        "access token handed out"
    );
    Ok(AccessToken {
        connection_id: id.to_string(),
        access_token: tokens.access_token,
        token_type: tokens.token_type,
        expires_at: tokens.expires_at,
        scope: tokens.scope,
        metadata: tokens.metadata,
        refreshed,
    })
}
