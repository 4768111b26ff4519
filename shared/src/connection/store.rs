use async_trait::async_trait;

use super::{Connection, ListQuery, Transition};
use crate::{ConnectionId, OrgId, Result};

/// The connection port. A pending connection is written with its flow
/// ([`crate::flow::FlowStore::create_flow`]); a flow's outcome and its connection's transition are
/// written together by [`crate::flow::FlowStore::finish_flow`].
#[async_trait]
pub trait ConnectionStore: Send + Sync {
    /// Writes a connection whose id is new (an import); an existing one is an internal error.
    async fn create_connection(&self, connection: &Connection) -> Result<()>;

    /// Scoped by organization: another organization's connection is simply not found.
    async fn get_connection(
        &self,
        organization_id: &OrgId,
        id: &ConnectionId,
    ) -> Result<Option<Connection>>;

    /// Applies `transition` atomically and returns the connection as it now is. A connection that
    /// does not admit it (missing, another status, another version) is [`crate::Error::Conflict`]:
    /// a lost race is seen by the caller, never overwritten.
    async fn transition(&self, transition: &Transition) -> Result<Connection>;

    /// Up to `query.limit` connections, newest first, from an index (never a scan of every
    /// item), and whether more follow.
    async fn list_connections(&self, query: &ListQuery) -> Result<(Vec<Connection>, bool)>;

    /// Up to `limit` connections the keep-alive sweep should look at by `now`
    /// ([`super::KeepAlive::next`]), soonest first, from an index (never a scan).
    async fn due_for_sweep(&self, now: i64, limit: usize) -> Result<Vec<Connection>>;
}
