//! The pages of `brokerctl serve` that let a newcomer run a sandbox flow in a browser: a start
//! page, a button that starts a flow as the development organization, and a landing page standing
//! in for the platform's redirect_url.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use broker::api::html;
use broker::auth::Caller;
use broker::flow::{self, FlowKind, StartRequest};

use crate::local::{Local, to_axum};

pub const DEV_ORG: &str = "dev";
pub const DEV_WORKSPACE: &str = "dev-workspace";
pub const DONE_PATH: &str = "/done";

pub async fn start() -> Response {
    let body = "This server runs every route of the broker on an embedded store, with a sandbox provider.</p>\
        <p><a href=\"/try\">Connect a sandbox account</a> runs the whole flow: initiate, authorize, the \
        provider's consent page, the callback, and the platform's landing page.</p>\
        <p>The API is under <code>/v1</code>; see the README for the curl walkthrough.";
    to_axum(html::page(StatusCode::OK, "oauth-broker (local)", body))
}

/// Starts a sandbox flow as the development organization and sends the browser into it.
pub async fn try_sandbox(State(local): State<Arc<Local>>) -> Response {
    let app = local.app.as_ref();
    let caller = Caller {
        key_id: "console".into(),
        organization_id: DEV_ORG.into(),
        workspaces: vec![],
        user_id: 1,
        scopes: broker::auth::Scope::all(),
    };
    let mut done = app.config.public_url.clone();
    done.set_path(DONE_PATH);
    let request = StartRequest {
        kind: FlowKind::InitiateOauth,
        provider: crate::sandbox::SLUG.into(),
        definition_id: None,
        workspace_id: Some(DEV_WORKSPACE.into()),
        redirect_url: done.to_string(),
        inputs: BTreeMap::new(),
        requested_scopes: vec![],
        requested_optional_scopes: vec![],
        connect: None,
    };
    match flow::start(app, &caller, request).await {
        Ok(started) => Redirect::to(started.consent_url.expose().as_str()).into_response(),
        Err(e) => to_axum(html::error_page(&e, "local")),
    }
}

/// Where the browser lands at the end: shows the references the platform would receive.
pub async fn done(Query(query): Query<BTreeMap<String, String>>) -> Response {
    let rows: String = query
        .iter()
        .map(|(k, v)| {
            format!(
                "<tr><th align=left>{}</th><td><code>{}</code></td></tr>",
                html::escape(k),
                html::escape(v)
            )
        })
        .collect();
    let outcome = if query.contains_key("error") {
        "The flow ended with an error"
    } else {
        "Connected"
    };
    let body = format!(
        "Your platform's redirect_url receives these parameters (references only, never tokens):</p><table>{rows}</table><p><a href=\"/\">Start again</a>"
    );
    to_axum(html::page(StatusCode::OK, outcome, &body))
}

/// Registers the development organization with this server's landing page. Returns a new API key
/// on first start (when the organization did not exist yet).
pub async fn ensure_dev_org(app: &broker::App) -> broker::Result<Option<String>> {
    let mut done = app.config.public_url.clone();
    done.set_path(DONE_PATH);
    let now = chrono::Utc::now().timestamp();
    match app.orgs.get_org(DEV_ORG).await? {
        Some(mut org) => {
            if !org.redirect_urls.iter().any(|u| u == done.as_str()) {
                org.redirect_urls.push(done.to_string());
                app.orgs.put_org(&org).await?;
            }
            Ok(None)
        }
        None => {
            let org = broker::org::Org {
                id: DEV_ORG.into(),
                redirect_urls: vec![done.to_string()],
                created_at: now,
            };
            app.orgs.put_org(&org).await?;
            let (key, record) = broker::auth::new_api_key(DEV_ORG, 1, vec![], vec![])?;
            app.keys.put_key(&record).await?;
            Ok(Some(key))
        }
    }
}
