//! Reading a connection and handing out its access token, refreshed first when it is about to
//! expire (DESIGN §4.5). The refresh itself is [`super::refresh`].

use std::collections::BTreeMap;

use serde_json::Value;

use super::{Connection, ConnectionStore, refresh};
use crate::auth::Caller;
use crate::secret::Sensitive;
use crate::{App, ConnectionId, Error, Result};

/// A token handed to the platform: never the refresh token.
#[derive(Debug)]
pub struct AccessToken {
    pub connection_id: ConnectionId,
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
pub async fn get(
    connections: &dyn ConnectionStore,
    caller: &Caller,
    id: &ConnectionId,
) -> Result<Connection> {
    let connection = connections
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
    id: &ConnectionId,
    force: bool,
    trace_id: &str,
) -> Result<AccessToken> {
    let connection = get(app.connections.as_ref(), caller, id).await?;
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
        connection_id: id.clone(),
        access_token: tokens.access_token,
        token_type: tokens.token_type,
        expires_at: tokens.expires_at,
        scope: tokens.scope,
        metadata: tokens.metadata,
        refreshed,
    })
}
