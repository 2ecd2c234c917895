//! The container's process: what runs (command and args), its environment, where, on which
//! terminal; and the process of an exec, which inherits the container's.

use berth_proto::runtime::v1 as cri;
use oci_spec::image::Config as ImageConfig;
use oci_spec::runtime::Process;

use super::SpecError;

/// PATH when neither the image nor the config sets one (runc's and containerd's default).
pub const DEFAULT_PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Kubernetes semantics: `command` replaces the image's Entrypoint, `args` its Cmd; when only
/// `command` is given the image's Cmd is dropped too, because it was written for the
/// Entrypoint that is no longer run.
pub fn process_args(
    config: &cri::ContainerConfig,
    image: Option<&ImageConfig>,
) -> Result<Vec<String>, SpecError> {
    let image_entrypoint = image.and_then(|c| c.entrypoint().clone()).unwrap_or_default();
    let image_cmd = image.and_then(|c| c.cmd().clone()).unwrap_or_default();
    let mut args = if config.command.is_empty() { image_entrypoint } else { config.command.clone() };
    if !config.args.is_empty() {
        args.extend(config.args.iter().cloned());
    } else if config.command.is_empty() {
        args.extend(image_cmd);
    }
    if args.is_empty() {
        return Err(SpecError::NoCommand);
    }
    Ok(args)
}

/// The environment: a default PATH and HOSTNAME, then the image's Env, then the config's envs.
/// A later value of a variable replaces an earlier one where it stood.
pub fn process_env(
    config: &cri::ContainerConfig,
    image: Option<&ImageConfig>,
    hostname: &str,
) -> Vec<String> {
    let mut env = EnvList::default();
    env.set(DEFAULT_PATH_ENV.to_string());
    env.set(format!("HOSTNAME={hostname}"));
    for e in image.and_then(|c| c.env().as_ref()).into_iter().flatten() {
        env.set(e.clone());
    }
    for kv in &config.envs {
        env.set(format!("{}={}", kv.key, String::from_utf8_lossy(&kv.value)));
    }
    env.0
}

/// The working directory: the config's, else the image's, else `/`.
pub fn process_cwd(config: &cri::ContainerConfig, image: Option<&ImageConfig>) -> Result<String, SpecError> {
    if !config.working_dir.is_empty() {
        if !config.working_dir.starts_with('/') {
            return Err(SpecError::RelativeWorkingDir(config.working_dir.clone()));
        }
        return Ok(config.working_dir.clone());
    }
    match image.and_then(|c| c.working_dir().as_deref()).filter(|d| !d.is_empty()) {
        // Image builders have written relative WorkingDirs; they mean from the root.
        Some(dir) if !dir.starts_with('/') => Ok(format!("/{dir}")),
        Some(dir) => Ok(dir.to_string()),
        None => Ok("/".to_string()),
    }
}

/// The process of an exec in a container whose spec is `spec`: the container's user, env,
/// cwd, capabilities, no_new_privileges, AppArmor and SELinux labels, with `cmd` to run.
pub fn exec_process(
    spec: &oci_spec::runtime::Spec,
    cmd: Vec<String>,
    tty: bool,
) -> Result<Process, SpecError> {
    if cmd.is_empty() {
        return Err(SpecError::NoCommand);
    }
    let mut process = spec.process().clone().ok_or(SpecError::NoProcess)?;
    process.set_args(Some(cmd));
    process.set_terminal(Some(tty));
    process.set_console_size(None);
    if tty {
        // Programs on a terminal look at TERM; the container's own process may not have one.
        let mut env = EnvList(process.env().clone().unwrap_or_default());
        if env.get("TERM").is_none() {
            env.set("TERM=xterm".to_string());
        }
        process.set_env(Some(env.0));
    }
    Ok(process)
}

/// `KEY=value` entries, one per key, in first-set order.
#[derive(Debug, Default)]
struct EnvList(Vec<String>);

fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

impl EnvList {
    fn set(&mut self, entry: String) {
        let key = env_key(&entry);
        match self.0.iter_mut().find(|e| env_key(e) == key) {
            Some(existing) => *existing = entry,
            None => self.0.push(entry),
        }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|e| env_key(e) == key).map(|e| e.split_once('=').map_or("", |(_, v)| v))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use oci_spec::image::ConfigBuilder;

    fn image(entrypoint: &[&str], cmd: &[&str]) -> ImageConfig {
        let mut b = ConfigBuilder::default();
        if !entrypoint.is_empty() {
            b = b.entrypoint(entrypoint.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        }
        if !cmd.is_empty() {
            b = b.cmd(cmd.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        }
        b.build().unwrap()
    }

    fn config(command: &[&str], args: &[&str]) -> cri::ContainerConfig {
        cri::ContainerConfig {
            command: command.iter().map(|s| s.to_string()).collect(),
            args: args.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn image_entrypoint_and_cmd_when_config_sets_nothing() {
        let img = image(&["/entry"], &["a", "b"]);
        assert_eq!(process_args(&config(&[], &[]), Some(&img)).unwrap(), ["/entry", "a", "b"]);
    }

    #[test]
    fn config_args_replace_image_cmd_but_keep_entrypoint() {
        let img = image(&["/entry"], &["a"]);
        assert_eq!(process_args(&config(&[], &["x"]), Some(&img)).unwrap(), ["/entry", "x"]);
    }

    #[test]
    fn config_command_drops_image_entrypoint_and_cmd() {
        let img = image(&["/entry"], &["a"]);
        assert_eq!(process_args(&config(&["/bin/sh"], &[]), Some(&img)).unwrap(), ["/bin/sh"]);
        assert_eq!(
            process_args(&config(&["/bin/sh"], &["-c", "x"]), Some(&img)).unwrap(),
            ["/bin/sh", "-c", "x"]
        );
    }

    #[test]
    fn no_command_anywhere_is_an_error() {
        assert!(matches!(process_args(&config(&[], &[]), None), Err(SpecError::NoCommand)));
    }

    #[test]
    fn env_merges_image_then_config_with_defaults() {
        let img =
            ConfigBuilder::default().env(vec!["A=image".to_string(), "B=image".to_string()]).build().unwrap();
        let mut cfg = config(&[], &[]);
        cfg.envs = vec![
            cri::KeyValue { key: "B".into(), value: b"config".to_vec() },
            cri::KeyValue { key: "C".into(), value: b"x=y".to_vec() },
        ];
        let env = process_env(&cfg, Some(&img), "pod-host");
        assert_eq!(env, [DEFAULT_PATH_ENV, "HOSTNAME=pod-host", "A=image", "B=config", "C=x=y"]);
    }

    #[test]
    fn image_path_replaces_default_path_in_place() {
        let img = ConfigBuilder::default().env(vec!["PATH=/opt/bin".to_string()]).build().unwrap();
        let env = process_env(&config(&[], &[]), Some(&img), "h");
        assert_eq!(env, ["PATH=/opt/bin", "HOSTNAME=h"]);
    }

    #[test]
    fn cwd_precedence_and_validation() {
        let img = ConfigBuilder::default().working_dir("/srv").build().unwrap();
        let mut cfg = config(&[], &[]);
        assert_eq!(process_cwd(&cfg, None).unwrap(), "/");
        assert_eq!(process_cwd(&cfg, Some(&img)).unwrap(), "/srv");
        cfg.working_dir = "/work".into();
        assert_eq!(process_cwd(&cfg, Some(&img)).unwrap(), "/work");
        cfg.working_dir = "rel".into();
        assert!(matches!(process_cwd(&cfg, Some(&img)), Err(SpecError::RelativeWorkingDir(_))));
    }
}
