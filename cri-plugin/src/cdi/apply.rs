//! Making a container's OCI spec what its CDI devices say, as the CDI library's
//! `ContainerEdits.Apply` does for containerd: env added or replacing a variable of the same
//! name; device nodes (type, major, minor and mode from the host when the spec leaves them
//! out) replacing one at the same path, each allowed by a cgroup rule; network devices;
//! mounts replacing one at the same destination, then all mounts ordered parents first;
//! hooks; Intel RDT; additional groups.
//!
//! Every check that can fail runs before the spec is touched.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Hook, Hooks, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, LinuxIntelRdt, LinuxNetDevice, Mount, Spec,
};

use super::cache::SourcedEdits;
use super::error::CdiError;
use super::schema::{self, DeviceNode};
use crate::engine::HandlerFeatures;
use crate::spec::HostDevices;

/// The container's runtime handler and what it can do, for the edits that need more than the
/// basics.
#[derive(Debug, Clone, Copy)]
pub struct RuntimeSupport<'a> {
    pub handler: &'a str,
    pub features: &'a HandlerFeatures,
}

impl RuntimeSupport<'_> {
    /// The handler's own word on a feature (`berthctl info` shows the same lines).
    fn why_not(&self, feature: &str) -> String {
        let line = self.features.explained.iter().find(|l| l.starts_with(feature));
        match line {
            Some(line) => format!("runtime handler {:?} cannot ({line})", self.handler),
            None => format!("runtime handler {:?} cannot", self.handler),
        }
    }
}

fn device_type(kind: &str) -> Option<LinuxDeviceType> {
    match kind {
        "b" => Some(LinuxDeviceType::B),
        "c" => Some(LinuxDeviceType::C),
        "u" => Some(LinuxDeviceType::U),
        "p" => Some(LinuxDeviceType::P),
        _ => None,
    }
}

fn type_letter(kind: LinuxDeviceType) -> &'static str {
    match kind {
        LinuxDeviceType::B => "b",
        LinuxDeviceType::C => "c",
        LinuxDeviceType::U => "u",
        LinuxDeviceType::P => "p",
        LinuxDeviceType::A => "a",
    }
}

/// A CDI device node as the OCI spec takes it, filled in from the host where the CDI spec
/// leaves it to the host; its cgroup rule for block and character devices.
fn device_node(
    node: &DeviceNode,
    user: (u32, u32),
    host: &dyn HostDevices,
) -> Result<(LinuxDevice, Option<LinuxDeviceCgroup>), (String, bool)> {
    let host_path = if node.host_path.is_empty() { &node.path } else { &node.host_path };
    // A type and a major (none for a FIFO) are enough: the host need not have the device.
    let fully_given = !node.kind.is_empty() && (node.major != 0 || node.kind == "p");
    let (mut kind, mut major, mut minor, mut file_mode) =
        (node.kind.clone(), node.major, node.minor, node.file_mode);
    match host.device_node(Path::new(host_path)) {
        Ok(Some(info)) => {
            file_mode = file_mode.or(Some(info.file_mode));
            if !fully_given {
                let host_kind = type_letter(info.kind);
                if kind.is_empty() {
                    kind = host_kind.to_string();
                }
                if kind != host_kind {
                    return Err((
                        format!("the spec says type {kind:?}, the host's {host_path:?} is {host_kind:?}"),
                        false,
                    ));
                }
                if kind != "p" && major == 0 {
                    (major, minor) = (info.major, info.minor);
                }
            }
        }
        Ok(None) if !fully_given => {
            return Err((format!("the host's {host_path:?} is not a device node"), false));
        }
        Err(e) if !fully_given => {
            let missing = e.kind() == std::io::ErrorKind::NotFound;
            let reason = if missing {
                format!("the host has no {host_path:?}, and the spec does not give its type and major")
            } else {
                format!("the host's {host_path:?}: {e}")
            };
            return Err((reason, missing));
        }
        Ok(None) | Err(_) => {}
    }
    let typ = device_type(&kind).ok_or_else(|| (format!("type {kind:?} is not b, c, u or p"), false))?;
    let mut device = LinuxDevice::default();
    device.set_path(PathBuf::from(&node.path));
    device.set_typ(typ);
    device.set_major(major);
    device.set_minor(minor);
    device.set_file_mode(file_mode);
    // Owned by the container's user unless the spec says otherwise, as with containerd.
    device.set_uid(node.uid.or((user.0 > 0).then_some(user.0)));
    device.set_gid(node.gid.or((user.1 > 0).then_some(user.1)));
    let rule = matches!(typ, LinuxDeviceType::B | LinuxDeviceType::C).then(|| {
        let mut rule = LinuxDeviceCgroup::default();
        rule.set_allow(true);
        rule.set_typ(Some(typ));
        rule.set_major(Some(major));
        rule.set_minor(Some(minor));
        let access = if node.permissions.is_empty() { "rwm" } else { node.permissions.as_str() };
        rule.set_access(Some(access.to_string()));
        rule
    });
    Ok((device, rule))
}

/// How deep a mount's destination is: parents are mounted before what they hold.
fn depth(destination: &Path) -> usize {
    let text = destination.to_string_lossy();
    let absolute = text.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            ".." if absolute => {}
            part => parts.push(part),
        }
    }
    if absolute { parts.len().max(1) } else { parts.len().saturating_sub(1) }
}

fn oci_hook(hook: &schema::Hook) -> Hook {
    let mut oci = Hook::default();
    oci.set_path(PathBuf::from(&hook.path));
    oci.set_args((!hook.args.is_empty()).then(|| hook.args.clone()));
    oci.set_env((!hook.env.is_empty()).then(|| hook.env.clone()));
    oci.set_timeout(hook.timeout);
    oci
}

fn oci_intel_rdt(rdt: &schema::IntelRdt) -> LinuxIntelRdt {
    let text = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let mut oci = LinuxIntelRdt::default();
    oci.set_clos_id(text(&rdt.clos_id));
    oci.set_l3_cache_schema(text(&rdt.l3_cache_schema));
    oci.set_mem_bw_schema(text(&rdt.mem_bw_schema));
    oci.set_schemata(rdt.schemata.clone());
    oci.set_enable_monitoring(rdt.enable_monitoring.then_some(true));
    oci
}

/// Refuses the edits `support` says the runtime handler cannot make.
fn check_support(all: &[SourcedEdits], support: RuntimeSupport<'_>) -> Result<(), CdiError> {
    let features = support.features;
    for source in all {
        let unsupported = |what: String, feature: &str| CdiError::Unsupported {
            device: source.device.clone(),
            file: source.file.clone(),
            what,
            why: support.why_not(feature),
        };
        if let Some(net) = source.edits.net_devices.first()
            && !features.net_devices
        {
            let what =
                format!("moves the host's network device {:?} into the container", net.host_interface_name);
            return Err(unsupported(what, "network devices"));
        }
        if let Some(rdt) = &source.edits.intel_rdt {
            let needs_more = rdt.schemata.is_some() && !features.intel_rdt_schemata
                || rdt.enable_monitoring && !features.intel_rdt_monitoring;
            if !features.intel_rdt || needs_more {
                let what = format!("sets Intel RDT (resctrl class {:?})", rdt.clos_id);
                return Err(unsupported(what, "intel RDT"));
            }
        }
    }
    Ok(())
}

/// Makes `spec` what `all` say, in order.
pub fn apply(
    spec: &mut Spec,
    all: &[SourcedEdits],
    support: RuntimeSupport<'_>,
    host: &dyn HostDevices,
) -> Result<(), CdiError> {
    if all.is_empty() {
        return Ok(());
    }
    check_support(all, support)?;
    let user = spec.process().as_ref().map_or((0, 0), |p| (p.user().uid(), p.user().gid()));
    let mut nodes = Vec::new();
    for source in all {
        for node in &source.edits.device_nodes {
            let made = device_node(node, user, host).map_err(|(reason, missing)| CdiError::HostDevice {
                device: source.device.clone(),
                file: source.file.clone(),
                path: node.path.clone(),
                reason,
                missing,
            })?;
            nodes.push(made);
        }
    }
    let edits: Vec<&schema::ContainerEdits> = all.iter().map(|s| &s.edits).collect();

    let mut process = spec.process().clone().unwrap_or_default();
    let mut env = process.env().clone().unwrap_or_default();
    let mut env_index: HashMap<String, usize> = HashMap::new();
    for (i, var) in env.iter().enumerate() {
        env_index.insert(var.split('=').next().unwrap_or_default().to_string(), i);
    }
    for var in edits.iter().flat_map(|e| &e.env) {
        let key = var.split('=').next().unwrap_or_default().to_string();
        match env_index.get(&key) {
            Some(&i) => env[i] = var.clone(),
            None => {
                env_index.insert(key, env.len());
                env.push(var.clone());
            }
        }
    }
    process.set_env(Some(env));
    let mut user = process.user().clone();
    let mut gids = user.additional_gids().clone().unwrap_or_default();
    for gid in edits.iter().flat_map(|e| &e.additional_gids) {
        if *gid != 0 && !gids.contains(gid) {
            gids.push(*gid);
        }
    }
    user.set_additional_gids((!gids.is_empty()).then_some(gids));
    process.set_user(user);
    spec.set_process(Some(process));

    let mut linux = spec.linux().clone().unwrap_or_default();
    let mut devices = linux.devices().clone().unwrap_or_default();
    let mut resources = linux.resources().clone().unwrap_or_default();
    let mut rules = resources.devices().clone().unwrap_or_default();
    for (device, rule) in nodes {
        devices.retain(|d| d.path() != device.path());
        devices.push(device);
        rules.extend(rule);
    }
    linux.set_devices(Some(devices));
    if !rules.is_empty() {
        resources.set_devices(Some(rules));
    }
    linux.set_resources(Some(resources));
    let mut net_devices = linux.net_devices().clone().unwrap_or_default();
    for net in edits.iter().flat_map(|e| &e.net_devices) {
        let mut device = LinuxNetDevice::default();
        device.set_name(Some(net.name.clone()));
        net_devices.insert(net.host_interface_name.clone(), device);
    }
    if !net_devices.is_empty() {
        linux.set_net_devices(Some(net_devices));
    }
    if let Some(rdt) = edits.iter().rev().find_map(|e| e.intel_rdt.as_ref()) {
        linux.set_intel_rdt(Some(oci_intel_rdt(rdt)));
    }
    spec.set_linux(Some(linux));

    let cdi_mounts: Vec<&schema::Mount> = edits.iter().flat_map(|e| &e.mounts).collect();
    if !cdi_mounts.is_empty() {
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        for m in cdi_mounts {
            let destination = PathBuf::from(&m.container_path);
            if let Some(at) = mounts.iter().position(|existing| existing.destination() == &destination) {
                mounts.remove(at);
            }
            let mut mount = Mount::default();
            mount.set_destination(destination);
            mount.set_source(Some(PathBuf::from(&m.host_path)));
            mount.set_typ((!m.kind.is_empty()).then(|| m.kind.clone()));
            mount.set_options((!m.options.is_empty()).then(|| m.options.clone()));
            mounts.push(mount);
        }
        mounts.sort_by_key(|m| depth(m.destination()));
        spec.set_mounts(Some(mounts));
    }

    let cdi_hooks: Vec<&schema::Hook> = edits.iter().flat_map(|e| &e.hooks).collect();
    if !cdi_hooks.is_empty() {
        let mut hooks = spec.hooks().clone().unwrap_or_default();
        for hook in cdi_hooks {
            add_hook(&mut hooks, &hook.hook_name, oci_hook(hook));
        }
        spec.set_hooks(Some(hooks));
    }
    Ok(())
}

#[allow(deprecated)] // prestart: deprecated in the OCI spec, still a CDI hook name
fn add_hook(hooks: &mut Hooks, name: &str, hook: Hook) {
    let list = match name {
        "prestart" => hooks.prestart_mut(),
        "createRuntime" => hooks.create_runtime_mut(),
        "createContainer" => hooks.create_container_mut(),
        "startContainer" => hooks.start_container_mut(),
        "poststart" => hooks.poststart_mut(),
        "poststop" => hooks.poststop_mut(),
        // Validation lets no other name through.
        _ => return,
    };
    list.get_or_insert_with(Vec::new).push(hook);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
