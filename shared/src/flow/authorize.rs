use oauth2::{PkceCodeChallenge, PkceCodeVerifier};
use url::Url;

use super::{Flow, binding_cookie_name, is_handle};
use crate::crypto::{random_token, sha256_hex};
use crate::provider::AuthorizationRequest;
use crate::{App, Error, Result};

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

/// The provider's consent URL for a flow, with the app's client id and the flow's PKCE challenge.
pub(crate) async fn provider_url(app: &App, flow: &Flow, state: &str) -> Result<Url> {
    let provider = app.catalog.resolve(&flow.provider)?;
    let credentials = app.apps.for_flow(flow).await?;
    let challenge = flow.pkce_verifier.as_ref().map(|verifier| {
        PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(
            verifier.expose().clone(),
        ))
    });
    provider.authorization_url(
        &flow.endpoints,
        AuthorizationRequest {
            client_id: &credentials.client_id,
            redirect_uri: &flow.provider_redirect_uri,
            scopes: &flow.scopes,
            state,
            code_challenge: challenge.as_ref().map(|c| c.as_str()),
        },
    )
}
