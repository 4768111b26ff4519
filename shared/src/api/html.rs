//! The static pages a browser may land on. When a flow cannot be trusted the broker has nowhere
//! safe to redirect, so it answers one of these, with no referrer and nothing cacheable.

use lambda_http::http::{StatusCode, header};
use lambda_http::{Body, Response};

use crate::Error;
use crate::api::errors::{self, RETRY_AFTER_SECS};

/// The page for a failed browser step; the error's detail goes to the log with the trace id.
pub fn error_page(e: &Error, trace_id: &str) -> Response<Body> {
    errors::log(e, trace_id);
    // The status comes from the one table in `errors`; the page only picks words for it.
    let status = e.status();
    let (title, text) = match status.as_u16() {
        400 => (
            "This sign-in link is no longer valid",
            "It may have expired, been used already, or been opened in another browser. Return to the application and start connecting again.",
        ),
        503 => (
            "Temporarily unavailable",
            "The service could not finish connecting your account. Please try again in a moment.",
        ),
        404 | 405 => ("Not found", "There is nothing here."),
        _ => (
            "Something went wrong",
            "The service could not finish connecting your account. Return to the application and try again.",
        ),
    };
    page(
        status,
        title,
        &format!(
            "{text}</p><p><small>Reference: {}</small>",
            escape(trace_id)
        ),
    )
}

/// A minimal self-contained HTML page (`body` is trusted markup).
pub fn page(status: StatusCode, title: &str, body: &str) -> Response<Body> {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <meta name=\"viewport\" content=\"width=device-width\"></head>\
         <body style=\"font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem\">\
         <h1>{t}</h1><p>{body}</p></body></html>",
        t = escape(title)
    );
    let mut builder = headers(
        status,
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        builder = builder.header(header::RETRY_AFTER, RETRY_AFTER_SECS);
    }
    builder
        .body(Body::Text(html))
        .unwrap_or_else(|_| Response::new(Body::Empty))
}

/// The headers every page of the broker carries: HTML, never cached, no referrer, its own
/// content security policy, no sniffing.
pub fn headers(status: StatusCode, csp: &str) -> lambda_http::http::response::Builder {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .header("referrer-policy", "no-referrer")
        .header("content-security-policy", csp)
        .header("x-content-type-options", "nosniff")
}

/// HTML-escapes text.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}
