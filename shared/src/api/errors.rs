//! The one place an [`Error`] becomes HTTP: the JSON envelope of DESIGN §4.6 for API routes.

use lambda_http::http::{StatusCode, header};
use lambda_http::{Body, Response};
use serde_json::{Value, json};

use crate::Error;

/// Seconds a client should wait after a 503.
pub const RETRY_AFTER_SECS: &str = "2";

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Validation { .. } | Error::FlowRejected => StatusCode::BAD_REQUEST,
            Error::Unauthenticated => StatusCode::UNAUTHORIZED,
            Error::Forbidden => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) | Error::ReauthorizationRequired => StatusCode::CONFLICT,
            Error::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Error::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::ProviderFailed { .. } => StatusCode::BAD_GATEWAY,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable code of the envelope.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Validation { .. } | Error::FlowRejected => "VALIDATION_ERROR",
            Error::Unauthenticated => "AUTHENTICATION_REQUIRED",
            Error::Forbidden => "FORBIDDEN",
            Error::NotFound(_) => "NOT_FOUND",
            Error::Conflict(_) => "CONFLICT",
            Error::ReauthorizationRequired => "REAUTHORIZATION_REQUIRED",
            Error::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Error::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Error::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            Error::ProviderFailed { .. } => "CONNECTOR_OAUTH_FAILED",
            Error::Unavailable(_) => "SERVICE_UNAVAILABLE",
            Error::Internal(_) => "INTERNAL_ERROR",
        }
    }

    /// (message, system_message, details): what a client may see. Internal and backend detail
    /// never leaves the process; it is logged with the trace id instead.
    fn public_text(&self) -> (String, String, Value) {
        let plain = |m: &str, s: &str| (m.to_string(), s.to_string(), Value::Null);
        match self {
            Error::Validation {
                message,
                system_message,
                details,
            } => (message.clone(), system_message.clone(), details.clone()),
            Error::FlowRejected => plain(
                "The authorization flow is unknown, used or expired.",
                "Invalid or expired state.",
            ),
            Error::Unauthenticated => plain(
                "Authentication required.",
                "Missing, unknown or revoked API key.",
            ),
            Error::Forbidden => plain(
                "You do not have access to this resource.",
                "The API key is not allowed for this organization or workspace.",
            ),
            Error::NotFound(what) => (
                format!("Not found: {what}."),
                format!("{what} not found"),
                Value::Null,
            ),
            Error::Conflict(what) => (
                "The request conflicts with a concurrent change; read the resource again.".into(),
                format!("Conflict: {what}."),
                Value::Null,
            ),
            Error::ReauthorizationRequired => plain(
                "The provider no longer accepts this connection; reconnect it.",
                "The provider refused the refresh token (invalid_grant).",
            ),
            Error::MethodNotAllowed => plain(
                "Method not allowed.",
                "This route does not accept this method.",
            ),
            Error::PayloadTooLarge => plain(
                "Request body too large.",
                "Request bodies are limited to 64 KiB.",
            ),
            Error::UnsupportedMediaType => plain(
                "Unsupported media type.",
                "Send Content-Type: application/json.",
            ),
            Error::ProviderFailed { error }
                if matches!(error.as_str(), "invalid_client" | "unauthorized_client") =>
            {
                (
                    "The provider refused the app's client credentials; check them (brokerctl app set).".into(),
                    format!("Token request refused: {error}"),
                    json!({ "provider_error": error }),
                )
            }
            Error::ProviderFailed { error } => (
                "The provider refused the authorization.".into(),
                format!("Token exchange failed: {error}"),
                json!({ "provider_error": error }),
            ),
            Error::Unavailable(_) => plain(
                "The service is temporarily unavailable, retry shortly.",
                "Backend unavailable.",
            ),
            Error::Internal(_) => plain("An internal error occurred.", "Internal error."),
        }
    }

    fn kind(&self) -> &'static str {
        match self.status().as_u16() {
            401 | 403 => "authentication_error",
            400..=499 => "client_error",
            502 => "upstream_error",
            _ => "server_error",
        }
    }

    /// Logs the failure with its private detail and returns the envelope.
    pub fn to_response(&self, trace_id: &str) -> Response<Body> {
        log(self, trace_id);
        let (message, system_message, details) = self.public_text();
        let status = self.status();
        let body = json!({
            "success": false,
            "error": {
                "code": self.code(),
                "message": message,
                "system_message": system_message,
                "type": self.kind(),
                "status": status.as_u16(),
                "details": details,
                "trace_id": trace_id,
                "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            }
        });
        let mut builder = Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CACHE_CONTROL, "no-store");
        if status == StatusCode::SERVICE_UNAVAILABLE {
            builder = builder.header(header::RETRY_AFTER, RETRY_AFTER_SECS);
        }
        builder
            .body(Body::Text(body.to_string()))
            .unwrap_or_else(|_| Response::new(Body::Empty))
    }
}

/// Server faults at error level with their detail; client mistakes at info.
pub fn log(e: &Error, trace_id: &str) {
    match e {
        Error::Internal(detail) | Error::Unavailable(detail) => {
            tracing::error!(%trace_id, code = e.code(), detail = %detail, "request failed")
        }
        _ => tracing::info!(%trace_id, code = e.code(), "request refused"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_detail_stays_out_of_the_body() {
        let r = Error::Internal("table secret-stuff exploded".into()).to_response("t-1");
        assert_eq!(r.status(), 500);
        let body = String::from_utf8(r.body().to_vec()).unwrap();
        assert!(!body.contains("secret-stuff"));
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], "INTERNAL_ERROR");
        assert_eq!(v["error"]["trace_id"], "t-1");
        assert_eq!(v["success"], false);
    }

    #[test]
    fn unavailable_says_when_to_retry() {
        let r = Error::Unavailable("throttled".into()).to_response("t");
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[header::RETRY_AFTER], RETRY_AFTER_SECS);
    }
}
