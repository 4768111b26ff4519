//! authentik's user source connections: a platform that already holds a token for a user imports
//! it as a connection (`POST /v1/sources/user_connections/oauth/`).

use std::collections::BTreeMap;

use super::{Connection, ConnectionStatus, KeepAlive, TokenOwner, TokenSettings, write_tokens};
use crate::auth::Caller;
use crate::crypto::random_bytes;
use crate::provider::TokenSet;
use crate::secret::Sensitive;
use crate::{App, Error, Result};

/// authentik's identifier column is 255 characters.
const MAX_IDENTIFIER: usize = 255;

#[derive(Debug)]
pub struct Import {
    /// Provider slug or alias.
    pub source: String,
    /// The user's id at the provider.
    pub identifier: String,
    pub access_token: Option<Sensitive<String>>,
    /// Epoch seconds.
    pub expires: Option<i64>,
}

/// Records an active connection for the caller's organization; the token, when given, goes to
/// the vault and never back to the caller.
pub async fn import(app: &App, caller: &Caller, req: Import) -> Result<Connection> {
    let length = req.identifier.chars().count();
    if req.identifier.trim().is_empty() || length > MAX_IDENTIFIER {
        return Err(Error::field(
            "identifier",
            format!("must be 1 to {MAX_IDENTIFIER} characters"),
        ));
    }
    let provider = app
        .catalog
        .resolve(&req.source)
        .map_err(|_| Error::field("source", "is not a known provider"))?;
    let now = app.clock.now();
    let mut connection = Connection {
        identifier: Some(req.identifier),
        token_expires_at: req.expires,
        // Untemplated entries resolve without inputs; a templated one has no host to keep.
        endpoints: provider
            .resolve_endpoints(&BTreeMap::new(), &app.config)
            .ok(),
        token_settings: Some(TokenSettings::of(provider)),
        numeric_id: Some(new_numeric_id()?),
        ..Connection::new(
            &caller.organization_id,
            None,
            caller.user_id,
            &provider.slug,
            ConnectionStatus::Active,
            now,
        )
    };
    if let Some(access_token) = req.access_token.filter(|t| !t.expose().is_empty()) {
        let tokens = TokenSet {
            access_token,
            refresh_token: None,
            token_type: "Bearer".into(),
            expires_at: req.expires,
            scope: None,
            refresh_token_expires_at: None,
            provider: provider.slug.clone(),
            metadata: BTreeMap::new(),
        };
        let owner = TokenOwner {
            organization_id: &connection.organization_id,
            workspace_id: None,
            provider: &provider.slug,
            connection_id: &connection.id,
        };
        let secret_id = write_tokens(
            app.vault.as_ref(),
            &app.config.secret_prefix,
            owner,
            &tokens,
            &format!("import:{}", connection.id),
        )
        .await?;
        connection.secret_id = Some(secret_id);
        // Without a refresh token: the sweep announces the token's end.
        connection.keepalive = Some(KeepAlive::issued(&app.config, Some(provider), &tokens, now));
    }
    app.connections.create_connection(&connection).await?;
    tracing::info!(provider = %connection.provider, connection_id = %connection.id, "connection imported");
    Ok(connection)
}

/// authentik's primary keys are integers; a random one within JSON's exact-integer range.
fn new_numeric_id() -> Result<u64> {
    let bytes = random_bytes::<8>()?;
    Ok((u64::from_le_bytes(bytes) >> 11).max(1))
}
