use std::collections::HashMap;

use super::callback::{Ending, finish};
use super::{Claim, StateTokenStore};
use crate::auth::Caller;
use crate::connection::{Connection, ConnectionStatus, ConnectionStore, Transition};
use crate::crypto::{random_token, sha256_hex};
use crate::provider::TokenSet;
use crate::{App, Error, OrgId, Result};

fn invalid_state_token() -> Error {
    Error::Validation {
        message: "The state token is invalid or has expired.".into(),
        system_message: "Invalid or expired state token.".into(),
        details: serde_json::json!({ "field": "state_token" }),
    }
}

/// Redeems a personal flow's state token (once, within its lifetime, for the caller's
/// organization) and activates the connection at `now`. Two ports are all it needs.
pub async fn complete_personal(
    state_tokens: &dyn StateTokenStore,
    connections: &dyn ConnectionStore,
    now: i64,
    caller: &Caller,
    state_token: &str,
) -> Result<Connection> {
    let organization_id = &caller.organization_id;
    if !super::is_handle(state_token) {
        return Err(invalid_state_token());
    }
    let token = state_tokens
        .consume_state_token(
            &sha256_hex(state_token),
            organization_id,
            &random_token()?,
            now,
        )
        .await?
        .ok_or_else(invalid_state_token)?;
    let activated = Transition::new(
        organization_id,
        &token.connection_id,
        &[ConnectionStatus::Authorized],
        ConnectionStatus::Active,
        now,
    );
    let connection = connections
        .transition(&activated)
        .await
        .map_err(|e| match e {
            Error::Conflict(_) => invalid_state_token(),
            other => other,
        })?;
    tracing::info!(connection_id = %connection.id, "personal connection activated");
    Ok(connection)
}

/// `complete_oauth`: what the platform brings back from the provider's redirect to its own URL.
#[derive(Debug)]
pub struct ClientCompletion {
    pub organization_id: OrgId,
    pub workspace_id: String,
    /// Must equal the one the flow was started with.
    pub definition_id: String,
    /// When given, must equal the flow's redirect URL.
    pub redirect_url: Option<String>,
    /// The provider's redirect query: `code`, `state`, and perhaps `iss`, `error`, `realmId`, ...
    pub query: HashMap<String, String>,
}

/// How a client-callback flow ended.
#[derive(Debug)]
pub enum ClientOutcome {
    /// The tokens are in the vault under `secret_id` (and returned to the caller when it asks).
    Stored { secret_id: String, tokens: TokenSet },
    /// The provider said no (or the code did not redeem): reported in the body, not as an HTTP error.
    Refused { error: String, description: String },
}

/// Redeems a client-callback flow's code for the platform that started it: the flow is consumed
/// once, and only by a caller with the same organization, workspace, definition and redirect URL.
pub async fn complete_client_callback(
    app: &App,
    caller: &Caller,
    req: ClientCompletion,
) -> Result<ClientOutcome> {
    caller.require_workspace(&req.workspace_id)?;
    let state = req.query.get("state").map(String::as_str).unwrap_or("");
    if !super::is_handle(state) {
        return Err(Error::FlowRejected);
    }
    let claim = Claim::Client {
        organization_id: req.organization_id.into(),
        workspace_id: req.workspace_id,
        definition_id: req.definition_id,
        // Compared in the form the flow stored it (parsed and serialized); an unparsable one
        // stays as sent and simply does not match.
        redirect_url: req
            .redirect_url
            .map(|u| url::Url::parse(&u).map_or(u, |parsed| parsed.to_string())),
    };
    let flow = app
        .flows
        .consume_flow(
            &sha256_hex(state),
            &claim,
            &random_token()?,
            app.clock.now(),
        )
        .await?;
    Ok(match finish(app, &flow, &req.query).await? {
        Ending::Stored { secret_id, tokens } => ClientOutcome::Stored { secret_id, tokens },
        Ending::Refused(r) => ClientOutcome::Refused {
            error: r.error,
            description: r.description,
        },
    })
}
