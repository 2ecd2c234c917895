//! Whether a parsed spec file is a valid CDI spec, as the CDI specification and the Go
//! library containerd 2.3.4 vendors (v1.1.0) judge it: a known version, new enough for the
//! fields the file uses; a valid kind; at least one device, each named once and changing
//! something; and edits that make sense (env `K=V`, device types and permissions, hook
//! names, mounts with both paths, a CLOS id that is a file name, distinct net devices).
//!
//! Annotations are not checked: the Go library's check of them never runs (it looks for a
//! map type the spec's annotations are not), so refusing some here would refuse specs
//! containerd takes.

use std::collections::{BTreeMap, HashSet};

use super::names::{check_device_name, parse_kind};
use super::schema::{ContainerEdits, SpecFile};

/// The versions of the specification, oldest first.
const VERSIONS: [&str; 10] =
    ["0.1.0", "0.2.0", "0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0", "1.1.0"];

/// The hooks a spec may add, by OCI name.
pub const HOOK_NAMES: [&str; 6] =
    ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"];

/// A spec that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidSpec {
    pub kind: String,
    pub version: String,
    /// Applied once when any of its devices is asked for.
    pub edits: ContainerEdits,
    /// Each device's own edits, by its (unqualified) name.
    pub devices: BTreeMap<String, ContainerEdits>,
}

/// A version's index in [`VERSIONS`]; a leading `v` is allowed, as in the Go library.
fn version_index(version: &str) -> Option<usize> {
    let version = version.strip_prefix('v').unwrap_or(version);
    VERSIONS.iter().position(|v| *v == version)
}

fn every_edits(spec: &SpecFile) -> impl Iterator<Item = &ContainerEdits> {
    std::iter::once(&spec.container_edits).chain(spec.devices.iter().map(|d| &d.container_edits))
}

/// The oldest version that has every field `spec` uses.
pub fn minimum_version(spec: &SpecFile) -> &'static str {
    let uses = |f: &dyn Fn(&ContainerEdits) -> bool| every_edits(spec).any(f);
    let class_has_dot = spec.kind.split_once('/').is_some_and(|(_, class)| class.contains('.'));
    if uses(&|e| {
        !e.net_devices.is_empty()
            || e.intel_rdt.as_ref().is_some_and(|r| r.schemata.is_some() || r.enable_monitoring)
    }) {
        "1.1.0"
    } else if uses(&|e| e.intel_rdt.is_some() || !e.additional_gids.is_empty()) {
        "0.7.0"
    } else if !spec.annotations.is_empty()
        || spec.devices.iter().any(|d| !d.annotations.is_empty())
        || class_has_dot
    {
        "0.6.0"
    } else if spec.devices.iter().any(|d| d.name.starts_with(|c: char| c.is_ascii_digit()))
        || uses(&|e| e.device_nodes.iter().any(|n| !n.host_path.is_empty()))
    {
        "0.5.0"
    } else if uses(&|e| e.mounts.iter().any(|m| !m.kind.is_empty())) {
        "0.4.0"
    } else {
        "0.3.0"
    }
}

fn check_env(env: &[String], what: &str) -> Result<(), String> {
    match env.iter().find(|v| v.find('=').is_none_or(|at| at == 0)) {
        Some(bad) => Err(format!("{what}: environment variable {bad:?} is not NAME=value")),
        None => Ok(()),
    }
}

/// The checks of one set of edits.
pub fn check_edits(edits: &ContainerEdits) -> Result<(), String> {
    check_env(&edits.env, "env")?;
    for node in &edits.device_nodes {
        if node.path.is_empty() {
            return Err("a device node has no path".to_string());
        }
        if !matches!(node.kind.as_str(), "" | "b" | "c" | "u" | "p") {
            return Err(format!("device node {:?}: type {:?} is not b, c, u or p", node.path, node.kind));
        }
        if !node.permissions.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
            return Err(format!(
                "device node {:?}: permissions {:?} are not letters of \"rwm\"",
                node.path, node.permissions
            ));
        }
    }
    for hook in &edits.hooks {
        if !HOOK_NAMES.contains(&hook.hook_name.as_str()) {
            return Err(format!("hook name {:?} is not one of {}", hook.hook_name, HOOK_NAMES.join(", ")));
        }
        if hook.path.is_empty() {
            return Err(format!("the {} hook has no path", hook.hook_name));
        }
        check_env(&hook.env, &format!("the {} hook's env", hook.hook_name))?;
    }
    for mount in &edits.mounts {
        if mount.host_path.is_empty() || mount.container_path.is_empty() {
            return Err(format!(
                "mount {:?} -> {:?}: both hostPath and containerPath are needed",
                mount.host_path, mount.container_path
            ));
        }
    }
    if let Some(rdt) = &edits.intel_rdt {
        // A resctrl directory name; "/" is the root class of service.
        let clos = rdt.clos_id.as_str();
        if clos != "/" && (clos.len() >= 4096 || clos == "." || clos == ".." || clos.contains(['/', '\n'])) {
            return Err(format!("intelRdt closID {clos:?} is not a resctrl group name"));
        }
    }
    let (mut hosts, mut names) = (HashSet::new(), HashSet::new());
    for net in &edits.net_devices {
        if net.host_interface_name.is_empty() || net.name.is_empty() {
            return Err("a net device needs both hostInterfaceName and name".to_string());
        }
        if !hosts.insert(&net.host_interface_name) {
            return Err(format!("net device {:?} is listed twice", net.host_interface_name));
        }
        if !names.insert(&net.name) {
            return Err(format!("two net devices are named {:?} in the container", net.name));
        }
    }
    Ok(())
}

/// `spec`, checked.
pub fn validate(spec: SpecFile) -> Result<ValidSpec, String> {
    if version_index(&spec.version).is_none() {
        return Err(format!(
            "cdiVersion {:?} is not a version of the CDI specification ({} to {})",
            spec.version,
            VERSIONS[0],
            VERSIONS[VERSIONS.len() - 1]
        ));
    }
    let needed = minimum_version(&spec);
    if version_index(needed) > version_index(&spec.version) {
        return Err(format!(
            "cdiVersion {:?} is too old for the fields this spec uses: they need {needed}",
            spec.version
        ));
    }
    parse_kind(&spec.kind).map_err(|e| format!("invalid kind: {e}"))?;
    check_edits(&spec.container_edits).map_err(|e| format!("the spec's containerEdits: {e}"))?;
    let mut devices = BTreeMap::new();
    for device in spec.devices {
        check_device_name(&device.name).map_err(|e| format!("invalid device: {e}"))?;
        if device.container_edits.is_empty() {
            return Err(format!("device {:?} changes nothing: its containerEdits are empty", device.name));
        }
        check_edits(&device.container_edits).map_err(|e| format!("device {:?}: {e}", device.name))?;
        if devices.insert(device.name.clone(), device.container_edits).is_some() {
            return Err(format!("device {:?} is declared twice", device.name));
        }
    }
    if devices.is_empty() {
        return Err("the spec declares no devices".to_string());
    }
    Ok(ValidSpec { kind: spec.kind, version: spec.version, edits: spec.container_edits, devices })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::cdi::schema::parse;

    fn check(text: &str) -> Result<ValidSpec, String> {
        validate(parse(text.as_bytes()).unwrap())
    }

    const NODE: &str = "containerEdits:\n      deviceNodes:\n        - path: /dev/x\n";

    #[test]
    fn a_minimal_spec_is_valid() {
        let spec =
            check(&format!("cdiVersion: 0.3.0\nkind: a.com/b\ndevices:\n  - name: x\n    {NODE}")).unwrap();
        assert_eq!(spec.kind, "a.com/b");
        assert_eq!(spec.devices["x"].device_nodes[0].path, "/dev/x");
        assert!(
            check(&format!("cdiVersion: v1.0.0\nkind: a.com/b\ndevices:\n  - name: x\n    {NODE}")).is_ok()
        );
    }

    #[test]
    fn each_field_needs_the_version_that_brought_it() {
        let cases = [
            ("mounts:\n      - {hostPath: /a, containerPath: /a, type: bind}", "0.4.0"),
            ("deviceNodes:\n      - {path: /dev/x, hostPath: /dev/null}", "0.5.0"),
            ("additionalGids: [5]", "0.7.0"),
            ("intelRdt: {closID: gold}", "0.7.0"),
            ("intelRdt: {closID: gold, schemata: []}", "1.1.0"),
            ("netDevices:\n      - {hostInterfaceName: eth1, name: net1}", "1.1.0"),
        ];
        for (edits, needed) in cases {
            let text = |version: &str| {
                format!("cdiVersion: {version}\nkind: a.com/b\ndevices:\n  - name: x\n    containerEdits:\n      {edits}\n")
                    .replace("\n      - ", "\n        - ")
            };
            assert_eq!(minimum_version(&parse(text(needed).as_bytes()).unwrap()), needed, "{edits}");
            assert!(check(&text(needed)).is_ok(), "{edits}");
            let err = check(&text("0.3.0")).unwrap_err();
            assert!(err.contains(&format!("need {needed}")), "{edits}: {err}");
        }
        let digit = format!("cdiVersion: 0.4.0\nkind: a.com/b\ndevices:\n  - name: \"0\"\n    {NODE}");
        assert!(check(&digit).unwrap_err().contains("need 0.5.0"));
        let dotted = format!("cdiVersion: 0.5.0\nkind: a.com/b.c\ndevices:\n  - name: x\n    {NODE}");
        assert!(check(&dotted).unwrap_err().contains("need 0.6.0"));
        let annotated = format!(
            "cdiVersion: 0.5.0\nkind: a.com/b\nannotations: {{a: b}}\ndevices:\n  - name: x\n    {NODE}"
        );
        assert!(check(&annotated).unwrap_err().contains("need 0.6.0"));
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        let device = |edits: &str| {
            format!(
                "cdiVersion: 1.1.0\nkind: a.com/b\ndevices:\n  - name: x\n    containerEdits:\n      {edits}\n"
            )
        };
        let cases = [
            ("cdiVersion: 1.2.0\nkind: a.com/b\n".to_string(), "not a version"),
            ("cdiVersion: ''\nkind: a.com/b\n".to_string(), "not a version"),
            (format!("cdiVersion: 0.3.0\nkind: b\ndevices:\n  - name: x\n    {NODE}"), "invalid kind"),
            (format!("cdiVersion: 0.3.0\nkind: a.com/b/c\ndevices:\n  - name: x\n    {NODE}"), "invalid kind"),
            ("cdiVersion: 0.3.0\nkind: a.com/b\ndevices: []\n".to_string(), "no devices"),
            ("cdiVersion: 0.3.0\nkind: a.com/b\ndevices:\n  - name: x\n".to_string(), "changes nothing"),
            (format!("cdiVersion: 0.3.0\nkind: a.com/b\ndevices:\n  - name: x-\n    {NODE}"), "invalid device"),
            (
                format!("cdiVersion: 0.3.0\nkind: a.com/b\ndevices:\n  - name: x\n    {NODE}  - name: x\n    {NODE}"),
                "declared twice",
            ),
            (device("env: [NOEQUALS]"), "NOEQUALS"),
            (device("env: ['=x']"), "not NAME=value"),
            (device("deviceNodes: [{path: ''}]"), "no path"),
            (device("deviceNodes: [{path: /dev/x, type: z}]"), "type \"z\""),
            (device("deviceNodes: [{path: /dev/x, permissions: rwx}]"), "permissions"),
            (device("hooks: [{hookName: preStart, path: /x}]"), "hook name"),
            (device("hooks: [{hookName: poststop}]"), "no path"),
            (device("hooks: [{hookName: poststop, path: /x, env: [X]}]"), "hook's env"),
            (device("mounts: [{hostPath: /a}]"), "both hostPath and containerPath"),
            (device("intelRdt: {closID: a/b}"), "closID"),
            (device("intelRdt: {closID: '..'}"), "closID"),
            (device("netDevices: [{hostInterfaceName: eth1}]"), "both"),
            (
                device("netDevices: [{hostInterfaceName: eth1, name: a}, {hostInterfaceName: eth1, name: b}]"),
                "listed twice",
            ),
            (
                device("netDevices: [{hostInterfaceName: eth1, name: a}, {hostInterfaceName: eth2, name: a}]"),
                "named \"a\"",
            ),
            (
                "cdiVersion: 0.3.0\nkind: a.com/b\ncontainerEdits: {env: [X]}\ndevices:\n  - name: x\n    containerEdits: {env: [A=1]}\n".to_string(),
                "the spec's containerEdits",
            ),
        ];
        for (text, says) in cases {
            let err = check(&text).unwrap_err();
            assert!(err.contains(says), "{text:?}: {err}");
        }
        assert!(check(&device("intelRdt: {closID: /}")).is_ok(), "the root class of service");
    }
}
