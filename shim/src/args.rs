//! The shim v2 command line, parsed the way Go's `flag` package does it.
//!
//! containerd runs `<shim> -namespace ns -address a -publish-binary b -id id [-debug] start|delete`.
//! `-x v`, `--x v`, `-x=v` and `--x=v` are all accepted; boolean flags take no value (or `=true`);
//! parsing stops at the first argument that is not a flag (the action) or after `--`.

use crate::error::{Error, Result};

/// What the command line asked for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Args {
    pub namespace: String,
    pub id: String,
    pub address: String,
    pub publish_binary: String,
    pub bundle: String,
    pub socket: String,
    pub debug: bool,
    pub version: bool,
    /// `start`, `delete`, or `None` for the daemonised server.
    pub action: Option<String>,
}

fn parse_bool(name: &str, v: &str) -> Result<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(Error::InvalidArgument(format!("invalid boolean value {v:?} for -{name}"))),
    }
}

/// Parses argv without the program name.
pub fn parse(argv: impl IntoIterator<Item = String>) -> Result<Args> {
    let mut out = Args::default();
    let mut it = argv.into_iter().peekable();
    while let Some(arg) = it.next() {
        if arg == "--" {
            out.action = it.next();
            break;
        }
        let flag = match arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) {
            Some(f) if !f.is_empty() && !f.starts_with('-') => f,
            _ => {
                // first non-flag: the action; Go stops parsing here.
                out.action = Some(arg);
                break;
            }
        };
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag, None),
        };
        match name {
            "debug" | "v" | "version" => {
                let v = match &inline {
                    Some(v) => parse_bool(name, v)?,
                    None => true,
                };
                if name == "debug" {
                    out.debug = v;
                } else {
                    out.version = v;
                }
                continue;
            }
            _ => {}
        }
        let value = match inline {
            Some(v) => v,
            None => {
                it.next().ok_or_else(|| Error::InvalidArgument(format!("flag needs an argument: -{name}")))?
            }
        };
        match name {
            "namespace" => out.namespace = value,
            "id" => out.id = value,
            "address" => out.address = value,
            "publish-binary" => out.publish_binary = value,
            "bundle" => out.bundle = value,
            "socket" => out.socket = value,
            other => {
                return Err(Error::InvalidArgument(format!("flag provided but not defined: -{other}")));
            }
        }
    }
    Ok(out)
}

impl Args {
    /// Fills what flags left empty from the environment (`NAMESPACE`, `GRPC_ADDRESS`), as newer
    /// containerd versions set them.
    pub fn with_env_fallback(mut self) -> Self {
        if self.namespace.is_empty() {
            self.namespace = std::env::var("NAMESPACE").unwrap_or_default();
        }
        if self.address.is_empty() {
            self.address = std::env::var("GRPC_ADDRESS").unwrap_or_default();
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(list: &[&str]) -> Result<Args> {
        parse(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn containerd_start_line() {
        let a = p(&[
            "-namespace",
            "k8s.io",
            "-address",
            "/run/containerd/containerd.sock",
            "-publish-binary",
            "/usr/bin/containerd",
            "-id",
            "abc",
            "-debug",
            "start",
        ])
        .unwrap();
        assert_eq!(a.namespace, "k8s.io");
        assert_eq!(a.address, "/run/containerd/containerd.sock");
        assert_eq!(a.publish_binary, "/usr/bin/containerd");
        assert_eq!(a.id, "abc");
        assert!(a.debug);
        assert_eq!(a.action.as_deref(), Some("start"));
    }

    #[test]
    fn go_flag_styles() {
        let a = p(&["--id=x", "-namespace=ns", "--bundle", "/b", "-debug=false", "delete"]).unwrap();
        assert_eq!(a.id, "x");
        assert_eq!(a.namespace, "ns");
        assert_eq!(a.bundle, "/b");
        assert!(!a.debug);
        assert_eq!(a.action.as_deref(), Some("delete"));
        assert!(p(&["-v"]).unwrap().version);
        assert!(p(&["--version"]).unwrap().version);
        // parsing stops at the action
        let a = p(&["-id", "x", "start", "-namespace", "late"]).unwrap();
        assert_eq!(a.namespace, "");
        // no action = server mode
        assert_eq!(p(&["-id", "x", "-socket", "/s"]).unwrap().action, None);
        assert_eq!(p(&["-id", "x", "--", "start"]).unwrap().action.as_deref(), Some("start"));
    }

    #[test]
    fn bad_flags() {
        assert!(p(&["-id"]).is_err());
        assert!(p(&["-bogus", "x"]).is_err());
        assert!(p(&["-debug=maybe"]).is_err());
    }
}
