//! HTTP glue shared by every function: routing, bounded request parsing, responses. The same code
//! serves Lambda (through `lambda_http`) and `brokerctl serve`.

pub mod dialect;
pub mod errors;
pub mod handler;
pub mod html;
pub mod lambda;
pub mod route;

use std::collections::HashMap;

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Result};

pub use handler::{Call, Function, handle};
pub use route::Route;

/// Largest request body accepted (DESIGN §4).
pub const MAX_BODY: usize = 64 * 1024;
/// Largest query string accepted.
pub const MAX_QUERY: usize = 8 * 1024;
/// Nesting limit for JSON bodies; serde_json's own recursion limit (128) is the backstop.
const MAX_JSON_DEPTH: usize = 32;

/// API Gateway's request id, or one generated here; logs and error envelopes carry the same id.
pub fn request_id(req: &Request) -> String {
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx))
            if ctx.request_id.as_deref().is_some_and(|id| !id.is_empty()) =>
        {
            ctx.request_id.clone().unwrap_or_default()
        }
        _ => uuid::Uuid::new_v4().to_string(),
    }
}

/// The body as JSON of type `T`, after media-type, size and depth checks.
pub fn json_body<T: DeserializeOwned>(req: &Request) -> Result<T> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(Error::UnsupportedMediaType);
    }
    let bytes: &[u8] = req.body().as_ref();
    if bytes.len() > MAX_BODY {
        return Err(Error::PayloadTooLarge);
    }
    if json_depth(bytes) > MAX_JSON_DEPTH {
        return Err(Error::validation("request body is nested too deeply"));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        Error::validation(format!(
            "invalid request body: {}",
            redact_quoted(&e.to_string())
        ))
    })
}

/// serde names fields in backticks but quotes a mistyped string value in full (`invalid type:
/// string "...", expected a map`); that value may be a pasted secret, so it is left out.
fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for (i, part) in message.split('"').enumerate() {
        out.push_str(if i % 2 == 1 { "\"…\"" } else { part });
    }
    out
}

/// Deepest nesting of arrays and objects, counted without parsing (strings skipped).
fn json_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// The query string as a map, bounded in length. A name given twice is refused, on every route:
/// RFC 6749 §3.1 forbids repeating a protocol parameter, and "the last one wins" would let
/// `state=<forged>&...&state=<real>` or `iss=<wrong>&iss=<right>` through a check of the other.
pub fn query(req: &Request) -> Result<HashMap<String, String>> {
    let raw = req.uri().query().unwrap_or("");
    if raw.len() > MAX_QUERY {
        return Err(Error::validation("query string too long"));
    }
    let mut query = HashMap::new();
    for (name, value) in url::form_urlencoded::parse(raw.as_bytes()).into_owned() {
        if query.insert(name, value).is_some() {
            // The name is the caller's: not echoed.
            return Err(Error::validation("a query parameter is repeated"));
        }
    }
    Ok(query)
}

/// A required query parameter.
pub fn query_param(query: &HashMap<String, String>, name: &str) -> Result<String> {
    query
        .get(name)
        .filter(|v| !v.is_empty())
        .cloned()
        .ok_or_else(|| Error::field(name, "is required"))
}

/// The value of cookie `name`, if the request carries it.
pub fn cookie(req: &Request, name: &str) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// A JSON response; API responses carry consent URLs or one-time handles, so none is cacheable.
pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Result<Response<Body>> {
    let body = serde_json::to_string(body).map_err(Error::internal)?;
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::Text(body))
        .map_err(Error::internal)
}

/// A redirect to `location`, with no referrer leaking the broker's URL to the next site.
pub fn redirect(status: StatusCode, location: &str) -> Result<Response<Body>> {
    let location = HeaderValue::from_str(location).map_err(Error::internal)?;
    Response::builder()
        .status(status)
        .header(header::LOCATION, location)
        .header(header::CACHE_CONTROL, "no-store")
        .header("referrer-policy", "no-referrer")
        .body(Body::Empty)
        .map_err(Error::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_errors_name_the_field_but_not_the_value() {
        let e = serde_json::from_str::<std::collections::BTreeMap<String, u8>>(r#""tok_secret""#)
            .unwrap_err();
        let redacted = redact_quoted(&e.to_string());
        assert!(e.to_string().contains("tok_secret"), "serde does echo it");
        assert!(
            !redacted.contains("tok_secret") && redacted.contains("invalid type"),
            "{redacted}"
        );
    }

    #[test]
    fn depth_ignores_brackets_in_strings() {
        assert_eq!(json_depth(br#"{"a":[{"b":"[[[["}]}"#), 3);
        assert_eq!(json_depth(br#"{"a":"\"{{{"}"#), 1);
        assert_eq!(json_depth(&b"[".repeat(100)), 100);
    }
}
