//! The request and response shapes of the systems whose clients the broker serves unchanged, one
//! module each. A dialect translates a request into the core's own request type and the core's
//! result into its response; it decides nothing.

pub mod airbyte;
pub mod aitronos;
pub mod authentik;
pub mod broker;

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::{Error, Result};

/// Provider inputs are strings; anything else is refused rather than guessed at.
fn string_inputs(field: &str, map: Option<Map<String, Value>>) -> Result<BTreeMap<String, String>> {
    map.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            _ => Err(Error::field(field, format!("`{k}` must be a string"))),
        })
        .collect()
}

fn require(field: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::field(field, "is required"));
    }
    Ok(())
}

/// Timestamps on the wire: RFC 3339, whole seconds, UTC.
pub fn rfc3339(epoch: i64) -> String {
    chrono::DateTime::from_timestamp(epoch, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
