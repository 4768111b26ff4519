use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Connection, ConnectionStatus, KeepAlive, TokenSettings};
use crate::provider::{Endpoints, RevocationOutcome};
use crate::{ConnectionId, OrgId};

/// A refresh in progress: its holder and until when others leave the tokens to it. The lease is
/// data, not a lock: taking it is a [`Transition`] fenced by the version, so two processes that
/// read the same version cannot both take it, and a lapsed holder's late write is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub owner: String,
    /// Epoch seconds.
    pub until: i64,
}

/// One status change of one connection, and the only way a status changes: conditional on the
/// statuses it may start from (and, when the caller read the connection first, on its version),
/// incrementing the version. Both backends apply it atomically; events start here (DESIGN §9.6).
#[derive(Debug, Clone)]
pub struct Transition {
    pub organization_id: OrgId,
    pub connection_id: ConnectionId,
    pub from: &'static [ConnectionStatus],
    pub to: ConnectionStatus,
    /// The version the caller read, when its decision depended on that read.
    pub version: Option<u64>,
    pub change: Change,
    /// Epoch seconds, the new `updated_at`.
    pub at: i64,
}

/// Fields set together with the status; `None` leaves a field as it is. Serialized, it is the list
/// of attributes DynamoDB's update sets, so the two backends cannot disagree on what changes.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Change {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_id: Option<String>,
    /// `Some(None)`: the expiry is now unknown (a refreshed token without `expires_in`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_expires_at: Option<Option<i64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Endpoints>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_settings: Option<TokenSettings>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_refreshed_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_failures: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_retry_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_lease: Option<Lease>,
    /// `Some(None)`: the sealed document was written to the vault and goes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sealed_document: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_revocation: Option<RevocationOutcome>,
    /// The item's TTL (a tombstone's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keepalive: Option<KeepAlive>,
    /// Removes the refresh lease (DynamoDB: a `REMOVE`, hence not serialized).
    #[serde(skip)]
    pub release_lease: bool,
}

impl Transition {
    /// A transition of `connection_id` in `organization_id`, with no other field changed.
    pub fn new(
        organization_id: &OrgId,
        connection_id: &ConnectionId,
        from: &'static [ConnectionStatus],
        to: ConnectionStatus,
        at: i64,
    ) -> Self {
        Transition {
            organization_id: organization_id.clone(),
            connection_id: connection_id.clone(),
            from,
            to,
            version: None,
            change: Change::default(),
            at,
        }
    }

    /// Whether the connection stays on the sweep's schedule: usable ones only.
    pub fn sweeps(&self) -> bool {
        ConnectionStatus::USABLE.contains(&self.to)
    }

    /// Whether `connection`, as stored, may take this transition.
    pub fn admits(&self, connection: &Connection) -> bool {
        connection.organization_id == self.organization_id
            && connection.id == self.connection_id
            && self.from.contains(&connection.status)
            && self.version.is_none_or(|v| v == connection.version)
    }

    /// Applies the transition to a connection read inside a transaction (the embedded backend);
    /// `false`, and nothing changed, when it is not admitted.
    pub fn apply(&self, connection: &mut Connection) -> bool {
        if !self.admits(connection) {
            return false;
        }
        let Change {
            secret_id,
            token_expires_at,
            scopes,
            endpoints,
            token_settings,
            metadata,
            last_refreshed_at,
            refresh_failures,
            refresh_retry_at,
            refresh_lease,
            sealed_document,
            provider_revocation,
            expires_at,
            keepalive,
            release_lease,
        } = self.change.clone();
        connection.status = self.to;
        connection.version += 1;
        connection.updated_at = self.at;
        if secret_id.is_some() {
            connection.secret_id = secret_id;
        }
        if let Some(expires_at) = token_expires_at {
            connection.token_expires_at = expires_at;
        }
        if let Some(scopes) = scopes {
            connection.scopes = scopes;
        }
        if endpoints.is_some() {
            connection.endpoints = endpoints;
        }
        if token_settings.is_some() {
            connection.token_settings = token_settings;
        }
        if let Some(metadata) = metadata {
            connection.metadata = metadata;
        }
        if last_refreshed_at.is_some() {
            connection.last_refreshed_at = last_refreshed_at;
        }
        if let Some(failures) = refresh_failures {
            connection.refresh_failures = failures;
        }
        if refresh_retry_at.is_some() {
            connection.refresh_retry_at = refresh_retry_at;
        }
        if refresh_lease.is_some() {
            connection.refresh_lease = refresh_lease;
        }
        if let Some(sealed) = sealed_document {
            connection.sealed_document = sealed;
        }
        if provider_revocation.is_some() {
            connection.provider_revocation = provider_revocation;
        }
        if expires_at.is_some() {
            connection.expires_at = expires_at;
        }
        if release_lease {
            connection.refresh_lease = None;
        }
        if keepalive.is_some() {
            connection.keepalive = keepalive;
        }
        // Only usable connections are swept (DynamoDB removes them from the sweep's index).
        if !self.sweeps()
            && let Some(k) = &mut connection.keepalive
        {
            k.next = None;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{ClientAuth, TokenBody};

    fn pending() -> Connection {
        Connection {
            id: "conn_1".into(),
            ..Connection::new("org", None, 0, "fake", ConnectionStatus::Pending, 1)
        }
    }

    fn full_change() -> Change {
        Change {
            secret_id: Some("s".into()),
            token_expires_at: Some(Some(9)),
            scopes: Some(vec!["a".into()]),
            endpoints: Some(Endpoints {
                authorization_url: "https://a.example/auth".into(),
                token_url: "https://a.example/token".into(),
                revocation_url: Some("https://a.example/revoke".into()),
                userinfo_url: None,
                refresh_url: None,
            }),
            token_settings: Some(TokenSettings {
                client_auth: ClientAuth::Post,
                token_body: TokenBody::Json,
            }),
            metadata: Some(BTreeMap::from([(
                "instance_url".into(),
                "https://x".into(),
            )])),
            last_refreshed_at: Some(8),
            refresh_failures: Some(2),
            refresh_retry_at: Some(7),
            refresh_lease: Some(Lease {
                owner: "me".into(),
                until: 6,
            }),
            sealed_document: Some(Some("sealed".into())),
            provider_revocation: Some(RevocationOutcome::Failed),
            expires_at: Some(4),
            keepalive: Some(KeepAlive {
                next: Some(3),
                refresh_token: true,
                refresh_token_expires_at: Some(100),
                warned_for: None,
            }),
            release_lease: false,
        }
    }

    #[test]
    fn apply_sets_exactly_the_fields_the_change_serializes() {
        let mut t = Transition::new(
            &"org".into(),
            &"conn_1".into(),
            &[ConnectionStatus::Pending],
            ConnectionStatus::Authorized,
            5,
        );
        t.change = full_change();
        let mut c = pending();
        assert!(t.apply(&mut c));
        let stored = serde_json::to_value(&c).unwrap();
        let changed = serde_json::to_value(&t.change).unwrap();
        for (field, value) in changed.as_object().unwrap() {
            assert_eq!(&stored[field], value, "{field}");
        }
        assert_eq!(
            (c.status, c.version, c.updated_at),
            (ConnectionStatus::Authorized, 1, 5)
        );
    }

    #[test]
    fn a_connection_no_longer_usable_leaves_the_sweeps_schedule() {
        let mut c = pending();
        c.status = ConnectionStatus::Active;
        c.keepalive = full_change().keepalive;
        let t = Transition::new(
            &"org".into(),
            &"conn_1".into(),
            ConnectionStatus::USABLE,
            ConnectionStatus::ReauthorizationRequired,
            5,
        );
        assert!(t.apply(&mut c));
        assert_eq!(c.keepalive.as_ref().unwrap().next, None);
        assert!(c.keepalive.unwrap().refresh_token);
    }

    #[test]
    fn a_stale_version_or_another_status_is_refused_and_changes_nothing() {
        let mut t = Transition::new(
            &"org".into(),
            &"conn_1".into(),
            &[ConnectionStatus::Authorized],
            ConnectionStatus::Active,
            5,
        );
        let mut c = pending();
        assert!(
            !t.apply(&mut c),
            "pending is not a start of this transition"
        );
        c.status = ConnectionStatus::Authorized;
        c.version = 3;
        t.version = Some(2);
        assert!(!t.apply(&mut c), "stale version");
        assert_eq!((c.version, c.status), (3, ConnectionStatus::Authorized));
        t.version = Some(3);
        assert!(t.apply(&mut c));
        assert_eq!(c.version, 4);
    }
}
