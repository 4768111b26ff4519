//! What the pieces of the local server share: its state, and the bridge from a function's
//! response to axum's. Kept apart so the server, its pages and the sandbox depend on it, not on
//! each other.

use std::sync::Arc;

use broker::App;

/// What the local server shares between requests.
pub struct Local {
    pub app: Arc<App>,
    /// The console at `/` (`brokerctl serve`); tests that run the API alone have none.
    pub console: Option<Console>,
}

/// A function's response as axum's.
pub fn to_axum(response: lambda_http::Response<lambda_http::Body>) -> axum::response::Response {
    response.map(|b| axum::body::Body::from(b.to_vec()))
}

/// Where the console finds the API, and the key it calls it with.
#[derive(Clone)]
pub struct Console {
    /// The API's base URL (this server's, as the browser reaches it).
    pub api_base: String,
    pub key: String,
    /// The key's organization, and the workspace its connect sessions are for.
    pub organization_id: String,
    pub workspace: String,
    /// Built once, for every call the console makes.
    pub http: oauth2::reqwest::Client,
}
