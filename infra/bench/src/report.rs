//! The table: figure, budget, verdict; printed and written to BENCHMARKS.md with the machine.

use std::time::Duration;

#[derive(Default)]
pub struct Table {
    rows: Vec<[String; 4]>,
}

impl Table {
    /// `budget`: the budget in words; `met`: whether the figure meets it (None: no budget).
    pub fn row(&mut self, what: &str, figure: String, budget: &str, met: Option<bool>) {
        let verdict = match met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "",
        };
        let row = [
            what.to_string(),
            figure,
            budget.to_string(),
            verdict.to_string(),
        ];
        println!("{:<44} {:<40} {:<28} {}", row[0], row[1], row[2], row[3]);
        self.rows.push(row);
    }
}

pub fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

pub fn millis(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Decimal megabytes, the unit of the budgets.
pub fn mb(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}

/// The p-th percentile (0..=100) of unsorted samples.
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

pub fn mean(samples: &[Duration]) -> Duration {
    samples.iter().sum::<Duration>() / samples.len().max(1) as u32
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{model}, {cores} cores, {:.0} GiB, Linux {}, x86_64",
        mem_kb as f64 / 1024.0 / 1024.0,
        kernel.trim()
    )
}

pub fn write(table: &Table) {
    let mut md = String::from(
        "# Benchmarks\n\nWritten by `./infra/benchmark` (release builds, x86_64). Figures from one run on a shared\n\
         machine: read the ratios, not the absolute numbers.\n\n",
    );
    md.push_str(&format!(
        "- Machine: {}\n- Date: {}\n- Reproduce: `./infra/benchmark` (about 15 minutes, most of it release builds)\n\n",
        machine(),
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    ));
    md.push_str("| measure | figure | budget | |\n|---|---|---|---|\n");
    for r in &table.rows {
        md.push_str(&format!("| {} | {} | {} | {} |\n", r[0], r[1], r[2], r[3]));
    }
    let notes = crate::root().join("infra/bench/NOTES.md");
    if let Ok(text) = std::fs::read_to_string(notes) {
        md.push('\n');
        md.push_str(&text);
    }
    std::fs::write(crate::root().join("BENCHMARKS.md"), md).expect("write BENCHMARKS.md");
    println!("\nwritten to BENCHMARKS.md");
}
