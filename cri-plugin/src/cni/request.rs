//! What the sandbox code asks for: one pod's attachment to the network, and the runtime
//! arguments plugins get as `CNI_ARGS` and capabilities.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::bandwidth::Bandwidth;
use super::error::CniError;

/// One pod sandbox's network attachment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CniRequest {
    /// CNI_CONTAINERID, also the cache key.
    pub sandbox_id: String,
    /// CNI_NETNS: the pinned network namespace.
    pub netns: PathBuf,
    /// CNI_IFNAME inside the pod, normally `eth0`.
    pub ifname: String,
    pub pod_name: String,
    pub pod_namespace: String,
    pub pod_uid: String,
    /// The `portMappings` capability.
    pub port_mappings: Vec<PortMapping>,
    /// The `bandwidth` capability.
    pub bandwidth: Option<Bandwidth>,
}

/// A CRI port mapping, in the shape of the `portMappings` capability.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: i32,
    pub container_port: i32,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    #[serde(rename = "hostIP", default, skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

impl CniRequest {
    /// Ids become file names in the cache and plugins reject odd ones; refuse them up front.
    pub(crate) fn validate(&self) -> Result<(), CniError> {
        validate_sandbox_id(&self.sandbox_id)?;
        if self.ifname.is_empty() || self.ifname.len() > 15 || self.ifname.contains(['/', ':']) {
            return Err(CniError::InvalidRequest(format!("invalid interface name {:?}", self.ifname)));
        }
        Ok(())
    }

    /// CNI_ARGS as kubelet's network plugins expect them (what containerd sends).
    pub(crate) fn cni_args(&self) -> Vec<(String, String)> {
        [
            ("IgnoreUnknown", "1"),
            ("K8S_POD_NAMESPACE", self.pod_namespace.as_str()),
            ("K8S_POD_NAME", self.pod_name.as_str()),
            ("K8S_POD_INFRA_CONTAINER_ID", self.sandbox_id.as_str()),
            ("K8S_POD_UID", self.pod_uid.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// The capability arguments; plugins see only those they declare.
    pub(crate) fn capability_args(&self) -> Map<String, Value> {
        let mut args = Map::new();
        // Mappings without a host port only document the container port (containerd skips them).
        let mappings: Vec<PortMapping> = self
            .port_mappings
            .iter()
            .filter(|m| m.host_port > 0)
            .map(|m| PortMapping { protocol: m.protocol.to_ascii_lowercase(), ..m.clone() })
            .collect();
        if !mappings.is_empty()
            && let Ok(value) = serde_json::to_value(mappings)
        {
            args.insert("portMappings".into(), value);
        }
        if let Some(bandwidth) = &self.bandwidth
            && let Ok(value) = serde_json::to_value(bandwidth)
        {
            args.insert("bandwidth".into(), value);
        }
        args
    }
}

pub(crate) fn validate_sandbox_id(id: &str) -> Result<(), CniError> {
    let valid = !id.is_empty()
        && id.len() <= 256
        && id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid { Ok(()) } else { Err(CniError::InvalidRequest(format!("invalid sandbox id {id:?}"))) }
}

/// `K=V;K=V`, the CNI_ARGS format.
pub(crate) fn join_cni_args(args: &[(String, String)]) -> String {
    args.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(";")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn capability_args_skip_mappings_without_host_port_and_lowercase_protocols() {
        let request = CniRequest {
            port_mappings: vec![
                PortMapping {
                    host_port: 8080,
                    container_port: 80,
                    protocol: "TCP".into(),
                    host_ip: String::new(),
                },
                PortMapping {
                    host_port: 0,
                    container_port: 53,
                    protocol: "udp".into(),
                    host_ip: String::new(),
                },
                PortMapping {
                    host_port: 5353,
                    container_port: 53,
                    protocol: "udp".into(),
                    host_ip: "127.0.0.1".into(),
                },
            ],
            ..CniRequest::default()
        };
        assert_eq!(
            Value::Object(request.capability_args()),
            json!({"portMappings": [
                {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"}
            ]})
        );
        assert!(CniRequest::default().capability_args().is_empty());
    }

    #[test]
    fn sandbox_ids_must_be_plain() {
        assert!(validate_sandbox_id("0123abcdef").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "a b"] {
            assert!(validate_sandbox_id(bad).is_err(), "{bad}");
        }
    }
}
