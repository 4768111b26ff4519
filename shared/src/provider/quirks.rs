//! The one place where provider quirks need code. Each is switched on by an entry's data; the
//! token request and response are rewritten here into the RFC 6749 shapes `oauth2` reads, so the
//! exchange itself stays standard.

use oauth2::http::{HeaderValue, StatusCode, header};
use oauth2::{HttpRequest, HttpResponse};
use serde_json::{Map, Value};

use super::{Provider, TokenBody};

/// The form `oauth2` built, with the entry's own parameter names (TikTok's `auth_code`), as a
/// JSON object where the entry says `token_body = "json"` (Notion, Atlassian, TikTok).
pub(super) fn request(provider: &Provider, mut req: HttpRequest) -> HttpRequest {
    if provider.param_names.is_empty() && provider.token_body == TokenBody::Form {
        return req;
    }
    let fields: Vec<(String, String)> = url::form_urlencoded::parse(req.body())
        .into_owned()
        .map(|(k, v)| (provider.param_name(&k).to_string(), v))
        .collect();
    *req.body_mut() = match provider.token_body {
        TokenBody::Json => {
            req.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            let object: Map<String, Value> = fields
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            Value::Object(object).to_string().into_bytes()
        }
        TokenBody::Form => url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish()
            .into_bytes(),
    };
    req
}

/// The provider's token response as RFC 6749 JSON: form-encoded bodies parsed (GitHub), errors
/// inside a 200 turned into 400s (Slack's `ok: false`, TikTok's non-zero `code`, GitHub's
/// `error`), nested token fields lifted (Slack's `authed_user`, TikTok's `data`), a missing
/// `token_type` defaulted.
pub(super) fn response(provider: &Provider, resp: HttpResponse) -> HttpResponse {
    let (mut parts, body) = resp.into_parts();
    let Some(mut doc) = parse(&parts.headers, &body) else {
        return HttpResponse::from_parts(parts, body);
    };
    // The success field says `true` (Slack's `ok`) or `0` (TikTok's `code`).
    let refused = provider
        .success_field
        .as_ref()
        .and_then(|f| doc.get(f))
        .is_some_and(|v| *v == Value::Bool(false) || v.as_i64().is_some_and(|n| n != 0));
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
    // A scope given as a list (TikTok's permission ids) in RFC 6749's space-separated form.
    if let Some(Value::Array(items)) = doc.get("scope") {
        let joined: Vec<String> = items
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .collect();
        doc.insert("scope".into(), Value::String(joined.join(" ")));
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

    #[test]
    fn renamed_parameters_travel_under_the_providers_names() {
        let tiktok = provider(
            "token_body = \"json\"\nparam_names = { client_id = \"app_id\", client_secret = \"secret\", code = \"auth_code\" }",
        );
        let req = oauth2::http::Request::builder()
            .body(b"grant_type=authorization_code&code=c1&client_id=id&client_secret=s".to_vec())
            .unwrap();
        let body: Value = serde_json::from_slice(request(&tiktok, req).body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({ "grant_type": "authorization_code", "auth_code": "c1", "app_id": "id", "secret": "s" })
        );
        // A form-encoded provider keeps its form, renamed
        let form = provider("param_names = { code = \"auth_code\" }");
        let req = oauth2::http::Request::builder()
            .body(b"code=c%2B1&grant_type=authorization_code".to_vec())
            .unwrap();
        assert_eq!(
            request(&form, req).body(),
            b"auth_code=c%2B1&grant_type=authorization_code"
        );
    }

    #[test]
    fn an_enveloped_answer_is_read_by_its_code() {
        let tiktok = provider("success_field = \"code\"\ntoken_response_path = \"data\"");
        let ok = response(
            &tiktok,
            reply(
                200,
                "application/json",
                r#"{"code":0,"message":"OK","data":{"access_token":"at","advertiser_ids":["1"],"scope":[4]}}"#,
            ),
        );
        assert_eq!(ok.status(), 200);
        assert_eq!(doc(&ok)["access_token"], "at");
        assert_eq!(doc(&ok)["scope"], "4");
        let refused = response(
            &tiktok,
            reply(
                200,
                "application/json",
                r#"{"code":40001,"message":"auth_code is invalid","data":{}}"#,
            ),
        );
        assert_eq!(refused.status(), 400);
        assert_eq!(
            doc(&refused),
            serde_json::json!({ "error": "invalid_grant" })
        );
    }
}
