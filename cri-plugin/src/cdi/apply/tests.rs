//! Edits made to a spec, on a fake host: what each kind of edit does, and what is refused.

use std::path::Path;

use oci_spec::runtime::{LinuxDeviceType, Mount, Spec};

use super::*;
use crate::cdi::schema::{ContainerEdits, parse};
use crate::spec::testing::FakeHost;

/// The edits of every device of `yaml`'s spec (its own edits first), as the registry hands
/// them out.
fn edits_of(yaml: &str) -> Vec<SourcedEdits> {
    let spec = crate::cdi::validate::validate(parse(yaml.as_bytes()).unwrap()).unwrap();
    let mut all = vec![SourcedEdits {
        device: "example.com/dev=one".into(),
        file: "/etc/cdi/dev.yaml".into(),
        edits: spec.edits,
    }];
    for (name, edits) in spec.devices {
        all.push(SourcedEdits {
            device: format!("example.com/dev={name}"),
            file: "/etc/cdi/dev.yaml".into(),
            edits,
        });
    }
    all
}

fn device(yaml_edits: &str) -> String {
    format!(
        "cdiVersion: 1.1.0\nkind: example.com/dev\ndevices:\n  - name: one\n    containerEdits:\n{yaml_edits}"
    )
}

/// A container of user 1000:1000 with env, a /data mount and supplementary group 5.
fn base() -> Spec {
    let mut spec = Spec::default();
    let mut process = spec.process().clone().unwrap();
    process.set_env(Some(vec!["PATH=/bin".into(), "KEEP=1".into()]));
    let mut user = process.user().clone();
    user.set_uid(1000);
    user.set_gid(1000);
    user.set_additional_gids(Some(vec![5]));
    process.set_user(user);
    spec.set_process(Some(process));
    let mut data = Mount::default();
    data.set_destination("/data".into());
    data.set_source(Some("/srv/old".into()));
    let mut mounts = spec.mounts().clone().unwrap();
    mounts.push(data);
    spec.set_mounts(Some(mounts));
    spec
}

fn all_features() -> HandlerFeatures {
    HandlerFeatures {
        intel_rdt: true,
        intel_rdt_schemata: true,
        intel_rdt_monitoring: true,
        net_devices: true,
        ..Default::default()
    }
}

fn applied(yaml: &str, features: &HandlerFeatures) -> Result<Spec, CdiError> {
    let mut spec = base();
    let support = RuntimeSupport { handler: "runc", features };
    apply(&mut spec, &edits_of(yaml), support, &FakeHost::default())?;
    Ok(spec)
}

#[test]
fn env_is_added_or_replaces_a_variable_of_the_same_name() {
    let yaml = "cdiVersion: 0.3.0\nkind: example.com/dev\ncontainerEdits:\n  env: [PATH=/opt/bin, A=spec]\ndevices:\n  - name: one\n    containerEdits:\n      env: [A=device, B=2]\n";
    let spec = applied(yaml, &HandlerFeatures::default()).unwrap();
    let env = spec.process().as_ref().unwrap().env().clone().unwrap();
    assert_eq!(env, ["PATH=/opt/bin", "KEEP=1", "A=device", "B=2"]);
}

#[test]
fn device_nodes_take_what_the_spec_leaves_out_from_the_host() {
    let yaml = device(
        "      deviceNodes:\n        - path: /dev/example-null\n          hostPath: /dev/null\n          permissions: rw\n        - path: /dev/given\n          type: b\n          major: 8\n          minor: 1\n          fileMode: 0600\n          uid: 0\n        - path: /dev/pipe\n          type: p\n        - path: /dev/fuse\n",
    );
    let spec = applied(&yaml, &HandlerFeatures::default()).unwrap();
    let linux = spec.linux().as_ref().unwrap();
    let devices = linux.devices().clone().unwrap();
    let find = |path: &str| devices.iter().find(|d| d.path() == Path::new(path)).unwrap().clone();
    let null = find("/dev/example-null");
    assert_eq!(
        (null.typ(), null.major(), null.minor(), null.file_mode()),
        (LinuxDeviceType::C, 1, 3, Some(0o666))
    );
    assert_eq!((null.uid(), null.gid()), (Some(1000), Some(1000)), "owned by the container's user");
    let given = find("/dev/given");
    assert_eq!(
        (given.typ(), given.major(), given.minor(), given.file_mode()),
        (LinuxDeviceType::B, 8, 1, Some(0o600))
    );
    assert_eq!((given.uid(), given.gid()), (Some(0), Some(1000)), "the spec's uid stands");
    assert_eq!(find("/dev/pipe").typ(), LinuxDeviceType::P);
    assert_eq!((find("/dev/fuse").major(), find("/dev/fuse").minor()), (10, 229));

    let rules = linux.resources().as_ref().unwrap().devices().clone().unwrap();
    let allowed: Vec<_> =
        rules.iter().map(|r| (r.typ(), r.major(), r.minor(), r.access().clone().unwrap())).collect();
    assert_eq!(
        allowed,
        [
            (Some(LinuxDeviceType::C), Some(1), Some(3), "rw".to_string()),
            (Some(LinuxDeviceType::B), Some(8), Some(1), "rwm".to_string()),
            (Some(LinuxDeviceType::C), Some(10), Some(229), "rwm".to_string()),
        ],
        "block and character devices are allowed, FIFOs need no rule"
    );
}

#[test]
fn a_device_node_the_host_lacks_or_contradicts_is_refused_and_the_spec_kept() {
    let cases = [
        ("        - path: /dev/nope\n", true, "the host has no"),
        ("        - path: /dev/nope\n          type: c\n", true, "does not give its type and major"),
        ("        - path: /dev/x\n          hostPath: /dev/loop0\n          type: c\n", false, "is \"b\""),
        ("        - path: /dev/x\n          hostPath: /etc/passwd\n", false, "not a device node"),
    ];
    for (nodes, is_missing, says) in cases {
        let yaml = device(&format!("      env: [TOUCHED=1]\n      deviceNodes:\n{nodes}"));
        let mut spec = base();
        let support = RuntimeSupport { handler: "runc", features: &HandlerFeatures::default() };
        let err = apply(&mut spec, &edits_of(&yaml), support, &FakeHost::default()).unwrap_err();
        match &err {
            CdiError::HostDevice { device, file, missing, reason, .. } => {
                assert_eq!(
                    (device.as_str(), file.as_path()),
                    ("example.com/dev=one", Path::new("/etc/cdi/dev.yaml"))
                );
                assert_eq!(*missing, is_missing, "{nodes}");
                assert!(reason.contains(says), "{nodes}: {reason}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(spec, base(), "{nodes}: nothing applied");
    }
    // A device the spec gives in full need not be on the host.
    let yaml =
        device("      deviceNodes:\n        - path: /dev/nope\n          type: c\n          major: 195\n");
    assert!(applied(&yaml, &HandlerFeatures::default()).is_ok());
}

#[test]
fn mounts_replace_one_at_the_same_place_and_parents_come_first() {
    let yaml = device(
        "      mounts:\n        - hostPath: /usr/lib/deep\n          containerPath: /usr/lib/x/deep\n          options: [ro, bind]\n        - hostPath: /srv/new\n          containerPath: /data\n          type: bind\n          options: [rbind]\n",
    );
    let spec = applied(&yaml, &HandlerFeatures::default()).unwrap();
    let mounts = spec.mounts().clone().unwrap();
    let data: Vec<_> = mounts.iter().filter(|m| m.destination() == Path::new("/data")).collect();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0].source().as_deref(), Some(Path::new("/srv/new")));
    assert_eq!(data[0].typ().as_deref(), Some("bind"));
    let depths: Vec<usize> = mounts.iter().map(|m| depth(m.destination())).collect();
    assert!(depths.is_sorted(), "{depths:?}");
    assert_eq!(mounts.last().unwrap().destination(), Path::new("/usr/lib/x/deep"));
    assert_eq!(mounts.last().unwrap().options().clone().unwrap(), ["ro", "bind"]);
    assert_eq!((depth(Path::new("/")), depth(Path::new("/a/../b/./c/"))), (1, 2));
}

#[test]
fn hooks_gids_rdt_and_net_devices() {
    let yaml = device(
        "      hooks:\n        - {hookName: createContainer, path: /usr/bin/ldconfig-hook, args: [hook, x], timeout: 5}\n        - {hookName: prestart, path: /usr/bin/old}\n        - {hookName: poststop, path: /usr/bin/cleanup, env: [A=1]}\n      additionalGids: [0, 5, 44]\n      intelRdt: {closID: gold, l3CacheSchema: 'L3:0=ff', schemata: ['MB:0=50'], enableMonitoring: true}\n      netDevices:\n        - {hostInterfaceName: eth1, name: net1}\n",
    );
    let spec = applied(&yaml, &all_features()).unwrap();
    let hooks = spec.hooks().clone().unwrap();
    let create = hooks.create_container().clone().unwrap();
    assert_eq!(
        (create[0].path().as_path(), create[0].timeout()),
        (Path::new("/usr/bin/ldconfig-hook"), Some(5))
    );
    assert_eq!(create[0].args().clone().unwrap(), ["hook", "x"]);
    #[allow(deprecated)]
    let prestart = hooks.prestart().clone().unwrap();
    assert_eq!(prestart[0].path(), Path::new("/usr/bin/old"));
    assert_eq!(hooks.poststop().clone().unwrap()[0].env().clone().unwrap(), ["A=1"]);
    let gids = spec.process().as_ref().unwrap().user().additional_gids().clone().unwrap();
    assert_eq!(gids, [5, 44], "0 is ignored, 5 was there");
    let linux = spec.linux().as_ref().unwrap();
    let rdt = linux.intel_rdt().clone().unwrap();
    assert_eq!(rdt.clos_id().as_deref(), Some("gold"));
    assert_eq!(rdt.l3_cache_schema().as_deref(), Some("L3:0=ff"));
    assert_eq!(rdt.schemata().clone().unwrap(), ["MB:0=50"]);
    assert_eq!(rdt.enable_monitoring(), &Some(true));
    assert_eq!(rdt.mem_bw_schema(), &None);
    let net = linux.net_devices().clone().unwrap();
    assert_eq!(net["eth1"].name().as_deref(), Some("net1"));
}

#[test]
fn rdt_and_net_devices_are_refused_where_the_runtime_lacks_them() {
    let net = device("      netDevices:\n        - {hostInterfaceName: eth1, name: net1}\n");
    let rdt = device("      intelRdt: {closID: gold}\n");
    let monitored = device("      intelRdt: {closID: gold, enableMonitoring: true}\n");
    let explained = vec![
        "intel RDT: no (runc features does not list linux.intelRdt)".to_string(),
        "network devices: no (runc features does not list linux.netDevices)".to_string(),
    ];
    let none = HandlerFeatures { explained, ..Default::default() };
    let rdt_without_monitoring =
        HandlerFeatures { intel_rdt: true, intel_rdt_schemata: true, ..Default::default() };
    for (yaml, features, says) in [
        (&net, &none, "network device \"eth1\""),
        (&rdt, &none, "Intel RDT"),
        (&monitored, &rdt_without_monitoring, "Intel RDT"),
    ] {
        let err = applied(yaml, features).unwrap_err();
        assert!(matches!(err, CdiError::Unsupported { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(says) && text.contains("runtime handler \"runc\" cannot"), "{text}");
        assert!(text.contains("example.com/dev=one") && text.contains("/etc/cdi/dev.yaml"), "{text}");
        let code = crate::error::CriError::from(err).code();
        assert_eq!(code, tonic::Code::FailedPrecondition);
    }
    assert!(applied(&net, &none).unwrap_err().to_string().contains("does not list linux.netDevices"));
    assert!(applied(&rdt, &rdt_without_monitoring).is_ok());
}

#[test]
fn no_edits_change_nothing() {
    let mut spec = base();
    let support = RuntimeSupport { handler: "runc", features: &HandlerFeatures::default() };
    apply(&mut spec, &[], support, &FakeHost::default()).unwrap();
    let empty =
        SourcedEdits { device: "a/b=c".into(), file: "/x.yaml".into(), edits: ContainerEdits::default() };
    apply(&mut spec, &[empty], support, &FakeHost::default()).unwrap();
    assert_eq!(spec.mounts(), base().mounts());
    assert_eq!(spec.hooks(), &None);
}
