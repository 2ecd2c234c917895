//! Which WebSocket sub-protocols berth speaks, and the choices a handshake makes.

use percent_encoding::percent_decode_str;

use super::Error;
use super::frame::Codec;
use crate::session::RemoteCommandProtocol;

/// The channels of an exec or attach: 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize (JSON
/// `TerminalSize`).
pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;

/// Sub-protocols for exec and attach, newest first. [`select_protocol`] prefers earlier ones.
///
/// `v5` is the only one with a stdin close; `v4` and later report exit codes as a `Status`.
/// The `base64` variants carry each frame as text, for clients that cannot send binary.
pub const EXEC_PROTOCOLS: &[&str] = &[
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
    "base64.channel.k8s.io",
];

/// Sub-protocols for port-forward, as kubelet's streaming server speaks them over WebSocket.
///
/// `portforward.k8s.io` is the SPDY protocol's name and is not offered over WebSocket.
pub const PORT_FORWARD_PROTOCOLS: &[&str] = &["v4.channel.k8s.io", "v4.base64.channel.k8s.io"];

/// Picks the sub-protocol for a handshake: the first of `supported` that the client offered.
///
/// `offered` are the client's `Sec-WebSocket-Protocol` values (each may be a comma-separated
/// list). `Ok(None)` means the client offered none: upstream then speaks the unversioned
/// binary protocol, which the serve functions take as the name `""`. A client that offered
/// only protocols berth does not speak gets [`Error::UnsupportedProtocol`].
pub fn select_protocol<'a>(
    offered: impl IntoIterator<Item = &'a str>,
    supported: &[&'static str],
) -> Result<Option<&'static str>, Error> {
    let offers: Vec<&str> = offered
        .into_iter()
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if offers.is_empty() {
        return Ok(None);
    }
    supported
        .iter()
        .find(|name| offers.contains(name))
        .map(|name| Some(*name))
        .ok_or_else(|| Error::UnsupportedProtocol(offers.join(", ")))
}

/// The ports a WebSocket port-forward asks for: every `port` query value, each a
/// comma-separated list of ports from 1 to 65535 (kubelet's rules).
pub fn ports_from_query(query: &str) -> Result<Vec<u16>, Error> {
    let mut ports = Vec::new();
    for pair in query.split('&') {
        let Some(("port", value)) = pair.split_once('=') else { continue };
        let value = percent_decode_str(value).decode_utf8_lossy();
        if value.is_empty() {
            return Err(Error::InvalidPort(String::new()));
        }
        for text in value.split(',') {
            match text.trim().parse::<u16>() {
                Ok(port) if port > 0 => ports.push(port),
                _ => return Err(Error::InvalidPort(text.to_owned())),
            }
        }
    }
    if ports.is_empty() {
        return Err(Error::NoPorts);
    }
    Ok(ports)
}

/// The remotecommand version and frame codec a negotiated exec sub-protocol name stands for.
///
/// The unversioned names (and no name at all) behave as kubelet's pre-v4 WebSocket server:
/// errors as text, all five channels open.
pub fn exec_protocol(name: &str) -> Result<(RemoteCommandProtocol, Codec), Error> {
    match name {
        "" => Ok((RemoteCommandProtocol::V1, Codec::Binary)),
        "base64.channel.k8s.io" => Ok((RemoteCommandProtocol::V1, Codec::Base64)),
        "v4.base64.channel.k8s.io" => Ok((RemoteCommandProtocol::V4, Codec::Base64)),
        _ => RemoteCommandProtocol::from_name(name)
            .map(|version| (version, Codec::Binary))
            .ok_or_else(|| Error::UnsupportedProtocol(name.to_owned())),
    }
}

/// The frame codec of a negotiated port-forward sub-protocol name.
pub fn port_forward_codec(name: &str) -> Result<Codec, Error> {
    match name {
        "" | "v4.channel.k8s.io" => Ok(Codec::Binary),
        "v4.base64.channel.k8s.io" => Ok(Codec::Base64),
        _ => Err(Error::UnsupportedProtocol(name.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_prefers_the_newest_offered() {
        let offered = ["v4.channel.k8s.io, v5.channel.k8s.io", "channel.k8s.io"];
        assert_eq!(select_protocol(offered, EXEC_PROTOCOLS).unwrap(), Some("v5.channel.k8s.io"));
        assert_eq!(
            select_protocol(["base64.channel.k8s.io"], EXEC_PROTOCOLS).unwrap(),
            Some("base64.channel.k8s.io")
        );
        assert_eq!(select_protocol([], EXEC_PROTOCOLS).unwrap(), None);
        assert!(matches!(
            select_protocol(["v9.channel.k8s.io"], EXEC_PROTOCOLS),
            Err(Error::UnsupportedProtocol(offer)) if offer == "v9.channel.k8s.io"
        ));
        assert!(select_protocol(["v5.channel.k8s.io"], PORT_FORWARD_PROTOCOLS).is_err());
    }

    #[test]
    fn names_map_to_versions_and_codecs() {
        assert_eq!(exec_protocol("").unwrap(), (RemoteCommandProtocol::V1, Codec::Binary));
        assert_eq!(
            exec_protocol("v4.base64.channel.k8s.io").unwrap(),
            (RemoteCommandProtocol::V4, Codec::Base64)
        );
        assert_eq!(exec_protocol("v5.channel.k8s.io").unwrap(), (RemoteCommandProtocol::V5, Codec::Binary));
        assert!(exec_protocol("portforward.k8s.io").is_err());
        assert_eq!(port_forward_codec("v4.base64.channel.k8s.io").unwrap(), Codec::Base64);
    }

    #[test]
    fn ports_from_repeated_and_listed_values() {
        assert_eq!(ports_from_query("port=80&x=1&port=8080%2C9090").unwrap(), vec![80, 8080, 9090]);
        assert!(matches!(ports_from_query("x=1"), Err(Error::NoPorts)));
        assert!(matches!(ports_from_query("port=0"), Err(Error::InvalidPort(p)) if p == "0"));
        assert!(matches!(ports_from_query("port=70000"), Err(Error::InvalidPort(_))));
        assert!(matches!(ports_from_query("port="), Err(Error::InvalidPort(_))));
    }
}
