//! The counters stats are computed from, kept apart from the stats calls so that the plugin's
//! state (`runtime.rs`) and the pod host can hold them: CPU time per container between two
//! samples, and a network namespace's `/proc/net/dev`.

use std::collections::HashMap;
use std::sync::Mutex;

/// The last CPU sample per container, to turn cumulative CPU time into a rate.
#[derive(Default)]
pub struct CpuRates {
    last: Mutex<HashMap<String, (i64, u64)>>,
}

impl CpuRates {
    /// Nanocores since the previous sample of `id`; `None` on the first.
    pub fn rate(&self, id: &str, at: i64, usage_ns: u64) -> Option<u64> {
        let mut last = self.last.lock().ok()?;
        let previous = last.insert(id.to_string(), (at, usage_ns));
        let (then, used) = previous?;
        let elapsed = at.checked_sub(then).filter(|e| *e > 0)? as u128;
        let delta = usage_ns.checked_sub(used)? as u128;
        Some((delta * 1_000_000_000 / elapsed) as u64)
    }

    pub fn forget(&self, id: &str) {
        if let Ok(mut last) = self.last.lock() {
            last.remove(id);
        }
    }
}

/// One interface's counters in a pod's network namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceCounters {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_errors: u64,
    pub tx_bytes: u64,
    pub tx_errors: u64,
}

/// Parses `/proc/net/dev`.
pub fn parse_net_dev(text: &str) -> Vec<InterfaceCounters> {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let fields: Vec<u64> = rest.split_whitespace().filter_map(|f| f.parse().ok()).collect();
            if fields.len() < 11 {
                return None;
            }
            Some(InterfaceCounters {
                name: name.trim().to_string(),
                rx_bytes: fields[0],
                rx_errors: fields[2],
                tx_bytes: fields[8],
                tx_errors: fields[10],
            })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cpu_rate_from_two_samples() {
        let rates = CpuRates::default();
        assert_eq!(rates.rate("c", 1_000_000_000, 100), None);
        // 0.5 s of CPU over 1 s: half a core.
        assert_eq!(rates.rate("c", 2_000_000_000, 500_000_100), Some(500_000_000));
        rates.forget("c");
        assert_eq!(rates.rate("c", 3_000_000_000, 600_000_000), None);
    }

    #[test]
    fn net_dev() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0\n  \
eth0:    2048      10    1    0    0     0          0         0     4096      20    3    0    0     0       0          0\n";
        let parsed = parse_net_dev(text);
        assert_eq!(parsed.len(), 2);
        assert_eq!(
            parsed[1],
            InterfaceCounters {
                name: "eth0".into(),
                rx_bytes: 2048,
                rx_errors: 1,
                tx_bytes: 4096,
                tx_errors: 3
            }
        );
    }
}
