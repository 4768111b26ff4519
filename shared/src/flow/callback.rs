use std::collections::HashMap;

use serde_json::Value;
use url::Url;

use super::{Claim, Flow, FlowKind, FlowStatus, StateToken, binding_cookie_name, is_handle};
use crate::connection::{
    Change, ConnectionStatus, KeepAlive, TokenOwner, TokenSettings, Transition, granted_scopes,
    revoke_grant, write_tokens,
};
use crate::crypto::{random_token, sha256_hex};
use crate::provider::{Endpoints, Provider, TokenSet};
use crate::redirect::RedirectUrl;
use crate::secret::Sensitive;
use crate::vault::{AppCredentials, names};
use crate::{App, ConnectionId, Error, Result};

/// Where the browser goes when the callback is done.
#[derive(Debug)]
pub enum Landing {
    /// Back to the platform: the flow's registered redirect_url, with references only.
    Redirect(Url),
    /// A connect flow's end: the connect page's result, for the session (SHA-256 of its token).
    Connect {
        session_hash: String,
        connection_id: ConnectionId,
        /// `None`: connected; else the provider's error code and description.
        refused: Option<(String, String)>,
    },
}

/// Finishes the browser's round trip: consumes the flow once, checks binding and issuer, redeems
/// the code, stores the tokens, records the connection, and returns where to send the browser
/// (the flow's redirect_url with references only, or a connect session's result).
///
/// `Err` means there is no trustworthy redirect target (unknown, used, expired or foreign flow)
/// or the backend failed; the caller answers a static page.
pub async fn callback(
    app: &App,
    query: &HashMap<String, String>,
    cookie: impl Fn(&str) -> Option<String>,
) -> Result<Landing> {
    let state = query.get("state").map(String::as_str).unwrap_or_default();
    if !is_handle(state) {
        return Err(Error::FlowRejected);
    }
    let key = sha256_hex(state);
    let binding = cookie(&binding_cookie_name(&app.config, &key))
        .filter(|v| is_handle(v))
        .ok_or(Error::FlowRejected)?;
    let lease_owner = random_token()?;
    let claim = Claim::Browser {
        binding_hash: sha256_hex(&binding),
    };
    let flow = app
        .flows
        .consume_flow(&key, &claim, &lease_owner, app.clock.now())
        .await?;

    // The redirect target is checked again: the organization may have unregistered it since.
    let org = match app.orgs.get_org(&flow.organization_id).await {
        Ok(org) => org.ok_or(Error::FlowRejected)?,
        Err(e) => return Err(put_back(app, &flow, e).await),
    };
    if let (FlowKind::Connect, Some(session_hash)) = (flow.kind, flow.connect_session.clone()) {
        let refused = match finish(app, &flow, query).await? {
            Ending::Stored { .. } => {
                if !app
                    .sessions
                    .spend_session(&session_hash, &flow.connection_id)
                    .await?
                {
                    tracing::warn!(connection_id = %flow.connection_id, "connect session already spent by another connection");
                }
                None
            }
            Ending::Refused(Refusal { error, description }) => Some((error, description)),
        };
        return Ok(Landing::Connect {
            session_hash,
            connection_id: flow.connection_id.clone(),
            refused,
        });
    }
    let redirect = RedirectUrl::registered(&flow.redirect_url, &org, &app.config)
        .map_err(|_| Error::FlowRejected)?;

    Ok(Landing::Redirect(match finish(app, &flow, query).await? {
        Ending::Stored { secret_id, .. } => {
            let params = references(app, &flow, secret_id).await?;
            let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
            redirect.with_params(pairs)
        }
        Ending::Refused(Refusal { error, description }) => redirect.with_params([
            ("error", error.as_str()),
            ("error_description", description.as_str()),
        ]),
    }))
}

/// How a consumed flow ended.
pub(crate) enum Ending {
    /// Tokens redeemed, in the vault under `secret_id`; the connection is authorized.
    Stored { secret_id: String, tokens: TokenSet },
    /// No tokens; the flow and its connection are marked failed.
    Refused(Refusal),
}

/// The shared end of every flow, whoever brings the authorization response (the browser at the
/// callback, or the platform at `complete_oauth`): redeem the code, store the tokens, record the
/// connection and the flow's outcome.
///
/// Tokens the provider issued are never dropped (DESIGN §9.2): when storing them fails (the
/// vault or the table unavailable), they are sealed onto the flow, which waits as `exchanged`;
/// the same request later takes it again and stores them without redeeming the code twice.
pub(crate) async fn finish(
    app: &App,
    flow: &Flow,
    query: &HashMap<String, String>,
) -> Result<Ending> {
    let provider = app.catalog.resolve(&flow.provider)?;
    let place = format!("FLOW#{}", flow.key);
    // Loaded before the code is spent, while the vault answers: should storing the tokens fail,
    // they are sealed from memory.
    let sealer = match app.vault.sealer().await {
        Ok(sealer) => sealer,
        Err(e) => return Err(put_back(app, flow, e).await),
    };
    // Where the response names the server that issued the code (Zoho's `accounts-server`), the
    // code goes there and the connection keeps that server's endpoints; an unlisted one is
    // refused before the code is sent anywhere.
    let endpoints = match provider.endpoints_at_server(&flow.endpoints, query) {
        Ok(endpoints) => endpoints,
        Err(e) => {
            fail(app, flow).await?;
            tracing::warn!(provider = %flow.provider, error = %e, "flow refused: unlisted token server");
            return Ok(Ending::Refused(Refusal::new(
                "invalid_request",
                "The authorization response named an unknown token server.",
            )));
        }
    };
    let tokens = match &flow.sealed_tokens {
        // Redeemed by an earlier attempt: the tokens wait on the flow.
        Some(sealed) => {
            let document = sealer.open(&place, sealed)?;
            serde_json::from_str(document.expose()).map_err(Error::internal)?
        }
        None => {
            let credentials = match app.apps.for_flow(flow).await {
                Err(e @ (Error::Unavailable(_) | Error::Internal(_))) => {
                    return Err(put_back(app, flow, e).await);
                }
                other => other,
            };
            match redeem(app, flow, provider, &endpoints, query, credentials).await {
                Ok(tokens) => tokens,
                Err(refusal) => {
                    fail(app, flow).await?;
                    tracing::info!(provider = %flow.provider, error = %refusal.error, "flow ended without tokens");
                    return Ok(Ending::Refused(refusal));
                }
            }
        }
    };
    match store(app, flow, provider, &endpoints, &tokens).await {
        Ok(secret_id) => Ok(Ending::Stored { secret_id, tokens }),
        Err(e @ (Error::Unavailable(_) | Error::Internal(_))) => {
            let document = Sensitive::new(serde_json::to_string(&tokens).map_err(Error::internal)?);
            let owner = flow.lease_owner.as_deref().unwrap_or_default();
            let sealed = sealer.seal(&place, &document)?;
            app.flows.park_flow(&flow.key, owner, Some(&sealed)).await?;
            tracing::warn!(provider = %flow.provider, connection_id = %flow.connection_id, error = %e, "tokens could not be stored: kept sealed on the flow for a retry of the same request");
            Err(e)
        }
        Err(e) => Err(e),
    }
}

/// The backend failed after the flow was taken but before its code was spent: the flow goes
/// back as it was taken (pending, or exchanged with its sealed tokens), so the same request can
/// take it again. If that fails too, the flow stays taken until it expires; the code is unspent.
async fn put_back(app: &App, flow: &Flow, e: Error) -> Error {
    if matches!(e, Error::Unavailable(_) | Error::Internal(_)) {
        let owner = flow.lease_owner.as_deref().unwrap_or_default();
        if let Err(stuck) = app
            .flows
            .park_flow(&flow.key, owner, flow.sealed_tokens.as_deref())
            .await
        {
            tracing::warn!(provider = %flow.provider, error = %stuck, "a flow whose code is unspent could not be put back");
        }
    }
    e
}

/// Why a flow ended without tokens, as told to the platform (sanitized provider words).
pub(crate) struct Refusal {
    pub error: String,
    pub description: String,
}

impl Refusal {
    fn new(error: &str, description: &str) -> Self {
        Refusal {
            error: sanitize_code(error),
            description: sanitize_description(description),
        }
    }
}

/// Checks the authorization response and exchanges the code; every refusal is reported to the
/// platform, with no token request made unless the response was a clean one.
async fn redeem(
    app: &App,
    flow: &Flow,
    provider: &Provider,
    endpoints: &Endpoints,
    query: &HashMap<String, String>,
    credentials: Result<AppCredentials>,
) -> Result<TokenSet, Refusal> {
    if let Some(issuer) = &provider.issuer {
        // RFC 9207: a response from another issuer may be a mix-up attack; the code is not sent.
        if query.get("iss") != Some(issuer) {
            return Err(Refusal::new(
                "invalid_request",
                "The authorization response came from an unexpected issuer.",
            ));
        }
    }
    if let Some(error) = query.get("error") {
        let description = query
            .get("error_description")
            .map(String::as_str)
            .unwrap_or("The provider did not grant access.");
        return Err(Refusal::new(error, description));
    }
    let code = query
        .get(provider.code_param())
        .filter(|c| !c.is_empty() && c.len() <= 4096)
        .ok_or_else(|| {
            Refusal::new(
                "invalid_request",
                "The provider returned no authorization code.",
            )
        })?;
    let credentials = credentials
        .map_err(|_| Refusal::new("server_error", "The provider app is not configured."))?;
    let verifier = flow.pkce_verifier.as_ref().map(|v| v.expose().as_str());
    let mut tokens = app
        .tokens
        .exchange_code(
            app.clock.now(),
            provider,
            endpoints,
            &credentials,
            code,
            verifier,
            &flow.provider_redirect_uri,
        )
        .await
        .map_err(|e| match e {
            Error::ProviderFailed { error } => {
                Refusal::new(&error, "The provider refused the authorization code.")
            }
            _ => Refusal::new("server_error", "The token exchange failed."),
        })?;
    // Facebook's first token lives hours: traded at once for the long-lived one. Should that
    // fail, the first tokens are kept (never dropped) and the failure logged.
    if provider.upgrade_grant.is_some() {
        match app
            .tokens
            .upgrade(app.clock.now(), provider, endpoints, &credentials, &tokens)
            .await
        {
            Ok(upgraded) => tokens = upgraded,
            Err(e) => {
                tracing::warn!(provider = %flow.provider, error = %e, "token upgrade failed: the first tokens are kept")
            }
        }
    }
    // The post-connect read (Mailchimp's data center). Tokens are never dropped for it: the
    // connection is stored without those fields, and the failure logged.
    match app
        .tokens
        .read_metadata(provider, tokens.access_token.expose())
        .await
    {
        Ok(mut kept) => tokens.metadata.append(&mut kept),
        Err(e) => {
            tracing::warn!(provider = %flow.provider, error = %e, "post-connect metadata not read")
        }
    }
    for field in &provider.keep_redirect_fields {
        if let Some(v) = query.get(field) {
            tokens
                .metadata
                .insert(field.clone(), Value::String(v.clone()));
        }
    }
    Ok(tokens)
}

/// Writes the tokens, then authorizes the connection and completes the flow in one write;
/// returns the secret's id.
async fn store(
    app: &App,
    flow: &Flow,
    provider: &Provider,
    endpoints: &Endpoints,
    tokens: &TokenSet,
) -> Result<String> {
    let owner = TokenOwner {
        organization_id: &flow.organization_id,
        workspace_id: flow.workspace_id.as_deref(),
        provider: &flow.provider,
        connection_id: &flow.connection_id,
    };
    // Derived from the flow: a retried write of the same tokens is one version, not two.
    let secret_id = write_tokens(
        app.vault.as_ref(),
        &app.config.secret_prefix,
        owner,
        tokens,
        &format!("vault:{}", flow.key),
    )
    .await?;
    let now = app.clock.now();
    let reconnect = flow.kind == FlowKind::Reconnect;
    let (from, to) = if reconnect {
        (ConnectionStatus::RECONNECTABLE, ConnectionStatus::Active)
    } else {
        (
            &[ConnectionStatus::Pending][..],
            ConnectionStatus::Authorized,
        )
    };
    let mut authorized = Transition::new(&flow.organization_id, &flow.connection_id, from, to, now);
    authorized.change = Change {
        secret_id: Some(secret_id.clone()),
        token_expires_at: Some(tokens.expires_at),
        scopes: tokens.scope.as_deref().map(granted_scopes),
        endpoints: Some(endpoints.clone()),
        token_settings: Some(TokenSettings::of(provider)),
        metadata: Some(tokens.metadata.clone()),
        keepalive: Some(KeepAlive::issued(&app.config, Some(provider), tokens, now)),
        ..Change::default()
    };
    if reconnect {
        // A repaired connection starts afresh: no failures, no back-off, no stale lease or
        // sealed document (the new tokens supersede them).
        authorized.change.refresh_failures = Some(0);
        authorized.change.refresh_retry_at = Some(now);
        authorized.change.sealed_document = Some(None);
        authorized.change.release_lease = true;
    }
    match app
        .flows
        .finish_flow(&flow.key, FlowStatus::Completed, &authorized)
        .await
    {
        Ok(()) => {}
        Err(Error::Conflict(_)) if reconnect => {
            // Revoked while the user was at the provider: the grant just made ends too (best
            // effort, as a delete's), and its tokens must not live on.
            if let Some(url) = &endpoints.revocation_url {
                let outcome = revoke_grant(
                    app,
                    provider,
                    url,
                    Some(TokenSettings::of(provider)),
                    (&flow.organization_id, flow.workspace_id.as_deref()),
                    tokens,
                )
                .await;
                tracing::info!(connection_id = %flow.connection_id, outcome = ?outcome, "reconnect of a revoked connection: its new grant revoked");
            }
            let name = names::connection(
                &app.config.secret_prefix,
                &flow.organization_id,
                &flow.connection_id,
            );
            app.vault.delete_secret(&name).await?;
            return Err(Error::FlowRejected);
        }
        Err(e) => return Err(e),
    }
    tracing::info!(provider = %flow.provider, connection_id = %flow.connection_id, status = to.as_str(), "connection authorized");
    Ok(secret_id)
}

/// What the platform gets back in the redirect, by the request shape that started the flow.
async fn references(
    app: &App,
    flow: &Flow,
    secret_id: String,
) -> Result<Vec<(&'static str, String)>> {
    Ok(match flow.kind {
        FlowKind::InitiateOauth | FlowKind::Native => vec![
            ("secret_id", secret_id),
            (
                "workspace_id",
                flow.workspace_id.clone().unwrap_or_default(),
            ),
            (
                "definition_id",
                flow.definition_id
                    .clone()
                    .unwrap_or_else(|| flow.provider.clone()),
            ),
        ],
        FlowKind::Connector | FlowKind::Connect => vec![
            ("connection_id", flow.connection_id.to_string()),
            ("status", "authorized".to_string()),
        ],
        FlowKind::Reconnect => vec![
            ("connection_id", flow.connection_id.to_string()),
            ("status", "active".to_string()),
        ],
        FlowKind::Personal => {
            let token = random_token()?;
            let now = app.clock.now();
            app.state_tokens
                .create_state_token(&StateToken {
                    token_hash: sha256_hex(&token),
                    organization_id: flow.organization_id.clone(),
                    connection_id: flow.connection_id.clone(),
                    created_at: now,
                    expires_at: now + app.config.flow_ttl_secs,
                })
                .await?;
            vec![
                ("state_token", token),
                ("connection_id", flow.connection_id.to_string()),
            ]
        }
        // Never bound to a browser, so never consumed by the callback.
        FlowKind::ClientCallback => return Err(Error::FlowRejected),
    })
}

/// The flow ended without tokens: a new connection fails with it; a reconnected one stays as it
/// was (the user declining a repair does not break what still works).
async fn fail(app: &App, flow: &Flow) -> Result<()> {
    let (from, to) = if flow.kind == FlowKind::Reconnect {
        let current = app
            .connections
            .get_connection(&flow.organization_id, &flow.connection_id)
            .await?
            .ok_or(Error::FlowRejected)?;
        (current.status.only(), current.status)
    } else {
        (&[ConnectionStatus::Pending][..], ConnectionStatus::Failed)
    };
    let failed = Transition::new(
        &flow.organization_id,
        &flow.connection_id,
        from,
        to,
        app.clock.now(),
    );
    app.flows
        .finish_flow(&flow.key, FlowStatus::Failed, &failed)
        .await
}

/// An RFC 6749 error code: a short token, or a generic one when the provider sent something else.
fn sanitize_code(code: &str) -> String {
    let ok = !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        code.to_string()
    } else {
        "access_denied".to_string()
    }
}

/// RFC 6749's error_description alphabet (printable ASCII without `"` and `\`), bounded.
fn sanitize_description(text: &str) -> String {
    text.chars()
        .filter(|c| matches!(c, ' '..='~') && *c != '"' && *c != '\\')
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_errors_are_sanitized() {
        assert_eq!(sanitize_code("access_denied"), "access_denied");
        assert_eq!(sanitize_code("<script>"), "access_denied");
        assert_eq!(
            sanitize_description("no \"way\" \u{1F600}<b>"),
            "no way <b>"
        );
        assert_eq!(sanitize_description(&"x".repeat(500)).len(), 200);
    }
}
