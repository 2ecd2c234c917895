//! Runtime options: `containerd.runc.v1.Options` arriving Any-packed in `Create.options` or on
//! stdin at `start`, persisted as `<bundle>/options.json` (+ `<bundle>/runtime`, the binary
//! name) so the `delete` action can find the runtime and its root later.

use std::path::Path;

use containerd_shim_protos::protobuf::{Message, well_known_types::any::Any};
use containerd_shim_protos::shim::oci::Options as RuncOptions;
use serde::{Deserialize, Serialize};

use crate::error::{IoContext, Result};
use crate::util;

pub const RUNC_OPTIONS: &str = "containerd.runc.v1.Options";
pub const RUNTIME_OPTIONS: &str = "runtimeoptions.v1.Options";
pub const DEFAULT_RUNTIME: &str = "runc";
/// containerd's default `--root` parent; the namespace is appended.
pub const DEFAULT_RUNC_ROOT: &str = "/run/containerd/runc";

/// The default `--root` parent for a daemon at `address`: `<dir of address>/runc`, so under
/// containerd it is `/run/containerd/runc` and under berthd `/run/berth/runc`.
pub fn default_root(address: &str) -> String {
    let addr = address.strip_prefix("unix://").unwrap_or(address);
    match Path::new(addr).parent() {
        Some(dir) if addr.starts_with('/') && dir != Path::new("/") => format!("{}/runc", dir.display()),
        _ => DEFAULT_RUNC_ROOT.to_string(),
    }
}

/// The options the shim acts on (the subset of `containerd.runc.v1.Options` that matters).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Options {
    pub no_pivot_root: bool,
    pub no_new_keyring: bool,
    pub shim_cgroup: String,
    pub io_uid: u32,
    pub io_gid: u32,
    pub binary_name: String,
    pub root: String,
    pub systemd_cgroup: bool,
    pub criu_image_path: String,
    pub criu_work_path: String,
}

impl From<RuncOptions> for Options {
    fn from(o: RuncOptions) -> Self {
        Options {
            no_pivot_root: o.no_pivot_root,
            no_new_keyring: o.no_new_keyring,
            shim_cgroup: o.shim_cgroup,
            io_uid: o.io_uid,
            io_gid: o.io_gid,
            binary_name: o.binary_name,
            root: o.root,
            systemd_cgroup: o.systemd_cgroup,
            criu_image_path: o.criu_image_path,
            criu_work_path: o.criu_work_path,
        }
    }
}

impl Options {
    /// Decodes an Any; unknown types (e.g. `runtimeoptions.v1.Options`) yield the defaults
    /// with a log line, never an error.
    pub fn from_any(any: Option<&Any>) -> Options {
        let Some(any) = any else { return Options::default() };
        if any.type_url.is_empty() && any.value.is_empty() {
            return Options::default();
        }
        match util::type_name(&any.type_url) {
            RUNC_OPTIONS => match RuncOptions::parse_from_bytes(&any.value) {
                Ok(o) => o.into(),
                Err(e) => {
                    warn!("ignoring undecodable {RUNC_OPTIONS}: {e}");
                    Options::default()
                }
            },
            RUNTIME_OPTIONS => {
                info!("ignoring {RUNTIME_OPTIONS} (no shim config file is read)");
                Options::default()
            }
            other => {
                info!("ignoring runtime options of unknown type {other:?}");
                Options::default()
            }
        }
    }

    /// Decodes the raw bytes of a protobuf Any (what containerd writes on `start`'s stdin).
    pub fn from_any_bytes(data: &[u8]) -> Options {
        if data.is_empty() {
            return Options::default();
        }
        match Any::parse_from_bytes(data) {
            Ok(a) => Options::from_any(Some(&a)),
            Err(e) => {
                info!("ignoring undecodable options on stdin: {e}");
                Options::default()
            }
        }
    }

    pub fn binary(&self) -> &str {
        if self.binary_name.is_empty() { DEFAULT_RUNTIME } else { &self.binary_name }
    }

    /// runc's `--root`: `<root>/<namespace>`, `root` defaulting to `default_root`.
    pub fn runtime_root(&self, default_root: &str, namespace: &str) -> String {
        let root = if self.root.is_empty() { default_root } else { self.root.as_str() };
        format!("{}/{}", root.trim_end_matches('/'), namespace)
    }

    pub fn save(&self, bundle: &Path) -> Result<()> {
        let json = serde_json::to_vec(self).map_err(|e| crate::error::Error::Other(e.to_string()))?;
        util::replace_file(&bundle.join("options.json"), &json)?;
        util::replace_file(&bundle.join("runtime"), self.binary().as_bytes())
    }

    /// Reads what [`Options::save`] wrote; missing files give the defaults.
    pub fn load(bundle: &Path) -> Result<Options> {
        let p = bundle.join("options.json");
        let mut o = match std::fs::read(&p) {
            Ok(data) => serde_json::from_slice(&data).unwrap_or_default(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Options::default(),
            Err(e) => return Err(e).ctx(|| format!("read {}", p.display())),
        };
        if o.binary_name.is_empty()
            && let Ok(rt) = std::fs::read_to_string(bundle.join("runtime"))
            && !rt.trim().is_empty()
        {
            o.binary_name = rt.trim().to_string();
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_runc_options() {
        let mut o = RuncOptions::new();
        o.binary_name = "crun".into();
        o.root = "/run/berth/runc".into();
        o.systemd_cgroup = true;
        o.io_uid = 1000;
        let any = util::any(RUNC_OPTIONS, &o).unwrap();
        let d = Options::from_any(Some(&any));
        assert_eq!(d.binary(), "crun");
        assert!(d.systemd_cgroup);
        assert_eq!(d.io_uid, 1000);
        assert_eq!(d.runtime_root(DEFAULT_RUNC_ROOT, "k8s.io"), "/run/berth/runc/k8s.io");
        // with a googleapis prefix, from stdin bytes
        let mut any2 = any.clone();
        any2.type_url = format!("type.googleapis.com/{RUNC_OPTIONS}");
        assert_eq!(Options::from_any_bytes(&any2.write_to_bytes().unwrap()), d);
    }

    #[test]
    fn unknown_types_are_ignored() {
        let mut a = Any::new();
        a.type_url = "runtimeoptions.v1.Options".into();
        a.value = vec![0x0a, 0x01, b'x'];
        assert_eq!(Options::from_any(Some(&a)), Options::default());
        a.type_url = "example.Unknown".into();
        assert_eq!(Options::from_any(Some(&a)), Options::default());
        assert_eq!(Options::from_any_bytes(b"\xff\xff\xff"), Options::default());
        assert_eq!(Options::default().binary(), "runc");
        assert_eq!(
            Options::default().runtime_root(DEFAULT_RUNC_ROOT, "default"),
            "/run/containerd/runc/default"
        );
        assert_eq!(default_root("/run/berth/berth.sock"), "/run/berth/runc");
        assert_eq!(default_root("/run/containerd/containerd.sock"), "/run/containerd/runc");
        assert_eq!(default_root(""), DEFAULT_RUNC_ROOT);
    }

    #[test]
    fn save_and_load() {
        let dir = std::env::temp_dir().join(format!("berth-opts-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let o = Options { binary_name: "/usr/bin/crun".into(), no_pivot_root: true, ..Default::default() };
        o.save(&dir).unwrap();
        assert_eq!(Options::load(&dir).unwrap(), o);
        assert_eq!(std::fs::read_to_string(dir.join("runtime")).unwrap(), "/usr/bin/crun");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
