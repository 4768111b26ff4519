//! A broker under test: the router of `brokerctl serve` on a free loopback port, over the embedded
//! backend (a fresh directory) or the AWS backend (a fresh table and secret prefix on the moto
//! emulator named by `AWS_ENDPOINT_URL`), wired to a [`FakeProvider`].

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use broker::crypto::Sealer;
use broker::provider::Provider;
use broker::secret::Sensitive;
use broker::store::dynamodb::DynamoStore;
use broker::vault::Vault;
use broker::vault::secrets_manager::SecretsManagerVault;
use broker::{App, OrgId};
use brokerctl::admin::Admin;
use oauth2::reqwest;
use serde_json::{Value, json};
use url::Url;

use crate::aws_requests::{self, ActionsByFunction, AwsRequests};
use crate::contract::{self, Violations};
use crate::fake_provider::{CLIENT_ID, CLIENT_SECRET, FakeProvider};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Aws,
}

/// The slug of the fake provider in the broker's catalog.
pub const FAKE: &str = "fake";
/// The Airbyte source definition id the catalog maps to the fake provider.
pub const FAKE_DEFINITION: &str = "fa4e0000-0000-4000-8000-000000000001";

pub struct Broker {
    pub backend: Backend,
    pub base_url: String,
    pub app: Arc<App>,
    pub admin: Admin,
    pub provider: FakeProvider,
    pub org: String,
    pub key: String,
    /// Registered for `org`; never listened on, tests read the redirect instead of following it.
    pub redirect_url: String,
    pub http: reqwest::Client,
    /// The AWS requests the broker sent (AWS backend).
    pub aws_requests: AwsRequests,
    /// The IAM actions each function's handlers needed (AWS backend).
    pub aws_actions: ActionsByFunction,
    /// Responses that disagreed with `infra/openapi.yaml`; asserted empty when the broker drops.
    pub violations: Violations,
    /// While set, the broker's vault refuses every write as an unavailable one would.
    pub vault_write_fails: Arc<AtomicBool>,
    pub data_dir: PathBuf,
    config: broker::Config,
    providers: Vec<Provider>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data_dir);
        let violations = self.violations.take();
        if !violations.is_empty() && !std::thread::panicking() {
            panic!(
                "responses that disagree with infra/openapi.yaml:\n{}",
                violations.join("\n")
            );
        }
    }
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// A client that, like a test of redirects should, never follows them.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

impl Broker {
    pub async fn start(backend: Backend) -> Broker {
        Self::start_with(backend, &[]).await
    }

    /// `overrides`: extra `BROKER_*` variables for this broker's configuration.
    pub async fn start_with(backend: Backend, overrides: &[(&str, &str)]) -> Broker {
        Self::start_custom(backend, overrides, &FakeEntry::default()).await
    }

    /// A broker whose fake provider entry is changed by `entry` (to play a provider with quirks).
    pub async fn start_custom(
        backend: Backend,
        overrides: &[(&str, &str)],
        entry: &FakeEntry<'_>,
    ) -> Broker {
        Self::start_inner(backend, overrides, entry, None).await
    }

    /// An AWS-backend broker whose DynamoDB and Secrets Manager clients go through `endpoint`
    /// (an [`crate::outage::Outage`] relay); the test's own setup goes to the emulator directly.
    pub async fn start_through(endpoint: &str) -> Broker {
        Self::start_through_with(endpoint, &[]).await
    }

    /// The same, with configuration overrides.
    pub async fn start_through_with(endpoint: &str, overrides: &[(&str, &str)]) -> Broker {
        Self::start_inner(
            Backend::Aws,
            overrides,
            &FakeEntry::default(),
            Some(endpoint),
        )
        .await
    }

    async fn start_inner(
        backend: Backend,
        overrides: &[(&str, &str)],
        entry: &FakeEntry<'_>,
        aws_endpoint: Option<&str>,
    ) -> Broker {
        if backend == Backend::Aws {
            let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
            assert!(
                endpoint.starts_with("http://127.0.0.1:"),
                "AWS-backend tests need the moto emulator on loopback in AWS_ENDPOINT_URL; run ./infra/test, which starts it"
            );
        }
        let provider = FakeProvider::start().await;
        let (listener, addr) = brokerctl::server::bind(([127, 0, 0, 1], 0).into())
            .await
            .expect("bind broker");
        let base_url = format!("http://{addr}");
        let data_dir = std::env::temp_dir().join(unique("broker-test"));
        let mut vars: HashMap<String, String> = HashMap::from([
            (
                "BROKER_BACKEND".into(),
                if backend == Backend::Aws {
                    "aws"
                } else {
                    "embedded"
                }
                .into(),
            ),
            ("BROKER_PUBLIC_URL".into(), base_url.clone()),
            ("BROKER_ALLOW_LOOPBACK_HTTP".into(), "1".into()),
            ("BROKER_TABLE".into(), unique("table")),
            ("BROKER_SECRET_PREFIX".into(), unique("prefix")),
            ("BROKER_DATA_DIR".into(), data_dir.display().to_string()),
        ]);
        for (k, v) in overrides {
            vars.insert(k.to_string(), v.to_string());
        }
        let config = broker::Config::from_lookup(|k| vars.get(k).cloned()).expect("config");
        App::init_backend(&config).await.expect("init backend");
        let providers = vec![fake_entry(&provider.base_url, entry)];
        let catalog_extra = providers.clone();
        let aws_requests = AwsRequests::default();
        let vault_write_fails = Arc::new(AtomicBool::new(false));
        let faulty = |vault: Arc<dyn Vault>| -> Arc<dyn Vault> {
            Arc::new(FaultyVault {
                inner: vault,
                fail_writes: vault_write_fails.clone(),
            })
        };
        let app = match backend {
            Backend::Embedded => {
                let (store, vault) = App::backend(&config).await.expect("embedded backend");
                App::assemble(config.clone(), providers, store, faulty(vault))
            }
            Backend::Aws => {
                // The broker's clients count their requests. The endpoint is set on each client
                // (one set on the shared config yields to AWS_ENDPOINT_URL, which the services
                // read again): the emulator, or the relay in front of it.
                let sdk = broker::aws::sdk_config().await.expect("AWS SDK config");
                let endpoint = match aws_endpoint {
                    Some(relay) => relay.to_string(),
                    None => std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL"),
                };
                let dynamodb = broker::aws::dynamodb_config(&sdk)
                    .endpoint_url(&endpoint)
                    .interceptor(aws_requests.clone())
                    .build();
                let secrets = broker::aws::secrets_manager_config(&sdk)
                    .endpoint_url(&endpoint)
                    .interceptor(aws_requests.clone())
                    .build();
                let store =
                    DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(dynamodb), &config.table);
                let vault = SecretsManagerVault::new(
                    aws_sdk_secretsmanager::Client::from_conf(secrets),
                    None,
                    &config.secret_prefix,
                );
                App::assemble(
                    config.clone(),
                    providers,
                    Arc::new(store),
                    faulty(Arc::new(vault)),
                )
            }
        };
        let app = Arc::new(app.expect("app"));
        // Every response of every test goes through the contract check.
        let violations = Violations::default();
        let aws_actions = ActionsByFunction::default();
        let router = brokerctl::server::router(app.clone(), None)
            .layer(axum::middleware::from_fn_with_state(
                (aws_requests.clone(), aws_actions.clone()),
                aws_requests::attributing_layer,
            ))
            .layer(axum::middleware::from_fn_with_state(
                violations.clone(),
                contract::checking_layer,
            ));
        tokio::spawn(brokerctl::server::serve(listener, router));

        let admin_config = config.clone();
        let admin = Admin::connect(config).await.expect("admin");
        let org = unique("org");
        let redirect_url = "http://127.0.0.1:1/platform/done".to_string();
        admin
            .org_create(&org, std::slice::from_ref(&redirect_url))
            .await
            .expect("org");
        let key = admin
            .key_create(&org, 7, vec![], vec![])
            .await
            .expect("key");
        admin
            .app_set(FAKE, CLIENT_ID, CLIENT_SECRET.into(), None, None)
            .await
            .expect("app credentials");
        Broker {
            backend,
            base_url,
            app,
            admin,
            provider,
            org,
            key,
            redirect_url,
            http: http_client(),
            aws_requests,
            aws_actions,
            violations,
            vault_write_fails,
            data_dir,
            config: admin_config,
            providers: catalog_extra,
        }
    }

    /// Another broker process over the same store and vault (the same table and prefix on moto,
    /// the same embedded file): its own App, clients and caches, its own loopback port. Returns
    /// its base URL and its App.
    pub async fn second_process(&self) -> (String, Arc<App>) {
        let mut app = App::build(self.config.clone(), self.providers.clone())
            .await
            .expect("second app");
        // One clock for both, so a test that moves time moves it for every process.
        app.clock = self.app.clock.clone();
        let app = Arc::new(app);
        let (listener, addr) = brokerctl::server::bind(([127, 0, 0, 1], 0).into())
            .await
            .expect("bind second broker");
        let router = brokerctl::server::router(app.clone(), None).layer(
            axum::middleware::from_fn_with_state(self.violations.clone(), contract::checking_layer),
        );
        tokio::spawn(brokerctl::server::serve(listener, router));
        (format!("http://{addr}"), app)
    }

    /// GETs `path` with an API key; returns the status and the parsed body.
    pub async fn get(&self, path: &str, key: Option<&str>) -> (u16, Value) {
        self.get_at(&self.base_url, path, key).await
    }

    /// The same against another broker process's `base`.
    pub async fn get_at(&self, base: &str, path: &str, key: Option<&str>) -> (u16, Value) {
        let mut req = self.http.get(format!("{base}{path}"));
        if let Some(key) = key {
            req = req.header("x-api-key", key);
        }
        status_and_json(req.send().await.expect("request")).await
    }

    /// `GET /v1/connections/{id}/token` with the broker's key.
    pub async fn token(&self, id: &str, force: bool) -> (u16, Value) {
        let query = if force { "?force_refresh=true" } else { "" };
        self.get(
            &format!("/v1/connections/{id}/token{query}"),
            Some(&self.key),
        )
        .await
    }

    /// `DELETE /v1/connections/{id}` with the broker's key.
    pub async fn delete_connection(&self, id: &str) -> (u16, Value) {
        let req = self
            .http
            .delete(self.url(&format!("/v1/connections/{id}")))
            .header("x-api-key", &self.key);
        status_and_json(req.send().await.expect("request")).await
    }

    /// Whether the vault (moto's Secrets Manager, or the embedded file) holds the connection's
    /// token document.
    pub async fn token_document_exists(&self, connection_id: &str) -> bool {
        let name = broker::vault::names::connection(
            &self.config.secret_prefix,
            &OrgId::from(&self.org),
            &connection_id.into(),
        );
        self.app
            .vault
            .get_secret(&name)
            .await
            .expect("vault read")
            .is_some()
    }

    /// A personal flow up to the callback: the connection's id and the state token.
    pub async fn authorized_personal_connection(&self) -> (String, String) {
        let (status, started) = self.start_personal().await;
        assert_eq!(status, 200, "{started}");
        let mut browser = Browser::default();
        let callback = self
            .through_provider(&mut browser, started["authorization_url"].as_str().unwrap())
            .await;
        let resp = browser.get(&callback).await;
        assert_eq!(resp.status().as_u16(), 303);
        let params = query_of(&location(&resp));
        (
            params["connection_id"].clone(),
            params["state_token"].clone(),
        )
    }

    /// The personal-connector authorize call for the fake provider, as the platform makes it.
    pub async fn start_personal(&self) -> (u16, Value) {
        let path = format!(
            "/v1/personal-connectors/authorize?organization_id={}",
            self.org
        );
        self.post(
            &path,
            Some(&self.key),
            &json!({ "connector_type": "fake", "redirect_url": self.redirect_url }),
        )
        .await
    }

    /// The personal-connector complete call with `state_token`, as the platform makes it.
    pub async fn complete_personal(&self, state_token: &str) -> (u16, Value) {
        let path = format!(
            "/v1/personal-connectors/complete-oauth?organization_id={}",
            self.org
        );
        self.post(
            &path,
            Some(&self.key),
            &json!({ "state_token": state_token }),
        )
        .await
    }

    /// The stored connection `id` of the broker's organization, which must exist.
    pub async fn connection(&self, id: &str) -> broker::connection::Connection {
        self.app
            .connections
            .get_connection(&OrgId::from(&self.org), &id.into())
            .await
            .expect("connection read")
            .unwrap_or_else(|| panic!("no connection {id}"))
    }

    /// A second organization with its own key, on the same broker.
    pub async fn other_org(&self) -> (String, String) {
        let org = unique("other");
        self.admin
            .org_create(&org, std::slice::from_ref(&self.redirect_url))
            .await
            .expect("org");
        let key = self
            .admin
            .key_create(&org, 8, vec![], vec![])
            .await
            .expect("key");
        (org, key)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// POSTs JSON with an API key; returns the status and the parsed body.
    pub async fn post(&self, path: &str, key: Option<&str>, body: &Value) -> (u16, Value) {
        let mut req = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(key) = key {
            req = req.header("x-api-key", key);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// The Airbyte initiateOAuth body for the fake provider, camelCase.
    pub fn initiate_body(&self) -> Value {
        json!({ "sourceType": FAKE, "workspaceId": "ws-1", "redirectUrl": self.redirect_url })
    }

    /// Starts a flow with initiateOAuth and returns its consent URL.
    pub async fn initiate(&self, body: &Value) -> String {
        let (status, body) = self
            .post("/v1/sources/initiateOAuth", Some(&self.key), body)
            .await;
        assert_eq!(status, 200, "initiateOAuth: {body}");
        body["consentUrl"].as_str().expect("consentUrl").to_string()
    }

    /// Browser through authorize and the provider: returns the callback URL the provider sent
    /// the browser to.
    pub async fn through_provider(&self, browser: &mut Browser, consent_url: &str) -> String {
        let resp = browser.get(consent_url).await;
        assert_eq!(resp.status().as_u16(), 302, "authorize");
        let provider_url = location(&resp);
        assert!(
            provider_url.starts_with(&self.provider.base_url),
            "authorize sent the browser to {provider_url}"
        );
        let resp = browser.get(&provider_url).await;
        assert_eq!(resp.status().as_u16(), 303, "fake provider authorize");
        location(&resp)
    }

    /// A flow started with initiateOAuth and consented at the provider: the browser that went
    /// through it (its binding cookie) and the callback URL the provider sent it to.
    pub async fn flow_at_provider(&self) -> (Browser, String) {
        let mut browser = Browser::default();
        let consent = self.initiate(&self.initiate_body()).await;
        let callback = self.through_provider(&mut browser, &consent).await;
        (browser, callback)
    }

    /// A fresh browser from an authorization URL through the provider's consent to the broker's
    /// callback: where it lands (the redirect to the platform, or a page).
    pub async fn land_from(&self, authorization_url: &str) -> reqwest::Response {
        let mut browser = Browser::default();
        let callback = self.through_provider(&mut browser, authorization_url).await;
        browser.get(&callback).await
    }

    /// The stored token document behind `secret_id`: from moto through the AWS SDK, or from the
    /// embedded vault after checking the file on disk does not hold it in clear.
    pub async fn read_secret(&self, secret_id: &str, must_not_appear_on_disk: &str) -> Value {
        let raw = match self.backend {
            Backend::Aws => {
                let sdk = broker::aws::sdk_config().await.expect("AWS SDK config");
                let out = aws_sdk_secretsmanager::Client::new(&sdk)
                    .get_secret_value()
                    .secret_id(secret_id)
                    .send()
                    .await
                    .expect("GetSecretValue from the emulator");
                out.secret_string.expect("secret string")
            }
            Backend::Embedded => {
                let file = std::fs::read(self.data_dir.join(broker::store::embedded::DB_FILE))
                    .expect("db file");
                let wal = std::fs::read(
                    self.data_dir
                        .join(format!("{}-wal", broker::store::embedded::DB_FILE)),
                )
                .unwrap_or_default();
                for bytes in [&file, &wal] {
                    assert!(
                        !contains(bytes, must_not_appear_on_disk.as_bytes()),
                        "a token sits in clear in the embedded file"
                    );
                }
                self.app
                    .vault
                    .get_secret(secret_id)
                    .await
                    .expect("vault")
                    .expect("secret exists")
                    .expose()
                    .clone()
            }
        };
        serde_json::from_str(&raw).expect("token document is JSON")
    }
}

impl Broker {
    /// The connections' token secrets moto holds under this broker's prefix (app credentials
    /// and the sealing key aside), each with how many versions it has.
    pub async fn stored_secrets(&self) -> BTreeMap<String, usize> {
        assert_eq!(self.backend, Backend::Aws, "the secrets moto holds");
        let sdk = broker::aws::sdk_config().await.expect("AWS SDK config");
        let client = aws_sdk_secretsmanager::Client::new(&sdk);
        let prefix = format!("{}/connections/", self.config.secret_prefix);
        let name_filter = aws_sdk_secretsmanager::types::Filter::builder()
            .key(aws_sdk_secretsmanager::types::FilterNameStringType::Name)
            .values(&prefix)
            .build();
        let mut pages = client
            .list_secrets()
            .filters(name_filter)
            .into_paginator()
            .send();
        let mut names = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.expect("ListSecrets from the emulator");
            names.extend(page.secret_list().iter().filter_map(|s| s.name.clone()));
        }
        let mut out = BTreeMap::new();
        for name in names {
            if !name.starts_with(&prefix) {
                continue;
            }
            let versions = client
                .list_secret_version_ids()
                .secret_id(&name)
                .send()
                .await
                .expect("ListSecretVersionIds from the emulator");
            out.insert(name, versions.versions().len());
        }
        out
    }
}

/// A vault whose writes fail while its switch is on, as a throttled or unreachable Secrets
/// Manager's would after the SDK's retries; reads and the sealer still answer.
pub struct FaultyVault {
    inner: Arc<dyn Vault>,
    fail_writes: Arc<AtomicBool>,
}

impl FaultyVault {
    fn refuse(&self) -> broker::Result<()> {
        if self.fail_writes.load(Ordering::SeqCst) {
            Err(broker::Error::Unavailable(
                "injected: vault write refused".into(),
            ))
        } else {
            Ok(())
        }
    }
}

#[async_trait::async_trait]
impl Vault for FaultyVault {
    async fn put_secret(
        &self,
        name: &str,
        value: &Sensitive<String>,
        tags: &[(&str, &str)],
        request_token: &str,
    ) -> broker::Result<String> {
        self.refuse()?;
        self.inner
            .put_secret(name, value, tags, request_token)
            .await
    }

    async fn update_secret(
        &self,
        name: &str,
        value: &Sensitive<String>,
        request_token: &str,
    ) -> broker::Result<()> {
        self.refuse()?;
        self.inner.update_secret(name, value, request_token).await
    }

    async fn get_secret(&self, name: &str) -> broker::Result<Option<Sensitive<String>>> {
        self.inner.get_secret(name).await
    }

    async fn delete_secret(&self, name: &str) -> broker::Result<()> {
        self.refuse()?;
        self.inner.delete_secret(name).await
    }

    async fn sealer(&self) -> broker::Result<Arc<Sealer>> {
        self.inner.sealer().await
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Changes to the fake provider's catalog entry: keys replaced or added (TOML values), and tables
/// appended (`[provider.regions.eu]` ...), with `{base}` standing for the provider's URL
/// (`{base_by_name}` for the same URL with `localhost` for its host).
#[derive(Debug, Default, Clone, Copy)]
pub struct FakeEntry<'a> {
    pub keys: &'a [(&'a str, &'a str)],
    pub tables: &'a str,
}

/// The fake provider's catalog entry, as a `BROKER_PROVIDERS_FILE` would hold it (the runtime-path
/// test hands this very file to the Lambda binaries).
pub fn fake_entry_toml(base: &str) -> String {
    fake_entry_toml_with(base, &FakeEntry::default())
}

pub fn fake_entry_toml_with(base: &str, entry: &FakeEntry<'_>) -> String {
    let mut keys: Vec<(String, String)> = [
        ("slug", format!("\"{FAKE}\"")),
        ("name", "\"Fake provider\"".into()),
        ("source_definition_ids", format!("[\"{FAKE_DEFINITION}\"]")),
        ("authorization_url", "\"{base}/authorize\"".into()),
        ("token_url", "\"{base}/token\"".into()),
        ("revocation_url", "\"{base}/revoke\"".into()),
        ("scopes", "[\"read\"]".into()),
        ("optional_scopes", "[\"write\"]".into()),
        ("pkce", "\"required\"".into()),
        ("client_auth", "\"basic\"".into()),
        (
            "authorize_params",
            "{ prompt = \"consent\", state = \"caller-cannot-override\" }".into(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (k, v) in entry.keys {
        match keys.iter_mut().find(|(key, _)| key == k) {
            Some(slot) => slot.1 = v.to_string(),
            None => keys.push((k.to_string(), v.to_string())),
        }
    }
    // An empty value removes the key (an entry without a revocation endpoint, say).
    keys.retain(|(_, v)| !v.is_empty());
    let body: String = keys.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
    // `{base_by_name}`: the same provider under its name, as a second server would be.
    format!("[[provider]]\n{body}\n{}\n", entry.tables)
        .replace("{base_by_name}", &base.replace("127.0.0.1", "localhost"))
        .replace("{base}", base)
}

fn fake_entry(base: &str, entry: &FakeEntry<'_>) -> Provider {
    #[derive(serde::Deserialize)]
    struct File {
        provider: Vec<Provider>,
    }
    let file: File =
        toml::from_str(&fake_entry_toml_with(base, entry)).expect("fake provider entry");
    file.provider.into_iter().next().expect("one entry")
}

/// An API Gateway v2 event from `tests/events/`, with its `{{NAME}}` placeholders filled.
pub fn event_text(name: &str, vars: &[(&str, &str)]) -> String {
    let path = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    for (k, v) in vars {
        text = text.replace(&format!("{{{{{k}}}}}"), v);
    }
    assert!(
        !text.contains("{{"),
        "{name}: a placeholder was left unfilled"
    );
    text
}

/// A browser: its own cookie jar, no redirect following.
pub struct Browser {
    http: reqwest::Client,
    cookies: HashMap<String, String>,
}

impl Default for Browser {
    fn default() -> Self {
        Browser {
            http: http_client(),
            cookies: HashMap::new(),
        }
    }
}

impl Browser {
    pub async fn get(&mut self, url: &str) -> reqwest::Response {
        let mut req = self.http.get(url);
        if !self.cookies.is_empty() {
            let header: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            req = req.header("cookie", header.join("; "));
        }
        let resp = req.send().await.expect("browser request");
        for value in resp.headers().get_all("set-cookie") {
            let pair = value
                .to_str()
                .unwrap_or_default()
                .split(';')
                .next()
                .unwrap_or_default();
            if let Some((k, v)) = pair.split_once('=') {
                self.cookies.insert(k.to_string(), v.to_string());
            }
        }
        resp
    }

    /// An HTML form's POST (no cookies needed by the broker's forms).
    pub async fn post_form(&mut self, url: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("browser form post")
    }

    pub fn cookies(&self) -> &HashMap<String, String> {
        &self.cookies
    }

    /// The `Cookie` header this browser sends, for requests made outside it (concurrent ones).
    pub fn cookie_header(&self) -> String {
        let pairs: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        pairs.join("; ")
    }
}

/// The status and the body as JSON (or as a JSON string when it is not JSON).
pub async fn status_and_json(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub fn location(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

pub fn query_of(url: &str) -> HashMap<String, String> {
    Url::parse(url)
        .expect("absolute URL")
        .query_pairs()
        .into_owned()
        .collect()
}
