use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::provider::Endpoints;
use crate::secret::Sensitive;

/// Which request shape started a flow; it decides what the callback hands back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowKind {
    /// `POST /v1/sources/initiateOAuth` (Airbyte public API, hosted callback).
    InitiateOauth,
    /// `POST /v1/personal-connectors/authorize`.
    Personal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowStatus {
    /// Created by initiate; may be bound to a browser by authorize.
    Pending,
    /// Taken by one callback (its lease owner); never taken again.
    Consumed,
    Completed,
    Failed,
}

/// The short-lived state of one authorization-code flow, keyed by the SHA-256 of its state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Flow {
    /// SHA-256 (hex) of the state; the state itself is never stored.
    pub key: String,
    pub kind: FlowKind,
    pub organization_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<String>,
    pub user_id: u64,
    /// Provider slug.
    pub provider: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition_id: Option<String>,
    /// Where the browser is sent at the end: validated and registered for the organization.
    pub redirect_url: String,
    /// The constant callback URL sent to the provider at authorize and again at the token request.
    pub provider_redirect_uri: String,
    pub endpoints: Endpoints,
    pub scopes: Vec<String>,
    #[serde(default)]
    pub inputs: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pkce_verifier: Option<Sensitive<String>>,
    /// SHA-256 of the browser-binding cookie, written by the first browser through authorize.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding_hash: Option<String>,
    pub status: FlowStatus,
    /// The callback invocation that consumed the flow, to recognise its own write on an SDK retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_owner: Option<String>,
    pub connection_id: String,
    pub created_at: i64,
    /// Epoch seconds; also the table's TTL attribute, but checked by every read.
    pub expires_at: i64,
}

/// A single-use handle the personal flow returns to the platform, redeemed by complete-oauth.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateToken {
    /// SHA-256 (hex) of the token.
    pub token_hash: String,
    pub organization_id: String,
    pub connection_id: String,
    pub created_at: i64,
    pub expires_at: i64,
}
