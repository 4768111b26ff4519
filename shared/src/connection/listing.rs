//! Listing an organization's connections, newest first, a page at a time (DESIGN §4.5).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::{Connection, ConnectionStatus, ConnectionStore};
use crate::auth::Caller;
use crate::crypto::sha256_hex;
use crate::{Error, OrgId, Result};

pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 100;

/// What the caller asked to see.
#[derive(Debug, Clone, Default)]
pub struct ListFilters {
    pub workspace_id: Option<String>,
    pub provider: Option<String>,
    pub status: Option<ConnectionStatus>,
    /// A connect session's `end_user.id`.
    pub end_user_id: Option<String>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

/// What a backend is asked: one organization, the workspaces the caller may see (`None`: all of
/// them), the filters, and where the previous page ended.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub organization_id: OrgId,
    pub workspaces: Option<Vec<String>>,
    pub provider: Option<String>,
    pub status: Option<ConnectionStatus>,
    pub end_user_id: Option<String>,
    /// Only connections whose [`list_key`] sorts before this one.
    pub before: Option<String>,
    pub limit: usize,
}

impl ListQuery {
    /// Whether `c` passes the filters (backends that filter after reading use it).
    pub fn admits(&self, c: &Connection) -> bool {
        c.organization_id == self.organization_id
            && self.workspaces.as_ref().is_none_or(|ws| {
                ws.iter()
                    .any(|w| Some(w.as_str()) == c.workspace_id.as_deref())
            })
            && self.provider.as_ref().is_none_or(|p| *p == c.provider)
            && self.status.is_none_or(|s| s == c.status)
            && (self.end_user_id.is_none() || self.end_user_id == c.end_user_id)
            && self.before.as_ref().is_none_or(|b| list_key(c) < *b)
    }
}

pub struct Page {
    pub connections: Vec<Connection>,
    pub next_cursor: Option<String>,
}

/// The listing order: creation time, then id; unique, so "before this key" is a position.
pub fn list_key(c: &Connection) -> String {
    format!("{:020}#{}", c.created_at.max(0), c.id)
}

/// One page of the caller's connections. A workspace-limited key sees its workspaces only.
pub async fn list(
    store: &dyn ConnectionStore,
    caller: &Caller,
    filters: ListFilters,
) -> Result<Page> {
    let limit = filters.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(Error::field("limit", format!("must be 1 to {MAX_LIMIT}")));
    }
    let workspaces = match &filters.workspace_id {
        Some(ws) => {
            caller.require_workspace(ws)?;
            Some(vec![ws.clone()])
        }
        None if caller.workspaces.is_empty() => None,
        None => Some(caller.workspaces.clone()),
    };
    // The cursor is bound to what it pages through: the organization and the filters.
    let scope = sha256_hex(
        &serde_json::json!([
            caller.organization_id,
            workspaces,
            filters.provider,
            filters.status,
            filters.end_user_id
        ])
        .to_string(),
    );
    let before = filters
        .cursor
        .as_deref()
        .map(|c| open_cursor(c, &scope))
        .transpose()?;
    let query = ListQuery {
        organization_id: caller.organization_id.clone(),
        workspaces,
        provider: filters.provider,
        status: filters.status,
        end_user_id: filters.end_user_id,
        before,
        limit,
    };
    let (connections, more) = store.list_connections(&query).await?;
    let next_cursor = match connections.last() {
        Some(last) if more => Some(seal_cursor(&list_key(last), &scope)),
        _ => None,
    };
    Ok(Page {
        connections,
        next_cursor,
    })
}

/// `base64url(key . check)`, the check tying the key to the scope it was issued for. Not secret:
/// a position in the caller's own listing reveals nothing; the check refuses a cursor edited, or
/// replayed by another organization or with other filters.
fn seal_cursor(key: &str, scope: &str) -> String {
    let check = &sha256_hex(&format!("{scope}|{key}"))[..32];
    URL_SAFE_NO_PAD.encode(format!("{key}.{check}"))
}

fn open_cursor(cursor: &str, scope: &str) -> Result<String> {
    let bad = || Error::field("cursor", "is not a cursor of this listing");
    let raw = URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(bad)?;
    let (key, _) = raw.rsplit_once('.').ok_or_else(bad)?;
    if cursor.len() > 512 || seal_cursor(key, scope) != cursor {
        return Err(bad());
    }
    Ok(key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_opens_only_in_its_own_scope_and_unedited() {
        let sealed = seal_cursor("00000000000000000042#conn_1", "scope-a");
        assert_eq!(
            open_cursor(&sealed, "scope-a").unwrap(),
            "00000000000000000042#conn_1"
        );
        assert!(open_cursor(&sealed, "scope-b").is_err());
        let edited = seal_cursor("00000000000000000041#conn_1", "scope-a");
        let mut forged = URL_SAFE_NO_PAD
            .decode(&sealed)
            .map(|b| String::from_utf8(b).unwrap())
            .unwrap();
        forged.replace_range(..20, "00000000000000000041");
        assert_ne!(URL_SAFE_NO_PAD.encode(&forged), edited);
        assert!(open_cursor(&URL_SAFE_NO_PAD.encode(&forged), "scope-a").is_err());
        assert!(open_cursor("not base64 !", "scope-a").is_err());
    }
}
