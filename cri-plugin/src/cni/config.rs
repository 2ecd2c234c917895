//! Loading network configurations: the first `*.conflist`/`*.conf`/`*.json` in the conf dir,
//! a single-plugin `.conf` wrapped as a one-plugin list, and the stdin each plugin is given.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::error::CniError;

const CONFIG_EXTENSIONS: [&str; 3] = ["conflist", "conf", "json"];

/// Versions of the CNI spec whose configs and results berth understands.
const KNOWN_VERSIONS: [&str; 7] = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// A config without `cniVersion` is a 0.1.0 config (what plugins assume too).
const UNVERSIONED: &str = "0.1.0";

/// The network config berth would use, if any: first `*.conflist`/`*.conf`/`*.json` by name, as
/// libcni (and so containerd) picks it.
pub fn first_network_config(conf_dir: &Path) -> Option<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(conf_dir)
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.is_file()
                && path.extension().and_then(|e| e.to_str()).is_some_and(|e| CONFIG_EXTENSIONS.contains(&e))
        })
        .collect();
    files.sort();
    files.into_iter().next()
}

/// A network: a named, versioned chain of plugins.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NetworkList {
    pub name: String,
    pub cni_version: String,
    pub disable_check: bool,
    pub plugins: Vec<PluginConf>,
}

/// One plugin of a list: its `type` and its config object as written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PluginConf {
    pub plugin_type: String,
    raw: Map<String, Value>,
}

impl NetworkList {
    /// The network of the first config file in `conf_dir`.
    pub fn load_first(conf_dir: &Path) -> Result<Self, CniError> {
        let path =
            first_network_config(conf_dir).ok_or_else(|| CniError::NoConfig { dir: conf_dir.into() })?;
        Self::load(&path)
    }

    pub fn load(path: &Path) -> Result<Self, CniError> {
        let invalid = |reason: String| CniError::InvalidConfig { path: path.into(), reason };
        let bytes = std::fs::read(path).map_err(|e| invalid(e.to_string()))?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        let is_conflist = path.extension().is_some_and(|e| e == "conflist");
        Self::from_value(value, is_conflist).map_err(invalid)
    }

    /// Parses a list (`plugins` present) or a single plugin config (wrapped as a list).
    pub fn from_value(value: Value, must_be_list: bool) -> Result<Self, String> {
        let Value::Object(mut object) = value else {
            return Err("not a JSON object".into());
        };
        let name = match object.get("name") {
            Some(Value::String(name)) if !name.is_empty() => name.clone(),
            Some(Value::String(_)) | None => return Err("no network name".into()),
            Some(other) => return Err(format!("name is not a string: {other}")),
        };
        let cni_version = Self::version_of(&object)?;
        if !object.contains_key("plugins") {
            if must_be_list {
                return Err("a .conflist needs a \"plugins\" list".into());
            }
            let plugin = PluginConf::from_object(object)?;
            return Ok(Self { name, cni_version, disable_check: false, plugins: vec![plugin] });
        }
        let disable_check = match object.get("disableCheck") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
            Some(other) => return Err(format!("disableCheck is not a boolean: {other}")),
        };
        let Some(Value::Array(plugins)) = object.remove("plugins") else {
            return Err("\"plugins\" is not a list".into());
        };
        if plugins.is_empty() {
            return Err("\"plugins\" is empty".into());
        }
        let plugins = plugins
            .into_iter()
            .enumerate()
            .map(|(i, p)| match p {
                Value::Object(o) => PluginConf::from_object(o).map_err(|e| format!("plugin {i}: {e}")),
                _ => Err(format!("plugin {i} is not a JSON object")),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { name, cni_version, disable_check, plugins })
    }

    // `cniVersions` (spec 1.1) lists alternatives: take the newest one berth knows.
    fn version_of(object: &Map<String, Value>) -> Result<String, String> {
        let mut candidates = Vec::new();
        match object.get("cniVersion") {
            None => {}
            Some(Value::String(v)) => candidates.push(v.clone()),
            Some(other) => return Err(format!("cniVersion is not a string: {other}")),
        }
        if let Some(Value::Array(versions)) = object.get("cniVersions") {
            let known = versions.iter().filter_map(Value::as_str).filter(|v| KNOWN_VERSIONS.contains(v));
            candidates.extend(known.map(str::to_string));
        }
        let newest_known = candidates
            .iter()
            .filter(|v| KNOWN_VERSIONS.contains(&v.as_str()))
            .max_by_key(|v| parse_version(v));
        match (newest_known, candidates.first()) {
            (Some(v), _) => Ok(v.clone()),
            (None, Some(v)) => {
                Err(format!("unsupported cniVersion {v:?} (berth knows {})", KNOWN_VERSIONS.join(", ")))
            }
            (None, None) => Ok(UNVERSIONED.to_string()),
        }
    }

    /// Since 0.4.0, DEL and CHECK get the ADD result as `prevResult`.
    pub fn passes_prev_result_on_del(&self) -> bool {
        version_at_least(&self.cni_version, (0, 4, 0))
    }

    /// The list as berth used it, for the result cache (parses back with `from_value`).
    pub fn to_value(&self) -> Value {
        let mut list = Map::new();
        list.insert("cniVersion".into(), Value::String(self.cni_version.clone()));
        list.insert("name".into(), Value::String(self.name.clone()));
        if self.disable_check {
            list.insert("disableCheck".into(), Value::Bool(true));
        }
        let plugins = self.plugins.iter().map(|p| Value::Object(p.raw.clone())).collect();
        list.insert("plugins".into(), Value::Array(plugins));
        Value::Object(list)
    }

    /// A plugin's stdin: its own config with the list's `name` and `cniVersion`, the previous
    /// result, and a `runtimeConfig` holding only the capabilities the plugin declares.
    pub fn plugin_stdin(
        &self,
        plugin: &PluginConf,
        prev_result: Option<&Value>,
        capability_args: &Map<String, Value>,
    ) -> Result<Vec<u8>, serde_json::Error> {
        let mut conf = plugin.raw.clone();
        conf.insert("name".into(), Value::String(self.name.clone()));
        conf.insert("cniVersion".into(), Value::String(self.cni_version.clone()));
        if let Some(prev) = prev_result {
            conf.insert("prevResult".into(), prev.clone());
        }
        let runtime_config: Map<String, Value> = capability_args
            .iter()
            .filter(|(capability, _)| plugin.declares(capability))
            .map(|(capability, data)| (capability.clone(), data.clone()))
            .collect();
        if !runtime_config.is_empty() {
            conf.insert("runtimeConfig".into(), Value::Object(runtime_config));
        }
        serde_json::to_vec(&conf)
    }
}

impl PluginConf {
    /// The loopback plugin's config (it takes no options).
    pub fn loopback() -> Self {
        let mut raw = Map::new();
        raw.insert("type".into(), Value::String("loopback".into()));
        Self { plugin_type: "loopback".into(), raw }
    }

    fn from_object(raw: Map<String, Value>) -> Result<Self, String> {
        let plugin_type = match raw.get("type") {
            Some(Value::String(t)) if !t.is_empty() => t.clone(),
            _ => return Err("no plugin \"type\"".into()),
        };
        // The type is a file name in the bin dirs, never a path.
        if plugin_type.contains('/') || plugin_type == "." || plugin_type == ".." {
            return Err(format!("plugin type {plugin_type:?} is not a plain file name"));
        }
        Ok(Self { plugin_type, raw })
    }

    /// Whether the plugin asks for `capability` in its `capabilities` map.
    fn declares(&self, capability: &str) -> bool {
        self.raw
            .get("capabilities")
            .and_then(|caps| caps.get(capability))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
}

/// `"1.0.0"` → `(1, 0, 0)`.
pub(crate) fn parse_version(version: &str) -> Option<(u32, u32, u32)> {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    let parsed = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(parsed)
}

pub(crate) fn version_at_least(version: &str, min: (u32, u32, u32)) -> bool {
    parse_version(version).is_some_and(|v| v >= min)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn single_conf_is_wrapped_as_a_list() {
        let list = NetworkList::from_value(
            json!({"cniVersion":"0.4.0","name":"net","type":"bridge","bridge":"br0"}),
            false,
        )
        .unwrap();
        assert_eq!(list.name, "net");
        assert_eq!(list.cni_version, "0.4.0");
        assert_eq!(list.plugins.len(), 1);
        assert_eq!(list.plugins[0].plugin_type, "bridge");
        assert!(list.passes_prev_result_on_del());
    }

    #[test]
    fn conflist_round_trips_through_the_cache_form() {
        let list = NetworkList::from_value(
            json!({"cniVersion":"1.0.0","name":"pods","disableCheck":"true","plugins":[
                {"type":"bridge","bridge":"b0"},{"type":"portmap","capabilities":{"portMappings":true}}]}),
            true,
        )
        .unwrap();
        assert!(list.disable_check);
        assert_eq!(NetworkList::from_value(list.to_value(), true).unwrap(), list);
    }

    #[test]
    fn bad_configs_are_refused_with_a_reason() {
        let err = |v: Value, list| NetworkList::from_value(v, list).unwrap_err();
        assert!(err(json!({"name":"n","plugins":[]}), true).contains("empty"));
        assert!(err(json!({"name":"n","type":"bridge"}), true).contains("plugins"));
        assert!(err(json!({"cniVersion":"1.0.0","type":"bridge"}), false).contains("name"));
        assert!(err(json!({"name":"n","plugins":[{"bridge":"x"}]}), true).contains("type"));
        assert!(err(json!({"name":"n","type":"../bin/sh"}), false).contains("plain file name"));
        assert!(err(json!({"name":"n","cniVersion":"9.9.9","type":"x"}), false).contains("unsupported"));
    }

    #[test]
    fn missing_version_is_0_1_0_and_cni_versions_picks_the_newest_known() {
        let list = NetworkList::from_value(json!({"name":"n","type":"x"}), false).unwrap();
        assert_eq!(list.cni_version, "0.1.0");
        assert!(!list.passes_prev_result_on_del());
        let list = NetworkList::from_value(
            json!({"name":"n","cniVersion":"0.4.0","cniVersions":["1.0.0","2.5.0"],"type":"x"}),
            false,
        )
        .unwrap();
        assert_eq!(list.cni_version, "1.0.0");
    }

    #[test]
    fn stdin_injects_name_version_prev_result_and_declared_capabilities_only() {
        let list = NetworkList::from_value(
            json!({"cniVersion":"1.0.0","name":"pods","plugins":[
                {"type":"a","name":"ignored","capabilities":{"portMappings":true,"bandwidth":false}}]}),
            true,
        )
        .unwrap();
        let mut caps = Map::new();
        caps.insert("portMappings".into(), json!([{"hostPort":80}]));
        caps.insert("bandwidth".into(), json!({"ingressRate":1000}));
        let stdin = list.plugin_stdin(&list.plugins[0], Some(&json!({"ips":[]})), &caps).unwrap();
        let stdin: Value = serde_json::from_slice(&stdin).unwrap();
        assert_eq!(stdin["name"], "pods");
        assert_eq!(stdin["cniVersion"], "1.0.0");
        assert_eq!(stdin["prevResult"], json!({"ips":[]}));
        assert_eq!(stdin["runtimeConfig"], json!({"portMappings":[{"hostPort":80}]}));
    }

    #[test]
    fn versions_compare_numerically() {
        assert!(version_at_least("0.10.0", (0, 4, 0)));
        assert!(!version_at_least("0.3.1", (0, 4, 0)));
        assert!(!version_at_least("1.0", (0, 4, 0)));
        assert_eq!(parse_version("1.0.0.1"), None);
    }
}
