//! Layer entry names made safe: only plain components, and directories walked without ever
//! following a symlink, so an entry cannot land outside its target.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The components of a tar entry name (`./a//b/` → `a`, `b`; `.` or `./` → none, the root).
/// Refuses absolute names, `..` anywhere, and NUL bytes.
pub(crate) fn components(raw: &[u8]) -> Result<Vec<&OsStr>, &'static str> {
    if raw.first() == Some(&b'/') {
        return Err("absolute path");
    }
    if raw.contains(&0) {
        return Err("NUL byte in name");
    }
    let mut out = Vec::new();
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("`..` component"),
            name => out.push(OsStr::from_bytes(name)),
        }
    }
    Ok(out)
}

/// What walking down a directory chain found.
#[derive(Debug)]
pub(crate) enum Walk {
    /// Every component is a real directory; here is the last one.
    Dir(PathBuf),
    /// This component (relative) does not exist.
    Missing(PathBuf),
    /// This component (relative) is a symlink: going on would follow it.
    Symlink(PathBuf),
    /// This component (relative) is neither a directory nor a symlink.
    NotDir(PathBuf),
}

/// Walks `comps` down from `root` with `lstat`, never through a symlink.
pub(crate) fn walk_dirs(root: &Path, comps: &[&OsStr]) -> io::Result<Walk> {
    let mut abs = root.to_path_buf();
    let mut rel = PathBuf::new();
    for comp in comps {
        abs.push(comp);
        rel.push(comp);
        match fs::symlink_metadata(&abs) {
            Ok(md) if md.is_dir() => {}
            Ok(md) if md.file_type().is_symlink() => return Ok(Walk::Symlink(rel)),
            Ok(_) => return Ok(Walk::NotDir(rel)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Walk::Missing(rel)),
            Err(e) => return Err(e),
        }
    }
    Ok(Walk::Dir(abs))
}

/// The path of a directory below `root` when every component is a real directory.
pub(crate) fn existing_dir(root: &Path, comps: &[&OsStr]) -> io::Result<Option<PathBuf>> {
    match walk_dirs(root, comps)? {
        Walk::Dir(path) => Ok(Some(path)),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comps(raw: &str) -> Result<Vec<String>, &'static str> {
        components(raw.as_bytes()).map(|c| c.iter().map(|s| s.to_string_lossy().into_owned()).collect())
    }

    #[test]
    fn names_normalise() {
        assert_eq!(comps("./a//b/"), Ok(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(comps("a/./b"), Ok(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(comps("./"), Ok(vec![]));
        assert_eq!(comps("."), Ok(vec![]));
        assert_eq!(comps("..."), Ok(vec!["...".to_string()]));
        assert_eq!(comps("a..b/..c"), Ok(vec!["a..b".to_string(), "..c".to_string()]));
    }

    #[test]
    fn dangerous_names_are_refused() {
        assert!(comps("/etc/passwd").is_err());
        assert!(comps("../x").is_err());
        assert!(comps("a/../../x").is_err());
        assert!(comps("a/..").is_err());
        assert!(components(b"a\0b").is_err());
    }

    #[test]
    fn walking_stops_at_symlinks_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::write(root.join("a/f"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("a/l")).unwrap();
        let os = |s: &'static str| OsStr::new(s);

        assert!(
            matches!(walk_dirs(root, &[os("a"), os("b")]).unwrap(), Walk::Dir(p) if p == root.join("a/b"))
        );
        assert!(
            matches!(walk_dirs(root, &[os("a"), os("l")]).unwrap(), Walk::Symlink(p) if p == Path::new("a/l"))
        );
        assert!(matches!(walk_dirs(root, &[os("a"), os("f"), os("x")]).unwrap(), Walk::NotDir(_)));
        let missing = walk_dirs(root, &[os("a"), os("n"), os("x")]).unwrap();
        assert!(matches!(missing, Walk::Missing(p) if p == Path::new("a/n")));
        assert_eq!(existing_dir(root, &[os("a"), os("l")]).unwrap(), None);
        assert_eq!(existing_dir(root, &[]).unwrap(), Some(root.to_path_buf()));
    }
}
