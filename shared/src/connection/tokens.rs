use crate::crypto::sha256_hex;
use crate::provider::TokenSet;
use crate::secret::Sensitive;
use crate::vault::{Vault, names};
use crate::{ConnectionId, Error, OrgId, Result};

/// Whose tokens a document holds: the secret's name and tags come from it.
#[derive(Debug, Clone, Copy)]
pub struct TokenOwner<'a> {
    pub organization_id: &'a OrgId,
    pub workspace_id: Option<&'a str>,
    pub provider: &'a str,
    pub connection_id: &'a ConnectionId,
}

/// Writes a connection's token document to the vault and returns the secret's id. `idempotency`
/// names the event that produced the tokens (a flow, an import): a retried write of the same
/// tokens is then one version, not two.
pub async fn write_tokens(
    vault: &dyn Vault,
    secret_prefix: &str,
    owner: TokenOwner<'_>,
    tokens: &TokenSet,
    idempotency: &str,
) -> Result<String> {
    let name = names::connection(secret_prefix, owner.organization_id, owner.connection_id);
    let document = Sensitive::new(serde_json::to_string(tokens).map_err(Error::internal)?);
    let tags = [
        ("organization", owner.organization_id.as_str()),
        ("workspace", owner.workspace_id.unwrap_or("-")),
        ("provider", owner.provider),
    ];
    vault
        .put_secret(&name, &document, &tags, &sha256_hex(idempotency))
        .await
}

/// A token response's `scope` as a list (providers separate with spaces or commas).
pub fn granted_scopes(scope: &str) -> Vec<String> {
    scope
        .split([' ', ','])
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

impl<'a> TokenOwner<'a> {
    pub fn of(c: &'a super::Connection) -> Self {
        TokenOwner {
            organization_id: &c.organization_id,
            workspace_id: c.workspace_id.as_deref(),
            provider: &c.provider,
            connection_id: &c.id,
        }
    }
}

/// A new version of an existing token document (a refresh): `idempotency` names the refresh, so
/// a retried write is one version.
pub async fn rewrite_tokens(
    vault: &dyn Vault,
    secret_prefix: &str,
    owner: TokenOwner<'_>,
    tokens: &TokenSet,
    idempotency: &str,
) -> Result<()> {
    let name = names::connection(secret_prefix, owner.organization_id, owner.connection_id);
    let document = Sensitive::new(serde_json::to_string(tokens).map_err(Error::internal)?);
    vault
        .update_secret(&name, &document, &sha256_hex(idempotency))
        .await
}
