//! The benchmark (`./infra/benchmark`): one table of figures, each beside its budget, written to
//! BENCHMARKS.md. Machines here are shared and noisy, so comparisons are ratios taken in one run.

mod cold;
mod load;
mod report;
mod requests;
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
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    // `--only cold|warm|requests|load`: one part, printed but not written (for profiling a change).
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1));
    let part = |name: &str| only.is_none_or(|o| o == name);
    let mut table = report::Table::default();
    if part("cold") {
        cold::run(&mut table, if quick { 3 } else { 20 }).await;
    }
    if part("warm") {
        warm::run(&mut table, if quick { 100 } else { 2000 }).await;
    }
    if part("requests") {
        requests::run(&mut table).await;
    }
    if part("load") {
        load::run(&mut table, if quick { 2 } else { 10 }).await;
    }
    if only.is_none() {
        report::write(&table);
    }
}
