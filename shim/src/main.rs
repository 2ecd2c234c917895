//! containerd-shim-berth-v2: berth's shim, one per container.
//!
//! The shim v2 command contract is `containerd-shim-berth-v2 [flags] start|delete`, and
//! `-v` for the version. The ttrpc task service it serves arrives with the shim and tasks
//! capability; until then `start` and `delete` fail with a message saying so, so a containerd
//! or berthd that tries to use this shim gets a clear error instead of a hang.

#![deny(unsafe_code)]

use std::process::ExitCode;

/// The shim v2 command line: Go-style flags (`-namespace ns`, `-id id`, `-address a`,
/// `-publish-binary b`, `-bundle b`, `-debug`) then an action.
#[derive(Debug, Default, PartialEq, Eq)]
struct ShimArgs {
    namespace: String,
    id: String,
    address: String,
    publish_binary: String,
    bundle: String,
    debug: bool,
    version: bool,
    action: Option<String>,
}

fn parse(args: impl IntoIterator<Item = String>) -> Result<ShimArgs, String> {
    let mut parsed = ShimArgs::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            parsed.action = Some(arg);
            continue;
        };
        let (name, inline) = match flag.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (flag, None),
        };
        let mut value =
            || inline.clone().or_else(|| args.next()).ok_or_else(|| format!("flag -{name} needs a value"));
        match name {
            "namespace" => parsed.namespace = value()?,
            "id" => parsed.id = value()?,
            "address" => parsed.address = value()?,
            "publish-binary" => parsed.publish_binary = value()?,
            "bundle" => parsed.bundle = value()?,
            "socket" | "ttrpc-address" => {
                value()?;
            }
            "debug" => parsed.debug = true,
            "v" | "version" => parsed.version = true,
            other => return Err(format!("unknown flag -{other}")),
        }
    }
    Ok(parsed)
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("containerd-shim-berth-v2: {e}");
            return ExitCode::from(2);
        }
    };
    if args.version {
        println!("containerd-shim-berth-v2:\n  Version: {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    match args.action.as_deref() {
        Some(action @ ("start" | "delete")) => {
            eprintln!(
                "containerd-shim-berth-v2: {action} for {}/{}: this berth shim cannot run tasks yet; \
                 that arrives with the shim and tasks capability",
                args.namespace, args.id
            );
            ExitCode::FAILURE
        }
        Some(other) => {
            eprintln!("containerd-shim-berth-v2: unknown action {other:?} (expected start or delete)");
            ExitCode::from(2)
        }
        None => {
            eprintln!("containerd-shim-berth-v2: no action given (expected start or delete)");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_the_shim_v2_command_line() {
        let parsed = parse(args(&[
            "-namespace",
            "k8s.io",
            "-address",
            "/run/berth/berth.sock",
            "-publish-binary",
            "/usr/bin/berthd",
            "-id",
            "abc",
            "-debug",
            "start",
        ]))
        .unwrap();
        assert_eq!(parsed.namespace, "k8s.io");
        assert_eq!(parsed.id, "abc");
        assert_eq!(parsed.address, "/run/berth/berth.sock");
        assert!(parsed.debug);
        assert_eq!(parsed.action.as_deref(), Some("start"));
        assert!(parse(args(&["-v"])).unwrap().version);
        assert!(parse(args(&["-id"])).is_err());
        assert!(parse(args(&["-bogus", "x"])).is_err());
        assert_eq!(parse(args(&["--id=x", "delete"])).unwrap().id, "x");
    }
}
