//! AppArmor: which profile a container runs under, and `berth-default`, the profile berthd
//! writes and loads for RuntimeDefault (and for containers that ask for nothing) on hosts
//! whose kernel has AppArmor.
//!
//! The decisions follow containerd 2.3's CRI, so that kubelet sees the same answers:
//! - on a host without AppArmor, an unset profile applies nothing, Unconfined is accepted, and
//!   any other profile, RuntimeDefault included, is refused ("apparmor is not supported");
//! - with AppArmor, an unset profile means RuntimeDefault; a privileged container gets no
//!   default profile; a Localhost profile must already be loaded.

use std::io;
use std::path::Path;

use berth_proto::runtime::v1 as cri;
use cri::security_profile::ProfileType;

use super::{HostDevices, SpecError};

/// The profile RuntimeDefault names; berthd loads it the first time a container needs it.
pub const DEFAULT_PROFILE: &str = "berth-default";

/// Where the kernel lists the loaded profiles, one `name (mode)` a line.
pub const PROFILES_FILE: &str = "/sys/kernel/security/apparmor/profiles";

/// What the host's kernel says of AppArmor, for the decisions and for Status's verbose info.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum AppArmorSupport {
    /// securityfs lists AppArmor and its module is enabled.
    Enabled,
    /// No AppArmor in this kernel, or it is disabled.
    #[default]
    Unavailable,
}

impl AppArmorSupport {
    /// Reads this host's kernel: AppArmor's securityfs directory exists and its module says
    /// `Y`, as containerd and runc check.
    pub fn detect() -> Self {
        let enabled = Path::new("/sys/kernel/security/apparmor").is_dir()
            && std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
                .is_ok_and(|v| v.trim_start().starts_with('Y'));
        if enabled { Self::Enabled } else { Self::Unavailable }
    }

    /// [`Self::detect`], read once: the kernel's LSMs do not change while berthd runs.
    pub fn of_this_host() -> Self {
        static SUPPORT: std::sync::OnceLock<AppArmorSupport> = std::sync::OnceLock::new();
        *SUPPORT.get_or_init(Self::detect)
    }

    pub fn is_enabled(self) -> bool {
        self == Self::Enabled
    }

    /// One sentence for Status's verbose info: which of the rules above hold here.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Enabled => {
                "AppArmor is enabled: RuntimeDefault and unset profiles run under berth-default, Localhost profiles must be loaded"
            }
            Self::Unavailable => {
                "AppArmor is not available: unset and Unconfined profiles apply nothing, any other is refused"
            }
        }
    }
}

/// What a container's security context asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requested {
    Unset,
    Unconfined,
    RuntimeDefault,
    Localhost(String),
}

fn requested(sc: Option<&cri::LinuxContainerSecurityContext>) -> Result<Requested, SpecError> {
    // The typed field wins; the deprecated string is read only when it is absent.
    if let Some(profile) = sc.and_then(|sc| sc.apparmor.as_ref()) {
        let kind = ProfileType::try_from(profile.profile_type)
            .map_err(|_| SpecError::UnsupportedApparmorProfile(format!("type {}", profile.profile_type)))?;
        let name = profile.localhost_ref.strip_prefix("localhost/").unwrap_or(&profile.localhost_ref);
        if kind != ProfileType::Localhost && !name.is_empty() {
            return Err(SpecError::UnsupportedApparmorProfile(format!(
                "{name} (a localhost_ref is only for a Localhost profile)"
            )));
        }
        return Ok(match kind {
            ProfileType::Unconfined => Requested::Unconfined,
            ProfileType::RuntimeDefault => Requested::RuntimeDefault,
            ProfileType::Localhost => Requested::Localhost(name.to_string()),
        });
    }
    #[allow(deprecated)]
    let deprecated = sc.map(|sc| sc.apparmor_profile.as_str()).unwrap_or("");
    match deprecated {
        "" => Ok(Requested::Unset),
        "unconfined" => Ok(Requested::Unconfined),
        "runtime/default" => Ok(Requested::RuntimeDefault),
        other => match other.strip_prefix("localhost/") {
            Some(name) => Ok(Requested::Localhost(name.to_string())),
            None => Err(SpecError::UnsupportedApparmorProfile(other.to_string())),
        },
    }
}

/// The profile the container runs under; `None` runs it without one.
pub fn profile_for(
    sc: Option<&cri::LinuxContainerSecurityContext>,
    support: AppArmorSupport,
) -> Result<Option<String>, SpecError> {
    let privileged = sc.is_some_and(|sc| sc.privileged);
    match (requested(sc)?, support) {
        (Requested::Unconfined, _) | (Requested::Unset, AppArmorSupport::Unavailable) => Ok(None),
        // Asked for by name or as the default: failing loudly beats running unconfined.
        (_, AppArmorSupport::Unavailable) => Err(SpecError::ApparmorNotSupported),
        (Requested::Unset | Requested::RuntimeDefault, AppArmorSupport::Enabled) if privileged => Ok(None),
        (Requested::Unset | Requested::RuntimeDefault, AppArmorSupport::Enabled) => {
            Ok(Some(DEFAULT_PROFILE.to_string()))
        }
        (Requested::Localhost(name), AppArmorSupport::Enabled) if name.is_empty() => {
            Err(SpecError::UnsupportedApparmorProfile("localhost/".into()))
        }
        (Requested::Localhost(name), AppArmorSupport::Enabled) => Ok(Some(name)),
    }
}

/// Whether `profile` is among the kernel's loaded profiles (`name (mode)` lines).
pub fn is_loaded(profiles: &str, profile: &str) -> bool {
    profiles.lines().any(|line| line.strip_prefix(profile).is_some_and(|rest| rest.starts_with(" (")))
}

/// Makes `profile` usable before runc is asked to apply it: berth's default is written and
/// loaded when the kernel does not have it yet; any other profile must already be loaded.
pub fn ensure_loaded(host: &dyn HostDevices, profile: &str) -> Result<(), SpecError> {
    let profiles =
        host.apparmor_profiles().map_err(|e| SpecError::Apparmor(format!("read {PROFILES_FILE}: {e}")))?;
    if is_loaded(&profiles, profile) {
        return Ok(());
    }
    if profile != DEFAULT_PROFILE {
        return Err(SpecError::ApparmorProfileNotLoaded(profile.to_string()));
    }
    let text = default_profile(DEFAULT_PROFILE, |include| host.apparmor_include_exists(include));
    host.load_apparmor_profile(&text).map_err(|e| SpecError::Apparmor(format!("load {DEFAULT_PROFILE}: {e}")))
}

/// The text of berth's default profile, named `name`. It confines a container the way
/// Docker's and containerd's defaults do: networking, capabilities (which the OCI spec already
/// bounds) and files are allowed; mounts, the host-wide knobs under /proc and /sys, the
/// kernel's memory and security interfaces are denied; signals and ptrace stay among
/// processes under this profile. `include_exists` says whether an abstraction of the host's
/// AppArmor installation exists (a minimal host may lack them).
pub fn default_profile(name: &str, include_exists: impl Fn(&str) -> bool) -> String {
    let mut text = String::new();
    if include_exists("tunables/global") {
        text.push_str("#include <tunables/global>\n");
    } else {
        text.push_str("@{PROC}=/proc/\n");
    }
    text.push_str(&format!("\nprofile {name} flags=(attach_disconnected,mediate_deleted) {{\n"));
    if include_exists("abstractions/base") {
        text.push_str("  #include <abstractions/base>\n");
    }
    for rule in [
        "network,",
        "capability,",
        "file,",
        "umount,",
        // The host's unconfined processes (the shim, kubelet's probes) may signal containers.
        "signal (receive) peer=unconfined,",
        &format!("signal (send,receive) peer={name},"),
        &format!("ptrace (trace,read,tracedby,readby) peer={name},"),
        "deny mount,",
        // /proc: nothing written at its top level nor in another process's directory; of
        // /proc/sys only the namespaced kernel/shm* knobs; never sysrq-trigger or kcore.
        "deny @{PROC}/* w,",
        "deny @{PROC}/{[^1-9],[^1-9][^0-9],[^1-9s][^0-9y][^0-9s],[^1-9][^0-9][^0-9][^0-9/]*}/** w,",
        "deny @{PROC}/sys/[^k]** w,",
        "deny @{PROC}/sys/kernel/{?,??,[^s][^h][^m]**} w,",
        "deny @{PROC}/sysrq-trigger rwklx,",
        "deny @{PROC}/kcore rwklx,",
        // /sys: nothing written outside the container's own cgroup tree; firmware and the
        // security modules' files are not even read.
        "deny /sys/[^f]*/** wklx,",
        "deny /sys/f[^s]*/** wklx,",
        "deny /sys/fs/[^c]*/** wklx,",
        "deny /sys/fs/c[^g]*/** wklx,",
        "deny /sys/fs/cg[^r]*/** wklx,",
        "deny /sys/firmware/** rwklx,",
        "deny /sys/kernel/security/** rwklx,",
    ] {
        text.push_str("  ");
        text.push_str(rule);
        text.push('\n');
    }
    text.push_str("}\n");
    text
}

/// The host's side: the kernel's profile list, the abstractions of its AppArmor installation,
/// and `apparmor_parser`, which loads (or replaces) a profile given on its stdin.
pub mod host {
    use std::io::Write;
    use std::process::{Command, Stdio};

    use super::*;

    pub fn profiles() -> io::Result<String> {
        std::fs::read_to_string(PROFILES_FILE)
    }

    pub fn include_exists(include: &str) -> bool {
        Path::new("/etc/apparmor.d").join(include).exists()
    }

    pub fn load(text: &str) -> io::Result<()> {
        let parser = ["/sbin/apparmor_parser", "/usr/sbin/apparmor_parser"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .unwrap_or("apparmor_parser");
        // -K: do not cache the compiled profile; -r: replace a loaded one of the same name.
        let mut child = Command::new(parser)
            .arg("-Kr")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("run {parser}: {e}")))?;
        child.stdin.take().map(|mut stdin| stdin.write_all(text.as_bytes())).transpose()?;
        let output = child.wait_with_output()?;
        if !output.status.success() {
            return Err(io::Error::other(format!(
                "{parser} failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::spec::testing::FakeHost;

    fn with(kind: ProfileType, name: &str) -> cri::LinuxContainerSecurityContext {
        cri::LinuxContainerSecurityContext {
            apparmor: Some(cri::SecurityProfile { profile_type: kind as i32, localhost_ref: name.into() }),
            ..Default::default()
        }
    }

    #[allow(deprecated)]
    fn with_string(profile: &str) -> cri::LinuxContainerSecurityContext {
        cri::LinuxContainerSecurityContext { apparmor_profile: profile.into(), ..Default::default() }
    }

    const ON: AppArmorSupport = AppArmorSupport::Enabled;
    const OFF: AppArmorSupport = AppArmorSupport::Unavailable;

    #[test]
    fn with_apparmor_the_default_applies_unless_privileged_or_unconfined() {
        let default = Some(DEFAULT_PROFILE.to_string());
        assert_eq!(profile_for(None, ON).unwrap(), default);
        assert_eq!(profile_for(Some(&Default::default()), ON).unwrap(), default);
        assert_eq!(profile_for(Some(&with(ProfileType::RuntimeDefault, "")), ON).unwrap(), default);
        assert_eq!(profile_for(Some(&with_string("runtime/default")), ON).unwrap(), default);
        assert_eq!(profile_for(Some(&with(ProfileType::Unconfined, "")), ON).unwrap(), None);
        assert_eq!(profile_for(Some(&with_string("unconfined")), ON).unwrap(), None);
        for mut sc in [Default::default(), with(ProfileType::RuntimeDefault, "")] {
            sc.privileged = true;
            assert_eq!(profile_for(Some(&sc), ON).unwrap(), None, "{sc:?}");
        }
        let local = with(ProfileType::Localhost, "localhost/my-profile");
        assert_eq!(profile_for(Some(&local), ON).unwrap().as_deref(), Some("my-profile"));
        assert_eq!(profile_for(Some(&with_string("localhost/p")), ON).unwrap().as_deref(), Some("p"));
        assert!(profile_for(Some(&with(ProfileType::Localhost, "")), ON).is_err());
        assert!(profile_for(Some(&with(ProfileType::RuntimeDefault, "stray")), ON).is_err());
        assert!(profile_for(Some(&with_string("bogus")), ON).is_err());
    }

    /// containerd 2.3.4's rules on a host without AppArmor.
    #[test]
    fn without_apparmor_only_unset_and_unconfined_are_accepted() {
        assert_eq!(profile_for(None, OFF).unwrap(), None);
        assert_eq!(profile_for(Some(&Default::default()), OFF).unwrap(), None);
        assert_eq!(profile_for(Some(&with(ProfileType::Unconfined, "")), OFF).unwrap(), None);
        for sc in [
            with(ProfileType::RuntimeDefault, ""),
            with(ProfileType::Localhost, "localhost/p"),
            with_string("runtime/default"),
            with_string("localhost/p"),
        ] {
            let error = profile_for(Some(&sc), OFF).unwrap_err();
            assert!(matches!(error, SpecError::ApparmorNotSupported), "{sc:?}: {error}");
            assert_eq!(error.to_string(), "apparmor is not supported");
        }
    }

    #[test]
    fn loaded_profiles_are_matched_by_whole_name() {
        let profiles = "berth-default (enforce)\nmy-profile//child (complain)\nunconfined-ish (enforce)\n";
        assert!(is_loaded(profiles, "berth-default"));
        assert!(is_loaded(profiles, "unconfined-ish"));
        assert!(!is_loaded(profiles, "berth"));
        assert!(!is_loaded(profiles, "my-profile"));
    }

    #[test]
    fn the_default_is_loaded_once_and_a_missing_localhost_profile_is_an_error() {
        let host = FakeHost::default();
        ensure_loaded(&host, DEFAULT_PROFILE).unwrap();
        assert_eq!(host.loaded_apparmor().len(), 1);
        assert!(host.loaded_apparmor()[0].contains("profile berth-default flags="));
        ensure_loaded(&host, DEFAULT_PROFILE).unwrap();
        assert_eq!(host.loaded_apparmor().len(), 1, "loaded again");
        let error = ensure_loaded(&host, "not-there").unwrap_err();
        assert!(matches!(error, SpecError::ApparmorProfileNotLoaded(_)), "{error}");
        assert!(error.to_string().contains("not-there"), "{error}");
    }

    #[test]
    fn the_default_profile_reads_as_a_profile() {
        let full = default_profile("berth-default", |_| true);
        assert!(full.starts_with("#include <tunables/global>\n"));
        assert!(full.contains("  #include <abstractions/base>\n"));
        let bare = default_profile("berth-default", |_| false);
        assert!(bare.starts_with("@{PROC}=/proc/\n"), "{bare}");
        assert!(!bare.contains("#include"));
        for text in [&full, &bare] {
            assert_eq!(text.matches('{').count(), text.matches('}').count(), "{text}");
            assert!(text.contains("  deny mount,\n"));
            assert!(text.contains("  signal (send,receive) peer=berth-default,\n"));
            assert!(text.trim_end().ends_with('}'));
            // Every rule line ends with a comma, as the parser requires.
            for line in text.lines().filter(|l| l.starts_with("  ") && !l.contains("#include")) {
                assert!(line.ends_with(','), "{line}");
            }
        }
    }
}
