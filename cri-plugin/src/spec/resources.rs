//! cgroup resources (CPU, memory, huge pages, cgroup v2 unified keys), the container's cgroup
//! path and its OOM score.

use std::path::PathBuf;

use berth_proto::runtime::v1 as cri;
use oci_spec::runtime::{LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxResources};

use crate::config::CgroupDriver;

use super::SpecError;

fn non_negative(v: i64, what: &str) -> Result<u64, SpecError> {
    u64::try_from(v).map_err(|_| SpecError::InvalidResources(format!("{what} {v} is negative")))
}

/// A huge page size as the kernel names its hugetlb files: a number and KB, MB, GB, TB or PB
/// (kubelet turns `hugepages-2Mi` into `2MB`).
fn valid_page_size(s: &str) -> bool {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && matches!(&s[digits..], "KB" | "MB" | "GB" | "TB" | "PB")
}

/// CRI resources as OCI resources. Zero means "not set" for every CRI number, so it leaves the
/// runtime's default. `oom_score_adj` is not a cgroup resource: see [`oom_score_adj`].
pub fn linux_resources(r: &cri::LinuxContainerResources) -> Result<LinuxResources, SpecError> {
    let mut cpu = LinuxCpu::default();
    let mut cpu_set = false;
    if r.cpu_shares != 0 {
        cpu.set_shares(Some(non_negative(r.cpu_shares, "cpu_shares")?));
        cpu_set = true;
    }
    if r.cpu_period != 0 {
        cpu.set_period(Some(non_negative(r.cpu_period, "cpu_period")?));
        cpu_set = true;
    }
    if r.cpu_quota != 0 {
        // -1 is "no quota", which an update uses to lift one.
        cpu.set_quota(Some(r.cpu_quota));
        cpu_set = true;
    }
    if !r.cpuset_cpus.is_empty() {
        cpu.set_cpus(Some(r.cpuset_cpus.clone()));
        cpu_set = true;
    }
    if !r.cpuset_mems.is_empty() {
        cpu.set_mems(Some(r.cpuset_mems.clone()));
        cpu_set = true;
    }

    let mut memory = LinuxMemory::default();
    let mut memory_set = false;
    if r.memory_limit_in_bytes != 0 {
        memory.set_limit(Some(r.memory_limit_in_bytes));
        memory_set = true;
    }
    if r.memory_swap_limit_in_bytes != 0 {
        memory.set_swap(Some(r.memory_swap_limit_in_bytes));
        memory_set = true;
    }

    let mut hugepages = Vec::new();
    for h in &r.hugepage_limits {
        if !valid_page_size(&h.page_size) {
            return Err(SpecError::InvalidResources(format!(
                "huge page size {:?} is not a size like \"2MB\" or \"1GB\"",
                h.page_size
            )));
        }
        let limit = i64::try_from(h.limit)
            .map_err(|_| SpecError::InvalidResources(format!("huge page limit {} is too large", h.limit)))?;
        let mut l = LinuxHugepageLimit::default();
        l.set_page_size(h.page_size.clone());
        l.set_limit(limit);
        hugepages.push(l);
    }

    let mut out = LinuxResources::default();
    out.set_cpu(cpu_set.then_some(cpu));
    out.set_memory(memory_set.then_some(memory));
    out.set_hugepage_limits((!hugepages.is_empty()).then_some(hugepages));
    out.set_unified((!r.unified.is_empty()).then(|| r.unified.clone()));
    Ok(out)
}

/// The process's OOM score adjustment, checked against the kernel's range. Lowering it below
/// berthd's own is refused on some hosts; clamping that is the engine's job.
pub fn oom_score_adj(r: &cri::LinuxContainerResources) -> Result<i32, SpecError> {
    match i32::try_from(r.oom_score_adj) {
        Ok(v) if (-1000..=1000).contains(&v) => Ok(v),
        _ => Err(SpecError::InvalidResources(format!(
            "oom_score_adj {} is outside -1000..=1000",
            r.oom_score_adj
        ))),
    }
}

/// The container's cgroup: under the pod's parent with the cgroupfs driver (`/berth` when the
/// pod names none); a `slice:prefix:name` for runc's systemd driver.
pub fn cgroups_path(driver: CgroupDriver, cgroup_parent: &str, container_id: &str) -> PathBuf {
    match driver {
        CgroupDriver::Cgroupfs => {
            let parent = cgroup_parent.trim_end_matches('/');
            if parent.is_empty() {
                PathBuf::from(format!("/berth/{container_id}"))
            } else if parent.starts_with('/') {
                PathBuf::from(format!("{parent}/{container_id}"))
            } else {
                PathBuf::from(format!("/{parent}/{container_id}"))
            }
        }
        CgroupDriver::Systemd => {
            // kubelet gives the full slice path; systemd wants only the innermost slice.
            let slice = cgroup_parent.trim_end_matches('/').rsplit('/').next().unwrap_or("");
            let slice = if slice.is_empty() { "system.slice" } else { slice };
            PathBuf::from(format!("{slice}:berth:{container_id}"))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn zero_means_unset() {
        let r = linux_resources(&cri::LinuxContainerResources::default()).unwrap();
        assert_eq!(r, LinuxResources::default());
    }

    #[test]
    fn cpu_and_memory() {
        let r = linux_resources(&cri::LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpu_shares: 512,
            cpuset_cpus: "0-1".into(),
            cpuset_mems: "0".into(),
            memory_limit_in_bytes: 64 << 20,
            memory_swap_limit_in_bytes: 128 << 20,
            ..Default::default()
        })
        .unwrap();
        let cpu = r.cpu().clone().unwrap();
        assert_eq!((cpu.period(), cpu.quota(), cpu.shares()), (Some(100_000), Some(50_000), Some(512)));
        assert_eq!((cpu.cpus().as_deref(), cpu.mems().as_deref()), (Some("0-1"), Some("0")));
        let mem = r.memory().unwrap();
        assert_eq!((mem.limit(), mem.swap()), (Some(64 << 20), Some(128 << 20)));
    }

    #[test]
    fn memory_limit_alone_leaves_swap_unset() {
        let r = linux_resources(&cri::LinuxContainerResources {
            memory_limit_in_bytes: 1 << 20,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(r.memory().unwrap().swap(), None);
        assert!(r.cpu().is_none());
    }

    #[test]
    fn negative_shares_are_refused() {
        let err = linux_resources(&cri::LinuxContainerResources { cpu_shares: -2, ..Default::default() })
            .unwrap_err();
        assert_eq!(crate::CriError::from(err).code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn hugepages_and_unified() {
        let r = linux_resources(&cri::LinuxContainerResources {
            hugepage_limits: vec![
                cri::HugepageLimit { page_size: "2MB".into(), limit: 4 << 21 },
                cri::HugepageLimit { page_size: "1GB".into(), limit: 0 },
            ],
            unified: HashMap::from([("memory.high".to_string(), "1000000".to_string())]),
            ..Default::default()
        })
        .unwrap();
        let h = r.hugepage_limits().clone().unwrap();
        assert_eq!((h[0].page_size().as_str(), h[0].limit()), ("2MB", 4 << 21));
        assert_eq!((h[1].page_size().as_str(), h[1].limit()), ("1GB", 0));
        assert_eq!(r.unified().as_ref().unwrap()["memory.high"], "1000000");
        let bad = cri::LinuxContainerResources {
            hugepage_limits: vec![cri::HugepageLimit { page_size: "hugepages-2Mi".into(), limit: 1 }],
            ..Default::default()
        };
        assert!(matches!(linux_resources(&bad), Err(SpecError::InvalidResources(_))));
    }

    #[test]
    fn oom_score_adj_range() {
        let r = |v| cri::LinuxContainerResources { oom_score_adj: v, ..Default::default() };
        assert_eq!(oom_score_adj(&r(-997)).unwrap(), -997);
        assert_eq!(oom_score_adj(&r(1000)).unwrap(), 1000);
        assert!(oom_score_adj(&r(1001)).is_err());
        assert!(oom_score_adj(&r(i64::MIN)).is_err());
    }

    #[test]
    fn cgroups_path_per_driver() {
        assert_eq!(cgroups_path(CgroupDriver::Cgroupfs, "", "abc"), PathBuf::from("/berth/abc"));
        assert_eq!(
            cgroups_path(CgroupDriver::Cgroupfs, "/kubepods/besteffort/pod1", "abc"),
            PathBuf::from("/kubepods/besteffort/pod1/abc")
        );
        assert_eq!(cgroups_path(CgroupDriver::Cgroupfs, "kubepods/", "abc"), PathBuf::from("/kubepods/abc"));
        assert_eq!(
            cgroups_path(
                CgroupDriver::Systemd,
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice",
                "abc"
            ),
            PathBuf::from("kubepods-besteffort-pod1.slice:berth:abc")
        );
        assert_eq!(cgroups_path(CgroupDriver::Systemd, "", "abc"), PathBuf::from("system.slice:berth:abc"));
    }
}
