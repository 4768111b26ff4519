//! API keys: who is calling. A key belongs to one organization, may be limited to some workspaces,
//! and carries a numeric user id (0 for service keys). Keys are stored as their SHA-256 only.

use async_trait::async_trait;
use lambda_http::Request;
use serde::{Deserialize, Serialize};

use std::time::Duration;

use crate::cache::TtlCache;
use crate::crypto::{random_token, sha256_hex};
use crate::{Error, Result};

/// The key port.
#[async_trait]
pub trait KeyStore: Send + Sync {
    async fn put_key(&self, key: &ApiKeyRecord) -> Result<()>;
    async fn get_key(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>>;
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
    #[serde(default)]
    pub revoked: bool,
    pub created_at: i64,
}

/// The authenticated caller of an API route.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The key's public id (a prefix of its hash), for audit lines; never the key.
    pub key_id: String,
    pub organization_id: String,
    pub workspaces: Vec<String>,
    pub user_id: u64,
}

impl Caller {
    /// The operator at the command line, acting for `organization_id` in every workspace.
    pub fn operator(organization_id: &str) -> Self {
        Caller {
            key_id: "brokerctl".into(),
            organization_id: organization_id.to_string(),
            workspaces: vec![],
            user_id: 0,
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

/// A new key for `organization_id`, returned once in clear with the record to store.
pub fn new_api_key(
    organization_id: &str,
    user_id: u64,
    workspaces: Vec<String>,
) -> Result<(String, ApiKeyRecord)> {
    let key = format!("obk_{}", random_token()?);
    let record = ApiKeyRecord {
        key_hash: sha256_hex(&key),
        organization_id: organization_id.to_string(),
        workspaces,
        user_id,
        revoked: false,
        created_at: chrono::Utc::now().timestamp(),
    };
    Ok((key, record))
}

/// How long this process trusts a key it has found, without reading it again: the bound on how
/// long a revoked key still works here.
pub const KEY_CACHE_SECS: u64 = 10;

/// Keys this process found recently, by hash (only valid ones: an unknown key is read each time).
pub struct KnownKeys(TtlCache<String, Caller>);

impl Default for KnownKeys {
    fn default() -> Self {
        KnownKeys(TtlCache::new(Duration::from_secs(KEY_CACHE_SECS), 1024))
    }
}

/// Reads `X-API-Key` or `Authorization: Bearer` and finds the key.
pub async fn authenticate(keys: &dyn KeyStore, known: &KnownKeys, req: &Request) -> Result<Caller> {
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
            let caller = Caller {
                key_id: key_id(&record.key_hash),
                organization_id: record.organization_id,
                workspaces: record.workspaces,
                user_id: record.user_id,
            };
            known.0.insert(hash, caller.clone());
            Ok(caller)
        }
        _ => Err(Error::Unauthenticated),
    }
}
