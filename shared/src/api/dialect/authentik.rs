//! authentik: user source connections (`POST /v1/sources/user_connections/oauth/`), with the
//! source object rendered from the provider's catalog entry.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::Deserialize;
use serde_json::json;

use super::rfc3339;
use crate::api;
use crate::connection::{Connection, Import};
use crate::secret::Sensitive;
use crate::{Error, Result};

/// `UserOAuthSourceConnectionRequest`.
#[derive(Debug, Deserialize)]
struct ImportBody {
    source: String,
    identifier: String,
    #[serde(default)]
    access_token: Option<Sensitive<String>>,
    /// ISO 8601 date-time, as authentik sends it.
    #[serde(default)]
    expires: Option<String>,
}

pub fn import(req: &Request) -> Result<Import> {
    let body: ImportBody = api::json_body(req)?;
    let expires = body
        .expires
        .filter(|e| !e.is_empty())
        .map(|e| {
            chrono::DateTime::parse_from_rfc3339(&e)
                .map(|t| t.timestamp())
                .map_err(|_| Error::field("expires", "must be an ISO 8601 date-time"))
        })
        .transpose()?;
    Ok(Import {
        source: body.source,
        identifier: body.identifier,
        access_token: body.access_token,
        expires,
    })
}

/// `UserOAuthSourceConnection` (201), its `source` rendered from the provider entry.
pub fn imported(c: &Connection, provider_name: &str) -> Result<Response<Body>> {
    // authentik's sources have UUID keys; a stable one per provider entry.
    let digest = crate::crypto::sha256_hex(&format!("provider:{}", c.provider));
    let bits = u128::from_str_radix(&digest[..32], 16).unwrap_or_default();
    let source_pk = uuid::Builder::from_custom_bytes(bits.to_be_bytes()).into_uuid();
    let body = json!({
        "pk": c.numeric_id,
        "user": c.user_id,
        "source": {
            "pk": source_pk.to_string(),
            "name": provider_name,
            "slug": c.provider,
            "enabled": true,
            "authentication_flow": null,
            "enrollment_flow": null,
            "user_property_mappings": [],
            "group_property_mappings": [],
            "component": "ak-source-oauth-form",
            "verbose_name": "OAuth Source",
            "verbose_name_plural": "OAuth Sources",
            "meta_model_name": "authentik_sources_oauth.oauthsource",
            "policy_engine_mode": "any",
            "user_matching_mode": "identifier",
            "managed": null,
            "user_path_template": "goauthentik.io/sources/%(slug)s",
            "icon": null,
        },
        "created": rfc3339(c.created_at),
        "last_updated": rfc3339(c.updated_at),
        "identifier": c.identifier,
        "expires": c.token_expires_at.map(rfc3339),
        // Beyond the seed: the broker's own reference, for the connections API.
        "connection_id": c.id,
    });
    api::json(StatusCode::CREATED, &body)
}
