//! The benchmark (`./infra/benchmark`): one table of figures, each beside its budget, written to
//! BENCHMARKS.md. Machines here are shared and noisy, so comparisons are ratios taken in one run.

mod cold;
mod load;
mod report;
mod runtime_api;
mod warm;

use std::path::PathBuf;

/// The workspace root (binaries under target/, the events under tests/events/).
pub fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .canonicalize()
        .expect("workspace root")
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let mut table = report::Table::default();
    cold::run(&mut table, if quick { 3 } else { 20 }).await;
    warm::run(&mut table, if quick { 100 } else { 2000 }).await;
    load::run(&mut table, if quick { 2 } else { 10 }).await;
    report::write(&table);
}
