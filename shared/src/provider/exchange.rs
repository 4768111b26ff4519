//! The token request at the provider, through `oauth2` with a hardened HTTP client: no redirects,
//! timeouts, and a bounded response body.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::reqwest;
use oauth2::{
    AsyncHttpClient, AuthType, AuthorizationCode, ClientId, ClientSecret, ExtraTokenFields,
    HttpClientError, HttpRequest, HttpResponse, PkceCodeVerifier, RedirectUrl, RefreshToken,
    RequestTokenError, StandardRevocableToken, StandardTokenResponse, TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ClientAuth, Endpoints, Provider, TokenSettings, quirks};
use crate::secret::Sensitive;
use crate::vault::AppCredentials;
use crate::{Error, Result};

/// Largest token response read; anything longer is refused rather than buffered.
const MAX_TOKEN_RESPONSE: usize = 256 * 1024;
/// Below the callback function's timeout, so a slow provider ends in a clear error.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Every field of the token response beyond the standard ones, so providers' metadata can be kept.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct OtherFields {
    #[serde(flatten)]
    fields: BTreeMap<String, Value>,
}
impl ExtraTokenFields for OtherFields {}

type ProviderTokenResponse = StandardTokenResponse<OtherFields, BasicTokenType>;

/// The tokens of one connection, as written to the vault.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenSet {
    pub access_token: Sensitive<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<Sensitive<String>>,
    pub token_type: String,
    /// Epoch seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// When the refresh token dies, where the provider says so (`refresh_token_expires_in`,
    /// Intuit's `x_refresh_token_expires_in`, Airtable's `refresh_expires_in`); epoch seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_expires_at: Option<i64>,
    pub provider: String,
    /// Fields kept from the token response and the redirect (`instance_url`, `realmId`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, Value>,
}

/// The one HTTP client for provider token endpoints, built once per process.
#[derive(Debug, Clone)]
pub struct TokenClient {
    http: reqwest::Client,
}

impl TokenClient {
    pub fn new() -> Result<Self> {
        let http = reqwest::Client::builder()
            // A token endpoint that redirects could forward the code elsewhere (DESIGN §8.7).
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(3))
            .timeout(TOKEN_TIMEOUT)
            .user_agent(concat!("oauth-broker/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::internal(format!("token HTTP client: {e}")))?;
        Ok(TokenClient { http })
    }

    /// Redeems an authorization code at the token endpoint recorded in the flow; `now` dates
    /// the expiry.
    #[allow(clippy::too_many_arguments)]
    pub async fn exchange_code(
        &self,
        now: i64,
        provider: &Provider,
        endpoints: &Endpoints,
        credentials: &AppCredentials,
        code: &str,
        pkce_verifier: Option<&str>,
        redirect_uri: &str,
    ) -> Result<TokenSet> {
        let grant = Grant::Code {
            code,
            pkce_verifier,
            redirect_uri,
        };
        let http = self.through(provider);
        request_tokens(&http, now, provider, endpoints, credentials, grant).await
    }

    /// Trades a refresh token for new tokens at the connection's kept refresh endpoint, speaking
    /// the way the connection was authorized (`settings`) with the entry's response quirks.
    pub async fn refresh(
        &self,
        now: i64,
        provider: &Provider,
        endpoints: &Endpoints,
        settings: Option<TokenSettings>,
        credentials: &AppCredentials,
        refresh_token: &str,
    ) -> Result<TokenSet> {
        let provider = settings.map_or_else(|| provider.clone(), |s| s.applied_to(provider));
        let http = self.through(&provider);
        let grant = Grant::Refresh(refresh_token);
        request_tokens(&http, now, &provider, endpoints, credentials, grant).await
    }

    /// The entry's upgrade of a first access token to a longer-lived one (Facebook's
    /// `fb_exchange_token`), at the token endpoint with the app's credentials in the body: the
    /// new tokens, the kept fields of the first ones carried over.
    pub async fn upgrade(
        &self,
        now: i64,
        provider: &Provider,
        endpoints: &Endpoints,
        credentials: &AppCredentials,
        first: &TokenSet,
    ) -> Result<TokenSet> {
        let Some(request) = upgrade_request(
            provider,
            endpoints,
            credentials,
            first.access_token.expose(),
        )?
        else {
            return Ok(first.clone());
        };
        let response = self
            .send(request)
            .await
            .map_err(|_| provider_failed("provider_unreachable"))?;
        let response = quirks::response(provider, response);
        if !response.status().is_success() {
            return Err(provider_failed("upgrade_refused"));
        }
        let parsed: ProviderTokenResponse = serde_json::from_slice(response.body())
            .map_err(|_| provider_failed("invalid_token_response"))?;
        let mut upgraded = token_set(now, provider, &parsed);
        let mut kept = first.metadata.clone();
        kept.append(&mut upgraded.metadata);
        upgraded.metadata = kept;
        upgraded.scope = upgraded.scope.or_else(|| first.scope.clone());
        Ok(upgraded)
    }

    /// The entry's post-connect metadata (Mailchimp's data center), read with the new access
    /// token: the fields it keeps, or an error (the caller keeps the tokens either way).
    pub async fn read_metadata(
        &self,
        provider: &Provider,
        access_token: &str,
    ) -> Result<BTreeMap<String, Value>> {
        let Some(url) = &provider.metadata_url else {
            return Ok(BTreeMap::new());
        };
        let scheme = provider.metadata_auth_scheme.as_deref().unwrap_or("Bearer");
        let request = oauth2::http::Request::builder()
            .method(oauth2::http::Method::GET)
            .uri(url)
            .header(
                oauth2::http::header::AUTHORIZATION,
                format!("{scheme} {access_token}"),
            )
            .header(oauth2::http::header::ACCEPT, "application/json")
            .body(Vec::new())
            .map_err(Error::internal)?;
        let response = self
            .send(request)
            .await
            .map_err(|_| provider_failed("metadata_unreachable"))?;
        if !response.status().is_success() {
            return Err(provider_failed("metadata_refused"));
        }
        let doc: serde_json::Map<String, Value> = serde_json::from_slice(response.body())
            .map_err(|_| provider_failed("invalid_metadata"))?;
        Ok(provider
            .keep_metadata_fields
            .iter()
            .filter_map(|k| doc.get(k).map(|v| (k.clone(), v.clone())))
            .collect())
    }

    fn through(&self, provider: &Provider) -> QuirkClient {
        QuirkClient {
            client: self.clone(),
            provider: provider.clone(),
        }
    }
}

type OauthClient = oauth2::Client<
    BasicErrorResponse,
    ProviderTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
>;

/// The entry's upgrade request for `access_token` (Facebook's `fb_exchange_token`), or `None`:
/// the app's credentials in the form body, never in the URL.
fn upgrade_request(
    provider: &Provider,
    endpoints: &Endpoints,
    credentials: &AppCredentials,
    access_token: &str,
) -> Result<Option<HttpRequest>> {
    let Some(grant) = &provider.upgrade_grant else {
        return Ok(None);
    };
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", grant)
        .append_pair(grant, access_token)
        .append_pair("client_id", &credentials.client_id)
        .append_pair("client_secret", credentials.client_secret.expose())
        .finish();
    oauth2::http::Request::builder()
        .method(oauth2::http::Method::POST)
        .uri(&endpoints.token_url)
        .header(
            oauth2::http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(oauth2::http::header::ACCEPT, "application/json")
        .body(body.into_bytes())
        .map(Some)
        .map_err(Error::internal)
}

/// The grants the broker asks a token endpoint for.
#[derive(Debug, Clone, Copy)]
enum Grant<'a> {
    Code {
        code: &'a str,
        pkce_verifier: Option<&'a str>,
        redirect_uri: &'a str,
    },
    Refresh(&'a str),
}

/// One grant at the provider, over `http` (the hardened client seen through the entry's quirks;
/// in the golden test, a recorder).
async fn request_tokens<C>(
    http: &C,
    now: i64,
    provider: &Provider,
    endpoints: &Endpoints,
    credentials: &AppCredentials,
    grant: Grant<'_>,
) -> Result<TokenSet>
where
    C: for<'c> AsyncHttpClient<'c, Error = HttpClientError<reqwest::Error>>,
{
    let response = match grant {
        Grant::Code {
            code,
            pkce_verifier,
            redirect_uri,
        } => {
            let redirect = RedirectUrl::new(redirect_uri.to_string())
                .map_err(|e| Error::internal(format!("redirect uri: {e}")))?;
            let client = oauth_client(provider, &endpoints.token_url, credentials)?
                .set_redirect_uri(redirect);
            let mut request = client.exchange_code(AuthorizationCode::new(code.to_string()));
            for (name, value) in &provider.token_params {
                request = request.add_extra_param(name.clone(), value.clone());
            }
            if let Some(verifier) = pkce_verifier {
                request = request.set_pkce_verifier(PkceCodeVerifier::new(verifier.to_string()));
            }
            request.request_async(http).await
        }
        Grant::Refresh(refresh_token) => {
            let client = oauth_client(provider, endpoints.refresh_url(), credentials)?;
            let token = RefreshToken::new(refresh_token.to_string());
            client
                .exchange_refresh_token(&token)
                .request_async(http)
                .await
        }
    };
    Ok(token_set(now, provider, &response.map_err(provider_error)?))
}

/// The app's client at `token_url`, authenticating the entry's way.
fn oauth_client(
    provider: &Provider,
    token_url: &str,
    credentials: &AppCredentials,
) -> Result<OauthClient> {
    let token_url = TokenUrl::new(token_url.to_string())
        .map_err(|e| Error::internal(format!("token url: {e}")))?;
    Ok(
        oauth2::Client::new(ClientId::new(credentials.client_id.clone()))
            .set_client_secret(ClientSecret::new(
                credentials.client_secret.expose().clone(),
            ))
            .set_token_uri(token_url)
            .set_auth_type(match provider.client_auth {
                ClientAuth::Basic => AuthType::BasicAuth,
                ClientAuth::Post => AuthType::RequestBody,
            }),
    )
}

/// A token response as the stored document: expiry from `expires_in` (or the entry's declared
/// lifetime), scopes space-separated, the entry's kept fields.
fn token_set(now: i64, provider: &Provider, response: &ProviderTokenResponse) -> TokenSet {
    let extra = &response.extra_fields().fields;
    TokenSet {
        access_token: Sensitive::new(response.access_token().secret().clone()),
        refresh_token: response
            .refresh_token()
            .map(|t| Sensitive::new(t.secret().clone())),
        token_type: response.token_type().as_ref().to_string(),
        // `expires_in` 0 (Mailchimp's non-expiring tokens) is no lifetime, not an instant expiry.
        expires_at: response
            .expires_in()
            .filter(|d| !d.is_zero())
            .map(|d| now + i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2))
            .or(provider.token_lifetime_secs.map(|l| now + l)),
        refresh_token_expires_at: [
            "refresh_token_expires_in",
            "x_refresh_token_expires_in",
            "refresh_expires_in",
        ]
        .iter()
        .find_map(|k| extra.get(*k).and_then(Value::as_i64))
        .filter(|secs| *secs > 0 && response.refresh_token().is_some())
        .map(|secs| now + secs),
        // RFC 6749's space-separated form, whatever the provider's separator.
        scope: response
            .scopes()
            .map(|s| s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")),
        provider: provider.slug.clone(),
        metadata: provider
            .keep_token_fields
            .iter()
            .filter_map(|k| extra.get(k).map(|v| (k.clone(), v.clone())))
            .collect(),
    }
}

/// A provider failure named by a fixed code: nothing of the provider's answer, which may echo a
/// token, travels on.
fn provider_failed(error: &str) -> Error {
    Error::ProviderFailed {
        error: error.into(),
    }
}

/// Only the provider's `error` code survives: its body may echo the code or a token.
fn provider_error(
    e: RequestTokenError<HttpClientError<reqwest::Error>, BasicErrorResponse>,
) -> Error {
    let error = match &e {
        RequestTokenError::ServerResponse(r) => r.error().as_ref().to_string(),
        RequestTokenError::Request(_) => "provider_unreachable".to_string(),
        RequestTokenError::Parse(..) | RequestTokenError::Other(_) => {
            "invalid_token_response".to_string()
        }
    };
    tracing::warn!(%error, "token exchange failed");
    Error::ProviderFailed { error }
}

/// The token client seen through one provider's quirks (see [`super::quirks`]). Owned, not
/// borrowed: a lifetime here would make the handlers' futures fail rustc's higher-ranked `Send`
/// check. Cloning is cheap next to a token request (the HTTP client is reference-counted).
struct QuirkClient {
    client: TokenClient,
    provider: Provider,
}

impl<'c> AsyncHttpClient<'c> for QuirkClient {
    type Error = HttpClientError<reqwest::Error>;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, Self::Error>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let request = quirks::request(&self.provider, request);
            let response = self.client.send(request).await?;
            Ok(quirks::response(&self.provider, response))
        })
    }
}

impl TokenClient {
    /// One bounded HTTP exchange with a token endpoint.
    pub(super) async fn send(
        &self,
        request: HttpRequest,
    ) -> Result<HttpResponse, HttpClientError<reqwest::Error>> {
        let request = reqwest::Request::try_from(request).map_err(Box::new)?;
        let mut response = self.http.execute(request).await.map_err(Box::new)?;
        let mut builder = oauth2::http::Response::builder().status(response.status());
        for (name, value) in response.headers() {
            builder = builder.header(name, value);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(Box::new)? {
            if body.len() + chunk.len() > MAX_TOKEN_RESPONSE {
                return Err(HttpClientError::Other("token response too large".into()));
            }
            body.extend_from_slice(&chunk);
        }
        builder.body(body).map_err(HttpClientError::Http)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use oauth2::http::header;

    use super::*;
    use crate::provider::Refresh;
    use crate::provider::golden::{self, check, sample_inputs};

    const GOLDEN: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/provider/golden/token_requests.txt"
    );

    /// Records each request as it would leave (the entry's quirks applied) and answers with a
    /// plain token.
    struct Recorder {
        provider: Provider,
        sent: Mutex<Vec<HttpRequest>>,
    }

    impl<'c> AsyncHttpClient<'c> for Recorder {
        type Error = HttpClientError<reqwest::Error>;
        type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, Self::Error>> + Send + 'c>>;

        fn call(&'c self, request: HttpRequest) -> Self::Future {
            let request = quirks::request(&self.provider, request);
            self.sent.lock().unwrap().push(request);
            Box::pin(async {
                Ok(oauth2::http::Response::builder()
                    .status(200)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(br#"{"access_token":"AT","token_type":"bearer"}"#.to_vec())
                    .unwrap())
            })
        }
    }

    #[test]
    fn a_refresh_token_lifetime_the_provider_states_is_kept() {
        let intuit: ProviderTokenResponse = serde_json::from_str(
            r#"{"access_token":"a","token_type":"bearer","expires_in":3600,"refresh_token":"r","x_refresh_token_expires_in":8726400}"#,
        )
        .unwrap();
        let p: Provider = toml::from_str(
            "slug = \"q\"\nname = \"Q\"\nauthorization_url = \"https://q.example/a\"\ntoken_url = \"https://q.example/t\"",
        )
        .unwrap();
        let tokens = token_set(1_000, &p, &intuit);
        assert_eq!(tokens.refresh_token_expires_at, Some(1_000 + 8_726_400));
        assert_eq!(tokens.expires_at, Some(4_600));
        // Airtable's name for it
        let airtable: ProviderTokenResponse = serde_json::from_str(
            r#"{"access_token":"a","token_type":"bearer","expires_in":3600,"refresh_token":"r","refresh_expires_in":5184000}"#,
        )
        .unwrap();
        let tokens = token_set(1_000, &p, &airtable);
        assert_eq!(tokens.refresh_token_expires_at, Some(1_000 + 5_184_000));
    }

    /// Each entry's code exchange, refresh and token upgrade, one line each: grant, method, URL,
    /// credentials, content type, body.
    #[tokio::test]
    async fn every_builtin_entry_builds_its_golden_token_and_refresh_requests() {
        let (config, catalog, credentials) = golden::builtin();
        let mut lines = vec![];
        for p in catalog.iter().filter(|p| p.require_usable().is_ok()) {
            let endpoints = p.resolve_endpoints(&sample_inputs(p), &config).unwrap();
            let recorder = Recorder {
                provider: p.clone(),
                sent: Mutex::new(vec![]),
            };
            let code = Grant::Code {
                code: "CODE",
                pkce_verifier: p.uses_pkce().then_some("VERIFIER"),
                redirect_uri: "https://broker.example/v1/oauth/callback",
            };
            let refresh = p.refresh.map_or("undeclared", Refresh::as_str);
            let mut grants = vec![code];
            if p.refresh != Some(Refresh::None) {
                grants.push(Grant::Refresh("REFRESH_TOKEN"));
            }
            for grant in grants {
                request_tokens(&recorder, 0, p, &endpoints, &credentials, grant)
                    .await
                    .unwrap();
            }
            let sent = recorder.sent.into_inner().unwrap();
            let names = ["code".to_string(), format!("refresh({refresh})")];
            for (name, r) in names.iter().zip(sent) {
                let value = |h| {
                    r.headers()
                        .get(h)
                        .map_or("-".to_string(), |v| v.to_str().unwrap().to_string())
                };
                lines.push(format!(
                    "{} {name} {} {} auth={} type={} body={}",
                    p.slug,
                    r.method(),
                    r.uri(),
                    value(header::AUTHORIZATION),
                    value(header::CONTENT_TYPE),
                    String::from_utf8(r.body().clone()).unwrap()
                ));
            }
            if p.refresh == Some(Refresh::None) {
                lines.push(format!("{} refresh(none): no refresh grant", p.slug));
            }
            if let Some(r) =
                upgrade_request(p, &endpoints, &credentials, "FIRST_ACCESS_TOKEN").unwrap()
            {
                lines.push(format!(
                    "{} upgrade {} {} auth=- body={}",
                    p.slug,
                    r.method(),
                    r.uri(),
                    String::from_utf8(r.body().clone()).unwrap()
                ));
            }
        }
        check(GOLDEN, &lines, "token request");
    }
}
