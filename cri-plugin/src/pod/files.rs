//! The files a pod's containers share: `/etc/hostname`, `/etc/hosts`, `/etc/resolv.conf`,
//! written once per pod in its directory and bind-mounted into each container.

use std::path::{Path, PathBuf};

use berth_proto::runtime::v1 as cri;

/// Paths of the pod's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFiles {
    pub hostname: PathBuf,
    pub hosts: PathBuf,
    pub resolv_conf: PathBuf,
}

/// Where the host's own files are (tests point these elsewhere).
#[derive(Debug, Clone)]
pub struct HostFiles {
    pub hosts: PathBuf,
    pub resolv_conf: PathBuf,
}

impl Default for HostFiles {
    fn default() -> Self {
        Self { hosts: PathBuf::from("/etc/hosts"), resolv_conf: PathBuf::from("/etc/resolv.conf") }
    }
}

const POD_HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n";

/// `resolv.conf` from the pod's DNS config; `None` when it sets nothing (the host's is used).
pub fn resolv_conf(dns: Option<&cri::DnsConfig>) -> Option<String> {
    let dns = dns?;
    if dns.servers.is_empty() && dns.searches.is_empty() && dns.options.is_empty() {
        return None;
    }
    let mut text = String::new();
    if !dns.searches.is_empty() {
        text.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for server in &dns.servers {
        text.push_str(&format!("nameserver {server}\n"));
    }
    if !dns.options.is_empty() {
        text.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    Some(text)
}

/// The hostname a pod's containers see: the config's, or the host's with host networking.
pub fn pod_hostname(config: &cri::PodSandboxConfig, host_network: bool) -> String {
    if !config.hostname.is_empty() && !host_network {
        return config.hostname.clone();
    }
    nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default()
}

fn write(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
}

/// Writes the pod's files into `dir` (created).
pub fn write_pod_files(
    dir: &Path,
    config: &cri::PodSandboxConfig,
    host_network: bool,
    host: &HostFiles,
) -> std::io::Result<PodFiles> {
    // The pod's directory holds its shm (a mode-1777 tmpfs), hosts and resolv.conf: private,
    // so that no local user reaches them by the pod's ID (CVE-2021-41103's class).
    crate::modes::ensure_dir(dir, crate::modes::PRIVATE_DIR)?;
    let files = PodFiles {
        hostname: dir.join("hostname"),
        hosts: dir.join("hosts"),
        resolv_conf: dir.join("resolv.conf"),
    };
    write(&files.hostname, format!("{}\n", pod_hostname(config, host_network)).as_bytes())?;
    let hosts = if host_network {
        std::fs::read(&host.hosts).unwrap_or_else(|_| POD_HOSTS.as_bytes().to_vec())
    } else {
        POD_HOSTS.as_bytes().to_vec()
    };
    write(&files.hosts, &hosts)?;
    let resolv = match resolv_conf(config.dns_config.as_ref()) {
        Some(text) => text.into_bytes(),
        None => std::fs::read(&host.resolv_conf).unwrap_or_default(),
    };
    write(&files.resolv_conf, &resolv)?;
    Ok(files)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_from_dns_config() {
        let dns = cri::DnsConfig {
            servers: vec!["10.0.0.10".into(), "10.0.0.11".into()],
            searches: vec!["default.svc.cluster.local".into(), "svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        };
        assert_eq!(
            resolv_conf(Some(&dns)).unwrap(),
            "search default.svc.cluster.local svc.cluster.local\nnameserver 10.0.0.10\nnameserver 10.0.0.11\noptions ndots:5\n"
        );
        assert_eq!(resolv_conf(Some(&cri::DnsConfig::default())), None);
        assert_eq!(resolv_conf(None), None);
    }

    #[test]
    fn files_for_pod_and_host_network() {
        let dir = tempfile::tempdir().unwrap();
        let host =
            HostFiles { hosts: dir.path().join("host-hosts"), resolv_conf: dir.path().join("host-resolv") };
        std::fs::write(&host.hosts, "1.2.3.4 node\n").unwrap();
        std::fs::write(&host.resolv_conf, "nameserver 9.9.9.9\n").unwrap();
        let config = cri::PodSandboxConfig { hostname: "web-0".into(), ..Default::default() };

        let files = write_pod_files(&dir.path().join("pod"), &config, false, &host).unwrap();
        assert_eq!(std::fs::read_to_string(&files.hostname).unwrap(), "web-0\n");
        assert!(std::fs::read_to_string(&files.hosts).unwrap().starts_with("127.0.0.1\tlocalhost"));
        assert_eq!(std::fs::read_to_string(&files.resolv_conf).unwrap(), "nameserver 9.9.9.9\n");

        let files = write_pod_files(&dir.path().join("hostnet"), &config, true, &host).unwrap();
        assert_eq!(std::fs::read_to_string(&files.hosts).unwrap(), "1.2.3.4 node\n");
        assert_ne!(std::fs::read_to_string(&files.hostname).unwrap(), "web-0\n");
    }
}
