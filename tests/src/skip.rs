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

/// Why a test that runs a Python script importing `module` cannot run here, if it cannot:
/// `python3 -c 'import <module>'` fails (or there is no `python3`).
pub fn python_module_missing(module: &str) -> Option<String> {
    let imported = std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if imported { None } else { Some(format!("needs python3 with the `{module}` module")) }
}

/// The first executable called `name` on `PATH`.
pub use berth_sys::executable::which;

/// The test's path (`tasks::a_test`) from the type name of a function declared in it.
pub fn test_name(marker: &str) -> String {
    marker.trim_end_matches("::here").replace("::{{closure}}", "")
}

/// Returns from the test, printing why (`SKIPPED <crate>::<test>: <reason>`, which
/// `scripts/test` counts), when [`missing`] finds a reason, or, in the `reason:` form, when the
/// given `Option<String>` holds one.
#[macro_export]
macro_rules! skip_unless {
    (root: $root:expr, tools: [$($tool:expr),* $(,)?]) => {
        $crate::skip_unless!(reason: $crate::skip::missing($root, &[$($tool),*]))
    };
    (reason: $reason:expr) => {
        if let Some(reason) = $reason {
            fn here() {}
            eprintln!("SKIPPED {}: {}", $crate::skip::test_name(std::any::type_name_of_val(&here)), reason);
            return;
        }
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn python_modules_that_do_not_exist_are_reasons_to_skip() {
        let reason = super::python_module_missing("berth_no_such_module");
        assert!(reason.is_some_and(|r| r.contains("berth_no_such_module")));
    }

    #[test]
    fn skip_lines_name_the_test() {
        fn here() {}
        let name = super::test_name(std::any::type_name_of_val(&here));
        assert_eq!(name, "berth_tests::skip::tests::skip_lines_name_the_test");
    }
}
