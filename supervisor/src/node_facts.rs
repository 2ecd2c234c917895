//! Facts about the node detected once at start: the cgroup layout, and whether a process may
//! lower its `oom_score_adj` (some nodes silently refuse it, and runc then fails to create
//! containers, so values below berthd's own are clamped, like containerd's
//! `restrict_oom_score_adj`).

use std::path::Path;

use nix::sys::statfs::{CGROUP2_SUPER_MAGIC, statfs};
use serde::Serialize;

/// How the node mounts cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupLayout {
    /// Only v1 hierarchies.
    V1,
    /// v1 hierarchies with a cgroup2 tree at `/sys/fs/cgroup/unified`.
    Hybrid,
    /// The unified cgroup2 hierarchy at `/sys/fs/cgroup`.
    V2,
}

impl CgroupLayout {
    pub fn as_str(self) -> &'static str {
        match self {
            CgroupLayout::V1 => "v1",
            CgroupLayout::Hybrid => "hybrid",
            CgroupLayout::V2 => "v2",
        }
    }

    /// Looks at the filesystems mounted under `cgroup_root` (normally `/sys/fs/cgroup`).
    pub fn detect(cgroup_root: &Path) -> Self {
        let is_cgroup2 =
            |path: &Path| statfs(path).is_ok_and(|fs| fs.filesystem_type() == CGROUP2_SUPER_MAGIC);
        if is_cgroup2(cgroup_root) {
            CgroupLayout::V2
        } else if is_cgroup2(&cgroup_root.join("unified")) {
            CgroupLayout::Hybrid
        } else {
            CgroupLayout::V1
        }
    }
}

/// Reads and writes a process's `oom_score_adj`; a trait so the probe is tested without
/// touching the real process.
pub trait OomScoreAdjFile {
    fn read(&self) -> std::io::Result<i32>;
    fn write(&self, value: i32) -> std::io::Result<()>;
}

/// `/proc/self/oom_score_adj`.
pub struct ProcSelfOomScoreAdj;

impl OomScoreAdjFile for ProcSelfOomScoreAdj {
    fn read(&self) -> std::io::Result<i32> {
        let text = std::fs::read_to_string("/proc/self/oom_score_adj")?;
        text.trim().parse().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    fn write(&self, value: i32) -> std::io::Result<()> {
        std::fs::write("/proc/self/oom_score_adj", value.to_string())
    }
}

/// What the node allows for `oom_score_adj`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OomScoreAdjPolicy {
    /// berthd's own value at start.
    pub current: i32,
    /// Whether lowering below `current` took effect when tried.
    pub can_lower: bool,
}

impl OomScoreAdjPolicy {
    /// Tries to lower the value by one, reads it back, and restores it. Raising is always
    /// allowed, so the restore cannot fail where the probe succeeded.
    pub fn probe(file: &dyn OomScoreAdjFile) -> std::io::Result<Self> {
        let current = file.read()?;
        if current <= -1000 {
            // Already at the floor: nothing can be asked for below it.
            return Ok(Self { current, can_lower: true });
        }
        let lowered = file.write(current - 1).is_ok() && file.read()? == current - 1;
        if lowered {
            file.write(current)?;
        }
        Ok(Self { current, can_lower: lowered })
    }

    /// The value to give a container that asks for `requested`: unchanged where the node
    /// allows lowering, otherwise never below berthd's own.
    pub fn clamp(&self, requested: i32) -> i32 {
        let requested = requested.clamp(-1000, 1000);
        if self.can_lower { requested } else { requested.max(self.current) }
    }
}

/// Everything detected at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeFacts {
    pub cgroup_layout: CgroupLayout,
    pub oom_score_adj: OomScoreAdjPolicy,
}

impl NodeFacts {
    pub fn detect() -> std::io::Result<Self> {
        Ok(Self {
            cgroup_layout: CgroupLayout::detect(Path::new("/sys/fs/cgroup")),
            oom_score_adj: OomScoreAdjPolicy::probe(&ProcSelfOomScoreAdj)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A fake file: `refuse_lowering` mimics nodes that ignore a lower value without error.
    struct FakeFile {
        value: Cell<i32>,
        refuse_lowering: bool,
    }

    impl OomScoreAdjFile for FakeFile {
        fn read(&self) -> std::io::Result<i32> {
            Ok(self.value.get())
        }
        fn write(&self, value: i32) -> std::io::Result<()> {
            if !(self.refuse_lowering && value < self.value.get()) {
                self.value.set(value);
            }
            Ok(())
        }
    }

    #[test]
    fn probe_detects_silent_refusal_and_clamps() {
        let file = FakeFile { value: Cell::new(0), refuse_lowering: true };
        let policy = OomScoreAdjPolicy::probe(&file).unwrap();
        assert_eq!(policy, OomScoreAdjPolicy { current: 0, can_lower: false });
        assert_eq!(policy.clamp(-998), 0);
        assert_eq!(policy.clamp(500), 500);
        assert_eq!(file.value.get(), 0);
    }

    #[test]
    fn probe_restores_value_when_lowering_works() {
        let file = FakeFile { value: Cell::new(-500), refuse_lowering: false };
        let policy = OomScoreAdjPolicy::probe(&file).unwrap();
        assert_eq!(policy, OomScoreAdjPolicy { current: -500, can_lower: true });
        assert_eq!(file.value.get(), -500);
        assert_eq!(policy.clamp(-998), -998);
        assert_eq!(policy.clamp(-2000), -1000);
    }

    #[test]
    fn detects_this_node() {
        // Any Linux node has one of the three layouts; /proc always has the file.
        let facts = NodeFacts::detect().unwrap();
        assert!(["v1", "hybrid", "v2"].contains(&facts.cgroup_layout.as_str()));
        assert_eq!(facts.oom_score_adj.current, ProcSelfOomScoreAdj.read().unwrap());
    }

    #[test]
    fn a_plain_directory_is_v1() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(CgroupLayout::detect(dir.path()), CgroupLayout::V1);
    }
}
