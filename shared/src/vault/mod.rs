//! The vault port: where tokens and provider app credentials live. [`secrets_manager`] on AWS,
//! [`embedded`] locally (encrypted at rest).

#[cfg(feature = "embedded")]
pub mod embedded;
pub mod secrets_manager;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use serde::{Deserialize, Serialize};

use crate::cache::TtlCache;
use crate::crypto::Sealer;
use crate::secret::Sensitive;
use crate::{Error, Result};

#[async_trait]
pub trait Vault: Send + Sync {
    /// Writes `value` under `name` (creating or adding a version) and returns the secret's id (an
    /// ARN on AWS). `request_token` makes a retried write of the same value a no-op.
    async fn put_secret(
        &self,
        name: &str,
        value: &Sensitive<String>,
        tags: &[(&str, &str)],
        request_token: &str,
    ) -> Result<String>;

    /// A new version of the existing secret `name`; `request_token` makes a retry a no-op.
    async fn update_secret(
        &self,
        name: &str,
        value: &Sensitive<String>,
        request_token: &str,
    ) -> Result<()>;

    async fn get_secret(&self, name: &str) -> Result<Option<Sensitive<String>>>;

    /// Deletes `name` at once, with no recovery window; a missing secret is already deleted.
    async fn delete_secret(&self, name: &str) -> Result<()>;

    /// This deployment's [`Sealer`], loaded on first use and kept for the process.
    async fn sealer(&self) -> Result<Arc<Sealer>>;
}

/// The operator's view of the vault (`brokerctl app list`): names, never values. Not a port of
/// the request path, so the functions' binaries do not carry it.
#[async_trait]
pub trait SecretNames: Send + Sync {
    /// The names of the secrets whose name starts with `prefix`, sorted.
    async fn secret_names(&self, prefix: &str) -> Result<Vec<String>>;
}

/// A provider app's OAuth client registration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppCredentials {
    pub client_id: String,
    pub client_secret: Sensitive<String>,
}

/// Secret names of DESIGN §5.
pub mod names {
    use crate::{ConnectionId, OrgId};

    pub fn connection(prefix: &str, org: &OrgId, connection_id: &ConnectionId) -> String {
        format!("{prefix}/connections/{org}/{connection_id}")
    }

    /// The key material of the deployment's [`crate::crypto::Sealer`] (AWS backend).
    pub fn sealing_key(prefix: &str) -> String {
        format!("{prefix}/sealing-key")
    }

    /// `None` scopes: the default; workspace only with an organization.
    pub fn app(prefix: &str, slug: &str, org: Option<&str>, workspace: Option<&str>) -> String {
        match (org, workspace) {
            (Some(o), Some(w)) => format!("{prefix}/apps/{o}/{w}/{slug}"),
            (Some(o), None) => format!("{prefix}/apps/{o}/{slug}"),
            _ => format!("{prefix}/apps/{slug}"),
        }
    }
}

/// How long a process trusts app credentials it read (`BROKER_APP_CACHE_SECS`): a rotated client
/// secret reaches every warm function within this bound.
pub const APP_CACHE_SECS: u64 = 60;
const APP_CACHE_MAX: usize = 1024;

type AppKey = (String, String, Option<String>);

/// App credentials with workspace over organization over default, cached briefly per process so a
/// warm function reads Secrets Manager once a minute per app, not once per request.
pub struct AppRegistry {
    vault: Arc<dyn Vault>,
    prefix: String,
    cache: TtlCache<AppKey, AppCredentials>,
}

impl AppRegistry {
    pub fn new(vault: Arc<dyn Vault>, prefix: impl Into<String>, ttl: Duration) -> Self {
        AppRegistry {
            vault,
            prefix: prefix.into(),
            cache: TtlCache::new(ttl, APP_CACHE_MAX),
        }
    }

    /// The app credentials a flow runs with: its provider, organization and workspace.
    pub async fn for_flow(&self, flow: &crate::flow::Flow) -> Result<AppCredentials> {
        self.credentials(
            &flow.provider,
            &flow.organization_id,
            flow.workspace_id.as_deref(),
        )
        .await
    }

    pub async fn credentials(
        &self,
        slug: &str,
        org: &str,
        workspace: Option<&str>,
    ) -> Result<AppCredentials> {
        let cache_key = (
            slug.to_string(),
            org.to_string(),
            workspace.map(str::to_string),
        );
        if let Some(creds) = self.cache.get(&cache_key) {
            return Ok(creds);
        }
        let candidates = [
            workspace.map(|w| names::app(&self.prefix, slug, Some(org), Some(w))),
            Some(names::app(&self.prefix, slug, Some(org), None)),
            Some(names::app(&self.prefix, slug, None, None)),
        ];
        for name in candidates.into_iter().flatten() {
            if let Some(raw) = self.vault.get_secret(&name).await? {
                let creds: AppCredentials = serde_json::from_str(raw.expose()).map_err(|_| {
                    Error::internal(format!(
                        "app credentials at {name} are not {{client_id, client_secret}} JSON"
                    ))
                })?;
                self.cache.insert(cache_key, creds.clone());
                return Ok(creds);
            }
        }
        Err(Error::validation(format!(
            "provider `{slug}` has no app credentials configured (brokerctl app set {slug} ...)"
        )))
    }
}

/// Throttling, timeouts, unreachable endpoints and any 5xx answer (whatever its body: AWS's
/// generic `InternalFailure`, or a proxy's page that does not parse) become 503, retry later;
/// anything else is an internal error whose text stays in the logs.
pub(crate) fn sdk_error<E>(operation: &str, e: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let transient_codes = [
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "InternalServerError",
        "InternalServiceError",
        "ServiceUnavailable",
        "LimitExceededException",
    ];
    let server_error = e
        .raw_response()
        .is_some_and(|r| r.status().is_server_error());
    let transient = server_error
        || match &e {
            SdkError::DispatchFailure(_)
            | SdkError::TimeoutError(_)
            | SdkError::ResponseError(_) => true,
            SdkError::ServiceError(se) => se
                .err()
                .code()
                .is_some_and(|c| transient_codes.contains(&c)),
            _ => false,
        };
    let detail = match &e {
        SdkError::ServiceError(se) => format!(
            "{operation}: {}",
            se.err().code().unwrap_or("service error")
        ),
        other => format!("{operation}: {other}"),
    };
    if transient {
        Error::Unavailable(detail)
    } else {
        Error::Internal(detail)
    }
}
