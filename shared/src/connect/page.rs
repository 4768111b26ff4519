//! The connect page and its result: small, self-contained HTML (inline CSS and script under a
//! per-response CSP nonce, no framework), usable without script (each provider is its own form;
//! the script only filters the list and posts the result to the opener).

use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use url::Url;

use super::ConnectSession;
use crate::api::html::escape;
use crate::crypto::random_token;
use crate::flow::Landing;
use crate::provider::Provider;
use crate::{App, Error, Result};

/// The frontend's side, served at `/v1/connect/connect.js` (an ES module, no build step):
/// `openConnect(connectUrl)` opens the page in a popup and resolves with its result.
pub const SCRIPT: &str = r#"// oauth-broker connect: open the hosted connect page in a popup and resolve with its result.
// import { openConnect } from "https://<broker>/v1/connect/connect.js";
// const result = await openConnect(connectUrl); // {type, status, connection_id, error?}
export function openConnect(connectUrl, { width = 520, height = 720 } = {}) {
  const brokerOrigin = new URL(connectUrl).origin;
  const left = Math.max(0, (screen.width - width) / 2);
  const top = Math.max(0, (screen.height - height) / 2);
  const popup = window.open(connectUrl, "oauth-broker-connect",
    `popup,width=${width},height=${height},left=${left},top=${top}`);
  if (!popup) return Promise.reject(new Error("the popup was blocked"));
  return new Promise((resolve, reject) => {
    let settled = false;
    const done = (settle, value) => {
      if (settled) return;
      settled = true;
      window.removeEventListener("message", onMessage);
      clearInterval(watch);
      settle(value);
    };
    const onMessage = (event) => {
      if (event.origin !== brokerOrigin || event.source !== popup) return;
      if (!event.data || event.data.type !== "oauth-broker:connection") return;
      done(resolve, event.data);
    };
    window.addEventListener("message", onMessage);
    // The page posts its result and closes at once: a closed popup's message may still be
    // queued, so a close counts only after a moment without one.
    const watch = setInterval(() => {
      if (popup.closed) {
        clearInterval(watch);
        setTimeout(() => done(reject, new Error("the connect window was closed")), 1000);
      }
    }, 250);
  });
}
"#;

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:36rem;margin:2rem auto;padding:0 1rem;color:#1b1b1b}\
ul{list-style:none;padding:0}li{border:1px solid #c4c4c4;border-radius:.5rem;padding:.75rem 1rem;margin:.5rem 0}\
h2{font-size:1.1rem;margin:0 0 .5rem}label{display:block;margin:.5rem 0 .25rem}\
input{font:inherit;padding:.4rem;width:100%;box-sizing:border-box}\
button{font:inherit;padding:.45rem 1rem;margin-top:.5rem;background:#0b57d0;color:#fff;border:0;border-radius:.35rem;cursor:pointer}\
button:focus,input:focus{outline:3px solid #f4b400;outline-offset:2px}.hint{color:#4a4a4a;font-size:.9rem}";

/// The provider picker for `session` (whose token is `token`).
pub fn picker_page(app: &App, token: &str, session: &ConnectSession) -> Result<Response<Body>> {
    let providers: Vec<&Provider> = app
        .catalog
        .iter()
        .filter(|p| p.require_usable().is_ok())
        .filter(|p| {
            session.allowed_providers.is_empty() || session.allowed_providers.contains(&p.slug)
        })
        .collect();
    let action = escape(app.config.connect_url().as_str());
    let mut items = String::new();
    for p in &providers {
        let mut fields = String::new();
        for (name, spec) in &p.inputs {
            let id = format!("{}-{name}", p.slug);
            let hint = if spec.description.is_empty() {
                String::new()
            } else {
                format!(
                    "<span class=\"hint\" id=\"{id}-hint\">{}</span>",
                    escape(&spec.description)
                )
            };
            fields.push_str(&format!(
                "<label for=\"{id}\">{label}</label>{hint}<input id=\"{id}\" name=\"input.{name}\" \
                 pattern=\"{pattern}\" title=\"{title}\"{required} aria-describedby=\"{id}-hint\" autocomplete=\"off\">",
                id = escape(&id),
                label = escape(name),
                name = escape(name),
                pattern = escape(&browser_pattern(&spec.pattern)),
                title = escape(&format!("must match {}", spec.pattern)),
                required = if spec.required { " required" } else { "" },
            ));
        }
        items.push_str(&format!(
            "<li data-name=\"{search}\"><form method=\"post\" action=\"{action}\">\
             <h2>{name}</h2><input type=\"hidden\" name=\"session\" value=\"{token}\">\
             <input type=\"hidden\" name=\"provider\" value=\"{slug}\">{fields}\
             <button type=\"submit\">Connect {name}</button></form></li>",
            search = escape(&format!("{} {}", p.name, p.slug).to_lowercase()),
            name = escape(&p.name),
            slug = escape(&p.slug),
            token = escape(token),
        ));
    }
    let who = session
        .end_user
        .display_name
        .as_deref()
        .or(session.end_user.email.as_deref())
        .unwrap_or(&session.end_user.id);
    let body = format!(
        "<main><h1>Connect an account</h1><p>Signed in as <strong>{who}</strong>. Choose the \
         service to connect; you will sign in there and come back here.</p>\
         <label for=\"search\">Search services</label>\
         <input id=\"search\" type=\"search\" autocomplete=\"off\" aria-controls=\"providers\">\
         <ul id=\"providers\">{items}</ul><p id=\"none\" hidden>No service matches.</p></main>",
        who = escape(who),
    );
    let script = "const q=document.getElementById('search'),items=[...document.querySelectorAll('#providers li')];\
        q.addEventListener('input',()=>{const t=q.value.trim().toLowerCase();let n=0;\
        for(const li of items){const show=li.dataset.name.includes(t);li.hidden=!show;if(show)n++;}\
        document.getElementById('none').hidden=n>0;});";
    html(StatusCode::OK, "Connect an account", &body, Some(script))
}

/// The end of a connect flow: the result posted to the opener at exactly the session's origin
/// (then the window closes), or the browser sent to the session's redirect URL with the same
/// references, or a page saying what happened.
pub async fn result_page(app: &App, landing: Landing) -> Result<Response<Body>> {
    let Landing::Connect {
        session_hash,
        connection_id,
        refused,
    } = landing
    else {
        return Err(Error::internal("not a connect flow's landing"));
    };
    let session = app
        .sessions
        .get_session(&session_hash, app.clock.now())
        .await?;
    let status = if refused.is_some() {
        "failed"
    } else {
        "authorized"
    };
    let mut message = serde_json::json!({
        "type": "oauth-broker:connection",
        "status": status,
        "connection_id": connection_id,
    });
    let mut params = vec![
        ("connection_id", connection_id.to_string()),
        ("status", status.into()),
    ];
    if let Some((error, description)) = &refused {
        message["error"] = error.clone().into();
        params.push(("error", error.clone()));
        params.push(("error_description", description.clone()));
    }
    let redirect = session
        .as_ref()
        .and_then(|s| s.redirect_url.as_deref())
        .and_then(|u| Url::parse(u).ok())
        .map(|mut u| {
            u.query_pairs_mut().extend_pairs(&params);
            u
        });
    let origin = session.as_ref().and_then(|s| s.origin.clone());
    let (title, text) = match &refused {
        None => (
            "Account connected",
            "Your account is connected. You can close this window.".to_string(),
        ),
        Some((error, _)) if error == "access_denied" => (
            "Not connected",
            "You declined access, so nothing was connected. Close this window and choose Connect again if you change your mind.".to_string(),
        ),
        Some((error, _)) => (
            "Not connected",
            format!(
                "The service refused the connection ({}). Close this window and try again; if it keeps failing, contact the application's support.",
                escape(error)
            ),
        ),
    };
    let Some(origin) = origin else {
        // Redirect mode: the platform's page shows the result.
        return match redirect {
            Some(url) => crate::api::redirect(StatusCode::SEE_OTHER, url.as_str()),
            None => html(
                StatusCode::OK,
                title,
                &format!("<main><h1>{title}</h1><p>{text}</p></main>"),
                None,
            ),
        };
    };
    // Popup mode: the result goes to the opener at exactly the registered origin, never "*"; a
    // page opened without an opener falls back to the redirect URL, if there is one.
    let fallback = redirect
        .map(|u| format!("location.replace({});", js_string(u.as_str())))
        .unwrap_or_default();
    let script = format!(
        "if(window.opener){{window.opener.postMessage({message},{origin});window.close();}}else{{{fallback}}}",
        message = message,
        origin = js_string(&origin),
    );
    html(
        StatusCode::OK,
        title,
        &format!("<main><h1>{title}</h1><p>{text}</p></main>"),
        Some(&script),
    )
}

/// A page under a fresh CSP nonce: its own inline style and script only, never framed, no
/// referrer, nothing cached.
fn html(
    status: StatusCode,
    title: &str,
    body: &str,
    script: Option<&str>,
) -> Result<Response<Body>> {
    let nonce = random_token()?;
    let script = script
        .map(|s| format!("<script nonce=\"{nonce}\">{s}</script>"))
        .unwrap_or_default();
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{title}</title>\
         <style nonce=\"{nonce}\">{STYLE}</style></head><body>{body}{script}</body></html>",
        title = escape(title),
    );
    let csp = format!(
        "default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    crate::api::html::headers(status, &csp)
        .header("x-frame-options", "DENY")
        .body(Body::Text(page))
        .map_err(Error::internal)
}

/// A JSON string literal, safe inside a `<script>` element.
fn js_string(s: &str) -> String {
    serde_json::Value::from(s)
        .to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
}

/// A catalog pattern as the browser's `pattern` attribute reads it (the `v` flag, where a
/// literal `-` in a class must be escaped); the server checks the catalog's own pattern again.
fn browser_pattern(pattern: &str) -> String {
    pattern.replace("-]", "\\-]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_and_strings_are_made_safe_for_the_page() {
        assert_eq!(
            browser_pattern("[a-z0-9][a-z0-9-]{0,62}"),
            "[a-z0-9][a-z0-9\\-]{0,62}"
        );
        assert_eq!(js_string("</script>"), "\"\\u003c/script\\u003e\"");
    }
}
