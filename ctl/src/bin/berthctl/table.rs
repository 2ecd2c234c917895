//! Shared output formatting: aligned tables, short ids, ages ("5 minutes ago"), sizes and
//! states, the way crictl prints them.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_proto::runtime::v1 as cri;

/// Columns separated by three spaces, each as wide as its widest cell; the last column is not
/// padded.
#[derive(Debug)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        Self { rows: vec![headers.iter().map(|h| h.to_string()).collect()] }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn print(&self) {
        print!("{self}");
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| self.rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
            .collect();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let pad = widths[c].saturating_sub(cell.chars().count()) + 3;
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            writeln!(f, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// The first 13 characters of an id (after any `sha256:`), as crictl shows them.
pub fn short_id(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(13).collect()
}

/// How long ago a CRI timestamp (nanoseconds since the epoch) was: "2 minutes ago".
pub fn age(created_at_nanos: i64) -> String {
    let created = UNIX_EPOCH + Duration::from_nanos(u64::try_from(created_at_nanos).unwrap_or(0));
    let elapsed = SystemTime::now().duration_since(created).unwrap_or_default();
    format!("{} ago", human_duration(elapsed))
}

/// A duration in words, rounded the way docker and crictl round it.
pub fn human_duration(d: Duration) -> String {
    let seconds = d.as_secs();
    let minutes = seconds / 60;
    let hours = (d.as_secs_f64() / 3600.0 + 0.5) as u64;
    match () {
        _ if seconds < 1 => "Less than a second".to_string(),
        _ if seconds == 1 => "1 second".to_string(),
        _ if seconds < 60 => format!("{seconds} seconds"),
        _ if minutes == 1 => "About a minute".to_string(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".to_string(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", hours / 24 / 365),
    }
}

/// A CRI timestamp as RFC 3339 with nanoseconds; empty for 0 (never happened).
pub fn rfc3339(nanos: i64) -> String {
    match u64::try_from(nanos) {
        Ok(n) if n > 0 => humantime::format_rfc3339_nanos(UNIX_EPOCH + Duration::from_nanos(n)).to_string(),
        _ => String::new(),
    }
}

/// Bytes in decimal units (kB, MB), as image sizes are shown.
pub fn decimal_size(bytes: u64) -> String {
    scaled(bytes, 1000.0, &["B", "kB", "MB", "GB", "TB"])
}

/// Bytes in binary units (KiB, MiB), as memory and disk use are shown.
pub fn binary_size(bytes: u64) -> String {
    scaled(bytes, 1024.0, &["B", "KiB", "MiB", "GiB", "TiB"])
}

fn scaled(bytes: u64, base: f64, units: &[&str]) -> String {
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= base && unit + 1 < units.len() {
        value /= base;
        unit += 1;
    }
    if unit == 0 { format!("{bytes}{}", units[0]) } else { format!("{value:.1}{}", units[unit]) }
}

/// "Running", "Exited", …, as crictl shows a container's state.
pub fn container_state(state: i32) -> &'static str {
    match cri::ContainerState::try_from(state) {
        Ok(cri::ContainerState::ContainerCreated) => "Created",
        Ok(cri::ContainerState::ContainerRunning) => "Running",
        Ok(cri::ContainerState::ContainerExited) => "Exited",
        _ => "Unknown",
    }
}

/// "Ready" or "NotReady", as crictl shows a pod's state.
pub fn pod_state(state: i32) -> &'static str {
    match cri::PodSandboxState::try_from(state) {
        Ok(cri::PodSandboxState::SandboxReady) => "Ready",
        _ => "NotReady",
    }
}

/// `k=v,k=v`, sorted.
pub fn labels(labels: &HashMap<String, String>) -> String {
    let mut pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.sort();
    pairs.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_words() {
        let s = Duration::from_secs;
        assert_eq!(human_duration(Duration::from_millis(300)), "Less than a second");
        assert_eq!(human_duration(s(1)), "1 second");
        assert_eq!(human_duration(s(42)), "42 seconds");
        assert_eq!(human_duration(s(90)), "About a minute");
        assert_eq!(human_duration(s(600)), "10 minutes");
        assert_eq!(human_duration(s(3600)), "About an hour");
        assert_eq!(human_duration(s(5 * 3600)), "5 hours");
        assert_eq!(human_duration(s(3 * 86400)), "3 days");
        assert_eq!(human_duration(s(21 * 86400)), "3 weeks");
        assert_eq!(human_duration(s(90 * 86400)), "3 months");
        assert_eq!(human_duration(s(800 * 86400)), "2 years");
    }

    #[test]
    fn sizes_and_ids() {
        assert_eq!(decimal_size(999), "999B");
        assert_eq!(decimal_size(1_500_000), "1.5MB");
        assert_eq!(binary_size(2048), "2.0KiB");
        assert_eq!(binary_size(3 << 20), "3.0MiB");
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789abc");
        assert_eq!(short_id("abc"), "abc");
    }

    #[test]
    fn columns_line_up() {
        let mut table = Table::new(&["ID", "NAME"]);
        table.row(vec!["a".into(), "first".into()]);
        table.row(vec!["longer".into(), "x".into()]);
        assert_eq!(table.to_string(), "ID       NAME\na        first\nlonger   x\n");
    }
}
