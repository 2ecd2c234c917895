//! Seccomp: which profile a container runs under — none, berth's default
//! (`seccomp_default.rs`) or a Localhost profile read from the host.

use std::path::{Path, PathBuf};

use berth_proto::runtime::v1 as cri;
use cri::security_profile::ProfileType;
use oci_spec::runtime::{Capability, LinuxSeccomp};

use super::seccomp_default::default_profile;
use super::{HostDevices, SpecError};

/// Which profile a container asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeccompChoice {
    Unconfined,
    RuntimeDefault,
    Localhost(PathBuf),
}

/// Reads the choice from the typed field, else from the deprecated path string (an empty one
/// meaning unconfined, as a missing profile does).
pub fn seccomp_choice(sc: Option<&cri::LinuxContainerSecurityContext>) -> Result<SeccompChoice, SpecError> {
    if let Some(p) = sc.and_then(|sc| sc.seccomp.as_ref()) {
        return match ProfileType::try_from(p.profile_type) {
            Ok(ProfileType::RuntimeDefault) => Ok(SeccompChoice::RuntimeDefault),
            Ok(ProfileType::Unconfined) => Ok(SeccompChoice::Unconfined),
            Ok(ProfileType::Localhost) => {
                localhost(p.localhost_ref.strip_prefix("localhost/").unwrap_or(&p.localhost_ref))
            }
            Err(_) => Err(SpecError::UnsupportedSeccompProfile(format!("type {}", p.profile_type))),
        };
    }
    #[allow(deprecated)]
    let path = sc.map(|sc| sc.seccomp_profile_path.as_str()).unwrap_or("");
    match path {
        "" | "unconfined" => Ok(SeccompChoice::Unconfined),
        "runtime/default" | "docker/default" => Ok(SeccompChoice::RuntimeDefault),
        other => match other.strip_prefix("localhost/") {
            Some(p) => localhost(p),
            None => Err(SpecError::UnsupportedSeccompProfile(other.to_string())),
        },
    }
}

fn localhost(path: &str) -> Result<SeccompChoice, SpecError> {
    if !path.starts_with('/') {
        return Err(SpecError::UnsupportedSeccompProfile(format!("localhost/{path}")));
    }
    Ok(SeccompChoice::Localhost(PathBuf::from(path)))
}

/// Reads and parses a Localhost profile.
pub fn load_profile(host: &dyn HostDevices, path: &Path) -> Result<LinuxSeccomp, SpecError> {
    let bytes = host.read_file(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => SpecError::SeccompProfileNotFound(path.to_path_buf()),
        _ => SpecError::InvalidSeccompProfile { path: path.to_path_buf(), reason: e.to_string() },
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| SpecError::InvalidSeccompProfile { path: path.to_path_buf(), reason: e.to_string() })
}

/// The seccomp section of a container's spec: none on a node without seccomp, for privileged
/// containers, or when unconfined.
pub fn container_seccomp(
    sc: Option<&cri::LinuxContainerSecurityContext>,
    node_has_seccomp: bool,
    bounding: &[Capability],
    host: &dyn HostDevices,
) -> Result<Option<LinuxSeccomp>, SpecError> {
    // Read the choice first so a malformed one is refused even where it would be ignored.
    let choice = seccomp_choice(sc)?;
    if !node_has_seccomp || sc.is_some_and(|sc| sc.privileged) {
        return Ok(None);
    }
    match choice {
        SeccompChoice::Unconfined => Ok(None),
        SeccompChoice::RuntimeDefault => Ok(Some(default_profile(bounding))),
        SeccompChoice::Localhost(path) => load_profile(host, &path).map(Some),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::spec::testing::FakeHost;
    use oci_spec::runtime::LinuxSeccompAction;

    fn sc_with(kind: ProfileType, path: &str) -> cri::LinuxContainerSecurityContext {
        cri::LinuxContainerSecurityContext {
            seccomp: Some(cri::SecurityProfile { profile_type: kind as i32, localhost_ref: path.into() }),
            ..Default::default()
        }
    }

    #[test]
    fn runtime_default_unconfined_and_absent() {
        let host = FakeHost::default();
        let rd = sc_with(ProfileType::RuntimeDefault, "");
        assert!(container_seccomp(Some(&rd), true, &[], &host).unwrap().is_some());
        let unconfined = sc_with(ProfileType::Unconfined, "");
        assert!(container_seccomp(Some(&unconfined), true, &[], &host).unwrap().is_none());
        assert!(container_seccomp(None, true, &[], &host).unwrap().is_none());
        // A node without seccomp gets no profile at all.
        assert!(container_seccomp(Some(&rd), false, &[], &host).unwrap().is_none());
    }

    #[test]
    fn privileged_is_unconfined_whatever_the_profile() {
        let mut host = FakeHost::default();
        host.files.insert("/p.json".into(), br#"{"defaultAction":"SCMP_ACT_ALLOW"}"#.to_vec());
        let mut sc = sc_with(ProfileType::Localhost, "/p.json");
        sc.privileged = true;
        assert!(container_seccomp(Some(&sc), true, &[], &host).unwrap().is_none());
    }

    #[test]
    fn localhost_profile_is_read_and_parsed() {
        let mut host = FakeHost::default();
        host.files.insert(
            "/profiles/block-chmod.json".into(),
            br#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["chmod","fchmodat"],"action":"SCMP_ACT_ERRNO"}]}"#
                .to_vec(),
        );
        let sc = sc_with(ProfileType::Localhost, "/profiles/block-chmod.json");
        let p = container_seccomp(Some(&sc), true, &[], &host).unwrap().unwrap();
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActAllow);
        assert_eq!(p.syscalls().as_ref().unwrap()[0].names(), &["chmod", "fchmodat"]);
    }

    #[test]
    fn localhost_profile_missing_or_invalid() {
        let mut host = FakeHost::default();
        let sc = sc_with(ProfileType::Localhost, "/nope.json");
        let err = container_seccomp(Some(&sc), true, &[], &host).unwrap_err();
        assert!(matches!(err, SpecError::SeccompProfileNotFound(_)));
        assert_eq!(crate::CriError::from(err).code(), tonic::Code::NotFound);
        host.files.insert("/bad.json".into(), b"{not json".to_vec());
        let sc = sc_with(ProfileType::Localhost, "/bad.json");
        assert!(matches!(
            container_seccomp(Some(&sc), true, &[], &host),
            Err(SpecError::InvalidSeccompProfile { .. })
        ));
        let sc = sc_with(ProfileType::Localhost, "relative.json");
        assert!(matches!(
            container_seccomp(Some(&sc), true, &[], &host),
            Err(SpecError::UnsupportedSeccompProfile(_))
        ));
    }

    #[test]
    fn deprecated_path_forms() {
        #[allow(deprecated)]
        let sc = |s: &str| cri::LinuxContainerSecurityContext {
            seccomp_profile_path: s.into(),
            ..Default::default()
        };
        assert_eq!(seccomp_choice(Some(&sc("runtime/default"))).unwrap(), SeccompChoice::RuntimeDefault);
        assert_eq!(seccomp_choice(Some(&sc("docker/default"))).unwrap(), SeccompChoice::RuntimeDefault);
        assert_eq!(seccomp_choice(Some(&sc("unconfined"))).unwrap(), SeccompChoice::Unconfined);
        assert_eq!(seccomp_choice(Some(&sc(""))).unwrap(), SeccompChoice::Unconfined);
        assert_eq!(
            seccomp_choice(Some(&sc("localhost//etc/p.json"))).unwrap(),
            SeccompChoice::Localhost("/etc/p.json".into())
        );
        assert!(seccomp_choice(Some(&sc("weird"))).is_err());
    }
}
