//! Configuration, read once at start and validated there: a bad value stops the process with a
//! message naming the variable, instead of failing the first request.

use std::path::PathBuf;

use url::Url;

use crate::{Error, Result};

/// Which implementation of the store and vault ports to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// DynamoDB + Secrets Manager through the AWS SDK (endpoints from `AWS_ENDPOINT_URL`).
    Aws,
    /// One local SQLite file under `BROKER_DATA_DIR`, secrets encrypted with a local key.
    #[cfg(feature = "embedded")]
    Embedded,
}

impl std::str::FromStr for Backend {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "aws" => Ok(Backend::Aws),
            #[cfg(feature = "embedded")]
            "embedded" => Ok(Backend::Embedded),
            #[cfg(not(feature = "embedded"))]
            "embedded" => Err(Error::validation(
                "BROKER_BACKEND=embedded: this build leaves the embedded backend out (as the \
                 Lambda builds do); use `brokerctl serve`, or build with the `embedded` feature",
            )),
            other => Err(Error::validation(format!(
                "BROKER_BACKEND must be `aws` or `embedded`, not `{other}`"
            ))),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub backend: Backend,
    /// External base URL; the authorize and callback URLs are built from it, never from headers.
    pub public_url: Url,
    pub table: String,
    pub secret_prefix: String,
    pub flow_ttl_secs: i64,
    /// A token expiring within this many seconds is refreshed before it is handed out.
    pub refresh_margin_secs: i64,
    /// How long a process trusts an API key it read (`BROKER_KEY_CACHE_SECS`, default 10): the
    /// bound on how long a revoked key still works.
    pub key_cache_secs: i64,
    /// How long a process trusts app credentials it read (`BROKER_APP_CACHE_SECS`, default 60).
    pub app_cache_secs: i64,
    pub kms_key_id: Option<String>,
    pub providers_file: Option<PathBuf>,
    pub allow_loopback_http: bool,
    pub data_dir: PathBuf,
    /// The SQS queue the `events` function sends undeliverable events to
    /// (`BROKER_EVENTS_DLQ_URL`, AWS only).
    pub events_dlq_url: Option<String>,
    /// A connection whose tokens were not refreshed for this many days is refreshed by the
    /// keep-alive sweep (`BROKER_KEEPALIVE_DAYS`, default 7): providers end idle grants.
    pub keepalive_days: i64,
    /// Lifetime of a connect session (`BROKER_CONNECT_SESSION_TTL_SECS`, default 1800).
    pub connect_session_ttl_secs: i64,
}

impl Config {
    /// Reads the `BROKER_*` variables of DESIGN §7.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Same as [`Config::from_env`] over any lookup, so tests need not touch the process environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let var = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let backend = var("BROKER_BACKEND")
            .map(|v| v.parse())
            .transpose()?
            .unwrap_or(Backend::Aws);
        let public_url = var("BROKER_PUBLIC_URL")
            .ok_or_else(|| Error::validation("BROKER_PUBLIC_URL is required"))?;
        let public_url = parse_public_url(&public_url)?;
        // A number of seconds within `range`, or `default` when unset.
        let seconds =
            |name: &str, default: i64, range: std::ops::RangeInclusive<i64>| match var(name) {
                None => Ok(default),
                Some(v) => v
                    .parse::<i64>()
                    .ok()
                    .filter(|n| range.contains(n))
                    .ok_or_else(|| {
                        Error::validation(format!(
                            "{name} must be a number of seconds, {}..={}",
                            range.start(),
                            range.end()
                        ))
                    }),
            };
        let flow_ttl_secs = seconds("BROKER_FLOW_TTL_SECS", 600, 30..=86_400)?;
        let refresh_margin_secs = seconds("BROKER_REFRESH_MARGIN_SECS", 300, 0..=3_600)?;
        let app_cache_secs = seconds(
            "BROKER_APP_CACHE_SECS",
            crate::vault::APP_CACHE_SECS as i64,
            0..=3_600,
        )?;
        let key_cache_secs = seconds(
            "BROKER_KEY_CACHE_SECS",
            crate::auth::KEY_CACHE_SECS as i64,
            0..=300,
        )?;
        let allow_loopback_http = match var("BROKER_ALLOW_LOOPBACK_HTTP").as_deref() {
            None | Some("0") | Some("false") => false,
            Some("1") | Some("true") => true,
            Some(_) => {
                return Err(Error::validation(
                    "BROKER_ALLOW_LOOPBACK_HTTP must be 1/true or 0/false",
                ));
            }
        };
        let config = Config {
            backend,
            public_url,
            table: var("BROKER_TABLE").unwrap_or_else(|| "oauth-broker".into()),
            secret_prefix: var("BROKER_SECRET_PREFIX")
                .unwrap_or_else(|| "oauth-broker".into())
                .trim_end_matches('/')
                .to_string(),
            flow_ttl_secs,
            refresh_margin_secs,
            key_cache_secs,
            app_cache_secs,
            kms_key_id: var("BROKER_KMS_KEY_ID"),
            providers_file: var("BROKER_PROVIDERS_FILE").map(PathBuf::from),
            allow_loopback_http,
            data_dir: var("BROKER_DATA_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(".broker")),
            events_dlq_url: var("BROKER_EVENTS_DLQ_URL"),
            connect_session_ttl_secs: seconds(
                "BROKER_CONNECT_SESSION_TTL_SECS",
                1800,
                60..=86_400,
            )?,
            keepalive_days: match var("BROKER_KEEPALIVE_DAYS") {
                None => 7,
                Some(v) => v
                    .parse()
                    .ok()
                    .filter(|d| (1..=365).contains(d))
                    .ok_or_else(|| {
                        Error::validation("BROKER_KEEPALIVE_DAYS must be a number of days, 1..=365")
                    })?,
            },
        };
        config.check_url_policy(&config.public_url, "BROKER_PUBLIC_URL")?;
        Ok(config)
    }

    /// The constant redirect_uri registered at every provider.
    pub fn callback_url(&self) -> Url {
        self.endpoint("v1/oauth/callback")
    }

    /// The hosted connect page, without its query.
    pub fn connect_url(&self) -> Url {
        self.endpoint("v1/connect")
    }

    /// The browser entry point of a flow, without its query.
    pub fn authorize_url(&self) -> Url {
        self.endpoint("v1/oauth/authorize")
    }

    fn endpoint(&self, path: &str) -> Url {
        let mut url = self.public_url.clone();
        let base = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base}/{path}"));
        url
    }

    /// `https`, or `http` on a loopback host when `BROKER_ALLOW_LOOPBACK_HTTP` is set.
    pub fn check_url_policy(&self, url: &Url, what: &str) -> Result<()> {
        match url.scheme() {
            "https" => Ok(()),
            "http" if self.allow_loopback_http && is_loopback(url) => Ok(()),
            _ => Err(Error::field(
                what,
                "must be https (http only on a loopback host when BROKER_ALLOW_LOOPBACK_HTTP is set)",
            )),
        }
    }

    /// Browsers drop `Secure` cookies on plain http, so the binding cookie is only `__Host-`/Secure
    /// when the broker is served over https.
    pub fn secure_cookies(&self) -> bool {
        self.public_url.scheme() == "https"
    }
}

fn parse_public_url(raw: &str) -> Result<Url> {
    let url = Url::parse(raw)
        .map_err(|e| Error::validation(format!("BROKER_PUBLIC_URL is not a URL: {e}")))?;
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(Error::validation(
            "BROKER_PUBLIC_URL must be a base URL without query, fragment or userinfo",
        ));
    }
    Ok(url)
}

/// True for `localhost`, 127.0.0.0/8 and `[::1]`.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn public_url_is_required_and_must_be_https_unless_loopback_allowed() {
        assert!(config(&[]).is_err());
        assert!(config(&[("BROKER_PUBLIC_URL", "http://127.0.0.1:3000")]).is_err());
        let c = config(&[
            ("BROKER_PUBLIC_URL", "http://127.0.0.1:3000"),
            ("BROKER_ALLOW_LOOPBACK_HTTP", "1"),
        ])
        .unwrap();
        assert_eq!(
            c.callback_url().as_str(),
            "http://127.0.0.1:3000/v1/oauth/callback"
        );
        assert!(!c.secure_cookies());
    }

    #[test]
    fn endpoints_keep_a_base_path() {
        let c = config(&[("BROKER_PUBLIC_URL", "https://api.example.com/prod/")]).unwrap();
        assert_eq!(
            c.authorize_url().as_str(),
            "https://api.example.com/prod/v1/oauth/authorize"
        );
        assert_eq!(c.flow_ttl_secs, 600);
        assert!(c.secure_cookies());
    }

    #[test]
    fn refresh_margin_defaults_and_is_validated() {
        let base = ("BROKER_PUBLIC_URL", "https://x.example");
        assert_eq!(config(&[base]).unwrap().refresh_margin_secs, 300);
        assert_eq!(
            config(&[base, ("BROKER_REFRESH_MARGIN_SECS", "60")])
                .unwrap()
                .refresh_margin_secs,
            60
        );
        for bad in ["-1", "soon", "86400"] {
            assert!(config(&[base, ("BROKER_REFRESH_MARGIN_SECS", bad)]).is_err());
        }
    }

    #[test]
    fn bad_ttl_fails_fast() {
        assert!(
            config(&[
                ("BROKER_PUBLIC_URL", "https://x.example"),
                ("BROKER_FLOW_TTL_SECS", "soon")
            ])
            .is_err()
        );
    }
}
