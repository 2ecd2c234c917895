//! CNI results: what a network's last plugin printed for ADD, in the 1.0 shape.
//!
//! 0.3.0 through 1.1.0 results share the fields berth reads (`interfaces`, `ips`, `routes`,
//! `dns`); 0.1.0/0.2.0 results (`ip4`, `ip6`) are converted.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::config::version_at_least;

/// The outcome of a network ADD.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CniResult {
    #[serde(default)]
    pub cni_version: String,
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub dns: Dns,
    /// The pod's interface the request named (CNI_IFNAME); not part of the plugin's output.
    #[serde(skip)]
    pub ifname: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The netns path for interfaces inside the pod; absent for host-side ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IpConfig {
    /// Address with prefix length, e.g. `10.88.0.5/16`.
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Route {
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl IpConfig {
    /// The address without its prefix length.
    pub fn ip(&self) -> Option<IpAddr> {
        let address = self.address.split_once('/').map_or(self.address.as_str(), |(ip, _)| ip);
        address.parse().ok()
    }
}

/// A 0.1.0/0.2.0 result's `ip4`/`ip6`.
#[derive(Deserialize)]
struct LegacyIp {
    ip: String,
    #[serde(default)]
    gateway: Option<String>,
    #[serde(default)]
    routes: Vec<Route>,
}

#[derive(Deserialize)]
struct LegacyResult {
    #[serde(default)]
    ip4: Option<LegacyIp>,
    #[serde(default)]
    ip6: Option<LegacyIp>,
    #[serde(default)]
    dns: Dns,
}

impl CniResult {
    /// Parses a plugin's result; `ifname` is the pod interface the request asked for.
    pub fn from_value(value: &Value, ifname: &str) -> Result<Self, String> {
        let version = value.get("cniVersion").and_then(Value::as_str).unwrap_or("0.1.0").to_string();
        let mut result = if version_at_least(&version, (0, 3, 0)) {
            Self::deserialize(value).map_err(|e| format!("cniVersion {version} result: {e}"))?
        } else {
            let legacy =
                LegacyResult::deserialize(value).map_err(|e| format!("cniVersion {version} result: {e}"))?;
            let mut result = Self { cni_version: version.clone(), dns: legacy.dns, ..Self::default() };
            for ip in [legacy.ip4, legacy.ip6].into_iter().flatten() {
                result.ips.push(IpConfig { address: ip.ip, gateway: ip.gateway, interface: None });
                result.routes.extend(ip.routes);
            }
            result
        };
        if result.ips.iter().any(|ip| ip.ip().is_none()) {
            return Err(format!("cniVersion {version} result has an invalid address"));
        }
        result.cni_version = version;
        result.ifname = ifname.to_string();
        Ok(result)
    }

    /// The pod's addresses: those on `ifname` (or every address, when the result ties none to an
    /// interface), IPv4 first.
    pub fn pod_ips(&self) -> Vec<IpAddr> {
        let any_tied = self.ips.iter().any(|ip| ip.interface.is_some());
        let on_pod_interface = |ip: &&IpConfig| match ip.interface {
            Some(index) => self.interfaces.get(index).is_some_and(|i| i.name == self.ifname),
            None => !any_tied,
        };
        let mut ips: Vec<IpAddr> =
            self.ips.iter().filter(on_pod_interface).filter_map(IpConfig::ip).collect();
        ips.sort_by_key(|ip| ip.is_ipv6());
        ips
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_a_1_0_0_bridge_result() {
        let value = json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "berth0", "mac": "aa:bb:cc:dd:ee:01"},
                {"name": "veth1234", "mac": "aa:bb:cc:dd:ee:02"},
                {"name": "eth0", "mac": "aa:bb:cc:dd:ee:03", "sandbox": "/run/berth/netns/x"}
            ],
            "ips": [
                {"address": "fd00::5/64", "gateway": "fd00::1", "interface": 2},
                {"address": "10.88.0.5/16", "gateway": "10.88.0.1", "interface": 2},
                {"address": "10.88.0.1/16", "interface": 0}
            ],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {}
        });
        let result = CniResult::from_value(&value, "eth0").unwrap();
        assert_eq!(result.interfaces[2].sandbox.as_deref(), Some("/run/berth/netns/x"));
        assert_eq!(result.ips[1].gateway.as_deref(), Some("10.88.0.1"));
        assert_eq!(result.routes, vec![Route { dst: "0.0.0.0/0".into(), gw: None }]);
        assert_eq!(
            result.pod_ips(),
            vec!["10.88.0.5".parse::<IpAddr>().unwrap(), "fd00::5".parse().unwrap()]
        );
    }

    #[test]
    fn parses_a_0_4_0_result_with_extra_fields() {
        let value = json!({
            "cniVersion": "0.4.0",
            "interfaces": [{"name": "eth0", "sandbox": "/proc/1/ns/net"}],
            "ips": [{"version": "4", "address": "10.1.2.3/24", "gateway": "10.1.2.1", "interface": 0}],
            "dns": {"nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"]}
        });
        let result = CniResult::from_value(&value, "eth0").unwrap();
        assert_eq!(result.cni_version, "0.4.0");
        assert_eq!(result.dns.nameservers, vec!["10.96.0.10"]);
        assert_eq!(result.pod_ips(), vec!["10.1.2.3".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn converts_a_0_2_0_result() {
        let value = json!({
            "cniVersion": "0.2.0",
            "ip4": {"ip": "10.0.0.7/8", "gateway": "10.0.0.1", "routes": [{"dst": "0.0.0.0/0"}]},
            "ip6": {"ip": "2001:db8::7/64"}
        });
        let result = CniResult::from_value(&value, "eth0").unwrap();
        assert_eq!(result.ips.len(), 2);
        assert_eq!(result.routes.len(), 1);
        assert_eq!(
            result.pod_ips(),
            vec!["10.0.0.7".parse::<IpAddr>().unwrap(), "2001:db8::7".parse().unwrap()]
        );
    }

    #[test]
    fn refuses_garbage() {
        assert!(
            CniResult::from_value(&json!({"cniVersion":"1.0.0","ips":[{"address":"nope"}]}), "eth0").is_err()
        );
        assert!(CniResult::from_value(&json!({"cniVersion":"1.0.0","ips":"x"}), "eth0").is_err());
    }

    #[test]
    fn addresses_on_other_interfaces_are_not_pod_ips() {
        let value = json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0"}, {"name": "net1"}],
            "ips": [{"address": "192.168.1.2/24", "interface": 1}]
        });
        assert!(CniResult::from_value(&value, "eth0").unwrap().pod_ips().is_empty());
    }
}
