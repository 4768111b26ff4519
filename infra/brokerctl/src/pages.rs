//! The development organization of `brokerctl serve`, the console's key, and a landing page
//! standing in for a platform's redirect_url (the README's curl walkthrough ends there).

use std::collections::BTreeMap;

use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::Response;
use broker::api::html;

use crate::local::to_axum;

pub const DEV_ORG: &str = "dev";
pub const DEV_WORKSPACE: &str = "dev-workspace";
pub const DONE_PATH: &str = "/done";

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

/// Registers the development organization with this server's landing page and console. Returns
/// a new API key on first start (when the organization did not exist yet).
pub async fn ensure_dev_org(app: &broker::App) -> broker::Result<Option<String>> {
    let mut done = app.config.public_url.clone();
    done.set_path(DONE_PATH);
    let mut console = app.config.public_url.clone();
    console.set_path("/");
    let urls = [done.to_string(), console.to_string()];
    let now = chrono::Utc::now().timestamp();
    match app.orgs.get_org(DEV_ORG).await? {
        Some(mut org) => {
            let missing: Vec<String> = urls
                .iter()
                .filter(|u| !org.redirect_urls.contains(u))
                .cloned()
                .collect();
            if !missing.is_empty() {
                org.redirect_urls.extend(missing);
                app.orgs.put_org(&org).await?;
            }
            Ok(None)
        }
        None => {
            let org = broker::org::Org {
                id: DEV_ORG.into(),
                redirect_urls: urls.to_vec(),
                created_at: now,
            };
            app.orgs.put_org(&org).await?;
            let (key, record) = broker::auth::new_api_key(DEV_ORG, 1, vec![], vec![])?;
            app.keys.put_key(&record).await?;
            Ok(Some(key))
        }
    }
}

/// Where the console's key is kept between starts: in the vault, like every secret.
const CONSOLE_KEY_SECRET: &str = "console/dev-key";

/// The console's API key for the development organization: the one kept in the vault while the
/// key store still accepts it, else a new one (kept for the next start).
pub async fn ensure_console_key(app: &broker::App) -> broker::Result<String> {
    let name = format!("{}/{CONSOLE_KEY_SECRET}", app.config.secret_prefix);
    if let Some(kept) = app.vault.get_secret(&name).await? {
        let hash = broker::crypto::sha256_hex(kept.expose());
        if app.keys.get_key(&hash).await?.is_some_and(|k| !k.revoked) {
            return Ok(kept.expose().clone());
        }
    }
    let (key, record) = broker::auth::new_api_key(DEV_ORG, 1, vec![], vec![])?;
    app.keys.put_key(&record).await?;
    let token = broker::crypto::random_token()?;
    app.vault
        .put_secret(
            &name,
            &broker::secret::Sensitive::new(key.clone()),
            &[],
            &token,
        )
        .await?;
    Ok(key)
}
