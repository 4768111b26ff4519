//! Keep-alive (issue 15, item 5), on both backends: the sweep refreshes, under the same lease as
//! the token route, a connection whose token enters the margin with no caller asking, and one
//! idle for `BROKER_KEEPALIVE_DAYS`; it announces a refresh token's hard limit
//! (`refresh_token_lifetime_days`) with one `connection.expiring`, not one per sweep; it reads
//! only what is due (an index), and leaves revoked connections alone.

use std::time::{Duration, Instant};

use broker::connection::{SweepReport, sweep};
use broker::events::stream::deliver_records;
use broker::events::{EventType, Pump, pump_once};
use broker::store::embedded::{Db, EmbeddedStore};
use broker_tests::harness::FakeEntry;
use broker_tests::stream::{self, Dlq};
use broker_tests::webhook_receiver::Receiver;
use broker_tests::{Backend, Broker, Knobs, on_both_backends};

on_both_backends!(
    a_token_entering_the_margin_is_refreshed_by_the_sweep_with_no_caller,
    an_idle_connection_is_refreshed_after_the_configured_days,
    a_refresh_token_near_its_hard_limit_is_announced_once,
    a_rotated_refresh_token_restarts_the_limit_a_reusable_one_does_not,
    a_revoked_connection_is_not_swept,
);

async fn run_sweep(broker: &Broker) -> SweepReport {
    sweep(&broker.app, Instant::now() + Duration::from_secs(10))
        .await
        .expect("sweep")
}

/// An active connection whose tokens last `expires_in` seconds (no rotation unless asked).
async fn active_connection(broker: &Broker) -> String {
    let (id, state_token) = broker.authorized_personal_connection().await;
    assert_eq!(broker.complete_personal(&state_token).await.0, 200);
    id
}

async fn a_token_entering_the_margin_is_refreshed_by_the_sweep_with_no_caller(backend: Backend) {
    // Given an active connection whose token lasts an hour (margin 300 s, sweep every 900 s)
    let broker = Broker::start(backend).await;
    let id = active_connection(&broker).await;
    let before = broker.connection(&id).await;

    // When the sweep runs while the token has long to live: nothing is due
    assert_eq!(run_sweep(&broker).await.examined, 0);
    assert!(broker.provider.ledger().refreshes().is_empty());

    // and again once the token would enter the margin before the next sweep
    broker.app.clock.advance(3600 - 300 - 900);
    let swept_from = broker.app.clock.now();
    let report = run_sweep(&broker).await;

    // Then it was refreshed once, by the sweep alone, and its next look moved past this run
    assert_eq!(
        (report.examined, report.refreshed, report.failed),
        (1, 1, 0),
        "{report:?}"
    );
    assert_eq!(broker.provider.ledger().refreshes().len(), 1);
    let after = broker.connection(&id).await;
    assert!(after.token_expires_at > before.token_expires_at);
    // during this sweep (the clock is real time: a second may tick while it runs)
    let swept = swept_from..=broker.app.clock.now();
    assert!(
        after.last_refreshed_at.is_some_and(|t| swept.contains(&t)),
        "{:?} not in {swept:?}",
        after.last_refreshed_at
    );
    assert!(after.refresh_lease.is_none(), "the lease is released");
    let next = after.keepalive.as_ref().and_then(|k| k.next).unwrap();
    assert!(next > broker.app.clock.now());
    // and the caller gets the sweep's token without another refresh
    let (status, token) = broker.token(&id, false).await;
    assert_eq!(status, 200);
    assert_eq!(
        token["access_token"],
        broker
            .provider
            .ledger()
            .issued_tokens()
            .last()
            .unwrap()
            .as_str()
    );
    assert_eq!(run_sweep(&broker).await.examined, 0);
    assert_eq!(broker.provider.ledger().refreshes().len(), 1);
}

async fn an_idle_connection_is_refreshed_after_the_configured_days(backend: Backend) {
    // Given tokens that last 30 days and a keep-alive of 2 days
    let broker = Broker::start_with(backend, &[("BROKER_KEEPALIVE_DAYS", "2")]).await;
    broker.provider.set_knobs(Knobs {
        expires_in: Some(30 * 86_400),
        no_rotation: true,
        ..Knobs::default()
    });
    let id = active_connection(&broker).await;

    // When a day passes, then a second
    broker.app.clock.advance(86_400);
    assert_eq!(run_sweep(&broker).await.refreshed, 0);
    broker.app.clock.advance(86_400);
    let swept_from = broker.app.clock.now();
    let report = run_sweep(&broker).await;

    // Then the idle refresh token was used once, on the second day (during that sweep: the
    // clock is real time, and a second may tick while it runs)
    assert_eq!(report.refreshed, 1, "{report:?}");
    assert_eq!(broker.provider.ledger().refreshes().len(), 1);
    let swept = swept_from..=broker.app.clock.now();
    let refreshed_at = broker.connection(&id).await.last_refreshed_at;
    assert!(
        refreshed_at.is_some_and(|t| swept.contains(&t)),
        "{refreshed_at:?} not in {swept:?}"
    );
}

async fn a_refresh_token_near_its_hard_limit_is_announced_once(backend: Backend) {
    // Given a provider whose refresh tokens die 30 days after issue, tokens that last 60 days,
    // and an endpoint for connection.expiring
    let entry = FakeEntry {
        keys: &[("refresh_token_lifetime_days", "30")],
        ..FakeEntry::default()
    };
    let broker = Broker::start_custom(backend, &[], &entry).await;
    broker.provider.set_knobs(Knobs {
        expires_in: Some(60 * 86_400),
        no_rotation: true,
        ..Knobs::default()
    });
    let receiver = Receiver::start().await;
    broker
        .admin
        .webhooks_add(&broker.org, &receiver.url, vec![EventType::Expiring])
        .await
        .unwrap();
    let id = active_connection(&broker).await;
    let issued = broker.app.clock.now();

    // When 22 days pass (8 days left), and the sweep runs four times, a minute apart
    broker.app.clock.advance(22 * 86_400);
    let mut warned = 0;
    for _ in 0..4 {
        warned += run_sweep(&broker).await.warned;
        broker.app.clock.advance(60);
    }
    let mut delivered = Deliveries::new(&broker, receiver).await;
    assert_eq!(warned, 0, "not yet: the notice is a week ahead");
    assert!(delivered.next(&broker).await.is_empty());

    // and a day more (7 days left), the sweep runs four times again
    broker.app.clock.advance(86_400);
    for _ in 0..4 {
        warned += run_sweep(&broker).await.warned;
        broker.app.clock.advance(60);
    }

    // Then exactly one connection.expiring was sent, naming when the refresh token dies
    assert_eq!(warned, 1);
    let bodies = delivered.next(&broker).await;
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(bodies[0]["type"], "connection.expiring");
    assert_eq!(bodies[0]["data"]["connection_id"], id.as_str());
    assert_eq!(bodies[0]["data"]["status"], "active");
    let limit = broker::api::dialect::rfc3339(issued + 30 * 86_400);
    let reason = bodies[0]["data"]["reason"].as_str().unwrap();
    assert!(reason.contains(&limit), "{reason}");
    // and nothing was refreshed meanwhile (no rotation would have helped)
    assert!(broker.provider.ledger().refreshes().len() <= 1);
}

async fn a_rotated_refresh_token_restarts_the_limit_a_reusable_one_does_not(backend: Backend) {
    for (kind, restarts) in [("\"rotating\"", true), ("\"reusable\"", false)] {
        // Given refresh tokens that die 30 days after issue, and a provider that sends a new
        // refresh token with every refresh
        let entry = FakeEntry {
            keys: &[("refresh_token_lifetime_days", "30"), ("refresh", kind)],
            ..FakeEntry::default()
        };
        let broker = Broker::start_custom(backend, &[], &entry).await;
        let id = active_connection(&broker).await;
        let consented = broker.app.clock.now();

        // When ten days pass and a caller forces a refresh
        broker.app.clock.advance(10 * 86_400);
        let refreshed = broker.app.clock.now();
        assert_eq!(broker.token(&id, true).await.0, 200);
        assert_eq!(broker.provider.ledger().refreshes().len(), 1);

        // Then a rotating entry's limit counts from the new refresh token, a reusable entry's
        // (Spotify: six months from consent, not extended by refreshing) still from consent
        let limit = broker
            .connection(&id)
            .await
            .keepalive
            .and_then(|k| k.refresh_token_expires_at)
            .unwrap();
        let from = if restarts { refreshed } else { consented };
        assert!(
            (from..=from + 5).contains(&(limit - 30 * 86_400)),
            "{kind}: {limit}"
        );
    }
}

async fn a_revoked_connection_is_not_swept(backend: Backend) {
    // Given a connection deleted while its token still had an hour
    let broker = Broker::start(backend).await;
    let id = active_connection(&broker).await;
    assert_eq!(broker.delete_connection(&id).await.0, 200);

    // When its token would have entered the margin
    broker.app.clock.advance(3600);
    let report = run_sweep(&broker).await;

    // Then the sweep did not look at it, and nothing was sent to the provider
    assert_eq!(report.examined, 0, "{report:?}");
    assert!(broker.provider.ledger().refreshes().is_empty());
}

/// The webhooks a receiver got since the last call, delivered by the backend's own path: the
/// embedded outbox's pump, or the events function fed the stream's new records.
struct Deliveries {
    receiver: Receiver,
    received: usize,
    records: usize,
    dlq: Option<Dlq>,
}

impl Deliveries {
    async fn new(broker: &Broker, receiver: Receiver) -> Self {
        let dlq = match broker.backend {
            Backend::Aws => Some(Dlq::create().await),
            Backend::Embedded => None,
        };
        Deliveries {
            receiver,
            received: 0,
            records: 0,
            dlq,
        }
    }

    async fn next(&mut self, broker: &Broker) -> Vec<serde_json::Value> {
        match &self.dlq {
            None => {
                let store = EmbeddedStore::new(Db::open(&broker.data_dir).unwrap());
                let pump = Pump {
                    config: &broker.app.config,
                    outbox: &store,
                    webhooks: &store,
                    vault: broker.app.vault.as_ref(),
                };
                pump_once(&pump, broker.app.clock.now()).await.unwrap();
            }
            Some(dlq) => {
                let backend = dlq.backend(&broker.app.config).await;
                let records = stream::records(&broker.app.config.table).await;
                let new = &records[self.records..];
                self.records = records.len();
                let deadline = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as i64
                    + 60_000;
                let answer =
                    deliver_records(&backend.delivery(), stream::event(new), deadline).await;
                assert!(answer.batch_item_failures.is_empty(), "{answer:?}");
            }
        }
        let received = self.receiver.received();
        let out = received[self.received..].iter().map(|r| r.json()).collect();
        self.received = received.len();
        out
    }
}
