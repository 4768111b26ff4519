//! The keep-alive sweep: the due connections, soonest first, each refreshed through the token
//! route's lease or announced (`connection.expiring`), and put back on the schedule.

use std::time::Instant;

use serde::Serialize;

use super::keepalive::{KeepAlive, SWEEP_BATCH, SWEEP_INTERVAL_SECS};
use super::{Change, Connection, ConnectionStatus, Transition, refresh};
use crate::{App, Result};

/// What a sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub examined: usize,
    pub refreshed: usize,
    pub warned: usize,
    pub failed: usize,
    /// Due connections left for the next run (the batch or the time ran out).
    pub left: bool,
}

/// One sweep at `app`'s clock: the due connections, oldest first, until `until`.
pub async fn sweep(app: &App, until: Instant) -> Result<SweepReport> {
    let now = app.clock.now();
    let due = app.connections.due_for_sweep(now, SWEEP_BATCH).await?;
    let mut report = SweepReport {
        left: due.len() == SWEEP_BATCH,
        ..SweepReport::default()
    };
    for c in due {
        if Instant::now() >= until {
            report.left = true;
            break;
        }
        report.examined += 1;
        match sweep_one(app, c, now).await {
            Ok(Swept { refreshed, warned }) => {
                report.refreshed += usize::from(refreshed);
                report.warned += usize::from(warned);
            }
            Err(e) => {
                report.failed += 1;
                tracing::warn!(error = %e, "sweep: connection not kept alive");
            }
        }
    }
    tracing::info!(
        examined = report.examined,
        refreshed = report.refreshed,
        warned = report.warned,
        failed = report.failed,
        "sweep done"
    );
    Ok(report)
}

struct Swept {
    refreshed: bool,
    warned: bool,
}

async fn sweep_one(app: &App, c: Connection, now: i64) -> Result<Swept> {
    let mut swept = Swept {
        refreshed: false,
        warned: false,
    };
    if !ConnectionStatus::USABLE.contains(&c.status) {
        return Ok(swept);
    }
    let keepalive = c.keepalive.clone().unwrap_or_default();
    let refresh_due = keepalive.refresh_token
        && (c
            .token_expires_at
            .is_some_and(|e| e - now <= app.config.refresh_margin_secs + SWEEP_INTERVAL_SECS)
            || c.last_refreshed_at.unwrap_or(c.created_at) + app.config.keepalive_days * 86_400
                <= now);
    let mut c = c;
    if let Some(expiry) = keepalive.notice_due(c.token_expires_at, now) {
        let warned = KeepAlive {
            warned_for: Some(expiry),
            ..keepalive.clone()
        };
        let refreshed_at = c.last_refreshed_at.unwrap_or(c.created_at);
        let next = warned.schedule(&app.config, c.token_expires_at, refreshed_at);
        c = app
            .connections
            .transition(&reschedule(app, &c, KeepAlive { next, ..warned }))
            .await?;
        swept.warned = true;
    }
    if refresh_due {
        // The same single-flight refresh as the token route: under the lease, once.
        refresh::fresh(app, c, true).await?;
        swept.refreshed = true;
    } else if !swept.warned {
        // Looked at early (an older schedule): put it where it belongs.
        let refreshed_at = c.last_refreshed_at.unwrap_or(c.created_at);
        let next = keepalive.schedule(&app.config, c.token_expires_at, refreshed_at);
        if next != keepalive.next {
            app.connections
                .transition(&reschedule(app, &c, KeepAlive { next, ..keepalive }))
                .await?;
        }
    }
    Ok(swept)
}

/// A transition that keeps the status and sets the keep-alive record, fenced by the version read.
fn reschedule(app: &App, c: &Connection, keepalive: KeepAlive) -> Transition {
    let change = Change {
        keepalive: Some(keepalive),
        ..Change::default()
    };
    refresh::keep_status(app, c, change)
}
