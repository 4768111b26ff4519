use async_trait::async_trait;

use super::{Claim, Flow, FlowStatus, StateToken};
use crate::Result;
use crate::connection::{Connection, Transition};

#[async_trait]
pub trait FlowStore: Send + Sync {
    /// Writes a new flow and the pending connection it will fill, together: one transaction on
    /// either backend (on DynamoDB also one round trip, and never a flow without its connection).
    /// Without a connection (a reconnect), the flow alone. Fails if the flow's key exists.
    async fn create_flow(&self, flow: &Flow, connection: Option<&Connection>) -> Result<()>;

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

    /// Parks a flow `lease_owner` consumed but could not finish, for a later
    /// [`Self::consume_flow`] with the same claim to take: with `sealed_tokens` (the code was
    /// redeemed, storing the tokens failed) as `exchanged`; without (the backend failed before
    /// the code was spent) as `pending` again. Its expiry still bounds how long it waits.
    async fn park_flow(
        &self,
        key: &str,
        lease_owner: &str,
        sealed_tokens: Option<&str>,
    ) -> Result<()>;

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
    /// Redeems and returns the token if it exists, belongs to the organization, has not expired
    /// and was not redeemed before, except by `redeemer` (a retried write of the same call).
    async fn consume_state_token(
        &self,
        token_hash: &str,
        organization_id: &str,
        redeemer: &str,
        now: i64,
    ) -> Result<Option<StateToken>>;
}
