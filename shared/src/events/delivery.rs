//! Delivering events: signed per the Standard Webhooks specification (its own crate), posted to
//! an address checked after resolution (and connected to as resolved, so a name cannot change its
//! answer in between), no redirects, a 10 s timeout, a bounded read; retried with backoff, and
//! an endpoint that answers 410 Gone disabled.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use oauth2::reqwest;

use super::{Endpoint, EventType, WebhookSecrets, WebhookStore, check_address};
use crate::vault::Vault;
use crate::{Config, ConnectionId, Error, OrgId, Result};

/// Retry delays after the 1st, 2nd, ... failed attempt; after the last, the delivery is dead.
pub const BACKOFF_SECS: [i64; 8] = [5, 30, 120, 600, 1_800, 7_200, 18_000, 36_000];
/// How long an endpoint has to answer (DESIGN §4.7).
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// What is read of an endpoint's answer (and then dropped).
const MAX_ANSWER: usize = 64 * 1024;

/// One event due at one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The event's place in the outbox: deliveries to one endpoint follow it per connection.
    pub seq: i64,
    /// The `webhook-id`, the same on every attempt.
    pub event_id: String,
    pub event_type: EventType,
    pub organization_id: OrgId,
    pub connection_id: ConnectionId,
    pub body: String,
    pub endpoint_id: String,
    /// Failed attempts so far.
    pub attempts: u32,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Try again at this time (epoch seconds).
    Retry(i64),
    /// 410 Gone: the endpoint is disabled, nothing more is sent to it.
    Gone,
    /// Given up: attempts exhausted, or the endpoint refused (gone, or its address not allowed).
    Dead,
}

/// The embedded backend's outbox: events written in the same transaction as the change.
#[async_trait]
pub trait EventOutbox: Send + Sync {
    /// Deliveries due at `now`: new events fanned out to the endpoints that want them first;
    /// per endpoint and connection, only the oldest undelivered one (order is kept).
    async fn due(&self, now: i64, limit: usize) -> Result<Vec<Delivery>>;
    /// Records an attempt's outcome.
    async fn settle(&self, delivery: &Delivery, outcome: Outcome, now: i64) -> Result<()>;
}

/// Everything a pump needs: the outbox, the endpoints, their secrets.
pub struct Pump<'a> {
    pub config: &'a Config,
    pub outbox: &'a dyn EventOutbox,
    pub webhooks: &'a dyn WebhookStore,
    pub vault: &'a dyn Vault,
}

/// Delivers what is due at `now` (one attempt each); returns how many were delivered. Each
/// organization's endpoints and each endpoint's secrets are read once per round.
pub async fn pump_once(pump: &Pump<'_>, now: i64) -> Result<usize> {
    let mut endpoints: HashMap<OrgId, Vec<Endpoint>> = HashMap::new();
    let mut secrets: HashMap<String, Option<WebhookSecrets>> = HashMap::new();
    let mut delivered = 0;
    for d in pump.outbox.due(now, 64).await? {
        if !endpoints.contains_key(&d.organization_id) {
            let listed = pump.webhooks.list_webhooks(&d.organization_id).await?;
            endpoints.insert(d.organization_id.clone(), listed);
        }
        let endpoint = endpoints[&d.organization_id]
            .iter()
            .find(|e| e.id == d.endpoint_id && !e.disabled)
            .cloned();
        let Some(endpoint) = endpoint else {
            pump.outbox.settle(&d, Outcome::Dead, now).await?;
            continue;
        };
        if !secrets.contains_key(&endpoint.id) {
            let read = read_secrets(pump.vault, pump.config, &endpoint).await?;
            secrets.insert(endpoint.id.clone(), read);
        }
        let Some(signing) = &secrets[&endpoint.id] else {
            tracing::warn!(endpoint_id = %endpoint.id, "webhook endpoint has no secret");
            pump.outbox.settle(&d, Outcome::Dead, now).await?;
            continue;
        };
        let outcome = schedule(
            attempt(pump.config, &endpoint, signing, &d, TIMEOUT, now).await,
            d.attempts,
            now,
        );
        match outcome {
            Outcome::Delivered => delivered += 1,
            Outcome::Gone => {
                let disabled = Endpoint {
                    disabled: true,
                    ..endpoint
                };
                pump.webhooks.put_webhook(&disabled).await?;
                tracing::warn!(endpoint_id = %disabled.id, "webhook endpoint answered 410: disabled");
                // The rest of this round sees it disabled too.
                if let Some(listed) = endpoints.get_mut(&d.organization_id) {
                    for e in listed.iter_mut().filter(|e| e.id == disabled.id) {
                        e.disabled = true;
                    }
                }
            }
            Outcome::Retry(_) | Outcome::Dead => {}
        }
        pump.outbox.settle(&d, outcome, now).await?;
    }
    Ok(delivered)
}

/// An endpoint's signing secrets from the vault; `None` when they are missing.
pub async fn read_secrets(
    vault: &dyn Vault,
    config: &Config,
    endpoint: &Endpoint,
) -> Result<Option<WebhookSecrets>> {
    match vault
        .get_secret(&endpoint.secret_name(&config.secret_prefix))
        .await?
    {
        Some(raw) => Ok(Some(
            serde_json::from_str(raw.expose()).map_err(Error::internal)?,
        )),
        None => Ok(None),
    }
}

/// How the endpoint answered one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Delivered,
    /// 410 Gone.
    Gone,
    /// Not sent: the address is not allowed (after resolution), or the secret is unusable.
    Refused,
    /// Not taken (a timeout, a refused connection, 429, 5xx, ...); try again, after
    /// `retry_after` seconds if the endpoint said so.
    Failed {
        retry_after: Option<i64>,
    },
}

/// The embedded outbox's schedule: the next attempt after [`BACKOFF_SECS`] (or a longer
/// `Retry-After`, up to a day), dead when they are used up.
pub fn schedule(answer: Answer, attempts: u32, now: i64) -> Outcome {
    match answer {
        Answer::Delivered => Outcome::Delivered,
        Answer::Gone => Outcome::Gone,
        Answer::Refused => Outcome::Dead,
        Answer::Failed { retry_after } => match BACKOFF_SECS.get(attempts as usize) {
            Some(delay) => Outcome::Retry(now + retry_after.unwrap_or(0).clamp(*delay, 86_400)),
            None => Outcome::Dead,
        },
    }
}

/// One signed POST of `d` to `endpoint`, answered within `timeout`; `now` decides which
/// secrets sign (a rotated one, during its grace period, too).
pub async fn attempt(
    config: &Config,
    endpoint: &Endpoint,
    secrets: &WebhookSecrets,
    d: &Delivery,
    timeout: Duration,
    now: i64,
) -> Answer {
    let failed = Answer::Failed { retry_after: None };
    let client = match client_for(config, &endpoint.url, timeout).await {
        Ok(client) => client,
        Err(Error::Validation { .. }) => {
            tracing::warn!(endpoint_id = %endpoint.id, "webhook address refused after resolution");
            return Answer::Refused;
        }
        Err(_) => return failed,
    };
    // The specification's timestamp is the sender's clock, which receivers compare with theirs.
    let timestamp = chrono::Utc::now().timestamp();
    let mut signatures = Vec::new();
    for secret in secrets.signing(now) {
        let signed = standardwebhooks::Webhook::new(secret)
            .and_then(|w| w.sign(&d.event_id, timestamp, d.body.as_bytes()));
        match signed {
            Ok(s) => signatures.push(s),
            Err(_) => return Answer::Refused,
        }
    }
    let sent = client
        .post(&endpoint.url)
        .header("content-type", "application/json")
        .header(standardwebhooks::HEADER_WEBHOOK_ID, &d.event_id)
        .header(
            standardwebhooks::HEADER_WEBHOOK_TIMESTAMP,
            timestamp.to_string(),
        )
        .header(
            standardwebhooks::HEADER_WEBHOOK_SIGNATURE,
            signatures.join(" "),
        )
        .body(d.body.clone())
        .send()
        .await;
    let mut response = match sent {
        Ok(r) => r,
        Err(_) => return failed,
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    let mut read = 0;
    while let Ok(Some(chunk)) = response.chunk().await {
        read += chunk.len();
        if read > MAX_ANSWER {
            break;
        }
    }
    match status {
        200..=299 => Answer::Delivered,
        410 => Answer::Gone,
        _ => Answer::Failed { retry_after },
    }
}

/// The endpoint's URL checked, its host resolved and every address checked (DESIGN §4.7): at
/// registration and again at every delivery. Returns the host and its addresses.
pub async fn resolve_checked(config: &Config, raw: &str) -> Result<(String, Vec<SocketAddr>)> {
    let url = super::check_url(config, raw)?;
    let host = url
        .host_str()
        .ok_or_else(|| Error::field("url", "has no host"))?;
    let port = url.port_or_known_default().unwrap_or(443);
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((bare.as_str(), port))
        .await
        .map_err(|e| Error::Unavailable(format!("resolving the webhook host: {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(Error::Unavailable("the webhook host has no address".into()));
    }
    for addr in &addrs {
        check_address(config, addr.ip())?;
    }
    Ok((bare, addrs))
}

/// A client bound to the endpoint's checked addresses, so a name cannot answer differently
/// between the check and the connection.
async fn client_for(config: &Config, raw: &str, timeout: Duration) -> Result<reqwest::Client> {
    let (bare, addrs) = resolve_checked(config, raw).await?;
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(3)))
        .resolve_to_addrs(&bare, &addrs)
        .user_agent(concat!("oauth-broker/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::internal(format!("webhook client: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::events::test_config as config;

    #[tokio::test]
    async fn a_name_resolving_to_a_refused_address_is_refused_at_add_and_at_delivery() {
        // `localhost` resolves to loopback, refused unless BROKER_ALLOW_LOOPBACK_HTTP is set
        let strict = config(false);
        let refused = resolve_checked(&strict, "https://localhost:9/hook").await;
        assert!(
            matches!(refused, Err(Error::Validation { .. })),
            "{refused:?}"
        );
        assert!(
            resolve_checked(&config(true), "http://localhost:9/hook")
                .await
                .is_ok()
        );

        // and an endpoint stored with it anyway is not posted to: the delivery is dead at once
        let endpoint = Endpoint {
            id: "wh_1".into(),
            organization_id: "org".into(),
            url: "https://localhost:9/hook".into(),
            events: vec![],
            disabled: false,
            created_at: 0,
        };
        let secrets: WebhookSecrets = serde_json::from_value(serde_json::json!({
            "current": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        }))
        .unwrap();
        let d = Delivery {
            seq: 1,
            event_id: "evt_1".into(),
            event_type: EventType::Revoked,
            organization_id: "org".into(),
            connection_id: "conn_1".into(),
            body: "{}".into(),
            endpoint_id: "wh_1".into(),
            attempts: 0,
        };
        assert_eq!(
            attempt(&strict, &endpoint, &secrets, &d, TIMEOUT, 0).await,
            Answer::Refused
        );
    }
}
