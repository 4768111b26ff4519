//! API keys: who is calling. A key belongs to one organization, may be limited to some workspaces,
//! and carries a numeric user id (0 for service keys). Keys are stored as their SHA-256 only.

use async_trait::async_trait;
use lambda_http::Request;
use serde::{Deserialize, Serialize};

use std::time::Duration;

use crate::cache::TtlCache;
use crate::crypto::{random_token, sha256_hex};
use crate::{Error, OrgId, Result};

/// The key port.
#[async_trait]
pub trait KeyStore: Send + Sync {
    async fn put_key(&self, key: &ApiKeyRecord) -> Result<()>;
    async fn get_key(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>>;
    /// Records that the key was used at `at` (epoch seconds).
    async fn touch_key(&self, key_hash: &str, at: i64) -> Result<()>;
}

/// The operator's side of keys (`brokerctl key list|revoke`): not a port of the request path, so
/// the functions' binaries do not carry it.
#[async_trait]
pub trait KeyAdmin: Send + Sync {
    /// Every key of the organization, revoked ones included, oldest first.
    async fn list_keys(&self, organization_id: &str) -> Result<Vec<ApiKeyRecord>>;
    /// Marks the key revoked, if it belongs to the organization; `false` when it does not.
    async fn revoke_key(&self, key_hash: &str, organization_id: &str) -> Result<bool>;
}

/// What a key may do; a route names the one it needs (403 without it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scope {
    /// Start and complete flows (initiate, complete, sources, imports).
    #[serde(rename = "flows")]
    Flows,
    /// List and read connections.
    #[serde(rename = "connections:read")]
    ConnectionsRead,
    /// Read a connection's access token.
    #[serde(rename = "credentials:read")]
    CredentialsRead,
    /// Reconnect and delete connections.
    #[serde(rename = "connections:write")]
    ConnectionsWrite,
}

impl Scope {
    /// Every scope: what a key has unless created with fewer (and every key made before scopes).
    pub const ALL: [Scope; 4] = [
        Scope::Flows,
        Scope::ConnectionsRead,
        Scope::CredentialsRead,
        Scope::ConnectionsWrite,
    ];

    pub fn all() -> Vec<Scope> {
        Scope::ALL.to_vec()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Flows => "flows",
            Scope::ConnectionsRead => "connections:read",
            Scope::CredentialsRead => "credentials:read",
            Scope::ConnectionsWrite => "connections:write",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s)
    }
}

/// The stored form of an API key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// SHA-256 of the key; the key itself is shown once and never stored.
    pub key_hash: String,
    pub organization_id: String,
    /// Empty: every workspace of the organization.
    #[serde(default)]
    pub workspaces: Vec<String>,
    pub user_id: u64,
    #[serde(default = "Scope::all")]
    pub scopes: Vec<Scope>,
    #[serde(default)]
    pub revoked: bool,
    pub created_at: i64,
    /// Epoch seconds, to the hour ([`LAST_USED_RESOLUTION_SECS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<i64>,
}

impl ApiKeyRecord {
    /// The key's public id, as `brokerctl key list` shows it and audit lines carry it.
    pub fn id(&self) -> String {
        key_id(&self.key_hash)
    }
}

/// How stale a key's `last_used_at` may be before a use writes it again: a write per key per hour
/// at most, not one per request.
pub const LAST_USED_RESOLUTION_SECS: i64 = 3600;

/// The authenticated caller of an API route.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The key's public id (a prefix of its hash), for audit lines; never the key.
    pub key_id: String,
    pub organization_id: OrgId,
    pub workspaces: Vec<String>,
    pub user_id: u64,
    pub scopes: Vec<Scope>,
}

impl Caller {
    /// The operator at the command line, acting for `organization_id` in every workspace.
    pub fn operator(organization_id: &str) -> Self {
        Caller {
            key_id: "brokerctl".into(),
            organization_id: organization_id.into(),
            workspaces: vec![],
            user_id: 0,
            scopes: Scope::all(),
        }
    }

    /// A route's scope must be among the key's.
    pub fn require_scope(&self, scope: Scope) -> Result<()> {
        if self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(Error::Forbidden)
        }
    }

    /// A path or query `organization_id` must be the key's own.
    pub fn require_org(&self, organization_id: &str) -> Result<()> {
        if self.organization_id == organization_id {
            Ok(())
        } else {
            Err(Error::Forbidden)
        }
    }

    pub fn require_workspace(&self, workspace_id: &str) -> Result<()> {
        if self.workspaces.is_empty() || self.workspaces.iter().any(|w| w == workspace_id) {
            Ok(())
        } else {
            Err(Error::Forbidden)
        }
    }
}

/// The public id of a key: enough to tell keys apart in logs, useless to call with.
pub fn key_id(key_hash: &str) -> String {
    format!("key_{}", &key_hash[..key_hash.len().min(16)])
}

/// A new key for `organization_id`, returned once in clear with the record to store. No scopes
/// named: every scope.
pub fn new_api_key(
    organization_id: &str,
    user_id: u64,
    workspaces: Vec<String>,
    scopes: Vec<Scope>,
) -> Result<(String, ApiKeyRecord)> {
    let key = format!("obk_{}", random_token()?);
    let mut scopes = if scopes.is_empty() {
        Scope::all()
    } else {
        scopes
    };
    scopes.sort_by_key(|s| Scope::ALL.iter().position(|a| a == s));
    scopes.dedup();
    let record = ApiKeyRecord {
        key_hash: sha256_hex(&key),
        organization_id: organization_id.to_string(),
        workspaces,
        user_id,
        scopes,
        revoked: false,
        created_at: chrono::Utc::now().timestamp(),
        last_used_at: None,
    };
    Ok((key, record))
}

/// How long this process trusts a key it has found, without reading it again: the bound on how
/// long a revoked key still works here (`BROKER_KEY_CACHE_SECS`).
pub const KEY_CACHE_SECS: u64 = 10;

/// Keys this process found recently, by hash (only valid ones: an unknown key is read each time).
pub struct KnownKeys(TtlCache<String, Caller>);

impl KnownKeys {
    pub fn new(ttl: Duration) -> Self {
        KnownKeys(TtlCache::new(ttl, 1024))
    }
}

impl Default for KnownKeys {
    fn default() -> Self {
        KnownKeys::new(Duration::from_secs(KEY_CACHE_SECS))
    }
}

/// Reads `X-API-Key` or `Authorization: Bearer` and finds the key; `now` dates its use.
pub async fn authenticate(
    keys: &dyn KeyStore,
    known: &KnownKeys,
    req: &Request,
    now: i64,
) -> Result<Caller> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let key = header("x-api-key")
        .or_else(|| {
            header("authorization").and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then_some(token.trim())
            })
        })
        .filter(|k| !k.is_empty() && k.len() <= 256)
        .ok_or(Error::Unauthenticated)?;
    let hash = sha256_hex(key);
    if let Some(caller) = known.0.get(&hash) {
        return Ok(caller);
    }
    match keys.get_key(&hash).await? {
        Some(record) if !record.revoked => {
            if record
                .last_used_at
                .is_none_or(|t| now - t >= LAST_USED_RESOLUTION_SECS)
            {
                // Bookkeeping only: a failed write does not refuse the caller.
                if let Err(e) = keys.touch_key(&record.key_hash, now).await {
                    tracing::warn!(key_id = %record.id(), error = %e, "could not record the key's last use");
                }
            }
            let caller = Caller {
                key_id: key_id(&record.key_hash),
                organization_id: record.organization_id.into(),
                workspaces: record.workspaces,
                user_id: record.user_id,
                scopes: record.scopes,
            };
            known.0.insert(hash, caller.clone());
            Ok(caller)
        }
        _ => Err(Error::Unauthenticated),
    }
}
