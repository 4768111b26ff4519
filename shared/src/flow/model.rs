use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::provider::Endpoints;
use crate::secret::Sensitive;
use crate::{ConnectionId, OrgId};

/// Which request shape started a flow; it decides what the callback hands back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowKind {
    /// `POST /v1/sources/initiateOAuth` (Airbyte public API, hosted callback).
    InitiateOauth,
    /// `POST /v1/personal-connectors/authorize`.
    Personal,
    /// Aitronos native initiate: hosted callback, references like `InitiateOauth`.
    Native,
    /// Aitronos connector authorize: hosted callback, hands back a connection to build sources on.
    Connector,
    /// Airbyte config API `get_consent_url`: the provider redirects to the caller's own URL and the
    /// caller redeems the code through `complete_oauth`. No browser step passes through the broker.
    ClientCallback,
    /// `POST /v1/connections/{id}/reconnect`: re-authorizes an existing connection in place.
    Reconnect,
    /// The hosted connect page, for a connect session: the callback ends on the broker's result
    /// page (a `postMessage` to the session's origin, or a redirect to its URL).
    Connect,
}

impl FlowKind {
    /// Whether the provider redirects to the broker's callback (and the browser to authorize).
    pub fn hosted(self) -> bool {
        self != FlowKind::ClientCallback
    }
}

/// Who may take a pending flow, and what they must show: the condition both backends enforce in
/// the same atomic write that consumes the flow.
#[derive(Debug, Clone)]
pub enum Claim {
    /// The callback: the browser bound at authorize (hash of its cookie).
    Browser { binding_hash: String },
    /// `complete_oauth`: the platform that started a client-callback flow, with the same
    /// organization, workspace and source definition, and the same redirect URL when it names one.
    Client {
        organization_id: String,
        workspace_id: String,
        definition_id: String,
        redirect_url: Option<String>,
    },
}

impl Claim {
    /// Attribute equalities the flow item must satisfy, besides being pending and unexpired.
    pub fn conditions(&self) -> Vec<(&'static str, &str)> {
        match self {
            Claim::Browser { binding_hash } => vec![("binding_hash", binding_hash.as_str())],
            Claim::Client {
                organization_id,
                workspace_id,
                definition_id,
                redirect_url,
            } => {
                let mut conditions = vec![
                    ("kind", "client_callback"),
                    ("organization_id", organization_id.as_str()),
                    ("workspace_id", workspace_id.as_str()),
                    ("definition_id", definition_id.as_str()),
                ];
                if let Some(url) = redirect_url {
                    conditions.push(("redirect_url", url.as_str()));
                }
                conditions
            }
        }
    }

    /// The same conditions, checked against a flow read inside a transaction.
    pub fn admits(&self, flow: &Flow) -> bool {
        let Ok(serde_json::Value::Object(item)) = serde_json::to_value(flow) else {
            return false;
        };
        self.conditions()
            .iter()
            .all(|(attr, want)| item.get(*attr).and_then(|v| v.as_str()) == Some(*want))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowStatus {
    /// Created by initiate; may be bound to a browser by authorize.
    Pending,
    /// Taken by one callback (its lease owner); never taken again.
    Consumed,
    /// The code was redeemed but the tokens could not be stored: they wait on the flow, sealed,
    /// for the same callback (or `complete_oauth`) to take the flow again and store them.
    Exchanged,
    Completed,
    Failed,
}

/// The short-lived state of one authorization-code flow, keyed by the SHA-256 of its state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Flow {
    /// SHA-256 (hex) of the state; the state itself is never stored.
    pub key: String,
    pub kind: FlowKind,
    pub organization_id: OrgId,
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
    /// An `exchanged` flow's tokens, sealed ([`crate::crypto::Sealer`]); gone once stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_tokens: Option<String>,
    pub connection_id: ConnectionId,
    /// The connect session that started it (SHA-256 of its token), for a `connect` flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_session: Option<String>,
    pub created_at: i64,
    /// Epoch seconds; also the table's TTL attribute, but checked by every read.
    pub expires_at: i64,
}

/// A single-use handle the personal flow returns to the platform, redeemed by complete-oauth.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateToken {
    /// SHA-256 (hex) of the token.
    pub token_hash: String,
    pub organization_id: OrgId,
    pub connection_id: ConnectionId,
    pub created_at: i64,
    pub expires_at: i64,
}
