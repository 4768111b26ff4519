//! Ending a connection (DESIGN §4.5 `DELETE`): the connection becomes a `revoked` tombstone, the
//! provider is asked to revoke its tokens where the entry allows it, and the secret is deleted,
//! whatever the provider said. A repeated delete answers the same.

use std::time::Instant;

use super::document::read_current;
use super::refresh::{POLL, WAIT, reread};
use super::{Connection, ConnectionStatus, Transition, access};
use crate::auth::Caller;
use crate::provider::{Provider, RevocationOutcome, TokenSet, TokenSettings};
use crate::vault::names;
use crate::{App, ConnectionId, Error, Result};

/// How long a revoked connection is kept for the platform to read, before its TTL removes it.
pub const TOMBSTONE_SECS: i64 = 30 * 24 * 3600;

/// What a delete answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub connection_id: ConnectionId,
    pub provider_revocation: RevocationOutcome,
}

/// Revokes the caller's connection `id`: first the tombstone (so no refresh starts after it),
/// then the provider, then the secret, then the outcome recorded for a repeated delete.
pub async fn revoke(app: &App, caller: &Caller, id: &ConnectionId) -> Result<Revocation> {
    let connection = access::get(app.connections.as_ref(), caller, id).await?;
    if let (ConnectionStatus::Revoked, Some(outcome)) =
        (connection.status, connection.provider_revocation)
    {
        return Ok(Revocation {
            connection_id: connection.id,
            provider_revocation: outcome,
        });
    }
    let revoked = take(app, connection).await?;
    let outcome = at_provider(app, &revoked).await?;
    let name = names::connection(
        &app.config.secret_prefix,
        &revoked.organization_id,
        &revoked.id,
    );
    app.vault.delete_secret(&name).await?;
    let mut recorded = Transition::new(
        &revoked.organization_id,
        &revoked.id,
        &[ConnectionStatus::Revoked],
        ConnectionStatus::Revoked,
        app.clock.now(),
    );
    recorded.change.provider_revocation = Some(outcome);
    recorded.change.sealed_document = revoked.sealed_document.as_ref().map(|_| None);
    app.connections.transition(&recorded).await?;
    tracing::info!(connection_id = %revoked.id, provider = %revoked.provider, provider_revocation = outcome.as_str(), "connection revoked");
    Ok(Revocation {
        connection_id: revoked.id,
        provider_revocation: outcome,
    })
}

/// The connection as a `revoked` tombstone, fenced by the version read. A refresh holding the
/// lease is waited for (bounded), so its new tokens are the ones revoked and no refresh reaches
/// the provider after the revocation; a refresh that starts later finds the tombstone.
async fn take(app: &App, mut c: Connection) -> Result<Connection> {
    let deadline = Instant::now() + WAIT;
    loop {
        if c.status == ConnectionStatus::Revoked {
            // A delete that stopped before recording its outcome: finish it.
            return Ok(c);
        }
        let now = app.clock.now();
        if c.refresh_lease.as_ref().is_some_and(|l| l.until > now) && Instant::now() < deadline {
            tokio::time::sleep(POLL).await;
            c = reread(app, &c).await?;
            continue;
        }
        let mut t = Transition::new(
            &c.organization_id,
            &c.id,
            ConnectionStatus::NOT_REVOKED,
            ConnectionStatus::Revoked,
            now,
        );
        t.version = Some(c.version);
        t.change.expires_at = Some(now + TOMBSTONE_SECS);
        t.change.release_lease = true;
        match app.connections.transition(&t).await {
            Ok(revoked) => return Ok(revoked),
            Err(Error::Conflict(_)) => c = reread(app, &c).await?,
            Err(e) => return Err(e),
        }
    }
}

/// Asks the provider to revoke the connection's tokens. Only an unavailable vault stops the
/// delete (it is retried); anything the provider does is an outcome.
async fn at_provider(app: &App, c: &Connection) -> Result<RevocationOutcome> {
    let Some(url) = c.endpoints.as_ref().and_then(|e| e.revocation_url.clone()) else {
        return Ok(RevocationOutcome::NotSupported);
    };
    let Ok(provider) = app.catalog.resolve(&c.provider) else {
        return Ok(RevocationOutcome::Failed);
    };
    if c.secret_id.is_none() && c.sealed_document.is_none() {
        // Never authorized: there is no grant to end.
        return Ok(RevocationOutcome::Revoked);
    }
    let tokens = match read_current(app, c).await {
        Ok(tokens) => tokens,
        Err(e @ Error::Unavailable(_)) => return Err(e),
        Err(_) => {
            // Deleted by an earlier attempt that did not record what the provider said.
            tracing::warn!(connection_id = %c.id, "no tokens left to revoke at the provider");
            return Ok(RevocationOutcome::Failed);
        }
    };
    revoke_grant(
        app,
        provider,
        &url,
        c.token_settings,
        (&c.organization_id, c.workspace_id.as_deref()),
        &tokens,
    )
    .await
}

/// Asks the provider at `url` to revoke `tokens`, authenticated as the app configured for
/// `(organization, workspace)`. Only an unavailable vault is an error (the caller retries);
/// a missing app or anything the provider does is an outcome.
pub async fn revoke_grant(
    app: &App,
    provider: &Provider,
    url: &str,
    settings: Option<TokenSettings>,
    (organization_id, workspace_id): (&str, Option<&str>),
    tokens: &TokenSet,
) -> Result<RevocationOutcome> {
    let credentials = match app
        .apps
        .credentials(&provider.slug, organization_id, workspace_id)
        .await
    {
        Ok(credentials) => credentials,
        Err(e @ Error::Unavailable(_)) => return Err(e),
        Err(_) => return Ok(RevocationOutcome::Failed),
    };
    app.tokens
        .revoke(provider, url, settings, &credentials, tokens)
        .await
}
