//! Storage ports, one trait per concept, so each function depends on what it uses. Two backends
//! implement them: [`dynamodb`] (AWS) and [`embedded`] (one local SQLite file).
//!
//! Every conditional operation checks expiry itself (`expires_at > now`): DynamoDB's TTL deletes
//! lazily, so an expired item may still be read.

pub mod dynamodb;
#[cfg(feature = "embedded")]
pub mod embedded;

use async_trait::async_trait;

use crate::Result;
use crate::auth::ApiKeyRecord;
pub use crate::connection::ConnectionStore;
use crate::connection::{Connection, Transition};
use crate::flow::{Claim, Flow, FlowStatus, StateToken};
use crate::org::Org;
use crate::source::Source;

#[async_trait]
pub trait FlowStore: Send + Sync {
    /// Writes a new flow and the pending connection it will fill, together: one transaction on
    /// either backend (on DynamoDB also one round trip, and never a flow without its connection).
    /// Fails if the flow's key exists.
    async fn create_flow(&self, flow: &Flow, connection: &Connection) -> Result<()>;

    /// Binds a pending, unexpired, hosted flow to a browser: the first browser wins, the same
    /// browser may come back. Anything else is [`crate::Error::FlowRejected`].
    async fn bind_flow(&self, key: &str, binding_hash: &str, now: i64) -> Result<Flow>;

    /// Takes a pending, unexpired flow that `claim` fits, exactly once across all callers.
    /// A repeat by the same `lease_owner` (a retried write) gets the flow again.
    async fn consume_flow(
        &self,
        key: &str,
        claim: &Claim,
        lease_owner: &str,
        now: i64,
    ) -> Result<Flow>;

    /// Records how a consumed flow ended together with its connection's transition, in one
    /// atomic write: either both happen or neither ([`crate::Error::Conflict`] when the connection
    /// does not admit the transition).
    async fn finish_flow(
        &self,
        key: &str,
        status: FlowStatus,
        connection: &Transition,
    ) -> Result<()>;
}

#[async_trait]
pub trait SourceStore: Send + Sync {
    /// Writes a new source; `false` when one with its id exists already.
    async fn create_source(&self, source: &Source) -> Result<bool>;
    /// Scoped by organization, like connections.
    async fn get_source(&self, organization_id: &str, id: &str) -> Result<Option<Source>>;
}

#[async_trait]
pub trait StateTokenStore: Send + Sync {
    async fn create_state_token(&self, token: &StateToken) -> Result<()>;
    /// Deletes and returns the token if it exists, belongs to the organization and has not expired.
    async fn consume_state_token(
        &self,
        token_hash: &str,
        organization_id: &str,
        now: i64,
    ) -> Result<Option<StateToken>>;
}

#[async_trait]
pub trait KeyStore: Send + Sync {
    async fn put_key(&self, key: &ApiKeyRecord) -> Result<()>;
    async fn get_key(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>>;
}

#[async_trait]
pub trait OrgStore: Send + Sync {
    async fn put_org(&self, org: &Org) -> Result<()>;
    async fn get_org(&self, id: &str) -> Result<Option<Org>>;
}

/// Every port at once, for wiring one backend into [`crate::App`].
pub trait Store:
    FlowStore + ConnectionStore + SourceStore + StateTokenStore + KeyStore + OrgStore
{
}
impl<T: FlowStore + ConnectionStore + SourceStore + StateTokenStore + KeyStore + OrgStore> Store
    for T
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
}
