//! Field numbers are the wire contract: these tests encode messages and check the numbers on
//! the wire against the upstream CRI and containerd contracts, so a renumbered field fails.

#![allow(clippy::unwrap_used)] // a malformed encoding should fail the test loudly

use berth_proto::containerd::services::namespaces::v1 as namespaces;
use berth_proto::containerd::services::tasks::v1 as tasks;
use berth_proto::runtime::v1 as cri;
use prost::Message;
use prost::bytes::Buf;
use prost::encoding::{WireType, decode_key, decode_varint};

/// The top-level (field number, wire type) pairs of an encoded message, in order.
fn wire_fields(mut bytes: &[u8]) -> Vec<(u32, WireType)> {
    let mut fields = Vec::new();
    while bytes.has_remaining() {
        let (number, wire_type) = decode_key(&mut bytes).unwrap();
        match wire_type {
            WireType::Varint => {
                decode_varint(&mut bytes).unwrap();
            }
            WireType::LengthDelimited => {
                let len = decode_varint(&mut bytes).unwrap() as usize;
                bytes.advance(len);
            }
            WireType::SixtyFourBit => bytes.advance(8),
            WireType::ThirtyTwoBit => bytes.advance(4),
            other => panic!("unexpected wire type {other:?}"),
        }
        fields.push((number, wire_type));
    }
    fields
}

fn numbers(bytes: &[u8]) -> Vec<u32> {
    wire_fields(bytes).into_iter().map(|(n, _)| n).collect()
}

#[test]
fn cri_version_response_is_byte_exact() {
    let message = cri::VersionResponse {
        version: "0.1.0".into(),
        runtime_name: "berth".into(),
        runtime_version: "1".into(),
        runtime_api_version: "v1".into(),
    };
    let bytes = message.encode_to_vec();
    let expected: Vec<u8> =
        [&[0x0a, 5][..], b"0.1.0", &[0x12, 5], b"berth", &[0x1a, 1], b"1", &[0x22, 2], b"v1"].concat();
    assert_eq!(bytes, expected);
    assert_eq!(cri::VersionResponse::decode(bytes.as_slice()).unwrap(), message);
}

#[test]
fn cri_container_config_numbers() {
    let message = cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata { name: "c".into(), attempt: 1 }),
        image: Some(cri::ImageSpec { image: "busybox".into(), ..Default::default() }),
        command: vec!["sh".into()],
        args: vec!["-c".into()],
        working_dir: "/".into(),
        envs: vec![cri::KeyValue { key: "A".into(), value: "b".into() }],
        mounts: vec![cri::Mount::default()],
        devices: vec![cri::Device::default()],
        labels: [("l".to_string(), "v".to_string())].into(),
        annotations: [("a".to_string(), "v".to_string())].into(),
        log_path: "c.log".into(),
        stdin: true,
        stdin_once: true,
        tty: true,
        linux: Some(cri::LinuxContainerConfig::default()),
        ..Default::default()
    };
    let bytes = message.encode_to_vec();
    assert_eq!(numbers(&bytes), vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
    assert_eq!(cri::ContainerConfig::decode(bytes.as_slice()).unwrap(), message);
}

#[test]
fn cri_status_and_runtime_config_numbers() {
    let status = cri::StatusResponse {
        status: Some(cri::RuntimeStatus {
            conditions: vec![cri::RuntimeCondition {
                r#type: "RuntimeReady".into(),
                status: true,
                reason: "r".into(),
                message: "m".into(),
            }],
        }),
        info: [("k".to_string(), "v".to_string())].into(),
        runtime_handlers: vec![cri::RuntimeHandler::default()],
        features: Some(cri::RuntimeFeatures { supplemental_groups_policy: true, ..Default::default() }),
    };
    assert_eq!(numbers(&status.encode_to_vec()), vec![1, 2, 3, 4]);
    let condition = &status.status.as_ref().unwrap().conditions[0];
    assert_eq!(numbers(&condition.encode_to_vec()), vec![1, 2, 3, 4]);

    let config = cri::RuntimeConfigResponse {
        linux: Some(cri::LinuxRuntimeConfiguration { cgroup_driver: cri::CgroupDriver::Cgroupfs as i32 }),
    };
    // linux = 1 { cgroup_driver = 1: CGROUPFS (1) }
    assert_eq!(config.encode_to_vec(), vec![0x0a, 2, 0x08, 1]);
    assert_eq!(cri::CgroupDriver::Systemd as i32, 0);
}

#[test]
fn cri_update_pod_sandbox_resources_numbers() {
    let message = cri::UpdatePodSandboxResourcesRequest {
        pod_sandbox_id: "p".into(),
        overhead: Some(cri::LinuxContainerResources::default()),
        resources: Some(cri::LinuxContainerResources::default()),
    };
    assert_eq!(numbers(&message.encode_to_vec()), vec![1, 2, 3]);
}

#[test]
fn containerd_namespace_numbers() {
    let message = namespaces::UpdateNamespaceRequest {
        namespace: Some(namespaces::Namespace {
            name: "k8s.io".into(),
            labels: [("a".to_string(), "b".to_string())].into(),
        }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["labels".into()] }),
    };
    let bytes = message.encode_to_vec();
    assert_eq!(numbers(&bytes), vec![1, 2]);
    let namespace = message.namespace.as_ref().unwrap().encode_to_vec();
    assert_eq!(numbers(&namespace), vec![1, 2]);
    assert_eq!(namespaces::UpdateNamespaceRequest::decode(bytes.as_slice()).unwrap(), message);
}

#[test]
fn containerd_create_task_numbers() {
    let message = tasks::CreateTaskRequest {
        container_id: "c".into(),
        rootfs: vec![Default::default()],
        stdin: "i".into(),
        stdout: "o".into(),
        stderr: "e".into(),
        terminal: true,
        checkpoint: Some(Default::default()),
        options: Some(Default::default()),
        runtime_path: "r".into(),
        task_api_address: "a".into(),
        task_api_version: 3,
    };
    // Field 2 is unused upstream; rootfs is 3.
    assert_eq!(numbers(&message.encode_to_vec()), vec![1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
}
