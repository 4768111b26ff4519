//! The dependencies of every handler, built once per process (DESIGN §9.4) and borrowed by each
//! request: configuration, catalog, stores, vault, app credentials and the token HTTP client.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::auth::{KeyAdmin, KnownKeys};
use crate::config::Backend;
use crate::connect::SessionStore;
use crate::connection::DocumentCache;
use crate::events::stream::{STREAM_WAITS, StreamDelivery};
use crate::events::{SqsDeadLetters, WebhookStore};
use crate::provider::{Catalog, Provider, TokenClient};
use crate::store::dynamodb::DynamoStore;
#[cfg(feature = "embedded")]
use crate::store::embedded::{Db, EmbeddedStore};
use crate::store::{
    ConnectionStore, FlowStore, KeyStore, OrgStore, SourceStore, StateTokenStore, Store,
};
#[cfg(feature = "embedded")]
use crate::vault::embedded::EmbeddedVault;
use crate::vault::secrets_manager::SecretsManagerVault;
use crate::vault::{AppRegistry, SecretNames, Vault};
use crate::{Config, Result};

/// Every port an operator's command may use, over one backend ([`App::operator_backend`]).
pub struct OperatorBackend {
    pub store: Arc<dyn Store>,
    pub vault: Arc<dyn Vault>,
    pub webhooks: Arc<dyn WebhookStore>,
    pub keys: Arc<dyn KeyAdmin>,
    pub secret_names: Arc<dyn SecretNames>,
}

impl OperatorBackend {
    fn over<S, V>(store: Arc<S>, vault: Arc<V>) -> Self
    where
        S: Store + WebhookStore + KeyAdmin + 'static,
        V: Vault + SecretNames + 'static,
    {
        OperatorBackend {
            store: store.clone(),
            vault: vault.clone(),
            webhooks: store.clone(),
            keys: store,
            secret_names: vault,
        }
    }
}

/// The `events` function's ports (AWS only): the endpoints and the delivery ledger in the table,
/// their secrets in the vault, the dead-letter queue.
pub struct EventsBackend {
    pub config: Config,
    pub store: DynamoStore,
    pub vault: SecretsManagerVault,
    pub dead_letters: SqsDeadLetters,
}

impl EventsBackend {
    pub async fn from_env() -> Result<Self> {
        Self::new(Config::from_env()?, &crate::aws::sdk_config().await?)
    }

    pub fn new(config: Config, sdk: &aws_config::SdkConfig) -> Result<Self> {
        let queue = config.events_dlq_url.clone().ok_or_else(|| {
            crate::Error::validation("BROKER_EVENTS_DLQ_URL is required by the events function")
        })?;
        let (store, vault) = App::aws_backend_from(&config, sdk);
        let sqs = aws_sdk_sqs::Client::from_conf(crate::aws::sqs_config(sdk).build());
        Ok(EventsBackend {
            store,
            vault,
            dead_letters: SqsDeadLetters::new(sqs, &queue),
            config,
        })
    }

    /// The delivery over these ports, with the function's waits and timeout.
    pub fn delivery(&self) -> StreamDelivery<'_> {
        StreamDelivery {
            config: &self.config,
            webhooks: &self.store,
            vault: &self.vault,
            ledger: &self.store,
            dead_letters: &self.dead_letters,
            waits: &STREAM_WAITS,
            timeout: crate::events::delivery::TIMEOUT,
        }
    }
}

/// Wall-clock seconds, with an offset tests can move forward to expire flows whose items remain.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset: Arc<AtomicI64>,
}

impl Clock {
    pub fn now(&self) -> i64 {
        chrono::Utc::now().timestamp() + self.offset.load(Ordering::Relaxed)
    }

    pub fn advance(&self, secs: i64) {
        self.offset.fetch_add(secs, Ordering::Relaxed);
    }
}

pub struct App {
    pub config: Config,
    pub catalog: Catalog,
    pub flows: Arc<dyn FlowStore>,
    pub connections: Arc<dyn ConnectionStore>,
    pub sources: Arc<dyn SourceStore>,
    pub state_tokens: Arc<dyn StateTokenStore>,
    pub sessions: Arc<dyn SessionStore>,
    pub keys: Arc<dyn KeyStore>,
    pub orgs: Arc<dyn OrgStore>,
    pub vault: Arc<dyn Vault>,
    pub apps: AppRegistry,
    pub tokens: TokenClient,
    /// API keys this process found recently.
    pub known_keys: KnownKeys,
    /// Token documents read by this process, and its per-connection refresh gates.
    pub documents: DocumentCache,
    pub clock: Clock,
}

impl App {
    /// Reads the environment and connects the configured backend. Lambda `main`s call this once.
    pub async fn from_env() -> Result<Self> {
        Self::build(Config::from_env()?, vec![]).await
    }

    /// `extra_providers` join the catalog before `BROKER_PROVIDERS_FILE` (the sandbox of `serve`).
    pub async fn build(config: Config, extra_providers: Vec<Provider>) -> Result<Self> {
        let (store, vault) = Self::backend(&config).await?;
        Self::assemble(config, extra_providers, store, vault)
    }

    /// The configured store and vault, also used directly by `brokerctl`'s admin commands.
    pub async fn backend(config: &Config) -> Result<(Arc<dyn Store>, Arc<dyn Vault>)> {
        Ok(match config.backend {
            Backend::Aws => {
                let (store, vault) = Self::aws_backend(config).await?;
                (Arc::new(store), Arc::new(vault))
            }
            #[cfg(feature = "embedded")]
            Backend::Embedded => {
                let db = Db::open(&config.data_dir)?;
                let vault = EmbeddedVault::open(db.clone(), &config.data_dir)?;
                (Arc::new(EmbeddedStore::new(db)), Arc::new(vault))
            }
        })
    }

    /// The configured backend as `brokerctl`'s admin commands see it: the request path's ports
    /// and the operator's own (webhook endpoints, key administration, secret names), over one
    /// store and one vault. The functions never call this, so the operator's code stays out of
    /// their binaries.
    pub async fn operator_backend(config: &Config) -> Result<OperatorBackend> {
        Ok(match config.backend {
            Backend::Aws => {
                let (store, vault) = Self::aws_backend(config).await?;
                OperatorBackend::over(Arc::new(store), Arc::new(vault))
            }
            #[cfg(feature = "embedded")]
            Backend::Embedded => {
                let db = Db::open(&config.data_dir)?;
                let vault = EmbeddedVault::open(db.clone(), &config.data_dir)?;
                OperatorBackend::over(Arc::new(EmbeddedStore::new(db)), Arc::new(vault))
            }
        })
    }

    /// The SDK's own configuration chain (region, credentials, AWS_ENDPOINT_URL), each service's
    /// client with its time budget.
    async fn aws_backend(config: &Config) -> Result<(DynamoStore, SecretsManagerVault)> {
        let sdk = crate::aws::sdk_config().await?;
        Ok(Self::aws_backend_from(config, &sdk))
    }

    fn aws_backend_from(
        config: &Config,
        sdk: &aws_config::SdkConfig,
    ) -> (DynamoStore, SecretsManagerVault) {
        let dynamodb = crate::aws::dynamodb_config(sdk).build();
        let secrets = crate::aws::secrets_manager_config(sdk).build();
        (
            DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(dynamodb), &config.table),
            SecretsManagerVault::new(
                aws_sdk_secretsmanager::Client::from_conf(secrets),
                config.kms_key_id.clone(),
                &config.secret_prefix,
            ),
        )
    }

    pub fn assemble(
        config: Config,
        extra_providers: Vec<Provider>,
        store: Arc<dyn Store>,
        vault: Arc<dyn Vault>,
    ) -> Result<Self> {
        let catalog = Catalog::load(&config, extra_providers)?;
        Ok(App {
            apps: AppRegistry::new(
                vault.clone(),
                config.secret_prefix.clone(),
                std::time::Duration::from_secs(config.app_cache_secs.unsigned_abs()),
            ),
            tokens: TokenClient::new()?,
            documents: DocumentCache::default(),
            known_keys: KnownKeys::new(std::time::Duration::from_secs(
                config.key_cache_secs.unsigned_abs(),
            )),
            // One backend object serves every port; each handler sees only the port it uses.
            flows: store.clone(),
            connections: store.clone(),
            sources: store.clone(),
            state_tokens: store.clone(),
            sessions: store.clone(),
            keys: store.clone(),
            orgs: store,
            vault,
            catalog,
            config,
            clock: Clock::default(),
        })
    }

    /// Creates the DynamoDB table with TTL, or the embedded file, where missing (`brokerctl init`).
    pub async fn init_backend(config: &Config) -> Result<()> {
        match config.backend {
            Backend::Aws => {
                let (store, vault) = Self::aws_backend(config).await?;
                store.init().await?;
                vault.init().await
            }
            #[cfg(feature = "embedded")]
            Backend::Embedded => Db::open(&config.data_dir).map(|_| ()),
        }
    }
}
