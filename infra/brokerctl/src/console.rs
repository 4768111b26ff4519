//! The local console of `brokerctl serve` at `/`: connect an account through the hosted connect
//! page, see the organization's connections (status, token expiry, last refresh), fetch a fresh
//! token (shown masked) and revoke one. It calls only the public API over HTTP, with an API key it
//! holds server-side; the key never reaches the page.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Form, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use broker::api::html::escape;
use oauth2::reqwest;
use serde_json::{Value, json};

use crate::local::{Console, Local};

impl Console {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.api_base))
            .header("x-api-key", &self.key);
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let bytes = resp.bytes().await.unwrap_or_default();
                (
                    status,
                    serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                )
            }
            Err(e) => (502, json!({ "error": { "message": e.to_string() } })),
        }
    }
}

/// `GET /`: the console; `?connection_id&status` or `?error` after the connect page sent the
/// browser back, `?revoked` after a revoke.
pub async fn home(
    State(local): State<Arc<Local>>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    // The routes exist only with a console (`router`).
    let Some(console) = local.console.as_ref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let notice = if let Some(error) = query.get("error") {
        format!(
            "<p role=\"status\" class=\"bad\">Not connected: {}</p>",
            escape(error)
        )
    } else if let Some(id) = query.get("connection_id") {
        format!(
            "<p role=\"status\" class=\"good\">Connected <code>{}</code> ({}).</p>",
            escape(id),
            escape(query.get("status").map(String::as_str).unwrap_or(""))
        )
    } else if let Some(id) = query.get("revoked") {
        format!(
            "<p role=\"status\">Revoked <code>{}</code>.</p>",
            escape(id)
        )
    } else {
        String::new()
    };
    render(&local, console, &notice).await
}

#[derive(serde::Deserialize)]
pub struct ConnectionForm {
    id: String,
}

/// `POST /console/connect`: a connect session for the console's user (redirect mode, back
/// here), then the connect page.
pub async fn connect(State(local): State<Arc<Local>>) -> Response {
    // The routes exist only with a console (`router`).
    let Some(console) = local.console.as_ref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut allowed = Vec::new();
    for p in local.app.catalog.iter() {
        let configured = local
            .app
            .apps
            .credentials(&p.slug, &console.organization_id, None)
            .await
            .is_ok();
        if configured && p.require_usable().is_ok() {
            allowed.push(p.slug.clone());
        }
    }
    let (status, body) = console
        .call(
            reqwest::Method::POST,
            "/v1/connect/sessions",
            Some(json!({
                "workspace_id": console.workspace,
                "end_user": {"id": "console", "display_name": "You (local console)"},
                "allowed_providers": allowed,
                "redirect_url": format!("{}/", console.api_base),
            })),
        )
        .await;
    match body["connect_url"].as_str() {
        Some(url) if status == 201 => Redirect::to(url).into_response(),
        _ => {
            render(
                &local,
                console,
                &failure("create a connect session", status, &body),
            )
            .await
        }
    }
}

/// `POST /console/token`: a fresh token for one connection, shown masked.
pub async fn token(State(local): State<Arc<Local>>, Form(form): Form<ConnectionForm>) -> Response {
    // The routes exist only with a console (`router`).
    let Some(console) = local.console.as_ref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let path = format!(
        "/v1/connections/{}/token?force_refresh=true",
        urlencode(&form.id)
    );
    let (status, body) = console.call(reqwest::Method::GET, &path, None).await;
    let notice = match body["access_token"].as_str() {
        Some(token) if status == 200 => format!(
            "<p role=\"status\" class=\"good\">Fresh token for <code>{}</code>: <code>{}</code>, expires {}.</p>",
            escape(&form.id),
            escape(&mask(token)),
            escape(body["expires_at"].as_str().unwrap_or("never"))
        ),
        _ => failure("get a token", status, &body),
    };
    render(&local, console, &notice).await
}

/// `POST /console/revoke`: revokes one connection, then back to the list.
pub async fn revoke(State(local): State<Arc<Local>>, Form(form): Form<ConnectionForm>) -> Response {
    // The routes exist only with a console (`router`).
    let Some(console) = local.console.as_ref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let path = format!("/v1/connections/{}", urlencode(&form.id));
    let (status, body) = console.call(reqwest::Method::DELETE, &path, None).await;
    if status == 200 {
        Redirect::to(&format!("/?revoked={}", urlencode(&form.id))).into_response()
    } else {
        render(&local, console, &failure("revoke", status, &body)).await
    }
}

async fn render(local: &Local, console: &Console, notice: &str) -> Response {
    let (status, listed) = console
        .call(reqwest::Method::GET, "/v1/connections?limit=50", None)
        .await;
    let rows: String = listed["connections"]
        .as_array()
        .map(|list| list.iter().map(row).collect())
        .unwrap_or_default();
    let table = if status != 200 {
        failure("list connections", status, &listed)
    } else if rows.is_empty() {
        "<p>No connections yet.</p>".to_string()
    } else {
        format!(
            "<table><caption>Connections of organization <code>{org}</code></caption><thead><tr>\
             <th scope=\"col\">Connection</th><th scope=\"col\">Provider</th><th scope=\"col\">Status</th>\
             <th scope=\"col\">End user</th><th scope=\"col\">Token expires</th><th scope=\"col\">Last refresh</th>\
             <th scope=\"col\">Actions</th></tr></thead><tbody>{rows}</tbody></table>",
            org = escape(
                listed["connections"][0]["organization_id"]
                    .as_str()
                    .unwrap_or_default()
            ),
        )
    };
    let body = format!(
        "<main><h1>oauth-broker console</h1>\
         <p>Every route of the broker runs here on the {backend:?} backend, with a sandbox provider. \
         The console calls the public API with a key it keeps on the server.</p>{notice}\
         <form method=\"post\" action=\"/console/connect\"><button type=\"submit\">Connect an account</button></form>\
         <h2>Connections</h2>{table}\
         <p class=\"hint\">API under <code>/v1</code>; the README has the curl walkthrough.</p></main>",
        backend = local.app.config.backend,
    );
    page(&body)
}

fn row(c: &Value) -> String {
    let text = |k: &str| escape(c[k].as_str().unwrap_or("-"));
    let id = text("id");
    let actions = if c["status"] == "revoked" {
        String::new()
    } else {
        format!(
            "<form method=\"post\" action=\"/console/token\"><input type=\"hidden\" name=\"id\" value=\"{id}\">\
             <button type=\"submit\" aria-label=\"Fresh token for {id}\">Fresh token</button></form>\
             <form method=\"post\" action=\"/console/revoke\"><input type=\"hidden\" name=\"id\" value=\"{id}\">\
             <button type=\"submit\" class=\"danger\" aria-label=\"Revoke {id}\">Revoke</button></form>"
        )
    };
    format!(
        "<tr><td><code>{id}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{actions}</td></tr>",
        text("provider"),
        text("status"),
        text("end_user_id"),
        text("token_expires_at"),
        text("last_refreshed_at"),
    )
}

fn failure(what: &str, status: u16, body: &Value) -> String {
    format!(
        "<p role=\"alert\" class=\"bad\">Could not {what} ({status}): {}</p>",
        escape(body["error"]["message"].as_str().unwrap_or("no answer"))
    )
}

/// The first four characters, the rest hidden: enough to tell tokens apart.
fn mask(token: &str) -> String {
    let shown: String = token.chars().take(4).collect();
    format!("{shown}…({} characters)", token.chars().count())
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn page(body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>oauth-broker console</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:64rem;margin:2rem auto;padding:0 1rem;color:#1b1b1b}}\
         table{{border-collapse:collapse;width:100%}}th,td{{border-bottom:1px solid #c4c4c4;padding:.4rem;text-align:left;vertical-align:top}}\
         caption{{text-align:left;font-weight:600;margin:.5rem 0}}form{{display:inline}}\
         button{{font:inherit;padding:.35rem .8rem;margin:.15rem;background:#0b57d0;color:#fff;border:0;border-radius:.35rem;cursor:pointer}}\
         button.danger{{background:#a50e0e}}button:focus{{outline:3px solid #f4b400;outline-offset:2px}}\
         .good{{color:#0d652d}}.bad{{color:#a50e0e}}.hint{{color:#4a4a4a}}</style></head><body>{body}</body></html>"
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
            ),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        html,
    )
        .into_response()
}
