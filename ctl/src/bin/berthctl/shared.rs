//! What the commands share: the CRI client, `key=value` flags and exit codes.

use anyhow::bail;
use berth_proto::runtime::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

/// `key=value` from the command line.
pub fn parse_key_value(pair: &str) -> anyhow::Result<(String, String)> {
    match pair.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => bail!("{pair:?} is not key=value"),
    }
}

/// The CRI client, with kubelet's 16 MiB message limit.
pub fn runtime_client(channel: &Channel) -> RuntimeServiceClient<Channel> {
    RuntimeServiceClient::new(channel.clone())
        .max_decoding_message_size(16 << 20)
        .max_encoding_message_size(16 << 20)
}

/// A container's or process's exit code as a process exit code (the low 8 bits, as a shell
/// sees it).
pub fn exit_code(code: i32) -> u8 {
    (code & 0xff) as u8
}

#[cfg(test)]
mod tests {
    #[test]
    fn key_values() {
        assert_eq!(super::parse_key_value("a=b=c").unwrap(), ("a".to_string(), "b=c".to_string()));
        assert!(super::parse_key_value("=v").is_err());
        assert!(super::parse_key_value("novalue").is_err());
    }
}
