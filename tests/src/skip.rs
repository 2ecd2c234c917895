//! Skipping with a printed reason when a test cannot run here.

/// Why a test cannot run on this machine, if it cannot: `root` needs euid 0, and each tool must
/// be found on `PATH`.
pub fn missing(root: bool, tools: &[&str]) -> Option<String> {
    if root && !nix::unistd::geteuid().is_root() {
        return Some("needs root".to_string());
    }
    let absent: Vec<&str> = tools.iter().copied().filter(|tool| which(tool).is_none()).collect();
    if absent.is_empty() { None } else { Some(format!("needs {} on PATH", absent.join(", "))) }
}

/// The first executable called `name` on `PATH`.
pub fn which(name: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// Returns from the test, printing why, when [`missing`] finds a reason.
#[macro_export]
macro_rules! skip_unless {
    (root: $root:expr, tools: [$($tool:expr),* $(,)?]) => {
        if let Some(reason) = $crate::skip::missing($root, &[$($tool),*]) {
            eprintln!("SKIPPED {}: {}", module_path!(), reason);
            return;
        }
    };
}
