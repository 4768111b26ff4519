//! The AWS SDK's configuration, loaded once per process, over the same HTTPS stack as the token
//! client: reqwest with rustls on ring and compiled-in webpki roots.
//!
//! The SDK's default client would link a second crypto library (aws-lc) and parse the system CA
//! store at every cold start, about 4 ms of a Lambda's init (BENCHMARKS.md). The SDK accepts any
//! [`HttpClient`], so it gets ours: requests and responses are converted, and reqwest's errors are
//! classified the way the SDK's retry policy expects (timeouts and I/O are transient).

use std::time::Duration;

use aws_config::environment::credentials::EnvironmentVariableCredentialsProvider;
use aws_config::{BehaviorVersion, SdkConfig};
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

/// Region, credentials and `AWS_ENDPOINT_URL` from the SDK's own chain, with our HTTPS client.
pub async fn sdk_config() -> Result<SdkConfig> {
    let http = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        // AWS endpoints never redirect; a redirect would carry a signed request elsewhere.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Error::internal(format!("AWS HTTP client: {e}")))?;
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).http_client(SdkHttpClient { http });
    // Lambda hands the role's credentials in the environment. The default chain would still
    // build its web-identity provider, an STS client whose endpoint rules cost a sixth of init
    // (callgrind, BENCHMARKS.md); with environment credentials present, they are all it needs.
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_some() {
        loader = loader.credentials_provider(EnvironmentVariableCredentialsProvider::new());
    }
    Ok(loader.load().await)
}

#[derive(Debug, Clone)]
struct SdkHttpClient {
    http: reqwest::Client,
}

impl HttpClient for SdkHttpClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(SdkConnector {
            http: self.http.clone(),
            read_timeout: settings.read_timeout(),
        })
    }
}

#[derive(Debug)]
struct SdkConnector {
    http: reqwest::Client,
    read_timeout: Option<Duration>,
}

impl HttpConnector for SdkConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let http = self.http.clone();
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let mut request = to_reqwest(request)?;
            if let Some(timeout) = read_timeout {
                *request.timeout_mut() = Some(timeout);
            }
            let response = http.execute(request).await.map_err(classify)?;
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

fn to_reqwest(request: HttpRequest) -> std::result::Result<reqwest::Request, ConnectorError> {
    let request = request
        .try_into_http1x()
        .map_err(|e| ConnectorError::user(e.into()))?;
    let (parts, body) = request.into_parts();
    // DynamoDB and Secrets Manager requests are small JSON documents, always held in memory.
    let body = body
        .bytes()
        .ok_or_else(|| ConnectorError::user("streaming request body".into()))?
        .to_vec();
    reqwest::Request::try_from(http::Request::from_parts(parts, body))
        .map_err(|e| ConnectorError::user(e.into()))
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
