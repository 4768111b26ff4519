//! The authorization-code flow, one module per step. Functions call these; they never touch a
//! store, the vault or a provider themselves.

mod authorize;
mod callback;
mod complete;
mod model;
mod start;
mod store;

pub use authorize::{Authorization, authorize};
pub use callback::{Landing, callback};
pub use complete::{ClientCompletion, ClientOutcome, complete_client_callback, complete_personal};
pub use model::{Claim, Flow, FlowKind, FlowStatus, StateToken};
pub use start::{ConnectOrigin, StartRequest, Started, reconnect, start};
pub use store::{FlowStore, StateTokenStore};

use crate::Config;

/// The browser-binding cookie of one flow. Named per flow so parallel flows in one browser do not
/// overwrite each other; `__Host-` (Secure, no Domain, Path=/) whenever the broker is on https.
pub fn binding_cookie_name(config: &Config, flow_key: &str) -> String {
    let prefix = if config.secure_cookies() {
        "__Host-"
    } else {
        ""
    };
    format!("{prefix}obf_{}", &flow_key[..16.min(flow_key.len())])
}

/// Handles the broker issues are 43 base64url characters; anything else is refused before any I/O.
pub fn is_handle(s: &str) -> bool {
    s.len() == 43
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
