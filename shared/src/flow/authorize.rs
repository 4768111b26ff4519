use oauth2::{PkceCodeChallenge, PkceCodeVerifier};
use url::Url;

use super::{Flow, binding_cookie_name, is_handle};
use crate::crypto::{random_token, sha256_hex};
use crate::{App, Error, Result};

/// Query names the protocol owns: never taken from a catalog entry or a caller.
const PROTOCOL_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
];

#[derive(Debug)]
pub struct Authorization {
    /// The provider's consent page, with state and PKCE challenge.
    pub provider_url: Url,
    /// A `Set-Cookie` value binding the flow to this browser.
    pub set_cookie: String,
}

/// Binds the flow to this browser (first browser wins) and builds the provider's URL.
pub async fn authorize(
    app: &App,
    state: &str,
    cookie: impl Fn(&str) -> Option<String>,
) -> Result<Authorization> {
    if !is_handle(state) {
        return Err(Error::FlowRejected);
    }
    let key = sha256_hex(state);
    let cookie_name = binding_cookie_name(&app.config, &key);
    // The same browser coming back keeps its binding; a new one gets a fresh value.
    let binding = match cookie(&cookie_name).filter(|v| is_handle(v)) {
        Some(existing) => existing,
        None => random_token()?,
    };
    let now = app.clock.now();
    let flow = app
        .flows
        .bind_flow(&key, &sha256_hex(&binding), now)
        .await?;
    let provider_url = provider_url(app, &flow, state).await?;
    let secure = if app.config.secure_cookies() {
        "; Secure"
    } else {
        ""
    };
    let max_age = (flow.expires_at - now).max(0);
    Ok(Authorization {
        provider_url,
        set_cookie: format!(
            "{cookie_name}={binding}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"
        ),
    })
}

/// The provider's consent URL for a flow: the entry's URL and extra parameters, then the protocol
/// parameters, which neither the entry nor the caller can override.
pub(crate) async fn provider_url(app: &App, flow: &Flow, state: &str) -> Result<Url> {
    let provider = app.catalog.resolve(&flow.provider)?;
    let credentials = app
        .apps
        .credentials(
            &flow.provider,
            &flow.organization_id,
            flow.workspace_id.as_deref(),
        )
        .await?;
    let mut url = Url::parse(&flow.endpoints.authorization_url).map_err(Error::internal)?;
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .into_owned()
        .chain(provider.authorize_params.clone())
        .filter(|(k, _)| !PROTOCOL_PARAMS.contains(&k.as_str()))
        .collect();
    {
        let mut q = url.query_pairs_mut();
        q.clear().extend_pairs(kept);
        q.append_pair("response_type", "code")
            .append_pair("client_id", &credentials.client_id)
            .append_pair("redirect_uri", &flow.provider_redirect_uri);
        if !flow.scopes.is_empty() {
            q.append_pair("scope", &provider.scope_separator.join(&flow.scopes));
        }
        q.append_pair("state", state);
        if let Some(verifier) = &flow.pkce_verifier {
            let challenge = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(
                verifier.expose().clone(),
            ));
            q.append_pair("code_challenge", challenge.as_str())
                .append_pair("code_challenge_method", challenge.method().as_str());
        }
    }
    Ok(url)
}
