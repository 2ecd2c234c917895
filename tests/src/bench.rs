//! What the benchmark programs (`src/bin/bench_*.rs`) share: the description of the machine a
//! table was measured on, and reading their numeric flags.

use std::fmt::Write as _;

/// A numeric flag's value, when it parses and lies in `allowed`.
pub fn number_in<T: std::str::FromStr + PartialOrd>(
    value: Option<String>,
    allowed: std::ops::RangeInclusive<T>,
) -> Option<T> {
    value.and_then(|v| v.parse().ok()).filter(|n| allowed.contains(n))
}

/// The first line a program prints on stdout, or empty.
pub fn command_line(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The CPU model from /proc/cpuinfo.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// A report's heading and its date, kernel and CPU lines.
pub fn report_header(title: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n## {title}\n");
    let _ = writeln!(out, "- date: {}", command_line("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"]));
    let _ = writeln!(
        out,
        "- kernel: {}",
        std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim()
    );
    let _ = writeln!(
        out,
        "- CPU: {} ({} cores)",
        cpu_model(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    out
}
