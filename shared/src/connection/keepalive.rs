//! Keep-alive: a sweep ([`super::sweep`]), every 15 minutes, refreshes connections nobody asks for before their token
//! expires or their refresh token dies of disuse, and warns (`connection.expiring`) before a
//! refresh token reaches a provider's hard limit or a token without a refresh token expires.
//!
//! Each usable connection carries when the sweep should next look at it ([`KeepAlive::next`]);
//! both backends index that time (DynamoDB: a sparse index spread over a few keys), so a sweep
//! reads only what is due, oldest first, a bounded number per run. The time is fixed where the
//! inputs change: tokens stored (callback, import, refresh), a failed refresh, a warning sent.

use serde::{Deserialize, Serialize};

use crate::Config;
use crate::provider::{Provider, TokenSet};

/// How often the schedule runs the sweep (template.yaml, `serve`).
pub const SWEEP_INTERVAL_SECS: i64 = 900;
/// Connections a sweep looks at, at most.
pub const SWEEP_BATCH: usize = 200;
/// A refresh token's hard limit is announced this long before.
pub const REFRESH_TOKEN_NOTICE_SECS: i64 = 7 * 86_400;
/// A token with no refresh token is announced this long before it expires.
pub const ACCESS_TOKEN_NOTICE_SECS: i64 = 86_400;

/// What the sweep knows of a connection's tokens (never a token).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeepAlive {
    /// When the sweep looks next (epoch seconds); `None`: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<i64>,
    /// Whether the vault holds a refresh token.
    #[serde(default)]
    pub refresh_token: bool,
    /// When the refresh token dies whatever is done (the catalog's `refresh_token_lifetime_days`
    /// from its issue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_expires_at: Option<i64>,
    /// The expiry a `connection.expiring` was sent for: sent once per expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warned_for: Option<i64>,
}

impl KeepAlive {
    /// For tokens just received from the provider at `now` (a code, an import, or a refresh that
    /// returned a new refresh token: the limit counts from the newest one).
    pub fn issued(
        config: &Config,
        provider: Option<&Provider>,
        tokens: &TokenSet,
        now: i64,
    ) -> Self {
        let lifetime = provider.and_then(|p| p.refresh_token_lifetime_days);
        let mut k = KeepAlive {
            next: None,
            refresh_token: tokens.refresh_token.is_some(),
            // The provider's own word first (Intuit's `x_refresh_token_expires_in`), else the
            // catalog's lifetime from now.
            refresh_token_expires_at: tokens.refresh_token_expires_at.or(lifetime
                .filter(|_| tokens.refresh_token.is_some())
                .map(|days| now + i64::from(days) * 86_400)),
            warned_for: None,
        };
        k.next = k.schedule(config, tokens.expires_at, now);
        k
    }

    /// After a refresh at `now` that kept the refresh token it was sent (its end moves only
    /// where the provider says so).
    pub fn refreshed(&self, config: &Config, tokens: &TokenSet, now: i64) -> Self {
        let mut k = self.clone();
        if let Some(at) = tokens.refresh_token_expires_at {
            k.refresh_token_expires_at = Some(at);
        }
        k.next = k.schedule(config, tokens.expires_at, now);
        k
    }

    /// The expiry worth a `connection.expiring` at `now`, if one is due and not yet sent.
    pub fn notice_due(&self, token_expires_at: Option<i64>, now: i64) -> Option<i64> {
        let (expiry, notice) = if self.refresh_token {
            (self.refresh_token_expires_at?, REFRESH_TOKEN_NOTICE_SECS)
        } else {
            (token_expires_at?, ACCESS_TOKEN_NOTICE_SECS)
        };
        (expiry - notice <= now && self.warned_for != Some(expiry)).then_some(expiry)
    }

    /// When the sweep must look next: before the token enters the refresh margin, when the
    /// refresh token has been idle for `BROKER_KEEPALIVE_DAYS`, when a notice falls due.
    pub(super) fn schedule(
        &self,
        config: &Config,
        expires_at: Option<i64>,
        refreshed_at: i64,
    ) -> Option<i64> {
        let mut times = Vec::new();
        if self.refresh_token {
            if let Some(e) = expires_at {
                times.push(e - config.refresh_margin_secs - SWEEP_INTERVAL_SECS);
            }
            times.push(refreshed_at + config.keepalive_days * 86_400);
            if let Some(limit) = self.refresh_token_expires_at
                && self.warned_for != Some(limit)
            {
                times.push(limit - REFRESH_TOKEN_NOTICE_SECS);
            }
        } else if let Some(e) = expires_at
            && self.warned_for != Some(e)
        {
            times.push(e - ACCESS_TOKEN_NOTICE_SECS);
        }
        times.into_iter().min()
    }
}
