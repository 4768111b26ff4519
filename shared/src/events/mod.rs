//! Events (DESIGN §4.7): every connection status change becomes one signed webhook, delivered at
//! least once and in order per connection to the organization's endpoints.
//!
//! An event is made where the change is made (the one conditional [`Transition`]); on the
//! embedded backend it is written to an outbox in the same SQLite transaction and delivered by
//! `brokerctl serve` ([`delivery`]); on AWS the table's stream feeds the `events` function
//! ([`stream`]), which computes the same event from the item's old and new images.

pub mod delivery;
mod endpoint;
mod sqs;
pub mod stream;

pub use delivery::{
    Answer, Delivery, EventOutbox, Outcome, Pump, attempt, pump_once, resolve_checked, schedule,
};
pub use endpoint::{
    Endpoint, WebhookSecrets, WebhookStore, check_address, check_url, new_endpoint, rotate,
};
pub use sqs::SqsDeadLetters;

use serde::{Deserialize, Serialize};

use crate::connection::{Connection, ConnectionStatus};
use crate::{ConnectionId, OrgId};

/// What happened to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "connection.authorized")]
    Authorized,
    #[serde(rename = "connection.active")]
    Active,
    /// The flow ended without tokens (the user declined, the provider refused the code).
    #[serde(rename = "connection.failed")]
    Failed,
    #[serde(rename = "connection.reauthorization_required")]
    ReauthorizationRequired,
    /// A refresh failed for another reason; the status stays (it is retried later).
    #[serde(rename = "connection.refresh_failed")]
    RefreshFailed,
    #[serde(rename = "connection.revoked")]
    Revoked,
    #[serde(rename = "connection.expiring")]
    Expiring,
}

impl EventType {
    pub const ALL: [EventType; 7] = [
        EventType::Authorized,
        EventType::Active,
        EventType::Failed,
        EventType::ReauthorizationRequired,
        EventType::RefreshFailed,
        EventType::Revoked,
        EventType::Expiring,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Authorized => "connection.authorized",
            EventType::Active => "connection.active",
            EventType::Failed => "connection.failed",
            EventType::ReauthorizationRequired => "connection.reauthorization_required",
            EventType::RefreshFailed => "connection.refresh_failed",
            EventType::Revoked => "connection.revoked",
            EventType::Expiring => "connection.expiring",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// One event, as recorded: its id is the `webhook-id` of every delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: String,
    pub event_type: EventType,
    pub organization_id: OrgId,
    pub connection_id: ConnectionId,
    /// The JSON body, signed and sent as is (never a token).
    pub body: String,
    pub created_at: i64,
}

/// The event of a connection changing from `before` to `after`: one per status change, and one
/// per failed refresh (the status stays). A change that sets nothing a platform watches makes
/// none. Both backends call it on the same pair: the embedded one inside the transition's
/// transaction, the stream reader on the item's old and new images.
pub fn of_change(before: &Connection, after: &Connection) -> Option<Event> {
    let event_type = if before.status != after.status {
        match after.status {
            ConnectionStatus::Authorized => EventType::Authorized,
            ConnectionStatus::Active => EventType::Active,
            ConnectionStatus::Failed => EventType::Failed,
            ConnectionStatus::ReauthorizationRequired => EventType::ReauthorizationRequired,
            ConnectionStatus::Revoked => EventType::Revoked,
            ConnectionStatus::Pending => return None,
        }
    } else if after.refresh_failures > before.refresh_failures {
        EventType::RefreshFailed
    } else if let Some(expiry) = warned(after)
        && warned(before) != Some(expiry)
    {
        EventType::Expiring
    } else {
        return None;
    };
    let reason = match event_type {
        EventType::ReauthorizationRequired => {
            Some("the provider refused the refresh token".to_string())
        }
        EventType::RefreshFailed => Some("the refresh failed; it is retried later".to_string()),
        EventType::Expiring => warned(after).map(|at| {
            let what = match after.keepalive.as_ref().is_some_and(|k| k.refresh_token) {
                true => "the refresh token reaches the provider's lifetime limit",
                false => "the token expires and there is no refresh token",
            };
            format!(
                "{what} at {}; reconnect before then",
                crate::api::dialect::rfc3339(at)
            )
        }),
        _ => None,
    };
    let body = serde_json::json!({
        "type": event_type.as_str(),
        "timestamp": crate::api::dialect::rfc3339(after.updated_at),
        "data": {
            "connection_id": after.id,
            "organization_id": after.organization_id,
            "workspace_id": after.workspace_id,
            "provider": after.provider,
            "status": after.status.as_str(),
            "previous_status": before.status.as_str(),
            "reason": reason,
        }
    });
    Some(Event {
        // One event per version of a connection: any process that sees this change (the outbox
        // writer, a stream reader retrying) names it the same.
        id: format!(
            "evt_{}",
            &crate::crypto::sha256_hex(&format!(
                "{}/{}/{}",
                after.organization_id, after.id, after.version
            ))[..32]
        ),
        event_type,
        organization_id: after.organization_id.clone(),
        connection_id: after.id.clone(),
        body: body.to_string(),
        created_at: after.updated_at,
    })
}

/// The expiry a `connection.expiring` was sent for.
fn warned(c: &Connection) -> Option<i64> {
    c.keepalive.as_ref().and_then(|k| k.warned_for)
}

/// A configuration for the events tests: a public URL, and loopback `http` allowed or not.
#[cfg(test)]
pub(crate) fn test_config(allow_loopback: bool) -> crate::Config {
    crate::Config::from_lookup(|k| match k {
        "BROKER_PUBLIC_URL" => Some("https://broker.example".into()),
        "BROKER_ALLOW_LOOPBACK_HTTP" if allow_loopback => Some("1".into()),
        _ => None,
    })
    .unwrap()
}
