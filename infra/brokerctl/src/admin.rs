//! The admin commands of DESIGN §7, over whichever backend the configuration names.

use std::io::Read;
use std::sync::Arc;

use broker::api::dialect::broker as shapes;
use broker::api::dialect::rfc3339;
use broker::auth::{Caller, KeyAdmin, Scope, key_id, new_api_key};
use broker::connection::{self, ListFilters};
use broker::events::{self, EventType, WebhookSecrets, WebhookStore};
use broker::org::Org;
use broker::provider::{Catalog, RevocationStyle};
use broker::redirect::RedirectUrl;
use broker::secret::Sensitive;
use broker::store::Store;
use broker::vault::{AppCredentials, SecretNames, Vault, names};
use broker::{App, Config, Error, Result};

pub struct Admin {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub vault: Arc<dyn Vault>,
    pub webhooks: Arc<dyn WebhookStore>,
    pub keys: Arc<dyn KeyAdmin>,
    secret_names: Arc<dyn SecretNames>,
}

impl Admin {
    pub async fn connect(config: Config) -> Result<Self> {
        let backend = App::operator_backend(&config).await?;
        Ok(Admin {
            config,
            store: backend.store,
            vault: backend.vault,
            webhooks: backend.webhooks,
            keys: backend.keys,
            secret_names: backend.secret_names,
        })
    }

    /// Creates the table (with TTL) or the embedded file, where missing.
    pub async fn init(&self) -> Result<String> {
        App::init_backend(&self.config).await?;
        Ok(match self.config.backend {
            broker::config::Backend::Aws => {
                format!("table {} ready (TTL on expires_at)", self.config.table)
            }
            broker::config::Backend::Embedded => {
                format!("embedded store ready in {}", self.config.data_dir.display())
            }
        })
    }

    /// Registers an organization, or replaces its redirect URLs.
    pub async fn org_create(&self, id: &str, redirect_urls: &[String]) -> Result<Org> {
        check_id("organization", id)?;
        if redirect_urls.is_empty() {
            return Err(Error::validation("at least one --redirect-url is required"));
        }
        for url in redirect_urls {
            RedirectUrl::well_formed(url, &self.config)?;
        }
        let created_at = self
            .store
            .get_org(id)
            .await?
            .map(|o| o.created_at)
            .unwrap_or_else(|| chrono::Utc::now().timestamp());
        let org = Org {
            id: id.to_string(),
            redirect_urls: redirect_urls.to_vec(),
            created_at,
        };
        self.store.put_org(&org).await?;
        Ok(org)
    }

    /// Creates an API key and returns it; only its hash is stored. No scopes: every scope.
    pub async fn key_create(
        &self,
        org: &str,
        user: u64,
        workspaces: Vec<String>,
        scopes: Vec<Scope>,
    ) -> Result<String> {
        if self.store.get_org(org).await?.is_none() {
            return Err(Error::validation(format!(
                "organization `{org}` does not exist (brokerctl org create)"
            )));
        }
        let (key, record) = new_api_key(org, user, workspaces, scopes)?;
        self.store.put_key(&record).await?;
        Ok(key)
    }

    /// One line per key of the organization: its id, never the key (only its hash is stored).
    pub async fn key_list(&self, org: &str) -> Result<String> {
        let when = |t: Option<i64>| t.map(rfc3339).unwrap_or_else(|| "never".into());
        let mut out = format!(
            "{:<22} {:<21} {:<6} {:<16} {:<58} {:<21} {}\n",
            "ID", "CREATED", "USER", "WORKSPACES", "SCOPES", "LAST USED", "STATUS"
        );
        for k in self.keys.list_keys(org).await? {
            let workspaces = if k.workspaces.is_empty() {
                "*".to_string()
            } else {
                k.workspaces.join(",")
            };
            let scopes: Vec<&str> = k.scopes.iter().map(|s| s.as_str()).collect();
            out.push_str(&format!(
                "{:<22} {:<21} {:<6} {:<16} {:<58} {:<21} {}\n",
                k.id(),
                rfc3339(k.created_at),
                k.user_id,
                workspaces,
                scopes.join(","),
                when(k.last_used_at),
                if k.revoked { "revoked" } else { "active" },
            ));
        }
        Ok(out)
    }

    /// Revokes the organization's key `id` (as `key list` shows it): another organization's key
    /// is not found under this one.
    pub async fn key_revoke(&self, org: &str, id: &str) -> Result<String> {
        let record = self
            .keys
            .list_keys(org)
            .await?
            .into_iter()
            .find(|k| k.id() == id)
            .ok_or_else(|| {
                Error::validation(format!("organization `{org}` has no key `{id}` (key list)"))
            })?;
        if !self.keys.revoke_key(&record.key_hash, org).await? {
            return Err(Error::validation(format!("key `{id}` is not `{org}`'s")));
        }
        Ok(format!(
            "key {} revoked: refused within {} s on every function",
            key_id(&record.key_hash),
            self.config.key_cache_secs
        ))
    }

    /// Stores a provider app's credentials at the default, organization or workspace level.
    pub async fn app_set(
        &self,
        slug: &str,
        client_id: &str,
        client_secret: String,
        org: Option<&str>,
        workspace: Option<&str>,
    ) -> Result<String> {
        check_id("provider slug", slug)?;
        if workspace.is_some() && org.is_none() {
            return Err(Error::validation("--workspace needs --org"));
        }
        if client_id.is_empty() || client_secret.is_empty() {
            return Err(Error::validation("client id and secret must not be empty"));
        }
        let name = names::app(&self.config.secret_prefix, slug, org, workspace);
        let creds = AppCredentials {
            client_id: client_id.to_string(),
            client_secret: Sensitive::new(client_secret),
        };
        let doc = Sensitive::new(serde_json::to_string(&creds).map_err(Error::internal)?);
        let token =
            broker::crypto::sha256_hex(&format!("app:{name}:{}", broker::crypto::random_token()?));
        self.vault
            .put_secret(&name, &doc, &[("provider", slug)], &token)
            .await?;
        Ok(name)
    }
}

impl Admin {
    /// Which provider apps are configured, at which level (default, organization, workspace),
    /// from the vault's secret names alone: no secret is read.
    pub async fn app_list(&self) -> Result<String> {
        let apps = format!("{}/apps/", self.config.secret_prefix);
        let mut out = format!(
            "{:<24} {:<12} {:<24} {}\n",
            "PROVIDER", "LEVEL", "ORG", "WORKSPACE"
        );
        for name in self.secret_names.secret_names(&apps).await? {
            let parts: Vec<&str> = name[apps.len()..].split('/').collect();
            let (level, slug, org, workspace) = match parts.as_slice() {
                [slug] => ("default", *slug, "-", "-"),
                [org, slug] => ("organization", *slug, *org, "-"),
                [org, workspace, slug] => ("workspace", *slug, *org, *workspace),
                _ => continue,
            };
            out.push_str(&format!("{slug:<24} {level:<12} {org:<24} {workspace}\n"));
        }
        Ok(out)
    }
}

/// How long a rotated webhook secret keeps signing beside the new one.
pub const WEBHOOK_ROTATION_GRACE_SECS: i64 = 24 * 3600;

impl Admin {
    /// Registers a webhook endpoint; returns its id and its `whsec_` secret, shown this once.
    pub async fn webhooks_add(
        &self,
        org: &str,
        url: &str,
        events: Vec<EventType>,
    ) -> Result<(String, Sensitive<String>)> {
        if self.store.get_org(org).await?.is_none() {
            return Err(Error::validation(format!(
                "organization `{org}` does not exist (brokerctl org create)"
            )));
        }
        let now = chrono::Utc::now().timestamp();
        let (endpoint, secrets) = events::new_endpoint(&self.config, org, url, events, now)?;
        // The host's addresses are checked now, and again at every delivery.
        events::resolve_checked(&self.config, &endpoint.url).await?;
        self.put_webhook_secrets(&endpoint, &secrets).await?;
        self.webhooks.put_webhook(&endpoint).await?;
        Ok((endpoint.id, secrets.current))
    }

    /// One line per endpoint: id, URL, events, state; never a secret.
    pub async fn webhooks_list(&self, org: &str) -> Result<String> {
        let mut out = format!(
            "{:<36} {:<9} {:<21} {:<40} {}\n",
            "ID", "STATE", "CREATED", "EVENTS", "URL"
        );
        for e in self.webhooks.list_webhooks(org).await? {
            let kinds: Vec<&str> = e.events.iter().map(|t| t.as_str()).collect();
            out.push_str(&format!(
                "{:<36} {:<9} {:<21} {:<40} {}\n",
                e.id,
                if e.disabled { "disabled" } else { "active" },
                rfc3339(e.created_at),
                if kinds.is_empty() {
                    "*".to_string()
                } else {
                    kinds.join(",")
                },
                e.url
            ));
        }
        Ok(out)
    }

    /// Removes an endpoint and its secrets.
    pub async fn webhooks_remove(&self, org: &str, id: &str) -> Result<String> {
        let endpoint = self.webhook(org, id).await?;
        self.webhooks.delete_webhook(org, id).await?;
        self.vault
            .delete_secret(&endpoint.secret_name(&self.config.secret_prefix))
            .await?;
        Ok(format!("webhook endpoint {id} removed"))
    }

    /// A new secret for the endpoint, shown this once; the old one signs beside it for a day.
    pub async fn webhooks_rotate(&self, org: &str, id: &str) -> Result<Sensitive<String>> {
        let endpoint = self.webhook(org, id).await?;
        let name = endpoint.secret_name(&self.config.secret_prefix);
        let old: WebhookSecrets = match self.vault.get_secret(&name).await? {
            Some(raw) => serde_json::from_str(raw.expose()).map_err(Error::internal)?,
            None => return Err(Error::internal(format!("{name} is missing"))),
        };
        let now = chrono::Utc::now().timestamp();
        let rotated = events::rotate(old, now, WEBHOOK_ROTATION_GRACE_SECS)?;
        self.put_webhook_secrets(&endpoint, &rotated).await?;
        Ok(rotated.current)
    }

    async fn webhook(&self, org: &str, id: &str) -> Result<events::Endpoint> {
        self.webhooks
            .list_webhooks(org)
            .await?
            .into_iter()
            .find(|e| e.id == id)
            .ok_or_else(|| {
                Error::validation(format!(
                    "organization `{org}` has no webhook endpoint `{id}`"
                ))
            })
    }

    async fn put_webhook_secrets(
        &self,
        endpoint: &events::Endpoint,
        secrets: &WebhookSecrets,
    ) -> Result<()> {
        let doc = Sensitive::new(serde_json::to_string(secrets).map_err(Error::internal)?);
        let token = broker::crypto::random_token()?;
        self.vault
            .put_secret(
                &endpoint.secret_name(&self.config.secret_prefix),
                &doc,
                &[("organization", endpoint.organization_id.as_str())],
                &token,
            )
            .await?;
        Ok(())
    }
}

/// What `brokerctl connections list` asks for.
pub struct ListArgs {
    pub org: String,
    pub filters: ListFilters,
    pub json: bool,
}

impl Admin {
    /// The core over this backend, for the commands that run its steps (reading tokens refreshes
    /// them): the catalog as `serve` loads it, with the sandbox on the embedded backend.
    fn app(&self) -> Result<App> {
        let extra = match self.config.backend {
            broker::config::Backend::Embedded => {
                vec![crate::sandbox::provider(&self.config.public_url)]
            }
            broker::config::Backend::Aws => vec![],
        };
        App::assemble(
            self.config.clone(),
            extra,
            self.store.clone(),
            self.vault.clone(),
        )
    }

    /// One line per connection (or the API's JSON), newest first, and the next page's cursor.
    pub async fn connections_list(&self, args: ListArgs) -> Result<String> {
        let caller = Caller::operator(&args.org);
        let page = connection::list(self.store.as_ref(), &caller, args.filters).await?;
        if args.json {
            return pretty(&shapes::listed_body(&page));
        }
        let when = |t: Option<i64>| t.map(rfc3339).unwrap_or_else(|| "-".into());
        let mut out = format!(
            "{:<38} {:<16} {:<16} {:<24} {:<21} {}\n",
            "ID", "PROVIDER", "WORKSPACE", "STATUS", "TOKEN EXPIRES", "LAST REFRESH"
        );
        for c in &page.connections {
            out.push_str(&format!(
                "{:<38} {:<16} {:<16} {:<24} {:<21} {}\n",
                c.id,
                c.provider,
                c.workspace_id.as_deref().unwrap_or("-"),
                c.status.as_str(),
                when(c.token_expires_at),
                when(c.last_refreshed_at),
            ));
        }
        if let Some(next) = &page.next_cursor {
            out.push_str(&format!("next page: --cursor {next}\n"));
        }
        Ok(out)
    }

    /// One connection as the API shows it.
    pub async fn connections_show(&self, org: &str, id: &str) -> Result<String> {
        let app = self.app()?;
        let c =
            connection::get(app.connections.as_ref(), &Caller::operator(org), &id.into()).await?;
        pretty(&shapes::connection_body(&c))
    }

    /// Revokes the connection as `DELETE /v1/connections/{id}` does, and prints its answer.
    pub async fn connections_revoke(&self, org: &str, id: &str) -> Result<String> {
        let app = self.app()?;
        let r = connection::revoke(&app, &Caller::operator(org), &id.into()).await?;
        pretty(&shapes::revoked_body(&r))
    }

    /// The connection's access token as the token route answers it, refreshed when due.
    pub async fn connections_token(&self, org: &str, id: &str, force: bool) -> Result<String> {
        let app = self.app()?;
        let t =
            connection::token(&app, &Caller::operator(org), &id.into(), force, "brokerctl").await?;
        pretty(&shapes::token_body(&t))
    }
}

fn pretty(value: &serde_json::Value) -> Result<String> {
    serde_json::to_string_pretty(value).map_err(Error::internal)
}

/// One line per provider: slug, name, how it revokes, and the quirks that set it apart.
pub fn providers_list(catalog: &Catalog) -> String {
    let mut out = format!(
        "{:<24} {:<34} {:<14} {}\n",
        "SLUG", "NAME", "REVOKES", "QUIRKS"
    );
    for p in catalog.iter() {
        let revokes = match (&p.revocation_url, p.revocation_style) {
            (None, _) => "no",
            (Some(_), RevocationStyle::Rfc7009) => "rfc7009",
            (Some(_), RevocationStyle::Rfc7009Refresh) => "rfc7009_rt",
            (Some(_), RevocationStyle::Bearer) => "bearer",
            (Some(_), RevocationStyle::GithubGrant) => "github_grant",
            (Some(_), RevocationStyle::JsonBasic) => "json_basic",
            (Some(_), RevocationStyle::BearerDelete) => "bearer_delete",
            (Some(_), RevocationStyle::RefreshTokenPath) => "token_path",
            (Some(_), RevocationStyle::StripeDeauthorize) => "stripe",
        };
        out.push_str(&format!(
            "{:<24} {:<34} {:<14} {}\n",
            p.slug,
            p.name,
            revokes,
            p.quirks().join(" ")
        ));
    }
    out
}

/// One entry (by slug, alias or source definition id) as `BROKER_PROVIDERS_FILE` TOML, ready
/// to copy into a providers file and adjust.
pub fn providers_show(catalog: &Catalog, name: &str) -> Result<String> {
    #[derive(serde::Serialize)]
    struct File<'a> {
        provider: [&'a broker::provider::Provider; 1],
    }
    let provider = catalog.resolve(name)?;
    let toml = toml::to_string_pretty(&File {
        provider: [provider],
    })
    .map_err(Error::internal)?;
    let source = match (&provider.docs_url, &provider.checked) {
        (Some(url), Some(month)) => format!("{url} (checked {month})"),
        (Some(url), None) => format!("{url} (not checked yet)"),
        _ => "not recorded yet".into(),
    };
    Ok(format!(
        "# {} ({}): {}\n# documentation: {source}\n{toml}",
        provider.name,
        provider.slug,
        provider.quirks().join(" ")
    ))
}

/// Reads a secret from standard input (trailing newline dropped), so it never sits in argv.
pub fn read_secret_stdin() -> Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .map_err(|e| Error::validation(format!("reading stdin: {e}")))?;
    Ok(s.trim_end_matches(['\r', '\n']).to_string())
}

fn check_id(what: &str, id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::validation(format!(
            "{what} `{id}`: use letters, digits, - _ . (1..128)"
        )))
    }
}

/// `brokerctl events tail`: the embedded outbox's deliveries, then (with `follow`) each change of
/// one, polled every second. On AWS the events function's logs and its dead-letter queue say the
/// same (README, "Events").
pub async fn events_tail(
    config: &Config,
    org: Option<&str>,
    limit: usize,
    follow: bool,
) -> Result<()> {
    if config.backend != broker::config::Backend::Embedded {
        return Err(broker::Error::validation(
            "events tail reads the embedded outbox; on AWS, read the events function's logs and its dead-letter queue",
        ));
    }
    let store = broker::store::embedded::EmbeddedStore::new(broker::store::embedded::Db::open(
        &config.data_dir,
    )?);
    let mut seen = std::collections::HashMap::new();
    loop {
        for d in store.delivery_log(org, limit)? {
            let key = (d.seq, d.endpoint_id.clone());
            let now = (d.state.clone(), d.attempts);
            if seen.get(&key) == Some(&now) {
                continue;
            }
            println!("{}", delivery_line(&d));
            seen.insert(key, now);
        }
        if !follow {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

fn delivery_line(d: &broker::store::embedded::LoggedDelivery) -> String {
    let state = match d.state.as_str() {
        "pending" if d.attempts > 0 => format!(
            "retrying at {} ({} failed)",
            broker::api::dialect::rfc3339(d.next_at),
            d.attempts
        ),
        "pending" => "pending".to_string(),
        "delivered" => format!("delivered after {} failed", d.attempts),
        other => format!("{other} after {} failed", d.attempts),
    };
    format!(
        "{}  {}  {:<37} {}  -> {}  {}",
        broker::api::dialect::rfc3339(d.created_at),
        d.event_id,
        d.event_type,
        d.connection_id,
        d.endpoint_id,
        state
    )
}
