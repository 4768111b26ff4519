use crate::auth::Caller;
use crate::connection::{Connection, ConnectionStatus};
use crate::crypto::sha256_hex;
use crate::{App, Error, Result};

fn invalid_state_token() -> Error {
    Error::Validation {
        message: "The state token is invalid or has expired.".into(),
        system_message: "Invalid or expired state token.".into(),
        details: serde_json::json!({ "field": "state_token" }),
    }
}

/// Redeems a personal flow's state token (once, within its lifetime, for its own organization)
/// and activates the connection.
pub async fn complete_personal(
    app: &App,
    caller: &Caller,
    organization_id: &str,
    state_token: &str,
) -> Result<Connection> {
    caller.require_org(organization_id)?;
    if !super::is_handle(state_token) {
        return Err(invalid_state_token());
    }
    let now = app.clock.now();
    let token = app
        .state_tokens
        .consume_state_token(&sha256_hex(state_token), organization_id, now)
        .await?
        .ok_or_else(invalid_state_token)?;
    let mut connection = app
        .connections
        .get_connection(organization_id, &token.connection_id)
        .await?
        .ok_or_else(invalid_state_token)?;
    connection.status = ConnectionStatus::Active;
    connection.updated_at = now;
    app.connections.put_connection(&connection).await?;
    tracing::info!(connection_id = %connection.id, "personal connection activated");
    Ok(connection)
}
