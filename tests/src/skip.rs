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

/// The test's path (`tasks::a_test`) from the type name of a function declared in it.
pub fn test_name(marker: &str) -> String {
    marker.trim_end_matches("::here").replace("::{{closure}}", "")
}

/// Returns from the test, printing why (`SKIPPED <crate>::<test>: <reason>`, which
/// `scripts/test` counts), when [`missing`] finds a reason.
#[macro_export]
macro_rules! skip_unless {
    (root: $root:expr, tools: [$($tool:expr),* $(,)?]) => {
        if let Some(reason) = $crate::skip::missing($root, &[$($tool),*]) {
            fn here() {}
            eprintln!("SKIPPED {}: {}", $crate::skip::test_name(std::any::type_name_of_val(&here)), reason);
            return;
        }
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn skip_lines_name_the_test() {
        fn here() {}
        let name = super::test_name(std::any::type_name_of_val(&here));
        assert_eq!(name, "berth_tests::skip::tests::skip_lines_name_the_test");
    }
}
