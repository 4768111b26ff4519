//! Ending a grant at the provider: the requests each entry's revocation style sends, built as
//! data so the golden file pins them, and sent through the token client's bounded HTTP exchange.

use base64::Engine;
use oauth2::http::{self, Method, header};
use serde::{Deserialize, Serialize};
use url::form_urlencoded;

use super::{ClientAuth, Provider, TokenClient, TokenSet, TokenSettings};
use crate::vault::AppCredentials;
use crate::{Error, Result};

/// How the entry's revocation endpoint wants to be asked: a small closed set of request shapes,
/// not code per provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationStyle {
    /// RFC 7009: `POST token=…&token_type_hint=…` with the entry's client authentication, the
    /// refresh token first (at most providers it ends the whole grant), then the access token.
    #[default]
    Rfc7009,
    /// RFC 7009 with the refresh token alone (HubSpot's `token/revoke`, which revokes refresh
    /// tokens only); the access token, short-lived, is left to expire.
    Rfc7009Refresh,
    /// `POST` with the access token as the Bearer credential and no body (Dropbox's
    /// `token/revoke`, Slack's `auth.revoke`).
    Bearer,
    /// `DELETE` with the access token as the Bearer credential (Facebook's `me/permissions`,
    /// Zendesk's `oauth/tokens/current.json`, Smartsheet's `token`).
    BearerDelete,
    /// `DELETE <revocation_url>/<refresh token>`, no credentials (HubSpot's
    /// `oauth/v1/refresh-tokens`): the refresh token is the resource.
    RefreshTokenPath,
    /// `POST` JSON `{"token"}` with HTTP Basic, the refresh token first, then the access token
    /// (Notion's `oauth/revoke`, Intuit's `tokens/revoke`).
    JsonBasic,
    /// Stripe Connect's deauthorization: `POST client_id=…&stripe_user_id=…` with the platform's
    /// secret key as the Bearer credential; `stripe_user_id` is kept from the token response.
    StripeDeauthorize,
    /// GitHub's grant deletion: `DELETE <revocation_url>/<client_id>/grant` (the entry's URL is
    /// `https://api.github.com/applications`), HTTP Basic with the app's credentials, JSON
    /// `{"access_token"}`: every token of the grant goes.
    GithubGrant,
}

/// How a connection's revocation at the provider ended (DESIGN §4.5's `provider_revocation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationOutcome {
    /// The provider accepted every revocation request (or there was no token left to revoke).
    Revoked,
    /// The entry declares no revocation endpoint.
    NotSupported,
    /// A request was refused or did not arrive; the tokens were deleted anyway.
    Failed,
}

impl RevocationOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationOutcome::Revoked => "revoked",
            RevocationOutcome::NotSupported => "not_supported",
            RevocationOutcome::Failed => "failed",
        }
    }
}

/// The requests revoking `tokens` at `url`, in the order they are sent.
pub fn revocation_requests(
    provider: &Provider,
    url: &str,
    settings: Option<TokenSettings>,
    credentials: &AppCredentials,
    tokens: &TokenSet,
) -> Result<Vec<http::Request<Vec<u8>>>> {
    let client_auth = provider
        .revocation_client_auth
        .unwrap_or_else(|| settings.map_or(provider.client_auth, |s| s.client_auth));
    let access = tokens.access_token.expose().as_str();
    let request = |method: Method, url: &str| http::Request::builder().method(method).uri(url);
    let built = |r: std::result::Result<http::Request<Vec<u8>>, http::Error>| {
        r.map_err(|e| Error::internal(format!("revocation request: {e}")))
    };
    match provider.revocation_style {
        RevocationStyle::Rfc7009 | RevocationStyle::Rfc7009Refresh => {
            let mut out = Vec::new();
            let refresh = tokens.refresh_token.as_ref().map(|t| t.expose().as_str());
            let access_too = provider.revocation_style == RevocationStyle::Rfc7009;
            let hinted = refresh
                .map(|t| (t, "refresh_token"))
                .into_iter()
                .chain(access_too.then_some((access, "access_token")));
            for (token, hint) in hinted {
                let mut form = form_urlencoded::Serializer::new(String::new());
                form.append_pair("token", token)
                    .append_pair("token_type_hint", hint);
                let mut req = request(Method::POST, url)
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .header(header::ACCEPT, "application/json");
                match client_auth {
                    ClientAuth::Basic => {
                        req = req.header(header::AUTHORIZATION, basic(credentials));
                    }
                    ClientAuth::Post => {
                        form.append_pair("client_id", &credentials.client_id)
                            .append_pair("client_secret", credentials.client_secret.expose());
                    }
                }
                out.push(built(req.body(form.finish().into_bytes()))?);
            }
            Ok(out)
        }
        RevocationStyle::JsonBasic => {
            let refresh = tokens.refresh_token.as_ref().map(|t| t.expose().as_str());
            refresh
                .into_iter()
                .chain([access])
                .map(|token| {
                    let body = serde_json::json!({ "token": token }).to_string();
                    built(
                        request(Method::POST, url)
                            .header(header::AUTHORIZATION, basic(credentials))
                            .header(header::CONTENT_TYPE, "application/json")
                            .header(header::ACCEPT, "application/json")
                            .body(body.into_bytes()),
                    )
                })
                .collect()
        }
        RevocationStyle::StripeDeauthorize => {
            let account = tokens
                .metadata
                .get("stripe_user_id")
                .and_then(|v| v.as_str())
                .ok_or_else(|| Error::internal("no stripe_user_id kept to deauthorize"))?;
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("client_id", &credentials.client_id)
                .append_pair("stripe_user_id", account);
            Ok(vec![built(
                request(Method::POST, url)
                    .header(
                        header::AUTHORIZATION,
                        format!("Bearer {}", credentials.client_secret.expose()),
                    )
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(form.finish().into_bytes()),
            )?])
        }
        RevocationStyle::BearerDelete => Ok(vec![built(
            request(Method::DELETE, url)
                .header(header::AUTHORIZATION, format!("Bearer {access}"))
                .body(Vec::new()),
        )?]),
        RevocationStyle::RefreshTokenPath => {
            let Some(refresh) = &tokens.refresh_token else {
                // Nothing to delete: the access token lapses on its own.
                return Ok(vec![]);
            };
            let token: String =
                form_urlencoded::byte_serialize(refresh.expose().as_bytes()).collect();
            Ok(vec![built(
                request(
                    Method::DELETE,
                    &format!("{}/{token}", url.trim_end_matches('/')),
                )
                .body(Vec::new()),
            )?])
        }
        RevocationStyle::Bearer => Ok(vec![built(
            request(Method::POST, url)
                .header(header::AUTHORIZATION, format!("Bearer {access}"))
                .body(Vec::new()),
        )?]),
        RevocationStyle::GithubGrant => {
            let client_id: String =
                form_urlencoded::byte_serialize(credentials.client_id.as_bytes()).collect();
            let url = format!("{}/{client_id}/grant", url.trim_end_matches('/'));
            let body = serde_json::json!({ "access_token": access }).to_string();
            Ok(vec![built(
                request(Method::DELETE, &url)
                    .header(header::AUTHORIZATION, basic(credentials))
                    .header(header::CONTENT_TYPE, "application/json")
                    .header(header::ACCEPT, "application/vnd.github+json")
                    .body(body.into_bytes()),
            )?])
        }
    }
}

/// RFC 6749 §2.3.1: each credential form-encoded, then Basic.
fn basic(credentials: &AppCredentials) -> String {
    let id: String = form_urlencoded::byte_serialize(credentials.client_id.as_bytes()).collect();
    let secret: String =
        form_urlencoded::byte_serialize(credentials.client_secret.expose().as_bytes()).collect();
    let pair = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    format!("Basic {pair}")
}

impl TokenClient {
    /// Sends the revocation requests; `Failed` at the first one refused or lost (nothing that
    /// could carry a token is logged).
    pub async fn revoke(
        &self,
        provider: &Provider,
        url: &str,
        settings: Option<TokenSettings>,
        credentials: &AppCredentials,
        tokens: &TokenSet,
    ) -> Result<RevocationOutcome> {
        for request in revocation_requests(provider, url, settings, credentials, tokens)? {
            match self.send(request).await {
                Ok(response) if response.status().is_success() => {}
                Ok(response) => {
                    tracing::warn!(provider = %provider.slug, status = response.status().as_u16(), "the provider refused a revocation");
                    return Ok(RevocationOutcome::Failed);
                }
                Err(_) => {
                    tracing::warn!(provider = %provider.slug, "a revocation request did not arrive");
                    return Ok(RevocationOutcome::Failed);
                }
            }
        }
        Ok(RevocationOutcome::Revoked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider;
    use crate::provider::Protocol;
    use crate::provider::golden::{self, check, sample_inputs};
    use crate::secret::Sensitive;

    const GOLDEN: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/provider/golden/revocation_requests.txt"
    );

    fn sample_tokens(p: &Provider) -> TokenSet {
        TokenSet {
            access_token: Sensitive::new("ACCESS_TOKEN".into()),
            refresh_token: Some(Sensitive::new("REFRESH_TOKEN".into())),
            token_type: "Bearer".into(),
            expires_at: None,
            scope: None,
            refresh_token_expires_at: None,
            provider: p.slug.clone(),
            // What an entry keeps from its token response, when it keeps it.
            metadata: [("stripe_user_id".to_string(), "acct_SAMPLE".into())]
                .into_iter()
                .filter(|(k, _)| p.keep_token_fields.contains(k))
                .collect(),
        }
    }

    /// Each entry's revocation requests, one line each: method, URL, credentials, body; or why
    /// it has none.
    #[test]
    fn every_builtin_entry_builds_its_golden_revocation_requests() {
        let (config, catalog, credentials) = golden::builtin();
        let mut lines = vec![];
        for p in catalog.iter() {
            let endpoints = match p.protocol {
                Protocol::Oauth1 => None,
                Protocol::Oauth2 => Some(p.resolve_endpoints(&sample_inputs(p), &config).unwrap()),
            };
            let Some(url) = endpoints.and_then(|e| e.revocation_url) else {
                lines.push(format!("{} not_supported", p.slug));
                continue;
            };
            let requests =
                revocation_requests(p, &url, None, &credentials, &sample_tokens(p)).unwrap();
            for r in requests {
                let auth = r
                    .headers()
                    .get(header::AUTHORIZATION)
                    .map_or("-", |v| v.to_str().unwrap());
                let body = String::from_utf8(r.body().clone()).unwrap();
                lines.push(format!(
                    "{} {} {} auth={auth} body={body}",
                    p.slug,
                    r.method(),
                    r.uri()
                ));
            }
        }
        check(GOLDEN, &lines, "revocation request");
    }

    #[test]
    fn rfc7009_sends_the_refresh_token_first_with_the_connections_client_authentication() {
        let mut p: Provider = toml::from_str(
            r#"slug = "x"
name = "X"
authorization_url = "https://x.example/a"
token_url = "https://x.example/t"
client_auth = "basic""#,
        )
        .unwrap();
        p.revocation_style = provider::RevocationStyle::Rfc7009;
        let credentials = AppCredentials {
            client_id: "id".into(),
            client_secret: Sensitive::new("s e".into()),
        };
        // The connection was authorized speaking `post`: revocation speaks the same way.
        let settings = Some(TokenSettings {
            client_auth: ClientAuth::Post,
            token_body: provider::TokenBody::Form,
        });
        let r = revocation_requests(
            &p,
            "https://x.example/r",
            settings,
            &credentials,
            &sample_tokens(&p),
        )
        .unwrap();
        let bodies: Vec<String> = r
            .iter()
            .map(|r| String::from_utf8(r.body().clone()).unwrap())
            .collect();
        assert_eq!(
            bodies,
            [
                "token=REFRESH_TOKEN&token_type_hint=refresh_token&client_id=id&client_secret=s+e",
                "token=ACCESS_TOKEN&token_type_hint=access_token&client_id=id&client_secret=s+e",
            ]
        );
        assert!(
            r.iter()
                .all(|r| r.headers().get(header::AUTHORIZATION).is_none())
        );
    }
}
