//! `infra/openapi.yaml` as a test oracle: the operations it documents, and a check of any response
//! against the document (status documented, required headers present, body of a documented media
//! type and, for JSON, valid against the schema).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use axum::http::{HeaderMap, Method, StatusCode, header};
use jsonschema::Validator;
use serde_json::Value;

/// The document, parsed once per test binary.
pub struct Contract {
    doc: Value,
    validators: Mutex<HashMap<String, Arc<Validator>>>,
}

/// One documented operation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Operation {
    pub method: String,
    /// With `{name}` placeholders, as written in the document.
    pub path: String,
}

pub fn contract() -> &'static Contract {
    static CONTRACT: OnceLock<Contract> = OnceLock::new();
    CONTRACT.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/openapi.yaml");
        let text = std::fs::read_to_string(path).expect("read infra/openapi.yaml");
        let doc: Value = serde_norway::from_str(&text).expect("infra/openapi.yaml is YAML");
        assert_eq!(doc["openapi"], "3.1.0", "an OpenAPI 3.1 document");
        Contract {
            doc,
            validators: Mutex::new(HashMap::new()),
        }
    })
}

/// `{name}` segments match any one non-empty segment; a trailing slash is tolerated, as the
/// broker's own route tables do.
pub fn path_matches(template: &str, path: &str) -> bool {
    let mut t = template.trim_end_matches('/').split('/');
    let mut p = path.trim_end_matches('/').split('/');
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some(ts), Some(ps)) if ts.starts_with('{') && ts.ends_with('}') && !ps.is_empty() => {}
            (Some(ts), Some(ps)) if ts == ps => {}
            _ => return false,
        }
    }
}

/// JSON Pointer escaping of one reference token.
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

impl Contract {
    pub fn operations(&self) -> Vec<Operation> {
        let mut ops = vec![];
        for (path, item) in self.doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                ops.push(Operation {
                    method: method.to_uppercase(),
                    path: path.clone(),
                });
            }
        }
        ops.sort();
        ops
    }

    /// Follows `$ref`s from `pointer`; returns the final pointer and value.
    fn resolve(&self, mut pointer: String) -> (String, &Value) {
        loop {
            let value = self
                .doc
                .pointer(&pointer)
                .unwrap_or_else(|| panic!("openapi: nothing at {pointer}"));
            match value.get("$ref").and_then(Value::as_str) {
                Some(r) => pointer = r.trim_start_matches('#').to_string(),
                None => return (pointer, value),
            }
        }
    }

    fn validator(&self, schema_pointer: &str) -> Result<Arc<Validator>, String> {
        let mut cache = self.validators.lock().expect("validators");
        if let Some(v) = cache.get(schema_pointer) {
            return Ok(v.clone());
        }
        // The whole document is the root resource, so `#/components/...` refs resolve; its other
        // keys are not schema keywords and are ignored. Braces of path templates are not allowed
        // in a URI fragment as they are.
        let mut root = self.doc.clone();
        root["$schema"] = "https://json-schema.org/draft/2020-12/schema".into();
        root["$ref"] = format!(
            "#{}",
            schema_pointer.replace('{', "%7B").replace('}', "%7D")
        )
        .into();
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&root)
            .map_err(|e| format!("openapi schema at {schema_pointer}: {e}"))?;
        let validator = Arc::new(validator);
        cache.insert(schema_pointer.to_string(), validator.clone());
        Ok(validator)
    }

    fn validate_json(&self, schema_pointer: &str, body: &[u8]) -> Result<(), String> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
        let validator = self.validator(schema_pointer)?;
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "body does not match {schema_pointer}: {}; body: {value}",
                errors.join("; ")
            ))
        }
    }

    /// Checks one response the broker gave to `method path`.
    pub fn check(
        &self,
        method: &Method,
        path: &str,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(), String> {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let operation = self.operations().into_iter().find(|op| {
            op.method.eq_ignore_ascii_case(method.as_str()) && path_matches(&op.path, path)
        });
        let Some(op) = operation else {
            // Undocumented route or method: only the broker's refusals are allowed, in its envelope
            // (API) or as a page (browser routes).
            if !matches!(status.as_u16(), 404 | 405) {
                return Err(format!(
                    "{method} {path}: undocumented operation answered {status}"
                ));
            }
            return match content_type.as_str() {
                "application/json" => self.validate_json("/components/schemas/Error", body),
                "text/html" => Ok(()),
                other => Err(format!(
                    "{method} {path}: {status} with media type {other:?}"
                )),
            };
        };
        let where_ = format!("{} {} -> {}", op.method, op.path, status.as_u16());
        let responses = format!(
            "/paths/{}/{}/responses",
            escape(&op.path),
            op.method.to_lowercase()
        );
        let code = status.as_u16().to_string();
        let response_pointer = if self.doc.pointer(&format!("{responses}/{code}")).is_some() {
            format!("{responses}/{code}")
        } else if self.doc.pointer(&format!("{responses}/default")).is_some() {
            format!("{responses}/default")
        } else {
            return Err(format!("{where_}: status not documented"));
        };
        let (response_pointer, response) = self.resolve(response_pointer);

        if let Some(declared) = response.get("headers").and_then(Value::as_object) {
            for name in declared.keys() {
                let (_, spec) =
                    self.resolve(format!("{response_pointer}/headers/{}", escape(name)));
                let actual = headers.get(name.as_str()).and_then(|v| v.to_str().ok());
                if spec["required"] == true && actual.is_none() {
                    return Err(format!("{where_}: header {name} missing"));
                }
                if let (Some(want), Some(got)) = (spec["schema"].get("const"), actual)
                    && want.as_str() != Some(got)
                {
                    return Err(format!("{where_}: header {name} is {got:?}, not {want}"));
                }
            }
        }

        match response.get("content").and_then(Value::as_object) {
            None if body.is_empty() => Ok(()),
            None => Err(format!("{where_}: documented without a body, got one")),
            Some(content) => {
                if !content.contains_key(&content_type) {
                    return Err(format!(
                        "{where_}: media type {content_type:?} not documented"
                    ));
                }
                if content_type == "application/json" {
                    let (schema_pointer, _) = self.resolve(format!(
                        "{response_pointer}/content/{}/schema",
                        escape(&content_type)
                    ));
                    self.validate_json(&schema_pointer, body)
                        .map_err(|e| format!("{where_}: {e}"))
                } else {
                    Ok(())
                }
            }
        }
    }
}

/// Responses that did not match the document, collected by a [`crate::harness::Broker`] and
/// asserted when it is dropped.
#[derive(Debug, Default, Clone)]
pub struct Violations(pub Arc<Mutex<Vec<String>>>);

impl Violations {
    pub fn record(&self, violation: String) {
        self.0.lock().expect("violations").push(violation);
    }

    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().expect("violations"))
    }
}

/// An axum middleware checking every response of the broker under test against the document.
pub async fn checking_layer(
    axum::extract::State(violations): axum::extract::State<Violations>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let response = next.run(req).await;
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    if let Err(e) = contract().check(&method, &path, parts.status, &parts.headers, &bytes) {
        violations.record(e);
    }
    axum::response::Response::from_parts(parts, axum::body::Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_like_the_route_tables() {
        assert!(path_matches(
            "/v1/organizations/{organization_id}/x",
            "/v1/organizations/o/x/"
        ));
        assert!(!path_matches(
            "/v1/organizations/{organization_id}/x",
            "/v1/organizations//x"
        ));
        assert!(path_matches(
            "/v1/sources/user_connections/oauth/",
            "/v1/sources/user_connections/oauth"
        ));
        assert!(!path_matches("/v1/oauth/callback", "/v1/oauth/callback/x"));
    }

    #[test]
    fn a_response_off_the_document_is_reported() {
        let c = contract();
        let mut json = HeaderMap::new();
        json.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        let path = "/v1/sources/initiateOAuth";
        assert!(
            c.check(
                &Method::POST,
                path,
                StatusCode::OK,
                &json,
                br#"{"consentUrl":"https://b.example/x"}"#
            )
            .is_ok()
        );
        assert!(
            c.check(
                &Method::POST,
                path,
                StatusCode::OK,
                &json,
                br#"{"consent_url":"https://b.example/x"}"#
            )
            .is_err()
        );
        assert!(
            c.check(
                &Method::POST,
                path,
                StatusCode::OK,
                &json,
                br#"{"consentUrl":"not a uri"}"#
            )
            .is_err()
        );
        assert!(
            c.check(&Method::POST, path, StatusCode::IM_A_TEAPOT, &json, b"{}")
                .is_err()
        );
        let redirect = HeaderMap::new();
        assert!(
            c.check(
                &Method::GET,
                "/v1/oauth/callback",
                StatusCode::SEE_OTHER,
                &redirect,
                b""
            )
            .is_err(),
            "a redirect without Location"
        );
    }
}
