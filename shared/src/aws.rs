//! The AWS SDK's configuration, loaded once per process, over the same HTTPS stack as the token
//! client: reqwest with rustls on ring and compiled-in webpki roots.
//!
//! The SDK's default client would link a second crypto library (aws-lc) and parse the system CA
//! store at every cold start, about 4 ms of a Lambda's init (BENCHMARKS.md). The SDK accepts any
//! [`HttpClient`], so it gets ours: the SDK's request body is streamed (its upload-stall
//! protection watches it), the connection is registered for the SDK's connection poisoning, and
//! reqwest's errors are classified the way the SDK's retry policy expects.
//!
//! Each service's calls have a time budget (per attempt and in all), fitted under the functions'
//! timeouts (template.yaml): a slow but live answer is waited for, a dead service answers 503 in
//! bounded time.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use aws_config::environment::credentials::EnvironmentVariableCredentialsProvider;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_runtime_api::client::connection::{CaptureSmithyConnection, ConnectionMetadata};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use oauth2::{http, reqwest};

use crate::{Error, Result};

/// The SDK's default connect timeout for the latest behavior version.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);

/// DynamoDB answers in milliseconds: an attempt still waiting after 3 s is retried, and a call is
/// given up after 5 s. The functions with a 10 s timeout (initiate, authorize) make at most one
/// slow call before they answer.
pub const DYNAMODB_ATTEMPT: Duration = Duration::from_secs(3);
pub const DYNAMODB_CALL: Duration = Duration::from_secs(5);

/// Secrets Manager can be slow under load: an 8 s answer is still waited for, and a call is
/// given up after 10 s, so a callback (20 s) that could not store its tokens still has time to
/// seal them onto the flow and answer its 503 page.
pub const SECRETS_MANAGER_ATTEMPT: Duration = Duration::from_secs(9);
pub const SECRETS_MANAGER_CALL: Duration = Duration::from_secs(10);

/// Region, credentials and `AWS_ENDPOINT_URL` from the SDK's own chain, with our HTTPS client.
pub async fn sdk_config() -> Result<SdkConfig> {
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).http_client(SdkHttpClient::new()?);
    // Lambda hands the role's credentials in the environment. The default chain would still
    // build its web-identity provider, an STS client whose endpoint rules cost a sixth of init
    // (callgrind, BENCHMARKS.md); with environment credentials present, they are all it needs.
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_some() {
        loader = loader.credentials_provider(EnvironmentVariableCredentialsProvider::new());
    }
    Ok(loader.load().await)
}

/// DynamoDB's client configuration, with its time budget.
pub fn dynamodb_config(sdk: &SdkConfig) -> aws_sdk_dynamodb::config::Builder {
    aws_sdk_dynamodb::config::Builder::from(sdk)
        .timeout_config(budget(DYNAMODB_ATTEMPT, DYNAMODB_CALL))
}

/// Secrets Manager's client configuration, with its time budget.
pub fn secrets_manager_config(sdk: &SdkConfig) -> aws_sdk_secretsmanager::config::Builder {
    aws_sdk_secretsmanager::config::Builder::from(sdk)
        .timeout_config(budget(SECRETS_MANAGER_ATTEMPT, SECRETS_MANAGER_CALL))
}

/// SQS's client configuration (the events function's dead-letter queue), DynamoDB's budget.
pub fn sqs_config(sdk: &SdkConfig) -> aws_sdk_sqs::config::Builder {
    aws_sdk_sqs::config::Builder::from(sdk).timeout_config(budget(DYNAMODB_ATTEMPT, DYNAMODB_CALL))
}

fn budget(attempt: Duration, call: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(attempt)
        .operation_timeout(call)
        .build()
}

/// One reqwest client (one connection pool) for every SDK client of the process.
#[derive(Debug, Clone)]
struct SdkHttpClient {
    pool: Arc<Pool>,
}

/// reqwest does not expose its connections one by one, so poisoning replaces the pool: the old
/// one's connections close as their last requests end, and the next call connects afresh.
#[derive(Debug)]
struct Pool {
    current: RwLock<reqwest::Client>,
}

impl Pool {
    fn build() -> Result<reqwest::Client> {
        reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            // AWS endpoints never redirect; a redirect would carry a signed request elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::internal(format!("AWS HTTP client: {e}")))
    }

    fn client(&self) -> reqwest::Client {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn poison(&self) {
        // Building cannot fail where it already succeeded once (same settings); if it did, the
        // old pool stays, which is what a failed poisoning would leave anyway.
        if let Ok(fresh) = Self::build() {
            *self
                .current
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = fresh;
        }
    }
}

impl SdkHttpClient {
    fn new() -> Result<Self> {
        Ok(SdkHttpClient {
            pool: Arc::new(Pool {
                current: RwLock::new(Pool::build()?),
            }),
        })
    }
}

impl HttpClient for SdkHttpClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(SdkConnector {
            pool: self.pool.clone(),
            read_timeout: settings.read_timeout(),
        })
    }
}

#[derive(Debug)]
struct SdkConnector {
    pool: Arc<Pool>,
    read_timeout: Option<Duration>,
}

impl HttpConnector for SdkConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let http = self.pool.client();
        let pool = self.pool.clone();
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let (mut request, capture) = to_reqwest(request)?;
            if let Some(timeout) = read_timeout {
                *request.timeout_mut() = Some(timeout);
            }
            // Registered before sending, so that an attempt which never got an answer (a
            // timeout, a reset) can be poisoned as well as one answered with a 5xx.
            let register = |remote: Option<std::net::SocketAddr>| {
                if let Some(capture) = &capture {
                    let pool = pool.clone();
                    capture.set_connection_retriever(move || {
                        let pool = pool.clone();
                        let mut metadata = ConnectionMetadata::builder()
                            .proxied(false)
                            .poison_fn(move || pool.poison());
                        metadata.set_remote_addr(remote);
                        Some(metadata.build())
                    });
                }
            };
            register(None);
            let response = http.execute(request).await.map_err(classify)?;
            register(response.remote_addr());
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await.map_err(classify)?;
            let mut out = http::Response::new(SdkBody::from(body));
            *out.status_mut() = status;
            *out.headers_mut() = headers;
            HttpResponse::try_from(out).map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

/// The request with the SDK's body streamed, not copied: the SDK's upload-stall protection
/// measures the throughput of the body it handed over, and a body never polled reads as a stall
/// (the call abandoned after its grace period, while the service may still apply it).
fn to_reqwest(
    request: HttpRequest,
) -> std::result::Result<(reqwest::Request, Option<CaptureSmithyConnection>), ConnectorError> {
    let request = request
        .try_into_http1x()
        .map_err(|e| ConnectorError::user(e.into()))?;
    let (parts, body) = request.into_parts();
    let capture = parts.extensions.get::<CaptureSmithyConnection>().cloned();
    let request =
        reqwest::Request::try_from(http::Request::from_parts(parts, reqwest::Body::wrap(body)))
            .map_err(|e| ConnectorError::user(e.into()))?;
    Ok((request, capture))
}

/// Timeouts and I/O failures are transient, so the SDK retries them; a refused connection never
/// reached the service, so even non-idempotent calls may be retried.
fn classify(e: reqwest::Error) -> ConnectorError {
    if e.is_timeout() {
        ConnectorError::timeout(e.into())
    } else if e.is_connect() {
        ConnectorError::io(e.into()).never_connected()
    } else if e.is_request() || e.is_body() {
        ConnectorError::io(e.into())
    } else {
        ConnectorError::other(e.into(), None)
    }
}
