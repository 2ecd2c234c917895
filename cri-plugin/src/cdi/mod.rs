//! The Container Device Interface (CDI): how device plugins and DRA drivers give containers
//! GPUs and other devices. kubelet passes the devices' names in `ContainerConfig.CDI_devices`
//! (older device plugins in `cdi.k8s.io/*` annotations); the spec files in the configured
//! directories say what each device adds to a container's OCI spec.
//!
//! No Rust CDI crate fits: the one there is (`container-device-interface`) reads YAML with the
//! archived `serde_yaml`, links a CLI parser and a JSON-schema engine, and returns errors that
//! cannot tell an unknown device from an invalid spec. This module is written from the CDI
//! specification, and behaves as the Go library containerd 2.3.4 vendors (v1.1.0):
//! - `schema.rs`: the file format; `validate.rs` and `names.rs`: what makes a spec and a
//!   device name valid;
//! - `trust.rs`: which directories and files may be read at all;
//! - `cache.rs`: the specs of the directories, re-read when they change, and lookups;
//! - `apply.rs`: a device's edits made to an `oci_spec::runtime::Spec`.

use std::collections::BTreeMap;

use berth_proto::runtime::v1 as cri;
use oci_spec::runtime::Spec;

mod apply;
mod cache;
mod error;
mod names;
mod schema;
mod trust;
mod validate;

pub use apply::{RuntimeSupport, apply};
pub use cache::{CdiRegistry, SourcedEdits};
pub use error::CdiError;
pub use names::{ANNOTATION_PREFIX, requested_devices};

impl CdiRegistry {
    /// Gives the container of `config` the CDI devices it asks for, in `CDI_devices` and in
    /// `cdi.k8s.io/*` annotations (the container's own, as containerd reads them). Blocks on
    /// the file system; changes `spec` only when every device resolves and applies.
    pub fn inject(
        &self,
        spec: &mut Spec,
        config: &cri::ContainerConfig,
        support: RuntimeSupport<'_>,
        host: &dyn crate::spec::HostDevices,
    ) -> Result<(), CdiError> {
        let annotations: BTreeMap<&str, &str> =
            config.annotations.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let names = config.cdi_devices.iter().map(|d| d.name.as_str());
        let devices = requested_devices(names, &annotations).map_err(CdiError::BadName)?;
        if devices.is_empty() {
            return Ok(());
        }
        let edits = self.resolve(&devices)?;
        let mut edited = spec.clone();
        apply(&mut edited, &edits, support, host)?;
        *spec = edited;
        Ok(())
    }
}
