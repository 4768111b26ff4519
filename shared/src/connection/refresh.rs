//! Refresh, single-flight across every process (DESIGN §9.5): a lease on the connection item,
//! taken by a transition fenced by the version; the holder reads the refresh token from the vault,
//! asks the provider, persists the new document (keeping the old refresh token when none is
//! returned), then releases the lease in the transition that records the result. Everyone else
//! waits a bounded time and reads that result. A rotated refresh token is never sent twice.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::document::{document, read_current, sealing_place};
use super::keepalive::SWEEP_INTERVAL_SECS;
use super::{
    Change, Connection, ConnectionStatus, KeepAlive, Lease, TokenOwner, Transition, granted_scopes,
    rewrite_tokens,
};
use crate::crypto::{Sealer, random_token};
use crate::provider::{Endpoints, Provider, Refresh, TokenSet};
use crate::vault::AppCredentials;
use crate::{App, Error, Result};

/// How long a holder may take: above the token client's 10 s timeout and the vault write, so a
/// live holder never sees its lease lapse; a crashed one blocks others at most this long.
pub const LEASE_SECS: i64 = 30;
/// After a failed refresh, no new attempt for this long (no refresh storms).
pub const RETRY_AFTER_FAILURE_SECS: i64 = 30;
/// How long a caller waits for another's refresh before answering without it.
pub(super) const WAIT: Duration = Duration::from_secs(12);
pub(super) const POLL: Duration = Duration::from_millis(100);

/// The connection's current token document, refreshed first when due; `true` when this call
/// refreshed it.
pub(super) async fn fresh(
    app: &App,
    connection: Connection,
    force: bool,
) -> Result<(TokenSet, bool)> {
    require_usable(&connection)?;
    if !due(app, &connection, force, app.clock.now()) && connection.sealed_document.is_none() {
        return Ok((document(app, &connection).await?, false));
    }
    let arrived = connection.version;
    // One decision at a time in this process; the others find its result when they get in.
    let gate = app.documents.gate(&connection.id);
    let (_held, mut waited) = match gate.try_lock() {
        Ok(held) => (held, false),
        Err(_) => (gate.lock().await, true),
    };
    let owner = random_token()?;
    let deadline = Instant::now() + WAIT;
    let mut connection = reread(app, &connection).await?;
    loop {
        require_usable(&connection)?;
        let now = app.clock.now();
        // A caller that waited for another's refresh takes its result, even when forced: 50
        // forced callers at once are one refresh, five in a row are five.
        let other_refreshed = waited && connection.version != arrived;
        let due = due(app, &connection, force && !other_refreshed, now);
        if !due && connection.sealed_document.is_none() {
            return Ok((document(app, &connection).await?, false));
        }
        let expired = connection.token_expires_at.is_some_and(|e| e <= now);
        if due && connection.refresh_retry_at.is_some_and(|t| t > now) {
            // Backing off after a failure: a token that still works is still handed out.
            return if expired {
                Err(Error::ProviderFailed {
                    error: "refresh_failed_recently".into(),
                })
            } else {
                Ok((document(app, &connection).await?, false))
            };
        }
        match &connection.refresh_lease {
            Some(lease) if lease.owner == owner => {
                return refresh_held(app, connection, due, &owner).await;
            }
            Some(lease) if lease.until > now => {
                if Instant::now() >= deadline {
                    return if expired {
                        Err(Error::Unavailable(
                            "another refresh of this connection is still running".into(),
                        ))
                    } else {
                        Ok((document(app, &connection).await?, false))
                    };
                }
                waited = true;
                tokio::time::sleep(POLL).await;
                connection = reread(app, &connection).await?;
            }
            // Free, or lapsed (its holder died): take it, fenced by the version just read.
            _ => match take_lease(app, &connection, &owner, now).await {
                Ok(leased) => return refresh_held(app, leased, due, &owner).await,
                Err(Error::Conflict(_)) => connection = reread(app, &connection).await?,
                Err(e) => return Err(e),
            },
        }
    }
}

/// Whether the connection's tokens may be handed out at all.
pub(super) fn require_usable(c: &Connection) -> Result<()> {
    match c.status {
        ConnectionStatus::Authorized | ConnectionStatus::Active => Ok(()),
        ConnectionStatus::ReauthorizationRequired => Err(Error::ReauthorizationRequired),
        ConnectionStatus::Revoked => Err(Error::NotFound("connection".into())),
        ConnectionStatus::Pending | ConnectionStatus::Failed => {
            Err(Error::Conflict("the connection holds no tokens"))
        }
    }
}

/// Due: forced, or the token expires within the margin. A token of unknown expiry is not.
fn due(app: &App, c: &Connection, force: bool, now: i64) -> bool {
    force
        || c.token_expires_at
            .is_some_and(|e| e - now <= app.config.refresh_margin_secs)
}

pub(super) async fn reread(app: &App, c: &Connection) -> Result<Connection> {
    app.connections
        .get_connection(&c.organization_id, &c.id)
        .await?
        .ok_or_else(|| Error::NotFound("connection".into()))
}

/// A transition that keeps the status, fenced by the version `c` was read at.
pub(super) fn keep_status(app: &App, c: &Connection, change: Change) -> Transition {
    let mut t = Transition::new(
        &c.organization_id,
        &c.id,
        ConnectionStatus::USABLE,
        c.status,
        app.clock.now(),
    );
    t.version = Some(c.version);
    t.change = change;
    t
}

async fn take_lease(app: &App, c: &Connection, owner: &str, now: i64) -> Result<Connection> {
    let lease = Change {
        refresh_lease: Some(Lease {
            owner: owner.to_string(),
            until: now + LEASE_SECS,
        }),
        ..Change::default()
    };
    app.connections
        .transition(&keep_status(app, c, lease))
        .await
}

/// Under the lease: a sealed document written to the vault first; then, when `due`, the refresh
/// token from the vault, the provider's answer, the result persisted and the lease released in
/// one fenced transition. Whatever fails before the provider is asked releases the lease at once,
/// so a missing app credential or a vault outage does not hold other callers for the lease's life.
async fn refresh_held(
    app: &App,
    leased: Connection,
    due: bool,
    owner: &str,
) -> Result<(TokenSet, bool)> {
    let Prepared {
        current,
        sealer,
        provider,
        endpoints,
        credentials,
    } = match prepare(app, &leased).await {
        Ok(prepared) => prepared,
        Err(e) => {
            release(app, &leased, leased.status, Change::default()).await?;
            return Err(e);
        }
    };
    if !due {
        // Only a sealed document to put where it belongs.
        let change = persist(app, &leased, &current, &sealer).await?;
        let after = release(app, &leased, leased.status, change).await?;
        app.documents.insert(&after, &current);
        return Ok((current, false));
    }
    let now = app.clock.now();
    let expired = leased.token_expires_at.is_some_and(|e| e <= now);
    let Some(refresh_token) = current.refresh_token.clone() else {
        // Nothing to refresh with: the token is used until it expires, then the user reconnects.
        let to = if expired {
            ConnectionStatus::ReauthorizationRequired
        } else {
            leased.status
        };
        release(app, &leased, to, Change::default()).await?;
        return if expired {
            Err(Error::ReauthorizationRequired)
        } else {
            Ok((current, false))
        };
    };
    let answer = app
        .tokens
        .refresh(
            app.clock.now(),
            provider,
            &endpoints,
            leased.token_settings,
            &credentials,
            refresh_token.expose(),
        )
        .await;
    match answer {
        Ok(mut tokens) => {
            let now = app.clock.now();
            // A new refresh token restarts the provider's lifetime count; the same one does not,
            // nor does any from an entry whose refresh tokens are reusable: their end is fixed at
            // consent (Spotify's six months), whatever a refresh sends back.
            let restarts = provider.refresh != Some(Refresh::Reusable)
                && tokens.refresh_token.as_ref().is_some_and(|new| {
                    current.refresh_token.as_ref().map(|old| old.expose()) != Some(new.expose())
                });
            // Providers that do not rotate answer without a refresh token: the old one stays.
            if tokens.refresh_token.is_none() {
                tokens.refresh_token = current.refresh_token;
            }
            if tokens.scope.is_none() {
                tokens.scope = current.scope;
            }
            let mut metadata = current.metadata;
            metadata.append(&mut tokens.metadata);
            tokens.metadata = metadata;
            // Persisted before the lease goes: a rotated refresh token is never lost or reused.
            let kept = persist(app, &leased, &tokens, &sealer).await?;
            let change = Change {
                token_expires_at: Some(tokens.expires_at),
                scopes: tokens.scope.as_deref().map(granted_scopes),
                metadata: Some(tokens.metadata.clone()),
                last_refreshed_at: Some(now),
                refresh_failures: Some(0),
                keepalive: Some(match &leased.keepalive {
                    Some(k) if !restarts => k.refreshed(&app.config, &tokens, now),
                    _ => KeepAlive::issued(&app.config, Some(provider), &tokens, now),
                }),
                ..kept
            };
            let after = release(app, &leased, leased.status, change).await?;
            app.documents.insert(&after, &tokens);
            tracing::info!(connection_id = %leased.id, provider = %leased.provider, owner = %&owner[..8], "tokens refreshed");
            Ok((tokens, true))
        }
        Err(Error::ProviderFailed { error }) if error == "invalid_grant" => {
            let change = Change {
                refresh_failures: Some(leased.refresh_failures + 1),
                ..Change::default()
            };
            release(
                app,
                &leased,
                ConnectionStatus::ReauthorizationRequired,
                change,
            )
            .await?;
            tracing::warn!(connection_id = %leased.id, provider = %leased.provider, "refresh token refused: reauthorization required");
            Err(Error::ReauthorizationRequired)
        }
        Err(e) => {
            let now = app.clock.now();
            let change = Change {
                refresh_failures: Some(leased.refresh_failures + 1),
                refresh_retry_at: Some(now + RETRY_AFTER_FAILURE_SECS),
                // The sweep tries again at its next run, behind what else is due.
                keepalive: leased.keepalive.clone().map(|k| KeepAlive {
                    next: Some(now + SWEEP_INTERVAL_SECS),
                    ..k
                }),
                ..Change::default()
            };
            let after = release(app, &leased, leased.status, change).await?;
            tracing::warn!(connection_id = %leased.id, provider = %leased.provider, error = %e, failures = after.refresh_failures, "refresh failed");
            if expired {
                Err(e)
            } else {
                Ok((document(app, &after).await?, false))
            }
        }
    }
}

/// What a refresh needs before it may ask the provider.
struct Prepared<'a> {
    /// The current document, with the refresh token.
    current: TokenSet,
    /// Loaded now, while the vault answers, so that a failed write of the provider's answer can
    /// be sealed from memory.
    sealer: Arc<Sealer>,
    provider: &'a Provider,
    endpoints: Endpoints,
    credentials: AppCredentials,
}

async fn prepare<'a>(app: &'a App, leased: &Connection) -> Result<Prepared<'a>> {
    let current = read_current(app, leased).await?;
    let sealer = app.vault.sealer().await?;
    let provider = app.catalog.resolve(&leased.provider)?;
    let endpoints = leased.endpoints.clone().ok_or_else(|| {
        Error::internal(format!("connection {} kept no token endpoint", leased.id))
    })?;
    let credentials = app
        .apps
        .credentials(
            &provider.slug,
            &leased.organization_id,
            leased.workspace_id.as_deref(),
        )
        .await?;
    Ok(Prepared {
        current,
        sealer,
        provider,
        endpoints,
        credentials,
    })
}

/// Writes `tokens` to the vault as the connection's new document. When the vault refuses (down,
/// throttled), they are sealed into the change instead, to ride on the lease's release and be
/// written under the next lease: tokens the provider has issued are never dropped.
async fn persist(
    app: &App,
    leased: &Connection,
    tokens: &TokenSet,
    sealer: &Sealer,
) -> Result<Change> {
    let written = rewrite_tokens(
        app.vault.as_ref(),
        &app.config.secret_prefix,
        TokenOwner::of(leased),
        tokens,
        &format!("refresh:{}:{}", leased.id, leased.version),
    )
    .await;
    let sealed_document = match written {
        Ok(()) => leased.sealed_document.as_ref().map(|_| None),
        Err(e @ (Error::Unavailable(_) | Error::Internal(_))) => {
            tracing::warn!(connection_id = %leased.id, error = %e, "vault write failed: the new tokens stay sealed on the connection until the next lease writes them");
            let document = crate::secret::Sensitive::new(
                serde_json::to_string(tokens).map_err(Error::internal)?,
            );
            Some(Some(sealer.seal(&sealing_place(leased), &document)?))
        }
        Err(e) => return Err(e),
    };
    Ok(Change {
        sealed_document,
        ..Change::default()
    })
}

/// Records the refresh's outcome and releases the lease, fenced by the leased version: a holder
/// whose lease lapsed and was taken over writes nothing.
async fn release(
    app: &App,
    leased: &Connection,
    to: ConnectionStatus,
    mut change: Change,
) -> Result<Connection> {
    change.release_lease = true;
    let mut t = keep_status(app, leased, change);
    t.to = to;
    app.connections.transition(&t).await
}
