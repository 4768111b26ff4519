//! An organization's webhook endpoints: where its events go, which it wants, and the secrets
//! that sign them (in the vault, never in the table).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use async_trait::async_trait;
use base64::Engine;
use serde::{Deserialize, Serialize};
use url::Url;

use super::EventType;
use crate::crypto::random_token;
use crate::secret::Sensitive;
use crate::{Config, Error, Result};

/// The endpoint port.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    async fn put_webhook(&self, endpoint: &Endpoint) -> Result<()>;
    /// The organization's endpoints, oldest first.
    async fn list_webhooks(&self, organization_id: &str) -> Result<Vec<Endpoint>>;
    /// `false` when the organization has no such endpoint.
    async fn delete_webhook(&self, organization_id: &str, id: &str) -> Result<bool>;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub id: String,
    pub organization_id: String,
    pub url: String,
    /// Empty: every type.
    #[serde(default)]
    pub events: Vec<EventType>,
    /// Set when the endpoint answered 410 Gone: nothing more is sent to it.
    #[serde(default)]
    pub disabled: bool,
    pub created_at: i64,
}

impl Endpoint {
    pub fn wants(&self, t: EventType) -> bool {
        !self.disabled && (self.events.is_empty() || self.events.contains(&t))
    }

    /// Where its signing secrets are kept.
    pub fn secret_name(&self, prefix: &str) -> String {
        format!("{prefix}/webhooks/{}/{}", self.organization_id, self.id)
    }
}

/// An endpoint's signing secrets: the current one, and after a rotation the previous one until
/// its grace period ends (both sign meanwhile, as the specification's signature list allows).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhookSecrets {
    pub current: Sensitive<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<(Sensitive<String>, i64)>,
}

impl WebhookSecrets {
    /// The secrets that sign at `now`: the current one first.
    pub fn signing(&self, now: i64) -> Vec<&str> {
        let mut out = vec![self.current.expose().as_str()];
        if let Some((old, until)) = &self.previous
            && *until > now
        {
            out.push(old.expose().as_str());
        }
        out
    }
}

/// A `whsec_` secret: 32 random bytes, base64, as the specification's libraries read them.
fn new_secret() -> Result<Sensitive<String>> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(random_token()?)
        .map_err(Error::internal)?;
    Ok(Sensitive::new(format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )))
}

/// A new endpoint for `url` and its secrets (the caller stores both and shows the secret once).
pub fn new_endpoint(
    config: &Config,
    organization_id: &str,
    url: &str,
    events: Vec<EventType>,
    now: i64,
) -> Result<(Endpoint, WebhookSecrets)> {
    let url = check_url(config, url)?;
    let endpoint = Endpoint {
        id: format!("wh_{}", uuid::Uuid::new_v4().simple()),
        organization_id: organization_id.to_string(),
        url: url.to_string(),
        events,
        disabled: false,
        created_at: now,
    };
    Ok((
        endpoint,
        WebhookSecrets {
            current: new_secret()?,
            previous: None,
        },
    ))
}

/// A new current secret; the old one keeps signing for `grace_secs`.
pub fn rotate(old: WebhookSecrets, now: i64, grace_secs: i64) -> Result<WebhookSecrets> {
    Ok(WebhookSecrets {
        current: new_secret()?,
        previous: Some((old.current, now + grace_secs)),
    })
}

/// DESIGN §4.7's URL rules, before any resolution: `https` (loopback `http` only with
/// `BROKER_ALLOW_LOOPBACK_HTTP`), no userinfo, and no literal address that is private,
/// link-local, metadata or mapped. Names are checked again after resolution, at every delivery.
pub fn check_url(config: &Config, raw: &str) -> Result<Url> {
    let bad = |why: &str| Error::field("url", why.to_string());
    let url = Url::parse(raw).map_err(|_| bad("is not a URL"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not carry credentials"));
    }
    config.check_url_policy(&url, "url")?;
    match url.host() {
        Some(url::Host::Ipv4(ip)) => check_address(config, IpAddr::V4(ip))?,
        Some(url::Host::Ipv6(ip)) => check_address(config, IpAddr::V6(ip))?,
        Some(url::Host::Domain(_)) => {}
        None => return Err(bad("has no host")),
    }
    Ok(url)
}

/// Whether the broker may connect to `ip` for a webhook: never a private, link-local (the cloud
/// metadata service lives there), shared, unspecified, multicast or IPv4-mapped address; loopback
/// only when `BROKER_ALLOW_LOOPBACK_HTTP` is set (local development and tests).
pub fn check_address(config: &Config, ip: IpAddr) -> Result<()> {
    let refused = match ip {
        IpAddr::V4(v4) => refused_v4(v4, config.allow_loopback_http),
        IpAddr::V6(v6) => {
            // ::ffff:a.b.c.d reaches a.b.c.d: refused outright rather than reasoned about.
            v6.to_ipv4_mapped().is_some()
                || (v6.is_loopback() && !config.allow_loopback_http)
                || v6.is_unspecified()
                || v6.is_multicast()
                || is_unique_local(v6)
                || is_unicast_link_local(v6)
        }
    };
    if refused {
        Err(Error::field(
            "url",
            "points at a private, link-local, loopback or metadata address",
        ))
    } else {
        Ok(())
    }
}

fn refused_v4(ip: Ipv4Addr, allow_loopback: bool) -> bool {
    let [a, b, ..] = ip.octets();
    (ip.is_loopback() && !allow_loopback)
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        // 100.64.0.0/10, shared address space (carrier-grade NAT)
        || (a == 100 && (64..128).contains(&b))
        || a == 0
}

fn is_unique_local(ip: Ipv6Addr) -> bool {
    (ip.segments()[0] & 0xfe00) == 0xfc00
}

fn is_unicast_link_local(ip: Ipv6Addr) -> bool {
    (ip.segments()[0] & 0xffc0) == 0xfe80
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::events::test_config as config;

    #[test]
    fn private_link_local_metadata_and_mapped_addresses_are_refused() {
        for c in [config(false), config(true)] {
            for url in [
                "https://169.254.169.254/latest/meta-data",
                "https://10.0.0.1/hook",
                "https://192.168.1.5/hook",
                "https://172.16.0.1/hook",
                "https://100.64.0.1/hook",
                "https://[::ffff:127.0.0.1]/hook",
                "https://[::ffff:169.254.169.254]/hook",
                "https://[fd00::1]/hook",
                "https://[fe80::1]/hook",
                "https://0.0.0.0/hook",
                "http://hooks.example.com/hook",
                "https://user:pw@hooks.example.com/hook",
            ] {
                assert!(check_url(&c, url).is_err(), "{url}");
            }
            assert!(check_url(&c, "https://hooks.example.com/in").is_ok());
        }
        assert!(check_url(&config(false), "http://127.0.0.1:9/hook").is_err());
        assert!(check_url(&config(true), "http://127.0.0.1:9/hook").is_ok());
    }

    #[test]
    fn a_rotated_secret_signs_beside_the_new_one_until_its_grace_ends() {
        let first = WebhookSecrets {
            current: new_secret().unwrap(),
            previous: None,
        };
        let old = first.current.expose().clone();
        assert!(old.starts_with("whsec_"));
        let rotated = rotate(first, 100, 60).unwrap();
        assert_eq!(
            rotated.signing(120),
            [rotated.current.expose().as_str(), &old]
        );
        assert_eq!(rotated.signing(160), [rotated.current.expose().as_str()]);
    }
}
