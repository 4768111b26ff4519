//! A connection: one user's authorized account at one provider, whose tokens sit in the vault.
//! This room owns its lifecycle: the store port, the one conditional [`Transition`] through which
//! every status change goes, and the token document written to the vault.

mod access;
mod document;
mod import;
pub mod keepalive;
mod lifecycle;
mod listing;
mod refresh;
mod revoke;
mod store;
mod sweep;
mod tokens;

pub use access::{AccessToken, get, token};
pub use document::DocumentCache;
pub use import::{Import, import};
pub use keepalive::KeepAlive;
pub use lifecycle::{Change, Lease, Transition};
pub use listing::{ListFilters, ListQuery, Page, list, list_key};
pub use refresh::{LEASE_SECS, RETRY_AFTER_FAILURE_SECS};
pub use revoke::{Revocation, TOMBSTONE_SECS, revoke, revoke_grant};
pub use store::ConnectionStore;
pub use sweep::{SweepReport, sweep};
pub use tokens::{TokenOwner, granted_scopes, rewrite_tokens, write_tokens};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::provider::TokenSettings;
use crate::provider::{Endpoints, RevocationOutcome};
use crate::{ConnectionId, OrgId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    /// A flow was started; no tokens yet.
    Pending,
    /// The provider granted tokens; they are in the vault.
    Authorized,
    /// The platform completed the flow (personal completion, source created).
    Active,
    Failed,
    /// The provider no longer accepts the refresh token (`invalid_grant`): reconnect it.
    ReauthorizationRequired,
    Revoked,
}

impl ConnectionStatus {
    /// Statuses whose tokens may be handed out and refreshed.
    pub const USABLE: &'static [ConnectionStatus] =
        &[ConnectionStatus::Authorized, ConnectionStatus::Active];

    /// Every status a reconnect may start from (and its callback move to `active`).
    pub const RECONNECTABLE: &'static [ConnectionStatus] = &[
        ConnectionStatus::Authorized,
        ConnectionStatus::Active,
        ConnectionStatus::Failed,
        ConnectionStatus::ReauthorizationRequired,
    ];

    /// This status alone, as a transition's `from`.
    pub fn only(self) -> &'static [ConnectionStatus] {
        match self {
            ConnectionStatus::Pending => &[ConnectionStatus::Pending],
            ConnectionStatus::Authorized => &[ConnectionStatus::Authorized],
            ConnectionStatus::Active => &[ConnectionStatus::Active],
            ConnectionStatus::Failed => &[ConnectionStatus::Failed],
            ConnectionStatus::ReauthorizationRequired => {
                &[ConnectionStatus::ReauthorizationRequired]
            }
            ConnectionStatus::Revoked => &[ConnectionStatus::Revoked],
        }
    }

    /// Every status a connection can be revoked from.
    pub const NOT_REVOKED: &'static [ConnectionStatus] = &[
        ConnectionStatus::Pending,
        ConnectionStatus::Authorized,
        ConnectionStatus::Active,
        ConnectionStatus::Failed,
        ConnectionStatus::ReauthorizationRequired,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(Value::String(s.to_string())).ok()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::Pending => "pending",
            ConnectionStatus::Authorized => "authorized",
            ConnectionStatus::Active => "active",
            ConnectionStatus::Failed => "failed",
            ConnectionStatus::ReauthorizationRequired => "reauthorization_required",
            ConnectionStatus::Revoked => "revoked",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Connection {
    pub id: ConnectionId,
    pub organization_id: OrgId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<String>,
    pub user_id: u64,
    /// The platform's own id of the person who connected (a connect session's `end_user.id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_user_id: Option<String>,
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
    /// Granted scopes (the provider's answer, or what was asked when it did not say).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// What the flow asked for.
    #[serde(default)]
    pub requested_scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_expires_at: Option<i64>,
    /// Kept provider fields (`instance_url`, `realmId`, ...): never a token.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_refreshed_at: Option<i64>,
    /// Refresh failures since the last success.
    #[serde(default)]
    pub refresh_failures: u32,
    /// After a failed refresh, no new attempt before this time (epoch seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_retry_at: Option<i64>,
    /// Who is refreshing the tokens, until when (DESIGN §9.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_lease: Option<Lease>,
    /// A refreshed token document the vault refused to take, sealed ([`crate::crypto::Sealer`]):
    /// the newest tokens, written to the vault under the next lease. Never leaves the broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_document: Option<String>,
    /// The store call that made this version (DynamoDB): a call whose answer was lost, retried
    /// by the SDK and refused, recognises its own write by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_change: Option<String>,
    /// The flow's resolved endpoints (templated hosts filled in), kept once authorized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Endpoints>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_settings: Option<TokenSettings>,
    /// How the provider answered the revocation (a `revoked` connection's delete, recorded so a
    /// repeated delete answers the same).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_revocation: Option<RevocationOutcome>,
    /// When the item goes (epoch seconds, the table's TTL attribute): set on a `revoked`
    /// tombstone only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// When the keep-alive sweep looks at it next, and what it knows of the tokens (never one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive: Option<KeepAlive>,
    /// An integer id, for connections imported through authentik's API shape (its `pk`). Not
    /// named `pk`: that is the table's partition key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numeric_id: Option<u64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Connection {
    /// A new connection (version 0) with nothing refreshed, kept or resolved yet.
    pub fn new(
        organization_id: &str,
        workspace_id: Option<String>,
        user_id: u64,
        provider: &str,
        status: ConnectionStatus,
        now: i64,
    ) -> Self {
        Connection {
            id: new_connection_id().into(),
            organization_id: organization_id.into(),
            workspace_id,
            user_id,
            end_user_id: None,
            provider: provider.to_string(),
            status,
            version: 0,
            secret_id: None,
            identifier: None,
            scopes: vec![],
            requested_scopes: vec![],
            token_expires_at: None,
            metadata: BTreeMap::new(),
            last_refreshed_at: None,
            refresh_failures: 0,
            refresh_retry_at: None,
            refresh_lease: None,
            sealed_document: None,
            last_change: None,
            endpoints: None,
            token_settings: None,
            provider_revocation: None,
            expires_at: None,
            keepalive: None,
            numeric_id: None,
            created_at: now,
            updated_at: now,
        }
    }
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
        assert_eq!((c.refresh_failures, c.refresh_lease), (0, None));
    }

    #[test]
    fn statuses_read_and_print_alike() {
        for s in [
            ConnectionStatus::Pending,
            ConnectionStatus::ReauthorizationRequired,
            ConnectionStatus::Revoked,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(ConnectionStatus::parse(s.as_str()), Some(s));
        }
    }
}
