//! The one place where provider quirks need code. Each is switched on by an entry's data; the
//! token request and response are rewritten here into the RFC 6749 shapes `oauth2` reads, so the
//! exchange itself stays standard.

use oauth2::http::{HeaderValue, StatusCode, header};
use oauth2::{HttpRequest, HttpResponse};
use serde_json::{Map, Value};

use super::{Provider, TokenBody};

/// `token_body = "json"` (Notion, Atlassian): the form `oauth2` built, as a JSON object.
pub(super) fn request(provider: &Provider, mut req: HttpRequest) -> HttpRequest {
    if provider.token_body == TokenBody::Json {
        let fields: Map<String, Value> = url::form_urlencoded::parse(req.body())
            .into_owned()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        *req.body_mut() = Value::Object(fields).to_string().into_bytes();
        req.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    req
}

/// The provider's token response as RFC 6749 JSON: form-encoded bodies parsed (GitHub), errors
/// inside a 200 turned into 400s (Slack's `ok: false`, GitHub's `error`), nested token fields
/// lifted (Slack's `authed_user`), a missing `token_type` defaulted.
pub(super) fn response(provider: &Provider, resp: HttpResponse) -> HttpResponse {
    let (mut parts, body) = resp.into_parts();
    let Some(mut doc) = parse(&parts.headers, &body) else {
        return HttpResponse::from_parts(parts, body);
    };
    let refused = provider
        .success_field
        .as_ref()
        .is_some_and(|f| doc.get(f) == Some(&Value::Bool(false)));
    let error_in_success =
        parts.status.is_success() && doc.contains_key("error") && !doc.contains_key("access_token");
    if refused || error_in_success {
        parts.status = StatusCode::BAD_REQUEST;
        let error = doc
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("invalid_grant")
            .to_string();
        doc = Map::from_iter([("error".to_string(), Value::String(error))]);
    }
    if let Some(path) = &provider.token_response_path
        && let Some(Value::Object(nested)) = doc.get(path).cloned()
        && nested.contains_key("access_token")
    {
        doc.extend(nested);
    }
    if doc.contains_key("access_token") && !doc.contains_key("token_type") {
        doc.insert("token_type".into(), Value::String("bearer".into()));
    }
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    HttpResponse::from_parts(parts, Value::Object(doc).to_string().into_bytes())
}

/// A JSON object, or a form-encoded body read as one (numbers where RFC 6749 has them).
fn parse(headers: &oauth2::http::HeaderMap, body: &[u8]) -> Option<Map<String, Value>> {
    if let Ok(Value::Object(doc)) = serde_json::from_slice(body) {
        return Some(doc);
    }
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.starts_with("application/x-www-form-urlencoded") || ct.starts_with("text/plain")
        });
    if !form {
        return None;
    }
    let doc: Map<String, Value> = url::form_urlencoded::parse(body)
        .into_owned()
        .map(|(k, v)| {
            let value = match (k.as_str(), v.parse::<u64>()) {
                ("expires_in" | "refresh_token_expires_in", Ok(n)) => Value::from(n),
                _ => Value::String(v),
            };
            (k, value)
        })
        .collect();
    (!doc.is_empty()).then_some(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(extra: &str) -> Provider {
        let text = format!(
            "slug = \"p\"\nname = \"P\"\nauthorization_url = \"https://p.example/a\"\ntoken_url = \"https://p.example/t\"\n{extra}"
        );
        toml::from_str(&text).unwrap()
    }

    fn reply(status: u16, content_type: &str, body: &str) -> HttpResponse {
        oauth2::http::Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, content_type)
            .body(body.as_bytes().to_vec())
            .unwrap()
    }

    fn doc(resp: &HttpResponse) -> Value {
        serde_json::from_slice(resp.body()).unwrap()
    }

    #[test]
    fn form_encoded_token_responses_are_read() {
        let resp = response(
            &provider(""),
            reply(
                200,
                "application/x-www-form-urlencoded; charset=utf-8",
                "access_token=gho_1&scope=repo%2Cgist&token_type=bearer&expires_in=28800",
            ),
        );
        assert_eq!(doc(&resp)["access_token"], "gho_1");
        assert_eq!(doc(&resp)["expires_in"], 28800);
        assert_eq!(doc(&resp)["scope"], "repo,gist");
    }

    #[test]
    fn errors_inside_a_200_become_errors() {
        let slack = provider("success_field = \"ok\"");
        let resp = response(
            &slack,
            reply(
                200,
                "application/json",
                r#"{"ok":false,"error":"invalid_code"}"#,
            ),
        );
        assert_eq!(resp.status(), 400);
        assert_eq!(doc(&resp), serde_json::json!({ "error": "invalid_code" }));
        let github = response(
            &provider(""),
            reply(
                200,
                "application/x-www-form-urlencoded",
                "error=bad_verification_code&error_description=x",
            ),
        );
        assert_eq!(github.status(), 400);
    }

    #[test]
    fn nested_token_fields_are_lifted_and_token_type_defaulted() {
        let slack = provider("token_response_path = \"authed_user\"");
        let resp = response(
            &slack,
            reply(
                200,
                "application/json",
                r#"{"ok":true,"team":{"id":"T1"},"authed_user":{"id":"U1","access_token":"xoxp-1","scope":"users:read"}}"#,
            ),
        );
        let d = doc(&resp);
        assert_eq!(d["access_token"], "xoxp-1");
        assert_eq!(d["token_type"], "bearer");
        assert_eq!(d["team"]["id"], "T1");
    }

    #[test]
    fn json_token_bodies_carry_the_same_fields() {
        let notion = provider("token_body = \"json\"");
        let req = oauth2::http::Request::builder()
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(b"grant_type=authorization_code&code=c%2B1".to_vec())
            .unwrap();
        let req = request(&notion, req);
        assert_eq!(req.headers()[header::CONTENT_TYPE], "application/json");
        let body: Value = serde_json::from_slice(req.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({ "grant_type": "authorization_code", "code": "c+1" })
        );
    }
}
