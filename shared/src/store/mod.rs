//! The storage backends. The ports, one trait per concept so each function depends on what it
//! uses, live beside their concepts (re-exported here); two backends implement them: [`dynamodb`]
//! (AWS) and [`embedded`] (one local SQLite file).
//!
//! Every conditional operation checks expiry itself (`expires_at > now`): DynamoDB's TTL deletes
//! lazily, so an expired item may still be read.

pub mod dynamodb;
#[cfg(feature = "embedded")]
pub mod embedded;

// Each port lives in the room of the concept it stores; this room implements them.
pub use crate::auth::KeyStore;
pub use crate::connect::SessionStore;
pub use crate::connection::ConnectionStore;
pub use crate::events::WebhookStore;
pub use crate::flow::{FlowStore, StateTokenStore};
pub use crate::org::OrgStore;
pub use crate::source::SourceStore;

/// Every port the request path uses, for wiring one backend into [`crate::App`]. Webhook
/// endpoints are not among them: only `brokerctl` and the event delivery read them (see
/// [`crate::App::webhooks`]), so the functions' binaries do not carry that code.
pub trait Store:
    FlowStore + ConnectionStore + SourceStore + StateTokenStore + KeyStore + OrgStore + SessionStore
{
}
impl<
    T: FlowStore
        + ConnectionStore
        + SourceStore
        + StateTokenStore
        + KeyStore
        + OrgStore
        + SessionStore,
> Store for T
{
}

/// Item keys, shared by both backends.
pub(crate) mod keys {
    pub fn flow(key: &str) -> String {
        format!("FLOW#{key}")
    }
    pub fn connection(org: &str, id: &str) -> String {
        format!("CONN#{org}#{id}")
    }
    pub fn source(org: &str, id: &str) -> String {
        format!("SRC#{org}#{id}")
    }
    pub fn state_token(hash: &str) -> String {
        format!("STATETOKEN#{hash}")
    }
    pub fn api_key(hash: &str) -> String {
        format!("APIKEY#{hash}")
    }
    pub fn org(id: &str) -> String {
        format!("ORG#{id}")
    }
    pub fn webhook(org: &str, id: &str) -> String {
        format!("WEBHOOK#{org}#{id}")
    }
    pub fn connect_session(hash: &str) -> String {
        format!("CSESSION#{hash}")
    }
    pub fn delivery(event_id: &str, endpoint_id: &str) -> String {
        format!("DELIVERY#{event_id}#{endpoint_id}")
    }
}
