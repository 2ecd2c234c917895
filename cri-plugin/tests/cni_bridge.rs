//! The CNI manager with the real plugins (Debian's containernetworking-plugins in /usr/lib/cni):
//! berth's default bridge network, with its own bridge name and subnet, attached to a netns this
//! test makes. Needs root; prints `SKIPPED: <reason>` and returns when it cannot run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_cri_plugin::cni::{CniConfig, CniManager, CniRequest, DefaultNetwork};

const PLUGIN_DIR: &str = "/usr/lib/cni";

fn skip_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root".into());
    }
    for plugin in ["bridge", "host-local", "loopback"] {
        if !Path::new(PLUGIN_DIR).join(plugin).exists() {
            return Some(format!("{PLUGIN_DIR}/{plugin} is missing"));
        }
    }
    for tool in ["ip", "iptables"] {
        if !Command::new("sh").args(["-c", &format!("command -v {tool}")]).status().is_ok_and(|s| s.success())
        {
            return Some(format!("{tool} is missing"));
        }
    }
    None
}

fn run(args: &[&str]) -> String {
    let output = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Removes the namespace and the bridge however the test ends.
struct Cleanup {
    netns: String,
    bridge: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).status();
        let _ = Command::new("ip").args(["link", "del", &self.bridge]).status();
    }
}

#[tokio::test]
async fn default_bridge_network_gives_a_pod_an_address_and_releases_it() {
    if let Some(reason) = skip_reason() {
        println!("SKIPPED: {reason}");
        return;
    }
    let id = std::process::id();
    let cleanup = Cleanup { netns: format!("berth-cni-test-{id}"), bridge: format!("bt{id}") };
    run(&["ip", "netns", "add", &cleanup.netns]);
    let netns = PathBuf::from("/run/netns").join(&cleanup.netns);

    let dirs = tempfile::tempdir().unwrap();
    let conf_dir = dirs.path().join("net.d");
    let ipam_dir = dirs.path().join("ipam");
    let bin_dirs = vec![PathBuf::from(PLUGIN_DIR)];
    let network = DefaultNetwork {
        name: format!("berth-test-{id}"),
        bridge: cleanup.bridge.clone(),
        subnet: "10.199.0.0/24".into(),
        ipam_data_dir: Some(ipam_dir.clone()),
    };
    network.write_if_missing(&conf_dir, &bin_dirs).unwrap().unwrap();
    let manager = CniManager::new(CniConfig { conf_dir, bin_dirs, cache_dir: dirs.path().join("cache") });
    assert!(manager.network_readiness().ready, "{}", manager.network_readiness().message);

    let request = CniRequest {
        sandbox_id: format!("berthtest{id}"),
        netns: netns.clone(),
        ifname: "eth0".into(),
        pod_name: "cni-test".into(),
        pod_namespace: "default".into(),
        pod_uid: format!("uid-{id}"),
        ..CniRequest::default()
    };
    let result = manager.setup(&request).await.unwrap();
    let lease = ipam_dir
        .join(&network.name)
        .join(result.pod_ips().first().map(ToString::to_string).unwrap_or_default());
    // Teardown runs whatever the checks find, so a failure leaves no address or NAT rule behind.
    let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let ips = result.pod_ips();
        assert_eq!(ips.len(), 1, "{result:?}");
        let ip = ips[0].to_string();
        assert!(ip.starts_with("10.199.0."), "{ip}");
        assert_eq!(manager.cached_result(&request.sandbox_id).as_ref(), Some(&result));
        let inside = run(&["ip", "-n", &cleanup.netns, "-4", "addr", "show", "dev", "eth0"]);
        assert!(inside.contains(&format!("{ip}/24")), "{inside}");
        let lo = run(&["ip", "-n", &cleanup.netns, "link", "show", "dev", "lo"]);
        assert!(lo.contains("UP"), "loopback is up: {lo}");
        assert!(lease.exists(), "host-local recorded the lease at {}", lease.display());
    }));
    // No CHECK here: the bandwidth plugin (v1.1.1) crashes on CHECK for a pod without limits.
    manager.teardown(&request).await.unwrap();
    if let Err(panic) = checked {
        std::panic::resume_unwind(panic);
    }
    assert!(!lease.exists(), "DEL released the address");
    assert_eq!(manager.cached_result(&request.sandbox_id), None);
    manager.teardown(&request).await.unwrap();
    drop(cleanup);
}
