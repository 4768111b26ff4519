//! A source: a configured integration in a workspace, backed by one authorized connection
//! (Aitronos `sources/oauth/callback`).
//!
//! One connection backs at most one source. The source id is derived from the connection, so the
//! first creation wins atomically, a retried request gets the same source back, and a second,
//! different source on the same connection is refused: revoking or refreshing a connection then
//! affects exactly one source.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::connection::{Connection, ConnectionStatus, Transition};
use crate::crypto::sha256_hex;
use crate::{App, ConnectionId, Error, OrgId, Result};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub id: String,
    pub organization_id: String,
    pub workspace_id: String,
    pub name: String,
    pub source_definition_id: String,
    pub connection_id: ConnectionId,
    pub status: String,
    pub created_at: i64,
}

#[async_trait]
pub trait SourceStore: Send + Sync {
    /// Writes a new source; `false` when one with its id exists already.
    async fn create_source(&self, source: &Source) -> Result<bool>;
    /// Scoped by organization, like connections.
    async fn get_source(&self, organization_id: &str, id: &str) -> Result<Option<Source>>;
}

/// What the platform asks for.
#[derive(Debug, Clone)]
pub struct NewSource {
    pub organization_id: OrgId,
    pub workspace_id: String,
    pub source_definition_id: String,
    pub connection_id: ConnectionId,
    pub name: String,
}

/// Longest source name accepted.
const MAX_NAME: usize = 255;

/// The one source a connection may back.
fn source_id(organization_id: &str, connection_id: &str) -> String {
    let digest = sha256_hex(&format!("source:{organization_id}:{connection_id}"));
    format!("src_{}", &digest[..32])
}

/// Creates the source of an authorized connection of the caller's organization (the request path
/// checked that `req` names it) and activates the connection. Another organization's (or workspace's) connection is reported as missing.
pub async fn create(app: &App, caller: &Caller, req: NewSource) -> Result<Source> {
    caller.require_workspace(&req.workspace_id)?;
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME {
        return Err(Error::field(
            "source_name",
            format!("must be 1 to {MAX_NAME} characters"),
        ));
    }
    let connection = app
        .connections
        .get_connection(&req.organization_id, &req.connection_id)
        .await?
        .filter(|c| {
            c.workspace_id
                .as_deref()
                .is_none_or(|ws| ws == req.workspace_id)
        })
        .ok_or_else(|| Error::NotFound("connection".into()))?;
    let provider = app
        .catalog
        .resolve(&req.source_definition_id)
        .map_err(|_| Error::field("source_definition_id", "is not a known source definition"))?;
    if provider.slug != connection.provider {
        return Err(Error::field(
            "source_definition_id",
            "does not match the connection's provider",
        ));
    }
    if !matches!(
        connection.status,
        ConnectionStatus::Authorized | ConnectionStatus::Active
    ) {
        return Err(Error::field("connection_id", "is not authorized"));
    }

    let now = app.clock.now();
    let source = Source {
        id: source_id(&req.organization_id, &connection.id),
        organization_id: req.organization_id.into(),
        workspace_id: req.workspace_id,
        name: name.to_string(),
        source_definition_id: req.source_definition_id,
        connection_id: connection.id.clone(),
        status: "active".into(),
        created_at: now,
    };
    if !app.sources.create_source(&source).await? {
        let existing = app
            .sources
            .get_source(&source.organization_id, &source.id)
            .await?
            .ok_or_else(|| Error::internal("source vanished after a conflicting create"))?;
        let same_request = existing.workspace_id == source.workspace_id
            && existing.source_definition_id == source.source_definition_id
            && existing.name == source.name;
        if !same_request {
            return Err(Error::field(
                "connection_id",
                format!("already backs source {}", existing.id),
            ));
        }
        // A retry of the same request: finish what it started and answer the same source.
        return activate(app, &connection, now).await.map(|()| existing);
    }
    activate(app, &connection, now).await?;
    tracing::info!(source_id = %source.id, connection_id = %source.connection_id, "source created");
    Ok(source)
}

/// Moves the connection the source was created on to `active`, unless a concurrent retry of the
/// same request already has.
async fn activate(app: &App, connection: &Connection, now: i64) -> Result<()> {
    if connection.status == ConnectionStatus::Active {
        return Ok(());
    }
    let mut activated = Transition::new(
        &connection.organization_id,
        &connection.id,
        &[ConnectionStatus::Authorized],
        ConnectionStatus::Active,
        now,
    );
    activated.version = Some(connection.version);
    match app.connections.transition(&activated).await {
        Ok(_) => Ok(()),
        Err(Error::Conflict(_)) => {
            let now_active = app
                .connections
                .get_connection(&connection.organization_id, &connection.id)
                .await?
                .is_some_and(|c| c.status == ConnectionStatus::Active);
            if now_active {
                Ok(())
            } else {
                Err(Error::field("connection_id", "is not authorized"))
            }
        }
        Err(e) => Err(e),
    }
}
