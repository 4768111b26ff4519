//! A connection: one user's authorized account at one provider, whose tokens sit in the vault.

mod import;

pub use import::{Import, import};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionStatus {
    /// A flow was started; no tokens yet.
    Pending,
    /// The provider granted tokens; they are in the vault.
    Authorized,
    /// The platform completed the flow (personal completion, source created).
    Active,
    Failed,
    Revoked,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Connection {
    pub id: String,
    pub organization_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<String>,
    pub user_id: u64,
    /// Provider slug.
    pub provider: String,
    pub status: ConnectionStatus,
    /// Where the tokens are: a Secrets Manager ARN, or the embedded vault's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_expires_at: Option<i64>,
    /// An integer id, for connections imported through authentik's API shape (its `pk`). Not
    /// named `pk`: that is the table's partition key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numeric_id: Option<u64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Connection ids are opaque and unguessable; lookups are scoped by organization anyway.
pub fn new_connection_id() -> String {
    format!("conn_{}", uuid::Uuid::new_v4().simple())
}
