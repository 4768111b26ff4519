//! The golden files under `golden/`: what the broker would send for every built-in entry. To
//! accept a deliberate change: `BROKER_UPDATE_GOLDEN=1 cargo test -p broker-shared golden`, then
//! review the diff.

use std::collections::BTreeMap;

use super::endpoints::REGION_INPUT;
use super::{Catalog, Provider};
use crate::Config;
use crate::secret::Sensitive;
use crate::vault::AppCredentials;

/// The built-in catalog as a deployment at `https://broker.example` loads it, and sample app
/// credentials: what every golden file is built from.
pub fn builtin() -> (Config, Catalog, AppCredentials) {
    let config = Config::from_lookup(|k| {
        (k == "BROKER_PUBLIC_URL").then(|| "https://broker.example".into())
    })
    .unwrap();
    let catalog = Catalog::load(&config, vec![]).unwrap();
    let credentials = AppCredentials {
        client_id: "CLIENT_ID".into(),
        client_secret: Sensitive::new("CLIENT_SECRET".into()),
    };
    (config, catalog, credentials)
}

/// A value for every declared input but the region: `acme` where the pattern takes it.
pub fn sample_inputs(p: &Provider) -> BTreeMap<String, String> {
    p.inputs
        .iter()
        .filter(|(name, _)| name.as_str() != REGION_INPUT)
        .map(|(name, spec)| {
            let value = ["acme", "common"]
                .into_iter()
                .find(|v| spec.matches(v))
                .unwrap_or_else(|| panic!("{}: no sample for input {name}", p.slug));
            (name.clone(), value.to_string())
        })
        .collect()
}

/// Compares `lines` with the golden file at `path` (rewriting it first when asked to).
pub fn check(path: &str, lines: &[String], what: &str) {
    let actual = lines.join("\n") + "\n";
    if std::env::var_os("BROKER_UPDATE_GOLDEN").is_some() {
        std::fs::write(path, &actual).unwrap();
    }
    let golden = std::fs::read_to_string(path).unwrap_or_default();
    for (want, got) in golden.lines().zip(actual.lines()) {
        assert_eq!(got, want, "{what} changed");
    }
    assert_eq!(
        golden.lines().count(),
        actual.lines().count(),
        "entries added or removed"
    );
}
