//! Times as nanoseconds since the Unix epoch, the unit containerd's records and the CRI use.

use std::time::{SystemTime, UNIX_EPOCH};

/// `time` in nanoseconds since the epoch; 0 before it, `i64::MAX` past 2262.
pub fn unix_nanos(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)).unwrap_or(0)
}

/// The time `nanos` after the epoch (negative ones are the epoch).
pub fn from_unix_nanos(nanos: i64) -> SystemTime {
    UNIX_EPOCH + std::time::Duration::from_nanos(u64::try_from(nanos).unwrap_or(0))
}

/// Now, in nanoseconds since the epoch.
pub fn now_nanos() -> i64 {
    unix_nanos(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn converts_and_clamps() {
        assert_eq!(unix_nanos(UNIX_EPOCH + Duration::from_nanos(1_500)), 1_500);
        assert_eq!(unix_nanos(UNIX_EPOCH - Duration::from_secs(1)), 0);
        assert!(now_nanos() > 1_700_000_000_000_000_000);
        assert_eq!(unix_nanos(from_unix_nanos(42)), 42);
        assert_eq!(from_unix_nanos(-5), UNIX_EPOCH);
    }
}
