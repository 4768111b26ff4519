//! A connection's token document as this process reads it: from the vault, or from a small
//! cache keyed by the connection's version.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Connection;
use crate::cache::TtlCache;
use crate::provider::TokenSet;
use crate::vault::names;
use crate::{App, Error, Result};

/// Token documents this process has read, by connection and version: a version names one
/// document, so any transition leaves the old entry unreachable. The refresh token is not kept:
/// a refresh always reads it from the vault.
pub struct DocumentCache {
    documents: TtlCache<(String, u64), TokenSet>,
    /// One refresh decision at a time per connection in this process; other processes are held
    /// off by the lease.
    refreshing: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Default for DocumentCache {
    fn default() -> Self {
        DocumentCache {
            documents: TtlCache::new(Duration::from_secs(300), 4096),
            refreshing: Mutex::new(HashMap::new()),
        }
    }
}

impl DocumentCache {
    pub(super) fn get(&self, c: &Connection) -> Option<TokenSet> {
        self.documents.get(&(c.id.to_string(), c.version))
    }

    pub(super) fn insert(&self, c: &Connection, tokens: &TokenSet) {
        let mut kept = tokens.clone();
        kept.refresh_token = None;
        self.documents.insert((c.id.to_string(), c.version), kept);
    }

    /// The in-process gate of one connection's refresh.
    pub(super) fn gate(&self, connection_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut gates = self.refreshing.lock().unwrap_or_else(|e| e.into_inner());
        if gates.len() > 4096 {
            // Gates nobody holds or waits on can go; a held one stays shared.
            gates.retain(|_, g| Arc::strong_count(g) > 1);
        }
        gates.entry(connection_id.to_string()).or_default().clone()
    }
}

/// The current token document of `c`, from this process's cache when it holds that version.
pub(super) async fn document(app: &App, c: &Connection) -> Result<TokenSet> {
    if let Some(tokens) = app.documents.get(c) {
        return Ok(tokens);
    }
    let tokens = read_current(app, c).await?;
    app.documents.insert(c, &tokens);
    Ok(tokens)
}

/// The newest token document (with the refresh token): the sealed one the connection carries
/// when the vault refused the last write, else the vault's.
pub(super) async fn read_current(app: &App, c: &Connection) -> Result<TokenSet> {
    let raw = match &c.sealed_document {
        Some(sealed) => app.vault.sealer().await?.open(&sealing_place(c), sealed)?,
        None => {
            let name = names::connection(&app.config.secret_prefix, &c.organization_id, &c.id);
            app.vault.get_secret(&name).await?.ok_or_else(|| {
                Error::internal(format!("connection {} has no token document", c.id))
            })?
        }
    };
    serde_json::from_str(raw.expose())
        .map_err(|_| Error::internal(format!("token document of {} is not a token set", c.id)))
}

/// Where a sealed document is kept: the connection's item, so it opens nowhere else.
pub(super) fn sealing_place(c: &Connection) -> String {
    format!("CONN#{}#{}", c.organization_id, c.id)
}
