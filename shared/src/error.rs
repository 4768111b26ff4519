//! The one error type of the broker. [`crate::api::errors`] is the one place that turns it into HTTP.

use serde_json::Value;

/// Every failure a request can end in, each with a deliberate HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad field, an unknown provider input, an unregistered redirect_url, a bad state token.
    #[error("{message}")]
    Validation {
        message: String,
        /// Technical, still safe to show: never carries a secret.
        system_message: String,
        details: Value,
    },
    #[error("authentication required")]
    Unauthenticated,
    #[error("forbidden")]
    Forbidden,
    #[error("{0} not found")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// The flow named by a state is missing, used, expired or bound to another browser. Shown to a
    /// browser as a static page: nothing about the flow can be trusted, not even where to redirect.
    #[error("unknown, used or expired authorization flow")]
    FlowRejected,
    /// A conditional change lost a race: the item is no longer in the state the change starts from.
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The provider no longer accepts the connection's refresh token: only a reconnect helps.
    #[error("reauthorization required")]
    ReauthorizationRequired,
    /// The provider refused the code or answered garbage; carries only the provider's `error` code.
    #[error("provider token exchange failed: {error}")]
    ProviderFailed { error: String },
    /// DynamoDB or Secrets Manager throttled or down after the SDK's retries.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// Anything else; the text goes to logs only, never to a response body.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// A validation failure whose message is also its system message.
    pub fn validation(message: impl Into<String>) -> Self {
        let message = message.into();
        Error::Validation {
            system_message: message.clone(),
            message,
            details: Value::Null,
        }
    }

    /// A validation failure on one named field.
    pub fn field(field: &str, problem: impl std::fmt::Display) -> Self {
        let message = format!("{field}: {problem}");
        Error::Validation {
            system_message: message.clone(),
            message,
            details: serde_json::json!({ "field": field }),
        }
    }

    pub fn internal(what: impl std::fmt::Display) -> Self {
        Error::Internal(what.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
