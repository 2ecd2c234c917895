//! Finding a process's cgroup from `/proc/<pid>/cgroup`, for cgroup v1, hybrid and v2 hosts.
//!
//! On a unified (v2) host `/sys/fs/cgroup/cgroup.controllers` exists and the `0::/path` line
//! names the cgroup. Otherwise (v1 or hybrid, where the v2 tree at `/sys/fs/cgroup/unified`
//! holds at most a few controllers) each `id:controllers:/path` line gives the path in that
//! controller's hierarchy at `/sys/fs/cgroup/<controllers>`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroup {
    /// controller name → directory of the process's cgroup in that hierarchy
    V1(HashMap<String, PathBuf>),
    V2(PathBuf),
}

pub fn is_unified(root: &Path) -> bool {
    root.join("cgroup.controllers").exists()
}

/// Parses `/proc/<pid>/cgroup` content against a cgroup mount root.
pub fn parse(content: &str, root: &Path, unified: bool) -> Option<Cgroup> {
    if unified {
        let path = content.lines().find_map(|l| l.strip_prefix("0::"))?;
        return Some(Cgroup::V2(root.join(path.trim_start_matches('/'))));
    }
    let mut map = HashMap::new();
    for line in content.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if ctrls.is_empty() {
            continue; // the v2 line of a hybrid host
        }
        let rel = path.trim_start_matches('/');
        for c in ctrls.split(',') {
            let name = c.strip_prefix("name=").unwrap_or(c);
            // the mount is /sys/fs/cgroup/<c> (a symlink for co-mounted ones) or /sys/fs/cgroup/<ctrls>
            let single = root.join(name);
            let base = if single.exists() { single } else { root.join(ctrls) };
            map.insert(name.to_string(), base.join(rel));
        }
    }
    if map.is_empty() { None } else { Some(Cgroup::V1(map)) }
}

/// The cgroup of a live process.
pub fn of_pid(pid: u32) -> Option<Cgroup> {
    let content = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let root = Path::new(ROOT);
    parse(&content, root, is_unified(root))
}

impl Cgroup {
    pub fn v1(&self, controller: &str) -> Option<&Path> {
        match self {
            Cgroup::V1(m) => m.get(controller).map(PathBuf::as_path),
            Cgroup::V2(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_line() {
        let c = parse("0::/kubepods/pod1/abc\n", Path::new("/sys/fs/cgroup"), true).unwrap();
        assert_eq!(c, Cgroup::V2("/sys/fs/cgroup/kubepods/pod1/abc".into()));
    }

    #[test]
    fn v1_and_hybrid_lines() {
        let text = "9:name=systemd:/x\n8:pids:/berth/c1\n4:memory:/berth/c1\n2:cpu,cpuacct:/berth/c1\n0::/\n";
        let root = std::env::temp_dir().join(format!("berth-cg-test-{}", std::process::id()));
        std::fs::create_dir_all(root.join("cpu,cpuacct")).unwrap();
        let c = parse(text, &root, false).unwrap();
        assert_eq!(c.v1("memory").unwrap(), root.join("memory/berth/c1"));
        assert_eq!(c.v1("pids").unwrap(), root.join("pids/berth/c1"));
        assert_eq!(c.v1("cpuacct").unwrap(), root.join("cpu,cpuacct/berth/c1"));
        assert_eq!(c.v1("systemd").unwrap(), root.join("name=systemd/x"));
        assert!(c.v1("hugetlb").is_none());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
