//! Organizations and the redirect URLs they registered.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Org {
    pub id: String,
    pub redirect_urls: Vec<String>,
    pub created_at: i64,
}
