//! The CDI spec file as it is written: the CDI specification (SPEC.md of
//! cncf-tags/container-device-interface) up to version 1.1.0, the one containerd 2.3.4 vendors.
//!
//! Field names and types are the Go library's (`specs-go/config.go` at v1.1.0), so a file
//! containerd reads is read here the same way. Both JSON and YAML files go through the YAML
//! parser, as they do in the Go library (JSON is YAML), with its YAML 1.1 habits: `0666` is
//! octal, `yes` is true. Unknown fields are refused, as the Go library's strict decoding does.
//! Keys are matched exactly: Go's decoder also matches them without regard to case, of which
//! only `additionalGIDs` (SPEC.md's own spelling) is known to be written, so it is an alias.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

/// Spec files larger than this are refused unread: a vendor's spec with thousands of
/// devices stays far below it.
pub const MAX_SPEC_BYTES: u64 = 16 << 20;

/// A `null` where Go's decoder leaves the zero value.
fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A whole spec file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecFile {
    #[serde(rename = "cdiVersion", default, deserialize_with = "nullable")]
    pub version: String,
    #[serde(default, deserialize_with = "nullable")]
    pub kind: String,
    /// Added in 0.6.0.
    #[serde(default, deserialize_with = "nullable")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "nullable")]
    pub devices: Vec<DeviceEntry>,
    /// Applied when any device of the spec is asked for.
    #[serde(rename = "containerEdits", default, deserialize_with = "nullable")]
    pub container_edits: ContainerEdits,
}

/// One device of a spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceEntry {
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    /// Added in 0.6.0.
    #[serde(default, deserialize_with = "nullable")]
    pub annotations: BTreeMap<String, String>,
    #[serde(rename = "containerEdits", default, deserialize_with = "nullable")]
    pub container_edits: ContainerEdits,
}

/// What a device (or a whole spec) changes in a container's OCI spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ContainerEdits {
    #[serde(default, deserialize_with = "nullable")]
    pub env: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub device_nodes: Vec<DeviceNode>,
    /// Added in 1.1.0.
    #[serde(default, deserialize_with = "nullable")]
    pub net_devices: Vec<NetDevice>,
    #[serde(default, deserialize_with = "nullable")]
    pub hooks: Vec<Hook>,
    #[serde(default, deserialize_with = "nullable")]
    pub mounts: Vec<Mount>,
    /// Added in 0.7.0.
    #[serde(default)]
    pub intel_rdt: Option<IntelRdt>,
    /// Added in 0.7.0.
    #[serde(default, alias = "additionalGIDs", deserialize_with = "nullable")]
    pub additional_gids: Vec<u32>,
}

impl ContainerEdits {
    pub fn is_empty(&self) -> bool {
        self == &ContainerEdits::default()
    }
}

/// A device node to create in the container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeviceNode {
    #[serde(default, deserialize_with = "nullable")]
    pub path: String,
    /// Added in 0.5.0; `path` when empty.
    #[serde(default, deserialize_with = "nullable")]
    pub host_path: String,
    /// `b`, `c`, `u` or `p`; the host's when empty.
    #[serde(rename = "type", default, deserialize_with = "nullable")]
    pub kind: String,
    #[serde(default, deserialize_with = "nullable")]
    pub major: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub minor: i64,
    #[serde(default)]
    pub file_mode: Option<u32>,
    /// cgroup access, some of `rwm`; `rwm` when empty.
    #[serde(default, deserialize_with = "nullable")]
    pub permissions: String,
    #[serde(default)]
    pub uid: Option<u32>,
    #[serde(default)]
    pub gid: Option<u32>,
}

/// A mount to add to the container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Mount {
    #[serde(default, deserialize_with = "nullable")]
    pub host_path: String,
    #[serde(default, deserialize_with = "nullable")]
    pub container_path: String,
    #[serde(default, deserialize_with = "nullable")]
    pub options: Vec<String>,
    /// Added in 0.4.0.
    #[serde(rename = "type", default, deserialize_with = "nullable")]
    pub kind: String,
}

/// An OCI hook to add.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Hook {
    #[serde(default, deserialize_with = "nullable")]
    pub hook_name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub path: String,
    #[serde(default, deserialize_with = "nullable")]
    pub args: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub env: Vec<String>,
    #[serde(default)]
    pub timeout: Option<i64>,
}

/// Linux resctrl settings (Intel RDT).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IntelRdt {
    #[serde(rename = "closID", default, deserialize_with = "nullable")]
    pub clos_id: String,
    #[serde(default, deserialize_with = "nullable")]
    pub l3_cache_schema: String,
    #[serde(default, deserialize_with = "nullable")]
    pub mem_bw_schema: String,
    /// Added in 1.1.0. Present (even empty) is not absent: it needs 1.1.0.
    #[serde(default)]
    pub schemata: Option<Vec<String>>,
    /// Added in 1.1.0.
    #[serde(default, deserialize_with = "nullable")]
    pub enable_monitoring: bool,
}

/// A host network interface moved into the container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetDevice {
    #[serde(default, deserialize_with = "nullable")]
    pub host_interface_name: String,
    /// Its name inside the container.
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
}

/// YAML 1.1 octals (`fileMode: 0666`) as the Go library reads them; errors on one line, for
/// gRPC messages and logs. The default budget bounds nesting, aliases and node counts.
fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! { legacy_octal_numbers: true, with_snippet: false }
}

/// The spec in `bytes`, JSON or YAML.
pub fn parse(bytes: &[u8]) -> Result<SpecFile, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    if text.trim().is_empty() {
        return Err("the file is empty".to_string());
    }
    serde_saphyr::from_str_with_options(text, yaml_options()).map_err(|e| e.to_string())
}

/// Only the kind and the device names of a spec that failed to parse as a whole, so an
/// error can name the file to a container asking for one of its devices.
#[derive(Debug, Default, Deserialize)]
pub struct SpecOutline {
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub devices: Option<Vec<DeviceOutline>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct DeviceOutline {
    #[serde(default)]
    pub name: Option<String>,
}

/// The outline of a spec that [`parse`] refused, when its kind can be made out at all.
pub fn outline(bytes: &[u8]) -> Option<SpecOutline> {
    let text = std::str::from_utf8(bytes).ok()?;
    serde_saphyr::from_str_with_options::<SpecOutline>(text, yaml_options()).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const YAML: &str = r#"
cdiVersion: 1.1.0
kind: example.com/dev
annotations:
  owner: tests
devices:
  - name: 0
    containerEdits:
      deviceNodes:
        - path: /dev/example0
          hostPath: /dev/null
          type: c
          major: 1
          minor: 3
          fileMode: 0666
          permissions: rw
          uid: 1000
      netDevices:
        - hostInterfaceName: eth1
          name: net1
containerEdits:
  env: [A=1]
  mounts:
    - hostPath: /usr/lib/example
      containerPath: /usr/lib/example
      options: [ro, rbind]
      type: bind
  hooks:
    - hookName: createContainer
      path: /usr/bin/hook
      args: [hook, create]
      timeout: 5
  intelRdt:
    closID: gold
    schemata: ["L3:0=ff"]
    enableMonitoring: yes
  additionalGIDs: [44]
"#;

    #[test]
    fn yaml_with_every_field() {
        let spec = parse(YAML.as_bytes()).unwrap();
        assert_eq!((spec.version.as_str(), spec.kind.as_str()), ("1.1.0", "example.com/dev"));
        assert_eq!(spec.annotations["owner"], "tests");
        let device = &spec.devices[0];
        assert_eq!(device.name, "0", "an unquoted number is still a name");
        let node = &device.container_edits.device_nodes[0];
        assert_eq!((node.kind.as_str(), node.major, node.minor), ("c", 1, 3));
        assert_eq!(node.file_mode, Some(0o666), "YAML 1.1 octal, as Go reads it");
        assert_eq!((node.uid, node.gid), (Some(1000), None));
        assert_eq!(device.container_edits.net_devices[0].host_interface_name, "eth1");
        let edits = &spec.container_edits;
        assert_eq!(edits.env, ["A=1"]);
        assert_eq!(edits.mounts[0].options, ["ro", "rbind"]);
        assert_eq!(edits.hooks[0].timeout, Some(5));
        let rdt = edits.intel_rdt.as_ref().unwrap();
        assert_eq!((rdt.clos_id.as_str(), rdt.enable_monitoring), ("gold", true));
        assert_eq!(edits.additional_gids, [44]);
    }

    #[test]
    fn json_with_nulls_where_go_takes_zero_values() {
        let json = r#"{"cdiVersion":"0.3.0","kind":"example.com/dev","annotations":null,
            "devices":[{"name":"a","containerEdits":{"env":null,"deviceNodes":[{"path":"/dev/a","fileMode":420}]}}],
            "containerEdits":{"additionalGids":[5]}}"#;
        let spec = parse(json.as_bytes()).unwrap();
        assert!(spec.annotations.is_empty());
        assert_eq!(spec.devices[0].container_edits.device_nodes[0].file_mode, Some(0o644));
        assert_eq!(spec.container_edits.additional_gids, [5]);
    }

    #[test]
    fn unknown_fields_duplicates_and_junk_are_refused() {
        for bad in [
            "cdiVersion: 0.3.0\nkind: a.com/b\ndevices: []\nbogus: 1\n",
            "cdiVersion: 0.3.0\nkind: a.com/b\nkind: a.com/c\n",
            "cdiVersion: 0.3.0\ndevices:\n  - name: x\n    containerEdits:\n      deviceNodes:\n        - path: /dev/x\n          major: lots\n",
            "",
            "[1, 2",
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(parse(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn the_outline_of_a_refused_spec_names_its_kind_and_devices() {
        let text = "cdiVersion: 9.9.9\nkind: a.com/b\ndevices:\n  - name: x\n    bogus: 1\n";
        assert!(parse(text.as_bytes()).is_err());
        let outline = outline(text.as_bytes()).unwrap();
        assert_eq!(outline.kind.as_deref(), Some("a.com/b"));
        assert_eq!(outline.devices.unwrap()[0].name.as_deref(), Some("x"));
        assert!(outline_is_none("{{{"));
    }

    fn outline_is_none(text: &str) -> bool {
        super::outline(text.as_bytes()).is_none()
    }
}
