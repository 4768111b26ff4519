//! The embedded backend: one SQLite file in `BROKER_DATA_DIR`, items as JSON documents under the
//! same keys DynamoDB uses. Conditional updates run as read-check-write inside one immediate
//! transaction, so two processes (a `serve` and a `brokerctl key create`) share the file safely.

use crate::connect::{ConnectSession, SessionStore};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, TryLockError, Weak};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{
    ConnectionStore, FlowStore, KeyStore, OrgStore, SourceStore, StateTokenStore, WebhookStore,
    keys,
};
use crate::auth::{ApiKeyRecord, KeyAdmin};
use crate::connection::{Connection, ListQuery, Transition};
use crate::events::{self, Delivery, Endpoint, EventOutbox, EventType};
use crate::flow::{Claim, Flow, FlowStatus, StateToken};
use crate::org::Org;
use crate::source::Source;
use crate::{ConnectionId, Error, OrgId, Result};

pub const DB_FILE: &str = "broker.sqlite3";

/// How often the write-ahead log is copied into the database file, off the request path.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// Expired items are deleted every this many checkpoints (about once a second), at most
/// [`SWEEP_BATCH`] per transaction so a backlog never holds the store's lock for long.
const SWEEP_EVERY: u32 = 10;
const SWEEP_BATCH: usize = 256;
/// An event whose deliveries all ended is kept this long after it was made (`brokerctl events
/// tail` shows it meanwhile).
const OUTBOX_RETENTION_SECS: i64 = 7 * 86_400;

/// The SQLite file, shared by [`EmbeddedStore`] and [`crate::vault::embedded::EmbeddedVault`].
#[derive(Debug)]
pub struct Db {
    conn: Mutex<rusqlite::Connection>,
}

enum Outcome<T> {
    Missing,
    Refused(T),
    Applied(T),
}

/// An item's JSON, inside any transaction or none.
fn read_item(c: &rusqlite::Connection, pk: &str) -> rusqlite::Result<Option<String>> {
    c.prepare_cached("SELECT data FROM items WHERE pk = ?1")?
        .query_row([pk], |r| r.get(0))
        .optional()
}

/// Writes an item; with `only_if_absent`, an existing one is kept and `false` returned.
fn insert_item(
    c: &rusqlite::Connection,
    pk: &str,
    data: &str,
    only_if_absent: bool,
) -> rusqlite::Result<bool> {
    let sql = if only_if_absent {
        "INSERT OR IGNORE INTO items (pk, data) VALUES (?1, ?2)"
    } else {
        "INSERT OR REPLACE INTO items (pk, data) VALUES (?1, ?2)"
    };
    Ok(c.prepare_cached(sql)?.execute(params![pk, data])? == 1)
}

fn to_json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(db_err)
}

fn db_err(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("embedded store: {e}"))
}

impl Db {
    pub fn open(dir: &Path) -> Result<Arc<Db>> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::validation(format!("BROKER_DATA_DIR {}: {e}", dir.display())))?;
        let path = dir.join(DB_FILE);
        let conn = rusqlite::Connection::open(&path).map_err(db_err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(db_err)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA wal_autocheckpoint = 0;
             CREATE TABLE IF NOT EXISTS items (pk TEXT PRIMARY KEY, data TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS secrets (
                 name TEXT PRIMARY KEY, nonce BLOB NOT NULL, ciphertext BLOB NOT NULL,
                 tags TEXT NOT NULL, request_token TEXT NOT NULL) WITHOUT ROWID;
             -- Events, written in the transaction of the change that made them (DESIGN §4.7),
             -- then fanned out to one delivery per interested endpoint.
             CREATE TABLE IF NOT EXISTS outbox (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
                 type TEXT NOT NULL, organization_id TEXT NOT NULL, connection_id TEXT NOT NULL,
                 body TEXT NOT NULL, created_at INTEGER NOT NULL,
                 fanned INTEGER NOT NULL DEFAULT 0);
             CREATE INDEX IF NOT EXISTS outbox_unfanned ON outbox (seq) WHERE fanned = 0;
             CREATE TABLE IF NOT EXISTS deliveries (
                 seq INTEGER NOT NULL, endpoint_id TEXT NOT NULL, connection_id TEXT NOT NULL,
                 attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL,
                 state TEXT NOT NULL DEFAULT 'pending',
                 PRIMARY KEY (seq, endpoint_id)) WITHOUT ROWID;
             CREATE INDEX IF NOT EXISTS deliveries_pending
                 ON deliveries (endpoint_id, connection_id, seq) WHERE state = 'pending';",
        )
        .map_err(db_err)?;
        add_expiry_index(&conn).map_err(db_err)?;
        add_listing_index(&conn).map_err(db_err)?;
        add_sweep_index(&conn).map_err(db_err)?;
        let db = Arc::new(Db {
            conn: Mutex::new(conn),
        });
        spawn_checkpointer(path, Arc::downgrade(&db));
        Ok(db)
    }

    pub(crate) fn with<R>(
        &self,
        f: impl FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<R>,
    ) -> Result<R> {
        self.locked(|conn| f(conn).map_err(db_err))
    }

    /// Runs `f` on the connection, holding the store's lock. The lock is usually free and the
    /// call then runs in place. When another thread holds it (a request's commit, the
    /// checkpointer), waiting would block this async worker and every request queued on it, so
    /// under a multi-threaded runtime (`serve`) the worker first hands its queue to another
    /// thread (`block_in_place`) and only then waits. Handing off on every call instead cost a
    /// third of the throughput of a one-read route (BENCHMARKS.md).
    fn locked<R>(&self, f: impl FnOnce(&mut rusqlite::Connection) -> Result<R>) -> Result<R> {
        let poisoned = || db_err("lock poisoned");
        match self.conn.try_lock() {
            Ok(mut conn) => return f(&mut conn),
            Err(TryLockError::Poisoned(_)) => return Err(poisoned()),
            Err(TryLockError::WouldBlock) => {}
        }
        let wait = || f(&mut *self.conn.lock().map_err(|_| poisoned())?);
        match tokio::runtime::Handle::try_current() {
            Ok(rt) if rt.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        }
    }

    /// Deletes items whose `expires_at` has passed, as DynamoDB's TTL does on AWS, in batches;
    /// returns how many went. Reads check expiry themselves, so this only keeps the file small.
    pub fn sweep_expired(&self, now: i64) -> Result<usize> {
        // Events whose deliveries all ended (delivered, dead, gone) go after a retention period.
        self.with(|c| {
            let old = now - OUTBOX_RETENTION_SECS;
            c.prepare_cached(
                "DELETE FROM deliveries WHERE seq IN (SELECT o.seq FROM outbox o \
                   WHERE o.created_at < ?1 AND o.fanned = 1 AND NOT EXISTS \
                   (SELECT 1 FROM deliveries p WHERE p.seq = o.seq AND p.state = 'pending'))",
            )?
            .execute([old])?;
            c.prepare_cached(
                "DELETE FROM outbox WHERE created_at < ?1 AND fanned = 1 \
                   AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.seq = outbox.seq)",
            )?
            .execute([old])
        })?;
        let mut total = 0;
        loop {
            let deleted = self.with(|c| {
                c.prepare_cached(
                    "DELETE FROM items WHERE rowid IN \
                     (SELECT rowid FROM items WHERE expires_at <= ?1 LIMIT ?2)",
                )?
                .execute(params![now, SWEEP_BATCH as i64])
            })?;
            total += deleted;
            if deleted < SWEEP_BATCH {
                return Ok(total);
            }
        }
    }

    fn get<T: DeserializeOwned>(&self, pk: &str) -> Result<Option<T>> {
        let data = self.with(|c| read_item(c, pk))?;
        data.map(|d| serde_json::from_str(&d).map_err(db_err))
            .transpose()
    }

    fn with_prefix<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<T>> {
        self.locked(|conn| items_with_prefix(conn, prefix))
    }

    fn put<T: Serialize>(&self, pk: &str, value: &T, only_if_absent: bool) -> Result<bool> {
        let data = to_json(value)?;
        self.with(|c| insert_item(c, pk, &data, only_if_absent))
    }

    /// Reads, lets `apply` change the value or refuse, writes back (or deletes when `delete`), atomically.
    fn modify<T: Serialize + DeserializeOwned>(
        &self,
        pk: &str,
        delete: bool,
        apply: impl FnOnce(&mut T) -> bool,
    ) -> Result<Outcome<T>> {
        self.transaction(|tx| {
            let outcome = modify_in(tx, pk, delete, apply)?;
            let applied = matches!(outcome, Outcome::Applied(_));
            Ok((outcome, applied))
        })
    }

    /// Runs `f` in one immediate transaction, committed when `f` says so (its second value).
    fn transaction<R>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<(R, bool)>,
    ) -> Result<R> {
        self.locked(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err)?;
            let (result, commit) = f(&tx)?;
            if commit {
                tx.commit().map_err(db_err)?;
            }
            Ok(result)
        })
    }
}

/// [`Db::modify`]'s step inside a transaction the caller holds.
fn modify_in<T: Serialize + DeserializeOwned>(
    tx: &rusqlite::Connection,
    pk: &str,
    delete: bool,
    apply: impl FnOnce(&mut T) -> bool,
) -> Result<Outcome<T>> {
    let Some(data) = read_item(tx, pk).map_err(db_err)? else {
        return Ok(Outcome::Missing);
    };
    let mut value: T = serde_json::from_str(&data).map_err(db_err)?;
    if !apply(&mut value) {
        return Ok(Outcome::Refused(value));
    }
    if delete {
        tx.prepare_cached("DELETE FROM items WHERE pk = ?1")
            .and_then(|mut s| s.execute([pk]))
            .map_err(db_err)?;
    } else {
        let data = to_json(&value)?;
        tx.prepare_cached("UPDATE items SET data = ?2 WHERE pk = ?1")
            .and_then(|mut s| s.execute(params![pk, data]))
            .map_err(db_err)?;
    }
    Ok(Outcome::Applied(value))
}

/// A connection's transition inside a transaction, with the event it makes written to the
/// outbox in the same transaction: a change and its event happen together or not at all.
fn apply_transition(tx: &rusqlite::Connection, t: &Transition) -> Result<Outcome<Connection>> {
    let key = keys::connection(&t.organization_id, &t.connection_id);
    let mut before = None;
    let outcome = modify_in(tx, &key, false, |c: &mut Connection| {
        before = Some(c.clone());
        t.apply(c)
    })?;
    if let (Outcome::Applied(after), Some(before)) = (&outcome, &before)
        && let Some(event) = events::of_change(before, after)
    {
        tx.prepare_cached(
            "INSERT INTO outbox (id, type, organization_id, connection_id, body, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .and_then(|mut s| {
            s.execute(params![
                event.id,
                event.event_type.as_str(),
                event.organization_id,
                event.connection_id,
                event.body,
                event.created_at
            ])
        })
        .map_err(db_err)?;
    }
    Ok(outcome)
}

/// Every item whose key starts with `prefix` (a range of the primary key).
fn items_with_prefix<T: DeserializeOwned>(
    c: &rusqlite::Connection,
    prefix: &str,
) -> Result<Vec<T>> {
    let rows: Vec<String> = c
        .prepare_cached("SELECT data FROM items WHERE pk >= ?1 AND pk < ?2")
        .and_then(|mut s| {
            s.query_map(params![prefix, format!("{prefix}\u{10FFFF}")], |r| r.get(0))?
                .collect()
        })
        .map_err(db_err)?;
    rows.iter()
        .map(|d| serde_json::from_str(d).map_err(db_err))
        .collect()
}

fn lost_race<T>(outcome: Outcome<T>) -> Result<T> {
    match outcome {
        Outcome::Applied(value) => Ok(value),
        _ => Err(Error::Conflict("the connection changed")),
    }
}

/// An indexed `expires_at` column computed from each item's JSON (files made before it existed
/// gain it here), so the sweep finds expired items without reading every row.
fn add_expiry_index(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    let has_column = conn
        .prepare("SELECT 1 FROM pragma_table_xinfo('items') WHERE name = 'expires_at'")?
        .exists([])?;
    if !has_column {
        conn.execute_batch(
            "ALTER TABLE items ADD COLUMN expires_at INTEGER \
             GENERATED ALWAYS AS (json_extract(data, '$.expires_at')) VIRTUAL",
        )?;
    }
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS items_expiry ON items (expires_at) WHERE expires_at IS NOT NULL",
    )
}

/// Connection items' organization and listing order as indexed columns computed from their JSON,
/// so a listing reads one organization's connections in order, never the whole table.
fn add_listing_index(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    let has_column = conn
        .prepare("SELECT 1 FROM pragma_table_xinfo('items') WHERE name = 'conn_org'")?
        .exists([])?;
    if !has_column {
        conn.execute_batch(
            "ALTER TABLE items ADD COLUMN conn_org TEXT GENERATED ALWAYS AS \
               (CASE WHEN substr(pk, 1, 5) = 'CONN#' THEN json_extract(data, '$.organization_id') END) VIRTUAL;
             ALTER TABLE items ADD COLUMN conn_sort TEXT GENERATED ALWAYS AS \
               (CASE WHEN substr(pk, 1, 5) = 'CONN#' THEN printf('%020d#%s', \
                  max(json_extract(data, '$.created_at'), 0), json_extract(data, '$.id')) END) VIRTUAL;",
        )?;
    }
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS items_connections ON items (conn_org, conn_sort) \
         WHERE conn_org IS NOT NULL",
    )
}

/// Connection items' keep-alive time as an indexed column: the sweep reads what is due, soonest
/// first (only usable connections have one, [`Transition::apply`] clears it otherwise).
fn add_sweep_index(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    let has_column = conn
        .prepare("SELECT 1 FROM pragma_table_xinfo('items') WHERE name = 'sweep_at'")?
        .exists([])?;
    if !has_column {
        conn.execute_batch(
            "ALTER TABLE items ADD COLUMN sweep_at INTEGER GENERATED ALWAYS AS \
               (CASE WHEN substr(pk, 1, 5) = 'CONN#' THEN json_extract(data, '$.keepalive.next') END) VIRTUAL",
        )?;
    }
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS items_sweep ON items (sweep_at) WHERE sweep_at IS NOT NULL",
    )
}

/// Checkpoints from a thread of its own while the [`Db`] lives. SQLite's automatic checkpoint
/// runs inside whichever commit crosses its threshold, copying pages and syncing the file there:
/// a fifth of the writes' CPU (BENCHMARKS.md).
///
/// A PASSIVE checkpoint on the thread's own connection copies most of the log without blocking
/// anyone; alone, under constant writes, it never catches up and the log grows without end (it
/// did: 0.9 GB in 5 s of `serve` under load). So a second one runs under the store's lock, with
/// no write in between: it copies the few frames left, and the next write restarts the log.
fn spawn_checkpointer(path: PathBuf, db: Weak<Db>) {
    let run = move || {
        let Ok(conn) = rusqlite::Connection::open(&path) else {
            return;
        };
        let _ = conn.busy_timeout(Duration::from_secs(5));
        let checkpoint = |c: &rusqlite::Connection| {
            c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        };
        for round in 1u32.. {
            std::thread::sleep(CHECKPOINT_EVERY);
            let Some(db) = db.upgrade() else {
                return;
            };
            if round % SWEEP_EVERY == 0
                && let Err(e) = db.sweep_expired(chrono::Utc::now().timestamp())
            {
                tracing::warn!(error = %e, "embedded store sweep of expired items failed");
            }
            let done = checkpoint(&conn)
                .map_err(db_err)
                .and_then(|()| db.with(|c| checkpoint(c)));
            if let Err(e) = done {
                tracing::warn!(error = %e, "embedded store checkpoint failed");
            }
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name("broker-checkpoint".into())
        .spawn(run)
    {
        tracing::warn!(error = %e, "no checkpoint thread; the log grows until the store closes");
    }
}

/// All store ports over the embedded file.
#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    db: Arc<Db>,
}

impl EmbeddedStore {
    pub fn new(db: Arc<Db>) -> Self {
        EmbeddedStore { db }
    }
}

#[async_trait]
impl FlowStore for EmbeddedStore {
    async fn create_flow(&self, flow: &Flow, connection: Option<&Connection>) -> Result<()> {
        let flow_key = keys::flow(&flow.key);
        let flow = to_json(flow)?;
        let connection = connection
            .map(|c| Ok((keys::connection(&c.organization_id, &c.id), to_json(c)?)))
            .transpose()?;
        let created = self.db.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let created = insert_item(&tx, &flow_key, &flow, true)?;
            if created {
                if let Some((key, connection)) = &connection {
                    insert_item(&tx, key, connection, false)?;
                }
                tx.commit()?;
            }
            Ok(created)
        })?;
        if created {
            Ok(())
        } else {
            Err(Error::internal("flow key collision"))
        }
    }

    async fn bind_flow(&self, key: &str, binding_hash: &str, now: i64) -> Result<Flow> {
        let outcome = self.db.modify(&keys::flow(key), false, |f: &mut Flow| {
            let free = f.binding_hash.as_deref().is_none_or(|b| b == binding_hash);
            if f.status != FlowStatus::Pending || f.expires_at <= now || !f.kind.hosted() || !free {
                return false;
            }
            f.binding_hash = Some(binding_hash.to_string());
            true
        })?;
        match outcome {
            Outcome::Applied(f) => Ok(f),
            _ => Err(Error::FlowRejected),
        }
    }

    async fn consume_flow(
        &self,
        key: &str,
        claim: &Claim,
        lease_owner: &str,
        now: i64,
    ) -> Result<Flow> {
        let outcome = self.db.modify(&keys::flow(key), false, |f: &mut Flow| {
            let takeable = matches!(f.status, FlowStatus::Pending | FlowStatus::Exchanged);
            let ok = takeable && f.expires_at > now && claim.admits(f);
            if ok {
                f.status = FlowStatus::Consumed;
                f.lease_owner = Some(lease_owner.to_string());
            }
            ok
        })?;
        match outcome {
            Outcome::Applied(f) => Ok(f),
            Outcome::Refused(f)
                if f.lease_owner.as_deref() == Some(lease_owner)
                    && f.status == FlowStatus::Consumed =>
            {
                Ok(f)
            }
            _ => Err(Error::FlowRejected),
        }
    }

    async fn park_flow(
        &self,
        key: &str,
        lease_owner: &str,
        sealed_tokens: Option<&str>,
    ) -> Result<()> {
        let outcome = self.db.modify(&keys::flow(key), false, |f: &mut Flow| {
            let ours =
                f.status == FlowStatus::Consumed && f.lease_owner.as_deref() == Some(lease_owner);
            if ours {
                match sealed_tokens {
                    Some(sealed) => {
                        f.status = FlowStatus::Exchanged;
                        f.sealed_tokens = Some(sealed.to_string());
                    }
                    None => {
                        f.status = FlowStatus::Pending;
                        f.lease_owner = None;
                    }
                }
            }
            ours
        })?;
        match outcome {
            Outcome::Applied(_) => Ok(()),
            _ => Err(Error::Conflict("the flow changed")),
        }
    }

    async fn finish_flow(
        &self,
        key: &str,
        status: FlowStatus,
        connection: &Transition,
    ) -> Result<()> {
        self.db.transaction(|tx| {
            let flow = modify_in(tx, &keys::flow(key), false, |f: &mut Flow| {
                f.status = status;
                f.sealed_tokens = None;
                true
            })?;
            let changed = apply_transition(tx, connection)?;
            let done = matches!(flow, Outcome::Applied(_)) && lost_race(changed).is_ok();
            if done {
                Ok((Ok(()), true))
            } else {
                Ok((
                    Err(Error::Conflict("the flow or its connection changed")),
                    false,
                ))
            }
        })?
    }
}

/// One event at one endpoint, as the outbox records it (`brokerctl events tail`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedDelivery {
    pub seq: i64,
    pub event_id: String,
    pub event_type: String,
    pub organization_id: String,
    pub connection_id: String,
    pub created_at: i64,
    pub endpoint_id: String,
    /// `pending`, `delivered` or `dead`.
    pub state: String,
    /// Failed attempts.
    pub attempts: u32,
    /// When a pending one is tried next (epoch seconds).
    pub next_at: i64,
}

impl EmbeddedStore {
    /// The newest `limit` deliveries, oldest first, optionally of one organization.
    pub fn delivery_log(
        &self,
        organization_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<LoggedDelivery>> {
        let mut rows: Vec<LoggedDelivery> = self.db.with(|c| {
            c.prepare_cached(
                "SELECT o.seq, o.id, o.type, o.organization_id, o.connection_id, o.created_at, \
                        d.endpoint_id, d.state, d.attempts, d.next_at \
                 FROM deliveries d JOIN outbox o ON o.seq = d.seq \
                 WHERE ?1 IS NULL OR o.organization_id = ?1 \
                 ORDER BY o.seq DESC, d.endpoint_id LIMIT ?2",
            )?
            .query_map(params![organization_id, limit as i64], |r| {
                Ok(LoggedDelivery {
                    seq: r.get(0)?,
                    event_id: r.get(1)?,
                    event_type: r.get(2)?,
                    organization_id: r.get(3)?,
                    connection_id: r.get(4)?,
                    created_at: r.get(5)?,
                    endpoint_id: r.get(6)?,
                    state: r.get(7)?,
                    attempts: r.get(8)?,
                    next_at: r.get(9)?,
                })
            })?
            .collect()
        })?;
        rows.reverse();
        Ok(rows)
    }
}

#[async_trait]
impl ConnectionStore for EmbeddedStore {
    async fn create_connection(&self, c: &Connection) -> Result<()> {
        let created = self
            .db
            .put(&keys::connection(&c.organization_id, &c.id), c, true)?;
        if created {
            Ok(())
        } else {
            Err(Error::internal("connection id collision"))
        }
    }

    async fn transition(&self, t: &Transition) -> Result<Connection> {
        lost_race(self.db.transaction(|tx| {
            let outcome = apply_transition(tx, t)?;
            let applied = matches!(outcome, Outcome::Applied(_));
            Ok((outcome, applied))
        })?)
    }

    async fn get_connection(
        &self,
        organization_id: &OrgId,
        id: &ConnectionId,
    ) -> Result<Option<Connection>> {
        self.db.get(&keys::connection(organization_id, id))
    }

    async fn due_for_sweep(&self, now: i64, limit: usize) -> Result<Vec<Connection>> {
        let rows: Vec<String> = self.db.with(|c| {
            c.prepare_cached(
                "SELECT data FROM items WHERE sweep_at IS NOT NULL AND sweep_at <= ?1 \
                 ORDER BY sweep_at LIMIT ?2",
            )?
            .query_map(params![now, limit as i64], |r| r.get(0))?
            .collect()
        })?;
        rows.iter()
            .map(|data| serde_json::from_str(data).map_err(db_err))
            .collect()
    }

    async fn list_connections(&self, q: &ListQuery) -> Result<(Vec<Connection>, bool)> {
        let workspaces = q.workspaces.as_ref().map(to_json).transpose()?;
        let rows: Vec<String> = self.db.with(|c| {
            c.prepare_cached(
                "SELECT data FROM items WHERE conn_org = ?1 \
                   AND (?2 IS NULL OR conn_sort < ?2) \
                   AND (?3 IS NULL OR json_extract(data, '$.workspace_id') IN \
                        (SELECT value FROM json_each(?3))) \
                   AND (?4 IS NULL OR json_extract(data, '$.provider') = ?4) \
                   AND (?5 IS NULL OR json_extract(data, '$.status') = ?5) \
                   AND (?7 IS NULL OR json_extract(data, '$.end_user_id') = ?7) \
                 ORDER BY conn_sort DESC LIMIT ?6",
            )?
            .query_map(
                params![
                    q.organization_id,
                    q.before,
                    workspaces,
                    q.provider,
                    q.status.map(|s| s.as_str()),
                    (q.limit + 1) as i64,
                    q.end_user_id
                ],
                |r| r.get(0),
            )?
            .collect()
        })?;
        let mut found = rows
            .iter()
            .map(|d| serde_json::from_str(d).map_err(db_err))
            .collect::<Result<Vec<Connection>>>()?;
        let more = found.len() > q.limit;
        found.truncate(q.limit);
        Ok((found, more))
    }
}

#[async_trait]
impl SourceStore for EmbeddedStore {
    async fn create_source(&self, source: &Source) -> Result<bool> {
        let pk = keys::source(&source.organization_id, &source.id);
        self.db.put(&pk, source, true)
    }

    async fn get_source(&self, organization_id: &str, id: &str) -> Result<Option<Source>> {
        self.db.get(&keys::source(organization_id, id))
    }
}

#[async_trait]
impl StateTokenStore for EmbeddedStore {
    async fn create_state_token(&self, t: &StateToken) -> Result<()> {
        self.db.put(&keys::state_token(&t.token_hash), t, true)?;
        Ok(())
    }

    async fn consume_state_token(
        &self,
        token_hash: &str,
        organization_id: &str,
        // One SQLite write has no answer to lose: the token is simply deleted.
        _redeemer: &str,
        now: i64,
    ) -> Result<Option<StateToken>> {
        let outcome = self.db.modify(
            &keys::state_token(token_hash),
            true,
            |t: &mut StateToken| t.organization_id == organization_id && t.expires_at > now,
        )?;
        Ok(match outcome {
            Outcome::Applied(t) => Some(t),
            _ => None,
        })
    }
}

#[async_trait]
impl SessionStore for EmbeddedStore {
    async fn create_session(&self, session: &ConnectSession) -> Result<()> {
        self.db
            .put(&keys::connect_session(&session.token_hash), session, true)?;
        Ok(())
    }

    async fn get_session(&self, token_hash: &str, now: i64) -> Result<Option<ConnectSession>> {
        let session: Option<ConnectSession> = self.db.get(&keys::connect_session(token_hash))?;
        Ok(session.filter(|s| s.expires_at > now))
    }

    async fn spend_session(&self, token_hash: &str, connection_id: &ConnectionId) -> Result<bool> {
        let outcome = self.db.modify(
            &keys::connect_session(token_hash),
            false,
            |s: &mut ConnectSession| {
                let open = s.connection_id.is_none();
                if open {
                    s.connection_id = Some(connection_id.clone());
                }
                open
            },
        )?;
        Ok(matches!(outcome, Outcome::Applied(_)))
    }
}

#[async_trait]
impl KeyStore for EmbeddedStore {
    async fn put_key(&self, key: &ApiKeyRecord) -> Result<()> {
        self.db.put(&keys::api_key(&key.key_hash), key, false)?;
        Ok(())
    }

    async fn get_key(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>> {
        self.db.get(&keys::api_key(key_hash))
    }

    async fn touch_key(&self, key_hash: &str, at: i64) -> Result<()> {
        self.db
            .modify(&keys::api_key(key_hash), false, |k: &mut ApiKeyRecord| {
                k.last_used_at = Some(at);
                true
            })?;
        Ok(())
    }
}

#[async_trait]
impl OrgStore for EmbeddedStore {
    async fn put_org(&self, org: &Org) -> Result<()> {
        self.db.put(&keys::org(&org.id), org, false)?;
        Ok(())
    }

    async fn get_org(&self, id: &str) -> Result<Option<Org>> {
        self.db.get(&keys::org(id))
    }
}

#[async_trait]
impl WebhookStore for EmbeddedStore {
    async fn put_webhook(&self, endpoint: &Endpoint) -> Result<()> {
        let key = keys::webhook(&endpoint.organization_id, &endpoint.id);
        self.db.put(&key, endpoint, false)?;
        Ok(())
    }

    async fn list_webhooks(&self, organization_id: &str) -> Result<Vec<Endpoint>> {
        let mut endpoints: Vec<Endpoint> =
            self.db.with_prefix(&keys::webhook(organization_id, ""))?;
        endpoints.sort_by_key(|e| e.created_at);
        Ok(endpoints)
    }

    async fn delete_webhook(&self, organization_id: &str, id: &str) -> Result<bool> {
        let key = keys::webhook(organization_id, id);
        let deleted = self.db.with(|c| {
            c.prepare_cached("DELETE FROM items WHERE pk = ?1")?
                .execute([key])
        })?;
        Ok(deleted == 1)
    }
}

#[async_trait]
impl EventOutbox for EmbeddedStore {
    async fn due(&self, now: i64, limit: usize) -> Result<Vec<Delivery>> {
        // Fan new events out to the endpoints that want them, in one transaction.
        self.db.transaction(|tx| {
            let fresh: Vec<(i64, String, String, String)> = tx
                .prepare_cached(
                    "SELECT seq, type, organization_id, connection_id FROM outbox \
                     WHERE fanned = 0 ORDER BY seq LIMIT 256",
                )
                .and_then(|mut s| {
                    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                        .collect()
                })
                .map_err(db_err)?;
            for (seq, kind, org, connection) in &fresh {
                let endpoints: Vec<Endpoint> = items_with_prefix(tx, &keys::webhook(org, ""))?;
                let kind = EventType::parse(kind);
                for endpoint in endpoints {
                    if kind.is_some_and(|k| endpoint.wants(k)) {
                        tx.prepare_cached(
                            "INSERT OR IGNORE INTO deliveries (seq, endpoint_id, connection_id, next_at) \
                             VALUES (?1, ?2, ?3, ?4)",
                        )
                        .and_then(|mut s| s.execute(params![seq, endpoint.id, connection, now]))
                        .map_err(db_err)?;
                    }
                }
                tx.prepare_cached("UPDATE outbox SET fanned = 1 WHERE seq = ?1")
                    .and_then(|mut s| s.execute([seq]))
                    .map_err(db_err)?;
            }
            Ok(((), true))
        })?;
        // Per endpoint and connection, the oldest pending delivery only, and only when due.
        let rows = self.db.with(|c| {
            c.prepare_cached(
                "SELECT d.seq, o.id, o.type, o.organization_id, o.connection_id, o.body, \
                        d.endpoint_id, d.attempts \
                 FROM deliveries d JOIN outbox o ON o.seq = d.seq \
                 WHERE d.state = 'pending' AND d.next_at <= ?1 \
                   AND NOT EXISTS (SELECT 1 FROM deliveries e \
                       WHERE e.state = 'pending' AND e.endpoint_id = d.endpoint_id \
                         AND e.connection_id = d.connection_id AND e.seq < d.seq) \
                 ORDER BY d.seq LIMIT ?2",
            )?
            .query_map(params![now, limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, u32>(7)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        Ok(rows
            .into_iter()
            .filter_map(
                |(
                    seq,
                    event_id,
                    kind,
                    organization_id,
                    connection_id,
                    body,
                    endpoint_id,
                    attempts,
                )| {
                    Some(Delivery {
                        seq,
                        event_id,
                        event_type: EventType::parse(&kind)?,
                        organization_id: organization_id.into(),
                        connection_id: connection_id.into(),
                        body,
                        endpoint_id,
                        attempts,
                    })
                },
            )
            .collect())
    }

    async fn settle(&self, d: &Delivery, outcome: events::Outcome, _now: i64) -> Result<()> {
        use events::Outcome::{Dead, Delivered, Gone, Retry};
        let (state, next_at) = match outcome {
            Delivered => ("delivered", None),
            Retry(at) => ("pending", Some(at)),
            Gone | Dead => ("dead", None),
        };
        self.db.with(|c| {
            c.prepare_cached(
                "UPDATE deliveries SET state = ?3, attempts = attempts + ?4, \
                        next_at = COALESCE(?5, next_at) \
                 WHERE seq = ?1 AND endpoint_id = ?2",
            )?
            .execute(params![
                d.seq,
                d.endpoint_id,
                state,
                i64::from(outcome != Delivered),
                next_at
            ])
        })?;
        Ok(())
    }
}

#[async_trait]
impl KeyAdmin for EmbeddedStore {
    async fn list_keys(&self, organization_id: &str) -> Result<Vec<ApiKeyRecord>> {
        // The key items' range of the primary key; an operator's command, not a request path.
        let mut records: Vec<ApiKeyRecord> = self.db.with_prefix(&keys::api_key(""))?;
        records.retain(|k| k.organization_id == organization_id);
        records.sort_by_key(|k| k.created_at);
        Ok(records)
    }

    async fn revoke_key(&self, key_hash: &str, organization_id: &str) -> Result<bool> {
        let outcome = self
            .db
            .modify(&keys::api_key(key_hash), false, |k: &mut ApiKeyRecord| {
                let ours = k.organization_id == organization_id;
                if ours {
                    k.revoked = true;
                }
                ours
            })?;
        Ok(matches!(outcome, Outcome::Applied(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_deletes_expired_items_only_in_batches() {
        let dir = std::env::temp_dir().join(format!("broker-sweep-{}", uuid::Uuid::new_v4()));
        let db = Db::open(&dir).unwrap();
        let n = SWEEP_BATCH + 10;
        for i in 0..n {
            db.put(
                &format!("FLOW#old{i}"),
                &serde_json::json!({ "expires_at": 100 }),
                false,
            )
            .unwrap();
        }
        db.put(
            "FLOW#fresh",
            &serde_json::json!({ "expires_at": 10_000 }),
            false,
        )
        .unwrap();
        db.put("ORG#kept", &serde_json::json!({ "id": "kept" }), false)
            .unwrap();

        assert_eq!(db.sweep_expired(1_000).unwrap(), n);

        assert!(db.get::<serde_json::Value>("FLOW#old0").unwrap().is_none());
        assert!(db.get::<serde_json::Value>("FLOW#fresh").unwrap().is_some());
        assert!(
            db.get::<serde_json::Value>("ORG#kept").unwrap().is_some(),
            "no expiry, kept"
        );
        assert_eq!(db.sweep_expired(1_000).unwrap(), 0);

        // Events: one settled long ago goes with its delivery; one still pending stays
        db.with(|c| {
            c.execute_batch(
                "INSERT INTO outbox (seq, id, type, organization_id, connection_id, body, created_at, fanned) \
                   VALUES (1, 'evt_old', 't', 'o', 'c', '{}', 100, 1), (2, 'evt_pending', 't', 'o', 'c', '{}', 100, 1);
                 INSERT INTO deliveries (seq, endpoint_id, connection_id, next_at, state) \
                   VALUES (1, 'wh', 'c', 0, 'delivered'), (2, 'wh', 'c', 0, 'pending');",
            )
        })
        .unwrap();
        db.sweep_expired(100 + OUTBOX_RETENTION_SECS + 1).unwrap();
        let left: Vec<String> = db
            .with(|c| {
                c.prepare("SELECT o.id FROM outbox o JOIN deliveries d ON d.seq = o.seq")?
                    .query_map([], |r| r.get(0))?
                    .collect()
            })
            .unwrap();
        assert_eq!(left, ["evt_pending"]);
        drop(db);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_call_waiting_for_the_lock_holds_up_no_other_request() {
        // Given the store's lock held by another thread (a commit, the checkpointer)
        let dir = std::env::temp_dir().join(format!("broker-lock-{}", uuid::Uuid::new_v4()));
        let db = Db::open(&dir).unwrap();
        let (held, release) = (
            std::sync::Arc::new(std::sync::Barrier::new(2)),
            std::sync::mpsc::channel::<()>(),
        );
        let holder = {
            let (db, held) = (db.clone(), held.clone());
            std::thread::spawn(move || {
                let _conn = db.conn.lock().unwrap();
                held.wait();
                release.1.recv().unwrap();
            })
        };
        held.wait();

        // When a request on the runtime's only worker waits for it
        let (started, on_worker) = tokio::sync::oneshot::channel();
        let waiting = tokio::spawn({
            let db = db.clone();
            async move {
                started.send(()).unwrap();
                db.get::<serde_json::Value>("ORG#x").unwrap()
            }
        });
        on_worker.await.unwrap();

        // Then another request still runs meanwhile (waited for on this thread, which is not a
        // worker: a blocked worker would also stop the runtime's timers)
        let (ran, seen) = std::sync::mpsc::channel();
        tokio::spawn(async move { ran.send(()).unwrap() });
        let other_ran = seen.recv_timeout(Duration::from_secs(5)).is_ok();
        let still_waiting = !waiting.is_finished();
        release.0.send(()).unwrap();
        holder.join().unwrap();
        assert!(
            other_ran,
            "a request waiting for the lock blocked the worker"
        );
        assert!(still_waiting);
        // and the waiting one ends once the lock is free
        assert_eq!(waiting.await.unwrap(), None);
        drop(db);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
