//! The assembled spec: each part in place, and JSON runc accepts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use berth_proto::runtime::v1 as cri;
use oci_spec::image::{ConfigBuilder, ImageConfiguration, ImageConfigurationBuilder};
use oci_spec::runtime::{Capability, LinuxNamespaceType, Spec};

use super::testing::{FakeHost, pod};
use super::*;
use crate::config::CgroupDriver;

fn image() -> ImageConfiguration {
    ImageConfigurationBuilder::default()
        .config(
            ConfigBuilder::default()
                .entrypoint(vec!["/bin/server".to_string()])
                .cmd(vec!["--port=80".to_string()])
                .env(vec!["PATH=/usr/bin:/bin".to_string(), "MODE=image".to_string()])
                .user("app")
                .working_dir("/srv")
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

fn files() -> ImageUserFiles {
    ImageUserFiles {
        passwd: Some(b"root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n".to_vec()),
        group: Some(b"root:x:0:\napp:x:1000:\nshared:x:50000:app\n".to_vec()),
    }
}

fn config() -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata { name: "server".into(), attempt: 0 }),
        image: Some(cri::ImageSpec { image: "registry.local/server:1".into(), ..Default::default() }),
        envs: vec![cri::KeyValue { key: "MODE".into(), value: b"config".to_vec() }],
        annotations: [("team".to_string(), "infra".to_string())].into(),
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(cri::LinuxContainerResources {
                cpu_shares: 256,
                memory_limit_in_bytes: 32 << 20,
                oom_score_adj: 500,
                ..Default::default()
            }),
            security_context: Some(cri::LinuxContainerSecurityContext {
                seccomp: Some(cri::SecurityProfile::default()),
                masked_paths: DEFAULT_MASKED_PATHS.iter().map(|s| s.to_string()).collect(),
                readonly_paths: DEFAULT_READONLY_PATHS.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

const NODE: NodeContext = NodeContext {
    cgroup_driver: CgroupDriver::Cgroupfs,
    apparmor: AppArmorSupport::Unavailable,
    seccomp: true,
    cgroup_v2: false,
    recursive_read_only: true,
};

fn build(config: &cri::ContainerConfig, pod: &PodContext) -> Result<Spec, SpecError> {
    let host = FakeHost::default();
    let image = image();
    let files = files();
    container_spec(&ContainerSpecInput {
        container_id: "ctr-1",
        config,
        pod,
        image: &image,
        image_files: &files,
        target_pid: None,
        node: &NODE,
        host: &host,
    })
}

fn sc_mut(c: &mut cri::ContainerConfig) -> &mut cri::LinuxContainerSecurityContext {
    c.linux.as_mut().unwrap().security_context.as_mut().unwrap()
}

#[test]
fn process_from_image_and_config() {
    let spec = build(&config(), &pod()).unwrap();
    let p = spec.process().as_ref().unwrap();
    assert_eq!(p.args().as_deref().unwrap(), ["/bin/server", "--port=80"]);
    assert_eq!(p.env().as_deref().unwrap(), ["PATH=/usr/bin:/bin", "HOSTNAME=web-0", "MODE=config"]);
    assert_eq!(p.cwd(), Path::new("/srv"));
    assert_eq!(p.terminal(), Some(false));
    assert_eq!((p.user().uid(), p.user().gid()), (1000, 1000));
    assert_eq!(p.user().additional_gids().as_deref(), Some(&[1000, 50000][..]));
    assert_eq!(p.oom_score_adj(), Some(500));
    assert_eq!(p.no_new_privileges(), Some(false));
    assert!(p.rlimits().is_none());
}

#[test]
fn hostname_env_falls_back_to_the_node() {
    let mut p = pod();
    p.config.hostname.clear();
    let spec = build(&config(), &p).unwrap();
    let env = spec.process().as_ref().unwrap().env().clone().unwrap();
    assert!(env.contains(&"HOSTNAME=node-1".to_string()));
    assert!(spec.hostname().is_none());
}

#[test]
fn linux_section_is_assembled() {
    let spec = build(&config(), &pod()).unwrap();
    let linux = spec.linux().as_ref().unwrap();
    assert_eq!(linux.cgroups_path().as_deref(), Some(Path::new("/kubepods/pod1/ctr-1")));
    assert_eq!(linux.sysctl().as_ref().unwrap()["net.ipv4.ip_forward"], "1");
    let res = linux.resources().as_ref().unwrap();
    assert_eq!(res.cpu().as_ref().unwrap().shares(), Some(256));
    assert_eq!(res.memory().unwrap().limit(), Some(32 << 20));
    assert!(!res.devices().as_ref().unwrap()[0].allow());
    let ns: Vec<_> = linux.namespaces().as_ref().unwrap().iter().map(|n| n.typ()).collect();
    for t in [
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Pid,
    ] {
        assert!(ns.contains(&t), "{t:?}");
    }
    assert!(linux.seccomp().is_some());
    assert_eq!(linux.masked_paths().as_deref().unwrap(), DEFAULT_MASKED_PATHS);
    assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(false));
}

#[test]
fn systemd_driver_cgroups_path() {
    let host = FakeHost::default();
    let (image, files, config, mut p) = (image(), files(), config(), pod());
    p.cgroup_parent = "/kubepods.slice/kubepods-pod1.slice".into();
    let node = NodeContext { cgroup_driver: CgroupDriver::Systemd, ..NODE };
    let spec = container_spec(&ContainerSpecInput {
        container_id: "ctr-1",
        config: &config,
        pod: &p,
        image: &image,
        image_files: &files,
        target_pid: None,
        node: &node,
        host: &host,
    })
    .unwrap();
    assert_eq!(
        spec.linux().as_ref().unwrap().cgroups_path().as_deref(),
        Some(Path::new("kubepods-pod1.slice:berth:ctr-1"))
    );
}

#[test]
fn annotations_include_the_cri_ones() {
    let spec = build(&config(), &pod()).unwrap();
    let a = spec.annotations().as_ref().unwrap();
    assert_eq!(a["team"], "infra");
    assert_eq!(a["io.kubernetes.cri.container-type"], "container");
    assert_eq!(a["io.kubernetes.cri.sandbox-id"], "pod-id");
    assert_eq!(a["io.kubernetes.cri.container-name"], "server");
    assert_eq!(a["io.kubernetes.cri.image-name"], "registry.local/server:1");
    assert_eq!(a["io.kubernetes.cri.sandbox-name"], "web");
    assert_eq!(a["io.kubernetes.cri.sandbox-namespace"], "default");
    assert_eq!(a["io.kubernetes.cri.sandbox-uid"], "uid-1");
}

#[test]
fn readonly_rootfs_and_no_new_privs() {
    let mut c = config();
    sc_mut(&mut c).readonly_rootfs = true;
    sc_mut(&mut c).no_new_privs = true;
    let spec = build(&c, &pod()).unwrap();
    assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
    assert_eq!(spec.process().as_ref().unwrap().no_new_privileges(), Some(true));
}

#[test]
fn privileged_container_needs_a_privileged_pod() {
    let mut c = config();
    sc_mut(&mut c).privileged = true;
    assert!(matches!(build(&c, &pod()), Err(SpecError::PrivilegedInUnprivilegedPod)));
}

#[test]
fn privileged_container_is_unconfined_with_every_device() {
    let mut c = config();
    sc_mut(&mut c).privileged = true;
    let mut p = pod();
    p.config.linux.as_mut().unwrap().security_context =
        Some(cri::LinuxSandboxSecurityContext { privileged: true, ..Default::default() });
    let spec = build(&c, &p).unwrap();
    let linux = spec.linux().as_ref().unwrap();
    assert!(linux.seccomp().is_none());
    assert!(linux.masked_paths().as_ref().unwrap().is_empty());
    assert!(linux.readonly_paths().as_ref().unwrap().is_empty());
    assert_eq!(linux.devices().as_ref().unwrap().len(), FakeHost::default().devices.len());
    let rules = linux.resources().as_ref().unwrap().devices().clone().unwrap();
    assert!(rules.len() == 1 && rules[0].allow());
    let caps = spec.process().as_ref().unwrap().capabilities().clone().unwrap();
    assert!(caps.bounding().as_ref().unwrap().contains(&Capability::SysAdmin));
    assert!(spec.process().as_ref().unwrap().apparmor_profile().is_none());
    let sys = spec.mounts().as_ref().unwrap().iter().find(|m| m.destination() == Path::new("/sys")).unwrap();
    assert!(sys.options().as_ref().unwrap().contains(&"rw".to_string()));
}

#[test]
fn seccomp_default_profile_follows_granted_capabilities() {
    let mut c = config();
    sc_mut(&mut c).capabilities =
        Some(cri::Capability { add_capabilities: vec!["SYS_ADMIN".into()], ..Default::default() });
    let spec = build(&c, &pod()).unwrap();
    let seccomp = spec.linux().as_ref().unwrap().seccomp().clone().unwrap();
    let names: Vec<String> =
        seccomp.syscalls().clone().unwrap().into_iter().flat_map(|s| s.names().clone()).collect();
    assert!(names.contains(&"sethostname".to_string()));
}

#[test]
fn unknown_run_as_username_is_invalid_argument() {
    let mut c = config();
    sc_mut(&mut c).run_as_username = "ghost".into();
    let err = build(&c, &pod()).unwrap_err();
    assert_eq!(crate::CriError::from(err).code(), tonic::Code::InvalidArgument);
}

#[test]
fn tty_and_exec_process() {
    let mut c = config();
    c.tty = true;
    sc_mut(&mut c).no_new_privs = true;
    let spec = build(&c, &pod()).unwrap();
    assert_eq!(spec.process().as_ref().unwrap().terminal(), Some(true));
    let exec = exec_process(&spec, vec!["sh".into(), "-c".into(), "id".into()], true).unwrap();
    let init = spec.process().as_ref().unwrap();
    assert_eq!(exec.args().as_deref().unwrap(), ["sh", "-c", "id"]);
    assert_eq!(exec.user(), init.user());
    assert_eq!(exec.cwd(), init.cwd());
    assert_eq!(exec.capabilities(), init.capabilities());
    assert_eq!(exec.no_new_privileges(), Some(true));
    assert!(exec.env().as_ref().unwrap().contains(&"TERM=xterm".to_string()));
    let plain = exec_process(&spec, vec!["true".into()], false).unwrap();
    assert_eq!(plain.terminal(), Some(false));
    assert_eq!(plain.env(), init.env());
    assert!(matches!(exec_process(&spec, vec![], false), Err(SpecError::NoCommand)));
    assert!(matches!(
        exec_process(&Spec::default().set_process(None).clone(), vec!["x".into()], false),
        Err(SpecError::NoProcess)
    ));
}

#[test]
fn spec_serialises_to_json_runc_accepts() {
    let spec = build(&config(), &pod()).unwrap();
    let json = serde_json::to_value(&spec).unwrap();
    assert_eq!(json["ociVersion"], OCI_VERSION);
    assert_eq!(json["root"]["path"], "rootfs");
    assert!(json["process"]["args"].is_array());
    assert_eq!(json["process"]["cwd"], "/srv");
    assert_eq!(json["process"]["user"]["uid"], 1000);
    assert!(json["process"]["capabilities"]["bounding"].as_array().unwrap().contains(&"CAP_CHOWN".into()));
    assert!(json["process"].get("rlimits").is_none());
    assert!(json.get("hostname").is_none());
    let linux = &json["linux"];
    assert!(
        linux["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "network" && n["path"].is_string())
    );
    assert_eq!(
        linux["resources"]["devices"][0],
        serde_json::json!({"allow": false, "type": "a", "access": "rwm"})
    );
    assert_eq!(linux["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
    assert_eq!(linux["cgroupsPath"], "/kubepods/pod1/ctr-1");
    assert!(
        json["mounts"].as_array().unwrap().iter().any(|m| m["destination"] == "/proc" && m["type"] == "proc")
    );
    // What runc reads back is what was built.
    let back: Spec = serde_json::from_value(json).unwrap();
    assert_eq!(back, spec);
}
