//! Finding executables: shims, OCI runtimes, CNI plugins.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Whether `path` is a regular file (symlinks followed) with an execute bit set.
pub fn is_executable(path: &Path) -> bool {
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The first executable called `name` in `dirs`. `name` must be a plain file name: one with a
/// `/`, or `.`/`..`, finds nothing (a CNI config must not name a path outside the plugin dirs).
pub fn find_in<'a>(name: &str, dirs: impl IntoIterator<Item = &'a Path>) -> Option<PathBuf> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return None;
    }
    dirs.into_iter().map(|dir| dir.join(name)).find(|p| is_executable(p))
}

/// The directories of `PATH`, in order.
pub fn path_dirs() -> Vec<PathBuf> {
    std::env::var_os("PATH").map(|path| std::env::split_paths(&path).collect()).unwrap_or_default()
}

/// The first executable called `name` on `PATH` (what `which` answers).
pub fn which(name: &str) -> Option<PathBuf> {
    find_in(name, path_dirs().iter().map(PathBuf::as_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_only_executable_plain_names() {
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("tool");
        std::fs::write(&tool, "#!/bin/sh\n").unwrap();
        std::fs::write(dir.path().join("data"), "").unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir(dir.path().join("subdir")).unwrap();

        let dirs = [Path::new("/nonexistent"), dir.path()];
        assert_eq!(find_in("tool", dirs), Some(tool.clone()));
        assert_eq!(find_in("data", dirs), None, "not executable");
        assert_eq!(find_in("subdir", dirs), None, "a directory");
        assert_eq!(find_in("../tool", dirs), None);
        assert_eq!(find_in("", dirs), None);
        assert!(is_executable(&tool));
        assert!(which("sh").is_some());
    }
}
