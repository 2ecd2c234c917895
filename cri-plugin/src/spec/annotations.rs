//! Annotations on a container's spec: the config's own, and the CRI ones containerd sets, which
//! runtimes and hooks (kata, gVisor, NRI plugins) read to tell containers from sandboxes.

use std::collections::HashMap;

use berth_proto::runtime::v1 as cri;

pub const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
pub const CONTAINER_TYPE_CONTAINER: &str = "container";
pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
pub const CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
pub const IMAGE_NAME: &str = "io.kubernetes.cri.image-name";
pub const SANDBOX_NAME: &str = "io.kubernetes.cri.sandbox-name";
pub const SANDBOX_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
pub const SANDBOX_UID: &str = "io.kubernetes.cri.sandbox-uid";

/// The config's annotations with the CRI ones over them (a config cannot fake them).
pub fn container_annotations(
    config: &cri::ContainerConfig,
    sandbox_id: &str,
    pod: &cri::PodSandboxConfig,
) -> HashMap<String, String> {
    let mut out = config.annotations.clone();
    let image = config
        .image
        .as_ref()
        .map(|i| if i.user_specified_image.is_empty() { &i.image } else { &i.user_specified_image })
        .cloned()
        .unwrap_or_default();
    let meta = pod.metadata.clone().unwrap_or_default();
    for (k, v) in [
        (CONTAINER_TYPE, CONTAINER_TYPE_CONTAINER.to_string()),
        (SANDBOX_ID, sandbox_id.to_string()),
        (CONTAINER_NAME, config.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default()),
        (IMAGE_NAME, image),
        (SANDBOX_NAME, meta.name),
        (SANDBOX_NAMESPACE, meta.namespace),
        (SANDBOX_UID, meta.uid),
    ] {
        out.insert(k.to_string(), v);
    }
    out
}
