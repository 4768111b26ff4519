//! Organizations and the redirect URLs they registered.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::Result;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Org {
    pub id: String,
    pub redirect_urls: Vec<String>,
    pub created_at: i64,
}

#[async_trait]
pub trait OrgStore: Send + Sync {
    async fn put_org(&self, org: &Org) -> Result<()>;
    async fn get_org(&self, id: &str) -> Result<Option<Org>>;
}
