//! Whether a spec directory, or a spec file, can be trusted: a spec adds device nodes, host
//! mounts and hooks that run as root, so whoever can write one is root on the node. Only root
//! (and berthd's own user, when it runs as another) may own them or any directory on the way
//! to them, and no one else may write them; a directory above them that others can write is
//! fine only with the sticky bit, which keeps them from renaming what they do not own.

use std::fs::Metadata;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

const STICKY: u32 = 0o1000;
const GROUP_OR_OTHER_WRITE: u32 = 0o022;

/// The owners a spec or its directories may have: root and berthd's own user.
pub fn trusted_owners() -> Vec<u32> {
    let me = nix::unistd::geteuid().as_raw();
    if me == 0 { vec![0] } else { vec![0, me] }
}

/// Why `meta`'s file can be written by someone untrusted, if it can.
pub fn writable_by_others(meta: &Metadata, trusted: &[u32]) -> Option<String> {
    writable_by_others_of(meta.uid(), meta.gid(), meta.mode(), trusted)
}

fn writable_by_others_of(uid: u32, gid: u32, mode: u32, trusted: &[u32]) -> Option<String> {
    if !trusted.contains(&uid) {
        Some(format!("it is owned by uid {uid}, not root"))
    } else if mode & 0o002 != 0 {
        Some(format!("every user can write it (mode {:o})", mode & 0o7777))
    } else if mode & 0o020 != 0 {
        Some(format!("its group {gid} can write it (mode {:o})", mode & 0o7777))
    } else {
        None
    }
}

/// Why the spec directory `dir` cannot be trusted, if it cannot. `NotFound` when it does not
/// exist (which is fine: it has no specs).
pub fn untrusted_dir(dir: &Path, trusted: &[u32]) -> io::Result<Option<String>> {
    if !dir.is_absolute() {
        return Ok(Some("it is not an absolute path".to_string()));
    }
    let resolved = std::fs::canonicalize(dir)?;
    let meta = std::fs::metadata(&resolved)?;
    if !meta.is_dir() {
        return Ok(Some("it is not a directory".to_string()));
    }
    if let Some(why) = writable_by_others(&meta, trusted) {
        return Ok(Some(why));
    }
    // Each entry on the way, as written (links themselves) and as resolved.
    let mut on_the_way = Vec::new();
    for entry in dir.ancestors() {
        on_the_way.push((entry.to_path_buf(), std::fs::symlink_metadata(entry)?));
    }
    for entry in resolved.ancestors().skip(1) {
        on_the_way.push((entry.to_path_buf(), std::fs::metadata(entry)?));
    }
    for (path, meta) in on_the_way {
        let uid = meta.uid();
        if !trusted.contains(&uid) {
            return Ok(Some(format!("{} on the way to it is owned by uid {uid}, not root", path.display())));
        }
        let mode = meta.mode();
        if meta.is_dir() && mode & GROUP_OR_OTHER_WRITE != 0 && mode & STICKY == 0 {
            return Ok(Some(format!(
                "others can write {} on the way to it (mode {:o})",
                path.display(),
                mode & 0o7777
            )));
        }
    }
    Ok(None)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn only_trusted_owners_without_write_for_others() {
        let trusted = [0];
        assert_eq!(writable_by_others_of(0, 0, 0o40755, &trusted), None);
        assert!(writable_by_others_of(1000, 0, 0o40755, &trusted).unwrap().contains("uid 1000"));
        assert!(writable_by_others_of(0, 0, 0o40777, &trusted).unwrap().contains("every user"));
        assert!(writable_by_others_of(0, 5, 0o40775, &trusted).unwrap().contains("group 5"));
        assert!(
            writable_by_others_of(0, 0, 0o41777, &trusted).is_some(),
            "sticky is no excuse for the dir itself"
        );
        assert_eq!(writable_by_others_of(1000, 0, 0o100644, &[0, 1000]), None, "berthd's own user");
    }

    #[test]
    fn a_directory_others_can_write_is_refused_and_so_is_one_below_it() {
        let trusted = trusted_owners();
        let top = tempfile::tempdir().unwrap();
        let specs = top.path().join("cdi");
        std::fs::create_dir(&specs).unwrap();
        chmod(&specs, 0o755);
        assert_eq!(untrusted_dir(&specs, &trusted).unwrap(), None);

        chmod(&specs, 0o777);
        assert!(untrusted_dir(&specs, &trusted).unwrap().unwrap().contains("every user can write it"));
        chmod(&specs, 0o755);

        chmod(top.path(), 0o777);
        let why = untrusted_dir(&specs, &trusted).unwrap().unwrap();
        assert!(why.contains("on the way to it"), "{why}");
        chmod(top.path(), 0o1777);
        assert_eq!(untrusted_dir(&specs, &trusted).unwrap(), None, "sticky, like /tmp");
        chmod(top.path(), 0o700);

        let missing = untrusted_dir(&top.path().join("nope"), &trusted).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        assert!(untrusted_dir(Path::new("relative/cdi"), &trusted).unwrap().is_some());
        let file = top.path().join("file");
        std::fs::write(&file, b"").unwrap();
        assert!(untrusted_dir(&file, &trusted).unwrap().unwrap().contains("not a directory"));
    }

    #[test]
    fn a_link_to_the_directory_is_judged_by_where_it_leads_and_what_it_crosses() {
        let trusted = trusted_owners();
        let top = tempfile::tempdir().unwrap();
        let real = top.path().join("real");
        std::fs::create_dir(&real).unwrap();
        chmod(&real, 0o755);
        let open = top.path().join("open");
        std::fs::create_dir(&open).unwrap();
        chmod(&open, 0o777);
        let link = open.join("cdi");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let why = untrusted_dir(&link, &trusted).unwrap().unwrap();
        assert!(why.contains("open"), "the link sits where others can replace it: {why}");
        let good_link = top.path().join("cdi");
        std::os::unix::fs::symlink(&real, &good_link).unwrap();
        assert_eq!(untrusted_dir(&good_link, &trusted).unwrap(), None);
    }
}
