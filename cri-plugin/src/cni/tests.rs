//! The manager against fake plugins: `/bin/sh` scripts that record their environment and stdin
//! and print a canned result or error.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;

struct Fixture {
    _root: tempfile::TempDir,
    conf: PathBuf,
    bin: PathBuf,
    /// A second, empty bin dir: CNI_PATH and not-found errors name both.
    bin2: PathBuf,
    cache: PathBuf,
    log: PathBuf,
    /// Stands in for the pod's netns: the fake plugins only need a path that exists.
    netns: PathBuf,
}

const LO_RESULT: &str = r#"{"cniVersion":"0.3.1","interfaces":[{"name":"lo","sandbox":"/x"}],
"ips":[{"version":"4","address":"127.0.0.1/8","interface":0}]}"#;

const BRIDGE_RESULT: &str = r#"{"cniVersion":"1.0.0",
"interfaces":[{"name":"berth0","mac":"aa:00:00:00:00:01"},{"name":"veth1","mac":"aa:00:00:00:00:02"},
{"name":"eth0","mac":"aa:00:00:00:00:03","sandbox":"/run/netns/test"}],
"ips":[{"address":"10.88.0.5/16","gateway":"10.88.0.1","interface":2}],
"routes":[{"dst":"0.0.0.0/0"}],"dns":{}}"#;

// What the second plugin prints: the first one's result plus an IPv6 address.
const PORTMAP_RESULT: &str = r#"{"cniVersion":"1.0.0",
"interfaces":[{"name":"berth0"},{"name":"veth1"},{"name":"eth0","sandbox":"/run/netns/test"}],
"ips":[{"address":"fd00::5/64","interface":2},{"address":"10.88.0.5/16","gateway":"10.88.0.1","interface":2}],
"routes":[{"dst":"0.0.0.0/0"}],"dns":{}}"#;

const CONFLIST: &str = r#"{"cniVersion":"1.0.0","name":"pods","plugins":[
{"type":"bridge","bridge":"b0"},
{"type":"portmap","capabilities":{"portMappings":true}},
{"type":"bandwidth","capabilities":{"bandwidth":true,"portMappings":false}}]}"#;

impl Fixture {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let dir = |name: &str| {
            let path = root.path().join(name);
            std::fs::create_dir_all(&path).unwrap();
            path
        };
        let (conf, bin, bin2, cache, log) = (dir("conf"), dir("bin"), dir("bin2"), dir("cache"), dir("log"));
        let netns = root.path().join("netns");
        std::fs::write(&netns, "").unwrap();
        let fixture = Self { conf, bin, bin2, cache, log, netns, _root: root };
        fixture.plugin("loopback", &add_prints(LO_RESULT));
        fixture
    }

    /// A fake plugin: records the call, then runs `body`.
    fn plugin(&self, name: &str, body: &str) {
        let log = self.log.display();
        let script = format!(
            "#!/bin/sh\n\
             cat > '{log}/{name}.'\"$CNI_COMMAND\"'.stdin'\n\
             env > '{log}/{name}.'\"$CNI_COMMAND\"'.env'\n\
             echo '{name}' \"$CNI_COMMAND\" >> '{log}/calls'\n\
             {body}\n"
        );
        let path = self.bin.join(name);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn conflist(&self, file: &str, text: &str) {
        std::fs::write(self.conf.join(file), text).unwrap();
    }

    fn config(&self) -> CniConfig {
        CniConfig {
            conf_dir: self.conf.clone(),
            bin_dirs: vec![self.bin.clone(), self.bin2.clone()],
            cache_dir: self.cache.clone(),
        }
    }

    fn manager(&self) -> CniManager {
        CniManager::new(self.config())
    }

    fn request(&self) -> CniRequest {
        CniRequest {
            sandbox_id: "sandbox1".into(),
            netns: self.netns.clone(),
            ifname: "eth0".into(),
            pod_name: "web-0".into(),
            pod_namespace: "shop".into(),
            pod_uid: "uid-123".into(),
            port_mappings: vec![PortMapping {
                host_port: 8080,
                container_port: 80,
                protocol: "tcp".into(),
                host_ip: String::new(),
            }],
            bandwidth: Some(Bandwidth {
                ingress_rate: 1000,
                ingress_burst: 2000,
                egress_rate: 0,
                egress_burst: 0,
            }),
        }
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.log.join("calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn clear_calls(&self) {
        let _ = std::fs::remove_file(self.log.join("calls"));
    }

    /// The config the plugin last got for `command`.
    fn stdin(&self, plugin: &str, command: &str) -> Value {
        let bytes = std::fs::read(self.log.join(format!("{plugin}.{command}.stdin"))).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    fn env(&self, plugin: &str, command: &str) -> HashMap<String, String> {
        std::fs::read_to_string(self.log.join(format!("{plugin}.{command}.env")))
            .unwrap()
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn cache_file(&self) -> PathBuf {
        self.cache.join("results/sandbox1.json")
    }
}

fn add_prints(result: &str) -> String {
    format!("if [ \"$CNI_COMMAND\" = ADD ]; then cat <<'EOF'\n{result}\nEOF\nfi")
}

fn add_fails(error: &str) -> String {
    format!("if [ \"$CNI_COMMAND\" = ADD ]; then echo '{error}'; exit 1; fi")
}

/// The calls without loopback's ADD, which runs beside the chain (so its place among the
/// chain's ADDs varies), after checking it ran once, before anything was deleted.
fn beside_loopback(calls: Vec<String>) -> Vec<String> {
    let at = calls
        .iter()
        .position(|c| c == "loopback ADD")
        .unwrap_or_else(|| panic!("no loopback ADD: {calls:?}"));
    let first_del = calls.iter().position(|c| c.ends_with(" DEL")).unwrap_or(calls.len());
    assert!(at < first_del, "loopback ADD after a DEL: {calls:?}");
    calls.into_iter().filter(|c| c != "loopback ADD").collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// A fixture with the three-plugin conflist; bandwidth passes its prevResult on.
fn three_plugins() -> Fixture {
    let f = Fixture::new();
    f.plugin("bridge", &add_prints(BRIDGE_RESULT));
    f.plugin("portmap", &add_prints(PORTMAP_RESULT));
    f.plugin("bandwidth", &add_prints(PORTMAP_RESULT));
    f.conflist("10-pods.conflist", CONFLIST);
    f
}

#[tokio::test]
async fn add_runs_loopback_beside_the_chain_of_prev_results() {
    let f = three_plugins();
    let result = f.manager().setup(&f.request()).await.unwrap();

    // Loopback runs beside the list, which runs in order.
    assert_eq!(
        beside_loopback(f.calls()),
        strings(&["bridge ADD", "portmap ADD", "bandwidth ADD"]),
        "the list in order"
    );
    let bridge = f.stdin("bridge", "ADD");
    assert_eq!(bridge["name"], "pods");
    assert_eq!(bridge["cniVersion"], "1.0.0");
    assert_eq!(bridge["bridge"], "b0");
    assert!(bridge.get("prevResult").is_none(), "the first plugin has no prevResult");
    let bridge_result: Value = serde_json::from_str(BRIDGE_RESULT).unwrap();
    assert_eq!(f.stdin("portmap", "ADD")["prevResult"], bridge_result);
    let portmap_result: Value = serde_json::from_str(PORTMAP_RESULT).unwrap();
    assert_eq!(f.stdin("bandwidth", "ADD")["prevResult"], portmap_result);

    assert_eq!(result.ips.len(), 2, "the last plugin's result is the network's");
    assert_eq!(
        result.pod_ips(),
        vec!["10.88.0.5".parse::<std::net::IpAddr>().unwrap(), "fd00::5".parse().unwrap()]
    );
    assert_eq!(f.stdin("loopback", "ADD")["type"], "loopback");
}

#[tokio::test]
async fn plugins_get_the_cni_environment() {
    let f = three_plugins();
    f.manager().setup(&f.request()).await.unwrap();
    let env = f.env("bridge", "ADD");
    assert_eq!(env["CNI_COMMAND"], "ADD");
    assert_eq!(env["CNI_CONTAINERID"], "sandbox1");
    assert_eq!(env["CNI_NETNS"], f.netns.display().to_string());
    assert_eq!(env["CNI_IFNAME"], "eth0");
    assert_eq!(env["CNI_PATH"], format!("{}:{}", f.bin.display(), f.bin2.display()));
    assert_eq!(
        env["CNI_ARGS"],
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;\
         K8S_POD_INFRA_CONTAINER_ID=sandbox1;K8S_POD_UID=uid-123"
    );
    assert!(env.contains_key("PATH"), "plugins such as portmap need the daemon's PATH for iptables");
    assert_eq!(f.env("loopback", "ADD")["CNI_IFNAME"], "lo");
}

#[tokio::test]
async fn runtime_config_carries_only_declared_capabilities() {
    let f = three_plugins();
    f.manager().setup(&f.request()).await.unwrap();
    assert!(f.stdin("bridge", "ADD").get("runtimeConfig").is_none());
    assert_eq!(
        f.stdin("portmap", "ADD")["runtimeConfig"],
        json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]})
    );
    assert_eq!(
        f.stdin("bandwidth", "ADD")["runtimeConfig"],
        json!({"bandwidth": {"ingressRate": 1000, "ingressBurst": 2000, "egressRate": 0, "egressBurst": 0}}),
        "a capability declared false is not passed"
    );
}

#[tokio::test]
async fn del_uses_the_cached_config_after_a_restart_and_a_config_change() {
    let f = three_plugins();
    let added = f.manager().setup(&f.request()).await.unwrap();
    f.clear_calls();

    // The conf dir changes and berthd restarts.
    std::fs::remove_file(f.conf.join("10-pods.conflist")).unwrap();
    f.plugin("other", "");
    f.conflist("05-other.conflist", r#"{"cniVersion":"1.0.0","name":"other","plugins":[{"type":"other"}]}"#);
    let manager = f.manager();
    assert_eq!(manager.cached_result("sandbox1"), Some(added), "pod IPs survive the restart");

    // The sandbox code may no longer know the port mappings: the cache does.
    let request = CniRequest { port_mappings: vec![], bandwidth: None, ..f.request() };
    manager.teardown(&request).await.unwrap();
    assert_eq!(f.calls(), strings(&["bandwidth DEL", "portmap DEL", "bridge DEL", "loopback DEL"]));
    let portmap_del = f.stdin("portmap", "DEL");
    assert_eq!(portmap_del["name"], "pods");
    assert_eq!(portmap_del["prevResult"], serde_json::from_str::<Value>(PORTMAP_RESULT).unwrap());
    assert_eq!(portmap_del["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
    assert_eq!(f.stdin("bridge", "DEL")["prevResult"]["ips"][1]["address"], "10.88.0.5/16");
    assert!(f.stdin("loopback", "DEL").get("prevResult").is_none(), "0.3.1 DEL has no prevResult");
    assert!(!f.cache_file().exists());
    assert_eq!(manager.cached_result("sandbox1"), None);

    // Again: no cache entry now, so the current config is used, and it succeeds.
    f.clear_calls();
    manager.teardown(&request).await.unwrap();
    assert_eq!(f.calls(), strings(&["other DEL", "loopback DEL"]));
}

#[tokio::test]
async fn del_without_a_cache_entry_uses_the_current_config() {
    let f = three_plugins();
    f.manager().teardown(&f.request()).await.unwrap();
    assert_eq!(f.calls(), strings(&["bandwidth DEL", "portmap DEL", "bridge DEL", "loopback DEL"]));
    let del = f.stdin("bridge", "DEL");
    assert!(del.get("prevResult").is_none());
    assert_eq!(f.env("bridge", "DEL")["CNI_NETNS"], f.netns.display().to_string());
    assert_eq!(f.stdin("portmap", "DEL")["runtimeConfig"]["portMappings"][0]["containerPort"], 80);
}

#[tokio::test]
async fn del_with_the_netns_gone_still_releases_the_address() {
    let f = three_plugins();
    let manager = f.manager();
    manager.setup(&f.request()).await.unwrap();
    f.clear_calls();
    std::fs::remove_file(&f.netns).unwrap();
    manager.teardown(&f.request()).await.unwrap();
    assert_eq!(
        f.calls(),
        strings(&["bandwidth DEL", "portmap DEL", "bridge DEL"]),
        "no loopback without a netns"
    );
    assert_eq!(f.env("bridge", "DEL")["CNI_NETNS"], "");
    assert!(!f.cache_file().exists());
}

#[tokio::test]
async fn del_failure_keeps_the_cache_for_a_retry_and_still_deletes_the_rest() {
    let f = three_plugins();
    let manager = f.manager();
    manager.setup(&f.request()).await.unwrap();
    f.clear_calls();
    f.plugin(
        "portmap",
        "if [ \"$CNI_COMMAND\" = DEL ]; then echo '{\"code\":999,\"msg\":\"iptables busy\"}'; exit 1; fi",
    );
    let err = manager.teardown(&f.request()).await.unwrap_err();
    assert!(err.to_string().contains("iptables busy"), "{err}");
    assert_eq!(f.calls(), strings(&["bandwidth DEL", "portmap DEL", "bridge DEL"]));
    assert!(f.cache_file().exists());
}

#[tokio::test]
async fn failed_add_deletes_what_was_added_and_reports_the_plugins_message() {
    let f = Fixture::new();
    f.plugin("bridge", &add_prints(BRIDGE_RESULT));
    f.plugin(
        "portmap",
        &add_fails(
            r#"{"cniVersion":"1.0.0","code":7,"msg":"failed to set up port 8080","details":"chain busy"}"#,
        ),
    );
    f.plugin("bandwidth", &add_prints(PORTMAP_RESULT));
    f.conflist("10-pods.conflist", CONFLIST);
    let err = f.manager().setup(&f.request()).await.unwrap_err();
    let CniError::Plugin { plugin, code, msg, details, .. } = &err else { panic!("{err:?}") };
    assert_eq!((plugin.as_str(), *code), ("portmap", 7));
    assert_eq!((msg.as_str(), details.as_str()), ("failed to set up port 8080", "chain busy"));
    let status = crate::CriError::from(err);
    assert!(status.message().contains("failed to set up port 8080; chain busy"), "{}", status.message());

    assert_eq!(
        beside_loopback(f.calls()),
        strings(&["bridge ADD", "portmap ADD", "portmap DEL", "bridge DEL", "loopback DEL"])
    );
    assert_eq!(f.stdin("bridge", "DEL")["prevResult"], serde_json::from_str::<Value>(BRIDGE_RESULT).unwrap());
    assert!(!f.cache_file().exists(), "a failed ADD leaves nothing to tear down");
}

#[tokio::test]
async fn failure_without_a_cni_error_reports_stderr() {
    let f = Fixture::new();
    f.plugin("bridge", "echo 'bridge: cannot open /dev/net' >&2; exit 3");
    f.conflist("10-pods.conf", r#"{"cniVersion":"1.0.0","name":"pods","type":"bridge"}"#);
    let err = f.manager().setup(&f.request()).await.unwrap_err();
    assert!(matches!(err, CniError::PluginFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("cannot open /dev/net"), "{err}");
}

#[tokio::test]
async fn missing_plugin_names_the_dirs_and_runs_nothing() {
    let f = Fixture::new();
    f.plugin("bridge", &add_prints(BRIDGE_RESULT));
    f.conflist("10-pods.conflist", CONFLIST);
    let err = f.manager().setup(&f.request()).await.unwrap_err();
    let CniError::PluginNotFound { plugin, dirs } = &err else { panic!("{err:?}") };
    assert_eq!(plugin, "portmap");
    assert_eq!(dirs, &vec![f.bin.clone(), f.bin2.clone()]);
    let message = err.to_string();
    assert!(
        message.contains(&f.bin.display().to_string()) && message.contains(&f.bin2.display().to_string())
    );
    assert_eq!(crate::CriError::from(err).code(), tonic::Code::FailedPrecondition);
    assert!(f.calls().is_empty());
}

#[tokio::test]
async fn no_config_is_a_failed_precondition() {
    let f = Fixture::new();
    let err = f.manager().setup(&f.request()).await.unwrap_err();
    assert!(matches!(err, CniError::NoConfig { .. }), "{err:?}");
    assert_eq!(crate::CriError::from(err).code(), tonic::Code::FailedPrecondition);
    // Nothing was set up, so stopping the pod must not fail.
    f.manager().teardown(&f.request()).await.unwrap();
}

#[tokio::test]
async fn a_plugin_that_hangs_is_killed_at_the_timeout() {
    let f = Fixture::new();
    let pid_file = f.log.join("sleep.pid");
    f.plugin("bridge", &format!("sleep 30 & echo $! > '{}'; wait", pid_file.display()));
    f.conflist("10-pods.conf", r#"{"cniVersion":"1.0.0","name":"pods","type":"bridge"}"#);
    let manager = f.manager().with_plugin_timeout(Duration::from_millis(500));
    let started = Instant::now();
    let err = manager.setup(&f.request()).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert!(matches!(err, CniError::Timeout { .. }), "{err:?}");
    assert_eq!(crate::CriError::from(err).code(), tonic::Code::DeadlineExceeded);

    // What the plugin started dies with it.
    let pid = std::fs::read_to_string(&pid_file).unwrap().trim().to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    while process_alive(&pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!process_alive(&pid), "the plugin's child {pid} survived");
}

fn process_alive(pid: &str) -> bool {
    // A killed child of the plugin may linger as a zombie until init reaps it.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
}

#[tokio::test]
async fn a_single_conf_is_run_as_a_list() {
    let f = Fixture::new();
    f.plugin("bridge", &add_prints(BRIDGE_RESULT.replace("1.0.0", "0.4.0").as_str()));
    f.conflist("20-b.conf", r#"{"cniVersion":"0.4.0","name":"second","type":"missing"}"#);
    f.conflist("10-a.conf", r#"{"cniVersion":"0.4.0","name":"single","type":"bridge","bridge":"b1"}"#);
    let result = f.manager().setup(&f.request()).await.unwrap();
    assert_eq!(result.cni_version, "0.4.0");
    assert_eq!(result.pod_ips(), vec!["10.88.0.5".parse::<std::net::IpAddr>().unwrap()]);
    let stdin = f.stdin("bridge", "ADD");
    assert_eq!((stdin["name"].as_str(), stdin["bridge"].as_str()), (Some("single"), Some("b1")));
}

#[tokio::test]
async fn check_runs_every_plugin_with_the_cached_result() {
    let f = three_plugins();
    let manager = f.manager();
    let err = manager.check(&f.request()).await.unwrap_err();
    assert!(matches!(err, CniError::NotCached { .. }), "{err:?}");
    manager.setup(&f.request()).await.unwrap();
    f.clear_calls();
    manager.check(&f.request()).await.unwrap();
    assert_eq!(f.calls(), strings(&["bridge CHECK", "portmap CHECK", "bandwidth CHECK"]));
    assert_eq!(
        f.stdin("bridge", "CHECK")["prevResult"],
        serde_json::from_str::<Value>(PORTMAP_RESULT).unwrap()
    );
}

#[tokio::test]
async fn an_unparseable_result_is_undone() {
    let f = Fixture::new();
    f.plugin("bridge", &add_prints("this is not json"));
    f.conflist("10-pods.conf", r#"{"cniVersion":"1.0.0","name":"pods","type":"bridge"}"#);
    let err = f.manager().setup(&f.request()).await.unwrap_err();
    assert!(matches!(err, CniError::InvalidResult { .. }), "{err:?}");
    assert_eq!(beside_loopback(f.calls()), strings(&["bridge ADD", "bridge DEL", "loopback DEL"]));
}

#[tokio::test]
async fn bad_sandbox_ids_are_refused() {
    let f = three_plugins();
    let request = CniRequest { sandbox_id: "../../etc".into(), ..f.request() };
    let err = f.manager().setup(&request).await.unwrap_err();
    assert_eq!(crate::CriError::from(err).code(), tonic::Code::InvalidArgument);
    assert!(f.calls().is_empty());
    assert_eq!(f.manager().cached_result("../../etc"), None);
}

#[test]
fn default_config_is_written_only_into_an_empty_conf_dir() {
    let f = Fixture::new();
    f.plugin("bridge", "");
    f.plugin("portmap", "");
    let manager = f.manager();
    let written = manager.ensure_default_config().unwrap();
    assert_eq!(written, Some(f.conf.join(DEFAULT_CONFIG_FILE)));
    let conflist: Value =
        serde_json::from_slice(&std::fs::read(f.conf.join(DEFAULT_CONFIG_FILE)).unwrap()).unwrap();
    assert_eq!(conflist["cniVersion"], "1.0.0");
    assert_eq!(conflist["name"], "berth");
    let types: Vec<&str> =
        conflist["plugins"].as_array().unwrap().iter().filter_map(|p| p["type"].as_str()).collect();
    assert_eq!(types, ["bridge", "portmap"], "bandwidth is not installed, so not configured");
    let bridge = &conflist["plugins"][0];
    assert_eq!(bridge["bridge"], "berth0");
    assert_eq!((bridge["isGateway"].as_bool(), bridge["ipMasq"].as_bool()), (Some(true), Some(true)));
    assert_eq!(bridge["hairpinMode"], true);
    assert_eq!(bridge["ipam"]["type"], "host-local");
    assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.88.0.0/16");
    assert_eq!(bridge["ipam"]["routes"][0]["dst"], "0.0.0.0/0");
    assert_eq!(conflist["plugins"][1]["capabilities"]["portMappings"], true);
    assert!(conflist.to_string().find("dataDir").is_none());

    assert!(manager.network_readiness().ready, "{}", manager.network_readiness().message);

    // A second call, or a dir that already has a config, leaves things alone.
    assert_eq!(manager.ensure_default_config().unwrap(), None);
    std::fs::remove_file(f.conf.join(DEFAULT_CONFIG_FILE)).unwrap();
    f.conflist("99-mine.conf", r#"{"name":"mine","type":"bridge"}"#);
    assert_eq!(manager.ensure_default_config().unwrap(), None);
    assert!(!f.conf.join(DEFAULT_CONFIG_FILE).exists());
}

#[test]
fn default_config_includes_bandwidth_when_installed_and_creates_the_conf_dir() {
    let f = Fixture::new();
    f.plugin("bandwidth", "");
    let config = CniConfig { conf_dir: f.conf.join("net.d"), ..f.config() };
    let written = CniManager::new(config).ensure_default_config().unwrap().unwrap();
    let conflist: Value = serde_json::from_slice(&std::fs::read(written).unwrap()).unwrap();
    let types: Vec<&str> =
        conflist["plugins"].as_array().unwrap().iter().filter_map(|p| p["type"].as_str()).collect();
    assert_eq!(types, ["bridge", "bandwidth"]);
    assert_eq!(conflist["plugins"][1]["capabilities"]["bandwidth"], true);
}

#[test]
fn default_network_knobs() {
    let network = DefaultNetwork {
        name: "t".into(),
        bridge: "tbr0".into(),
        subnet: "10.199.0.0/24".into(),
        ipam_data_dir: Some(Path::new("/tmp/ipam").into()),
    };
    let conflist = network.conflist(&[]);
    assert_eq!(conflist["plugins"][0]["bridge"], "tbr0");
    assert_eq!(conflist["plugins"][0]["ipam"]["dataDir"], "/tmp/ipam");
    assert_eq!(conflist["plugins"][0]["ipam"]["ranges"][0][0]["subnet"], "10.199.0.0/24");
}
