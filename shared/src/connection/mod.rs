//! A connection: one user's authorized account at one provider, whose tokens sit in the vault.
//! This room owns its lifecycle: the store port, the one conditional [`Transition`] through which
//! every status change goes, and the token document written to the vault.

mod import;
mod lifecycle;
mod store;
mod tokens;

pub use import::{Import, import};
pub use lifecycle::{Change, Transition};
pub use store::ConnectionStore;
pub use tokens::{TokenOwner, write_tokens};

use serde::{Deserialize, Serialize};

use crate::provider::{ClientAuth, Endpoints, Provider, TokenBody};

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

/// How the provider's token endpoint wants to be spoken to, copied from its catalog entry when
/// the connection is authorized: a later refresh or revocation speaks the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenSettings {
    pub client_auth: ClientAuth,
    pub token_body: TokenBody,
}

impl TokenSettings {
    pub fn of(provider: &Provider) -> Self {
        TokenSettings {
            client_auth: provider.client_auth,
            token_body: provider.token_body,
        }
    }
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
    /// Incremented by every [`Transition`]; a change made on a stale read is refused. Items
    /// written before versions existed read as 0.
    #[serde(default)]
    pub version: u64,
    /// Where the tokens are: a Secrets Manager ARN, or the embedded vault's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_expires_at: Option<i64>,
    /// The flow's resolved endpoints (templated hosts filled in), kept once authorized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Endpoints>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_settings: Option<TokenSettings>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_written_before_versions_and_endpoints_still_read() {
        let old = serde_json::json!({
            "id": "conn_1", "organization_id": "org", "user_id": 0, "provider": "fake",
            "status": "authorized", "secret_id": "s", "scopes": [],
            "created_at": 1, "updated_at": 1,
        });
        let c: Connection = serde_json::from_value(old).unwrap();
        assert_eq!((c.version, c.endpoints, c.token_settings), (0, None, None));
    }
}
