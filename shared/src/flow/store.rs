use async_trait::async_trait;

use super::{Claim, Flow, FlowStatus, StateToken};
use crate::Result;
use crate::connection::{Connection, Transition};

#[async_trait]
pub trait FlowStore: Send + Sync {
    /// Writes a new flow and the pending connection it will fill, together: one transaction on
    /// either backend (on DynamoDB also one round trip, and never a flow without its connection).
    /// Fails if the flow's key exists.
    async fn create_flow(&self, flow: &Flow, connection: &Connection) -> Result<()>;

    /// Binds a pending, unexpired, hosted flow to a browser: the first browser wins, the same
    /// browser may come back. Anything else is [`crate::Error::FlowRejected`].
    async fn bind_flow(&self, key: &str, binding_hash: &str, now: i64) -> Result<Flow>;

    /// Takes a pending (or exchanged) unexpired flow that `claim` fits, exactly once across all
    /// callers. A repeat by the same `lease_owner` (a retried write) gets the flow again.
    async fn consume_flow(
        &self,
        key: &str,
        claim: &Claim,
        lease_owner: &str,
        now: i64,
    ) -> Result<Flow>;

    /// Parks a flow `lease_owner` consumed whose code was redeemed but whose tokens could not be
    /// stored: `exchanged`, the tokens sealed on it, for a later [`Self::consume_flow`] with the
    /// same claim to take and finish. Its expiry still bounds how long they wait.
    async fn park_flow(&self, key: &str, lease_owner: &str, sealed_tokens: &str) -> Result<()>;

    /// Records how a consumed flow ended together with its connection's transition, in one
    /// atomic write: either both happen or neither ([`crate::Error::Conflict`] when the connection
    /// does not admit the transition). Sealed tokens, if any, go.
    async fn finish_flow(
        &self,
        key: &str,
        status: FlowStatus,
        connection: &Transition,
    ) -> Result<()>;
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
