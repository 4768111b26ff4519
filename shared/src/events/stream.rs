//! Delivery on AWS: the table's DynamoDB Stream feeds the `events` function a batch of connection
//! items' old and new images. Each record whose change makes an event ([`super::of_change`], the
//! same function the embedded outbox uses) is signed and posted to the organization's endpoints,
//! in stream order: a record that cannot be delivered yet stops the batch there and is reported
//! as the batch's failure, so Lambda retries from it and later changes of that connection never
//! overtake it. Attempts are counted in a small ledger item per event and endpoint, written only
//! when something failed; after the last wait, or when the endpoint cannot be posted to, the
//! event goes to the dead-letter queue and the stream moves on.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::event::dynamodb::{Event as StreamEvent, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use serde::{Deserialize, Serialize};

use super::delivery::{Answer, Delivery, attempt, read_secrets};
use super::{Endpoint, Event, WebhookSecrets, WebhookStore, of_change};
use crate::connection::Connection;
use crate::vault::Vault;
use crate::{Config, Error, OrgId, Result};

/// The waits before the 2nd, 3rd, ... attempt of one event at one endpoint; after the last, the
/// event is dead-lettered. A record waiting blocks its shard, so these are minutes, not the
/// embedded outbox's hours.
pub const STREAM_WAITS: [Duration; 8] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(15),
    Duration::from_secs(30),
    Duration::from_secs(30),
    Duration::from_secs(30),
];
/// The longest `Retry-After` honoured as asked; longer ones wait this long.
const MAX_RETRY_AFTER_MS: i64 = 60_000;
/// Ledger items outlive any retry of their record (a stream keeps records 24 hours).
const LEDGER_SECS: i64 = 2 * 86_400;

/// How one event fared at one endpoint so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub event_id: String,
    pub endpoint_id: String,
    pub attempts: u32,
    /// Delivered, or given up (dead-lettered, or the endpoint is gone).
    pub done: bool,
    /// Epoch milliseconds of the last attempt.
    pub last_attempt_ms: i64,
    /// What the endpoint asked to wait, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<i64>,
    /// The item's TTL.
    pub expires_at: i64,
}

/// Where attempts are counted across invocations (DynamoDB, one item per event and endpoint).
#[async_trait]
pub trait DeliveryLedger: Send + Sync {
    async fn ledger_entry(&self, event_id: &str, endpoint_id: &str) -> Result<Option<LedgerEntry>>;
    async fn put_ledger_entry(&self, entry: &LedgerEntry) -> Result<()>;
}

/// An event given up at one endpoint, as the dead-letter queue receives it: enough to redeliver
/// it by hand. Never a token (the body has none).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetter {
    pub event_id: String,
    pub endpoint_id: String,
    pub organization_id: String,
    pub connection_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub attempts: u32,
    pub reason: String,
    pub body: serde_json::Value,
}

/// The dead-letter queue.
#[async_trait]
pub trait DeadLetters: Send + Sync {
    async fn dead_letter(&self, letter: &DeadLetter) -> Result<()>;
}

/// Everything the stream's delivery needs.
pub struct StreamDelivery<'a> {
    pub config: &'a Config,
    pub webhooks: &'a dyn WebhookStore,
    pub vault: &'a dyn Vault,
    pub ledger: &'a dyn DeliveryLedger,
    pub dead_letters: &'a dyn DeadLetters,
    /// [`STREAM_WAITS`] in the function.
    pub waits: &'a [Duration],
    /// How long an endpoint has to answer ([`super::delivery::TIMEOUT`] in the function).
    pub timeout: Duration,
}

/// Delivers a batch of stream records; the answer names the first record to retry, if any.
/// `deadline_ms` (epoch milliseconds) is the invocation's: no attempt starts that could outlast it.
pub async fn deliver_records(
    d: &StreamDelivery<'_>,
    batch: StreamEvent,
    deadline_ms: i64,
) -> DynamoDbEventResponse {
    let mut round = Round::default();
    let mut response = DynamoDbEventResponse::default();
    for record in batch.records {
        if let Err(e) = deliver_record(d, &mut round, &record, deadline_ms).await {
            tracing::warn!(
                error = %e,
                sequence_number = record.change.sequence_number.as_deref().unwrap_or("-"),
                "stream record not delivered yet; retried from here"
            );
            // Lambda retries from this record: later ones, of this connection or another in the
            // shard, wait behind it, so order per connection holds.
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = record.change.sequence_number.clone();
            response.batch_item_failures.push(failure);
            break;
        }
    }
    response
}

/// What one invocation has read: each organization's endpoints, each endpoint's secrets.
#[derive(Default)]
struct Round {
    endpoints: HashMap<OrgId, Vec<Endpoint>>,
    secrets: HashMap<String, Option<WebhookSecrets>>,
}

async fn deliver_record(
    d: &StreamDelivery<'_>,
    round: &mut Round,
    record: &EventRecord,
    deadline_ms: i64,
) -> Result<()> {
    let Some(event) = event_of(record) else {
        return Ok(());
    };
    if !round.endpoints.contains_key(&event.organization_id) {
        let listed = d.webhooks.list_webhooks(&event.organization_id).await?;
        round
            .endpoints
            .insert(event.organization_id.clone(), listed);
    }
    let wanted: Vec<Endpoint> = round.endpoints[&event.organization_id]
        .iter()
        .filter(|e| e.wants(event.event_type))
        .cloned()
        .collect();
    // Endpoints this invocation delivered to: remembered only if a later one fails.
    let mut delivered: Vec<&Endpoint> = Vec::new();
    for endpoint in &wanted {
        match deliver_to(d, round, &event, endpoint, deadline_ms).await {
            Ok(true) => delivered.push(endpoint),
            Ok(false) => {}
            Err(e) => {
                for done in delivered {
                    let mut entry = LedgerEntry::new(&event, done);
                    entry.done = true;
                    d.ledger.put_ledger_entry(&entry).await?;
                }
                return Err(e);
            }
        }
    }
    Ok(())
}

/// The event a stream record carries, if its change makes one: connection items only, changes
/// only (an insert is a new pending connection, a removal a tombstone's TTL).
pub fn event_of(record: &EventRecord) -> Option<Event> {
    if record.event_name != "MODIFY" {
        return None;
    }
    let image = |item: &serde_dynamo::Item| -> Option<Connection> {
        let is_connection = matches!(
            item.get("sk"),
            Some(serde_dynamo::AttributeValue::S(sk)) if sk == "CONN"
        );
        if !is_connection {
            return None;
        }
        serde_dynamo::from_item(item.clone())
            .inspect_err(|e| tracing::warn!(error = %e, "unreadable connection image"))
            .ok()
    };
    of_change(
        &image(&record.change.old_image)?,
        &image(&record.change.new_image)?,
    )
}

/// Delivers `event` to `endpoint`, waiting between attempts; `Ok(true)` when it was delivered by
/// this call, `Ok(false)` when it is done otherwise (delivered before, gone, dead-lettered), an
/// error when it must wait for a later invocation (the attempts so far are in the ledger).
async fn deliver_to(
    d: &StreamDelivery<'_>,
    round: &mut Round,
    event: &Event,
    endpoint: &Endpoint,
    deadline_ms: i64,
) -> Result<bool> {
    let mut entry = d
        .ledger
        .ledger_entry(&event.id, &endpoint.id)
        .await?
        .unwrap_or_else(|| LedgerEntry::new(event, endpoint));
    if entry.done {
        return Ok(false);
    }
    if !round.secrets.contains_key(&endpoint.id) {
        let read = read_secrets(d.vault, d.config, endpoint).await?;
        round.secrets.insert(endpoint.id.clone(), read);
    }
    let Some(secrets) = round.secrets[&endpoint.id].clone() else {
        return dead_letter(d, event, &mut entry, "the endpoint has no signing secret").await;
    };
    let delivery = Delivery {
        seq: 0,
        event_id: event.id.clone(),
        event_type: event.event_type,
        organization_id: event.organization_id.clone(),
        connection_id: event.connection_id.clone(),
        body: event.body.clone(),
        endpoint_id: endpoint.id.clone(),
        attempts: entry.attempts,
    };
    loop {
        if entry.attempts as usize > d.waits.len() {
            return dead_letter(d, event, &mut entry, "no answer after every attempt").await;
        }
        if entry.attempts > 0 {
            let wait = d.waits[entry.attempts as usize - 1].as_millis() as i64;
            let due = entry.last_attempt_ms
                + entry
                    .retry_after_ms
                    .unwrap_or(0)
                    .clamp(wait, MAX_RETRY_AFTER_MS.max(wait));
            // An attempt that could outlast the invocation waits for the next one.
            let margin = d.timeout.as_millis() as i64 + 1_000;
            if due + margin > deadline_ms {
                d.ledger.put_ledger_entry(&entry).await?;
                return Err(Error::Unavailable(format!(
                    "webhook endpoint {} did not take event {} yet ({} attempts)",
                    endpoint.id, event.id, entry.attempts
                )));
            }
            let now = now_ms();
            if due > now {
                tokio::time::sleep(Duration::from_millis((due - now) as u64)).await;
            }
        }
        let answer = attempt(
            d.config,
            endpoint,
            &secrets,
            &delivery,
            d.timeout,
            now_ms() / 1000,
        )
        .await;
        entry.attempts += 1;
        entry.last_attempt_ms = now_ms();
        match answer {
            Answer::Delivered => {
                if entry.attempts > 1 {
                    entry.done = true;
                    d.ledger.put_ledger_entry(&entry).await?;
                }
                return Ok(true);
            }
            Answer::Gone => {
                let disabled = Endpoint {
                    disabled: true,
                    ..endpoint.clone()
                };
                d.webhooks.put_webhook(&disabled).await?;
                tracing::warn!(endpoint_id = %endpoint.id, "webhook endpoint answered 410: disabled");
                for listed in round.endpoints.values_mut().flatten() {
                    if listed.id == endpoint.id {
                        listed.disabled = true;
                    }
                }
                entry.done = true;
                d.ledger.put_ledger_entry(&entry).await?;
                return Ok(false);
            }
            Answer::Refused => {
                return dead_letter(d, event, &mut entry, "the endpoint's address is refused")
                    .await;
            }
            Answer::Failed { retry_after } => {
                entry.retry_after_ms = retry_after.map(|s| s.saturating_mul(1000));
            }
        }
    }
}

/// Sends the event to the dead-letter queue and marks it done at this endpoint.
async fn dead_letter(
    d: &StreamDelivery<'_>,
    event: &Event,
    entry: &mut LedgerEntry,
    reason: &str,
) -> Result<bool> {
    let letter = DeadLetter {
        event_id: event.id.clone(),
        endpoint_id: entry.endpoint_id.clone(),
        organization_id: event.organization_id.to_string(),
        connection_id: event.connection_id.to_string(),
        event_type: event.event_type.as_str().to_string(),
        attempts: entry.attempts,
        reason: reason.to_string(),
        body: serde_json::from_str(&event.body).map_err(Error::internal)?,
    };
    // Counted first: if the queue refuses, the retry dead-letters at once instead of posting again.
    d.ledger.put_ledger_entry(entry).await?;
    d.dead_letters.dead_letter(&letter).await?;
    tracing::warn!(
        event_id = %event.id,
        endpoint_id = %entry.endpoint_id,
        attempts = entry.attempts,
        reason,
        "webhook dead-lettered"
    );
    entry.done = true;
    d.ledger.put_ledger_entry(entry).await?;
    Ok(false)
}

impl LedgerEntry {
    fn new(event: &Event, endpoint: &Endpoint) -> Self {
        LedgerEntry {
            event_id: event.id.clone(),
            endpoint_id: endpoint.id.clone(),
            attempts: 0,
            done: false,
            last_attempt_ms: 0,
            retry_after_ms: None,
            expires_at: now_ms() / 1000 + LEDGER_SECS,
        }
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
