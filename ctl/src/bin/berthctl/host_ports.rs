//! Whether the host ports `run -p` asks for are free, checked before the pod is made, as
//! docker checks its port bindings. CNI's portmap plugin only adds DNAT rules: a port another
//! pod maps, or a process on the node listens on, would be shared silently, the connections
//! going one way or the other. So berthctl refuses a port that is
//!
//! * mapped by another ready pod berthctl made (its pod carries [`PORTS_ANNOTATION`]), or
//! * in use on this node (binding it fails with EADDRINUSE).

use std::net::{IpAddr, Ipv4Addr};

use berth_proto::runtime::v1 as cri;
use tonic::transport::Channel;

use crate::shared::runtime_client;

/// The pod annotation listing the host ports `berthctl run` mapped: `[IP:]PORT/PROTOCOL`,
/// comma-separated.
pub const PORTS_ANNOTATION: &str = "io.berth.berthctl.ports";

/// One host port, as a mapping claims it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostPort {
    /// Empty: every address.
    ip: String,
    port: i32,
    protocol: &'static str,
}

impl HostPort {
    fn of(mapping: &cri::PortMapping) -> Option<Self> {
        let protocol = match cri::Protocol::try_from(mapping.protocol) {
            Ok(cri::Protocol::Udp) => "udp",
            Ok(cri::Protocol::Sctp) => "sctp",
            _ => "tcp",
        };
        (mapping.host_port > 0).then(|| Self {
            ip: mapping.host_ip.clone(),
            port: mapping.host_port,
            protocol,
        })
    }

    fn parse(text: &str) -> Option<Self> {
        let (address, protocol) = text.trim().rsplit_once('/')?;
        let protocol = ["tcp", "udp", "sctp"].into_iter().find(|p| *p == protocol)?;
        let (ip, port) = address.rsplit_once(':').unwrap_or(("", address));
        Some(Self { ip: ip.to_string(), port: port.parse().ok()?, protocol })
    }

    /// Whether two claims collide: one port and protocol, and addresses that overlap.
    fn collides(&self, other: &HostPort) -> bool {
        let every = |ip: &str| ip.is_empty() || ip.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified());
        self.port == other.port
            && self.protocol == other.protocol
            && (every(&self.ip) || every(&other.ip) || self.ip == other.ip)
    }
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.ip.is_empty() {
            write!(f, "{}/{}", self.port, self.protocol)
        } else {
            write!(f, "{}:{}/{}", self.ip, self.port, self.protocol)
        }
    }
}

/// The annotation's value for a pod mapping `mappings`; `None` when none has a host port.
pub fn annotation(mappings: &[cri::PortMapping]) -> Option<String> {
    let ports: Vec<String> = mappings.iter().filter_map(HostPort::of).map(|p| p.to_string()).collect();
    (!ports.is_empty()).then(|| ports.join(","))
}

/// Refuses (AlreadyExists, naming the holder) a host port of `mappings` that another ready
/// pod maps or a process on this node holds.
pub async fn ensure_free(channel: &Channel, mappings: &[cri::PortMapping]) -> anyhow::Result<()> {
    let wanted: Vec<HostPort> = mappings.iter().filter_map(HostPort::of).collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let ready = cri::PodSandboxStateValue { state: cri::PodSandboxState::SandboxReady as i32 };
    let filter = cri::PodSandboxFilter { state: Some(ready), ..Default::default() };
    let pods = runtime_client(channel)
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: Some(filter) })
        .await?
        .into_inner()
        .items;
    for port in &wanted {
        if let Some(pod) = pods.iter().find(|pod| mapped_by(pod).iter().any(|theirs| theirs.collides(port))) {
            let metadata = pod.metadata.clone().unwrap_or_default();
            return Err(tonic::Status::already_exists(format!(
                "host port {port} is taken by pod {}/{} ({})",
                metadata.namespace, metadata.name, pod.id
            ))
            .into());
        }
        if in_use_on_this_node(port) {
            return Err(tonic::Status::already_exists(format!(
                "host port {port} is in use on this node: a process listens on it"
            ))
            .into());
        }
    }
    Ok(())
}

/// The host ports a pod's annotation says it maps.
fn mapped_by(pod: &cri::PodSandbox) -> Vec<HostPort> {
    let Some(list) = pod.annotations.get(PORTS_ANNOTATION) else { return Vec::new() };
    list.split(',').filter_map(HostPort::parse).collect()
}

/// Whether binding the port fails because something holds it. Other failures (an address
/// this node does not have) are for the network plugin to report.
fn in_use_on_this_node(port: &HostPort) -> bool {
    let ip = port.ip.parse::<IpAddr>().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let Ok(number) = u16::try_from(port.port) else { return false };
    let bound = match port.protocol {
        "tcp" => std::net::TcpListener::bind((ip, number)).map(drop),
        "udp" => std::net::UdpSocket::bind((ip, number)).map(drop),
        _ => return false,
    };
    bound.is_err_and(|e| e.kind() == std::io::ErrorKind::AddrInUse)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(host_ip: &str, host_port: i32, protocol: cri::Protocol) -> cri::PortMapping {
        cri::PortMapping { protocol: protocol as i32, container_port: 80, host_port, host_ip: host_ip.into() }
    }

    #[test]
    fn the_annotation_round_trips_and_skips_ports_without_a_host_port() {
        let mappings = [
            mapping("", 8080, cri::Protocol::Tcp),
            mapping("127.0.0.1", 53, cri::Protocol::Udp),
            mapping("", 0, cri::Protocol::Tcp),
        ];
        let text = annotation(&mappings).unwrap_or_default();
        assert_eq!(text, "8080/tcp,127.0.0.1:53/udp");
        let parsed: Vec<HostPort> = text.split(',').filter_map(HostPort::parse).collect();
        let expected: Vec<HostPort> = mappings.iter().filter_map(HostPort::of).collect();
        assert_eq!(parsed, expected);
        assert_eq!(annotation(&[mapping("", 0, cri::Protocol::Tcp)]), None);
        assert_eq!(HostPort::parse("8080/icmp"), None);
        assert_eq!(HostPort::parse("http/tcp"), None);
    }

    #[test]
    fn claims_collide_on_one_port_protocol_and_overlapping_address() {
        let port = |text: &str| HostPort::parse(text).unwrap_or_else(|| panic!("{text}"));
        let table = [
            ("8080/tcp", "8080/tcp", true),
            ("8080/tcp", "0.0.0.0:8080/tcp", true),
            ("127.0.0.1:8080/tcp", "8080/tcp", true),
            ("127.0.0.1:8080/tcp", "127.0.0.1:8080/tcp", true),
            ("127.0.0.1:8080/tcp", "127.0.0.2:8080/tcp", false),
            ("8080/tcp", "8080/udp", false),
            ("8080/tcp", "8081/tcp", false),
        ];
        for (a, b, collide) in table {
            assert_eq!(port(a).collides(&port(b)), collide, "{a} {b}");
            assert_eq!(port(b).collides(&port(a)), collide, "{b} {a}");
        }
    }

    #[test]
    fn a_port_a_process_listens_on_is_in_use() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = listener.local_addr().unwrap().port();
        let port = |ip: &str, protocol| HostPort { ip: ip.into(), port: i32::from(taken), protocol };
        assert!(in_use_on_this_node(&port("127.0.0.1", "tcp")));
        assert!(in_use_on_this_node(&port("", "tcp")), "every address includes the listener's");
        drop(listener);
        assert!(!in_use_on_this_node(&port("127.0.0.1", "tcp")));
    }
}
