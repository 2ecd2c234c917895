//! A tiny logger: one line per record on stderr, which the server points at the bundle's `log`
//! FIFO (the daemon copies it into its own log). Writes are non-blocking; when nobody reads the
//! FIFO lines are dropped instead of stalling the shim.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static DEBUG: AtomicBool = AtomicBool::new(false);

pub fn set_debug(on: bool) {
    DEBUG.store(on, Ordering::Relaxed);
}

pub fn debug_enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

pub fn write(level: &str, args: std::fmt::Arguments<'_>) {
    let now = crate::util::rfc3339_nano(std::time::SystemTime::now());
    let line = format!("time=\"{now}\" level={level} msg=\"{args}\" runtime=io.containerd.berth.v2\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

#[macro_export]
macro_rules! info {
    ($($t:tt)*) => { $crate::log::write("info", format_args!($($t)*)) };
}
#[macro_export]
macro_rules! warn {
    ($($t:tt)*) => { $crate::log::write("warning", format_args!($($t)*)) };
}
#[macro_export]
macro_rules! debug {
    ($($t:tt)*) => { if $crate::log::debug_enabled() { $crate::log::write("debug", format_args!($($t)*)) } };
}
