//! The golden files under `golden/`: what the broker would send for every built-in entry. To
//! accept a deliberate change: `BROKER_UPDATE_GOLDEN=1 cargo test -p broker-shared golden`, then
//! review the diff.

use std::collections::BTreeMap;

use super::Provider;
use super::endpoints::REGION_INPUT;

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
