//! CDI names: a kind is `vendor/class` and a device is asked for by its qualified name,
//! `vendor/class=name`. The characters each part may hold are the CDI specification's, checked
//! as the Go library (`pkg/parser`) checks them: no lengths, which it does not enforce either.

use std::collections::{BTreeMap, HashSet};

/// Annotations whose values name CDI devices, comma-separated (how device plugins asked for
/// devices before the CRI had `CDI_devices`).
pub const ANNOTATION_PREFIX: &str = "cdi.k8s.io/";

/// A device's fully qualified name, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QualifiedName<'a> {
    pub vendor: &'a str,
    pub class: &'a str,
    pub name: &'a str,
}

impl QualifiedName<'_> {
    pub fn kind(&self) -> String {
        format!("{}/{}", self.vendor, self.class)
    }
}

fn is_alphanumeric(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

/// The middle of a name: alphanumerics and `extra`.
fn check_middle(name: &str, extra: &[char]) -> Result<(), String> {
    let inner = name.get(1..name.len().saturating_sub(1)).unwrap_or("");
    match inner.chars().find(|c| !is_alphanumeric(*c) && !extra.contains(c)) {
        Some(c) => Err(format!("invalid character {c:?} in {name:?}")),
        None => Ok(()),
    }
}

/// A vendor (`example.com`) or a class (`gpu`): a letter first, an alphanumeric last,
/// alphanumerics, `_`, `-` and `.` between.
pub fn check_vendor_or_class(what: &str, name: &str) -> Result<(), String> {
    let (Some(first), Some(last)) = (name.chars().next(), name.chars().last()) else {
        return Err(format!("empty {what}"));
    };
    if !first.is_ascii_alphabetic() {
        return Err(format!("{what} {name:?} must start with a letter"));
    }
    check_middle(name, &['_', '-', '.']).map_err(|e| format!("{what}: {e}"))?;
    if !is_alphanumeric(last) {
        return Err(format!("{what} {name:?} must end with a letter or digit"));
    }
    Ok(())
}

/// A device name (`gpu0`, `0`, `mig-1g.5gb:0`): alphanumerics at both ends, alphanumerics,
/// `_`, `-`, `.` and `:` between.
pub fn check_device_name(name: &str) -> Result<(), String> {
    let (Some(first), Some(last)) = (name.chars().next(), name.chars().last()) else {
        return Err("empty device name".to_string());
    };
    if !is_alphanumeric(first) || !is_alphanumeric(last) {
        return Err(format!("device name {name:?} must start and end with a letter or digit"));
    }
    check_middle(name, &['_', '-', '.', ':']).map_err(|e| format!("device name: {e}"))
}

/// A kind, `vendor/class`, split.
pub fn parse_kind(kind: &str) -> Result<(&str, &str), String> {
    let (vendor, class) =
        kind.split_once('/').ok_or_else(|| format!("kind {kind:?} must be vendor/class"))?;
    check_vendor_or_class("vendor", vendor)?;
    check_vendor_or_class("class", class)?;
    Ok((vendor, class))
}

/// `vendor/class=name`, split and checked.
pub fn parse_qualified(device: &str) -> Result<QualifiedName<'_>, String> {
    let (kind, name) = device
        .split_once('=')
        .filter(|(kind, name)| !kind.is_empty() && !name.is_empty())
        .ok_or_else(|| format!("{device:?} is not a qualified CDI device name (vendor/class=name)"))?;
    let (vendor, class) = parse_kind(kind).map_err(|e| format!("{device:?}: {e}"))?;
    check_device_name(name).map_err(|e| format!("{device:?}: {e}"))?;
    Ok(QualifiedName { vendor, class, name })
}

/// The devices a container asks for: `CDI_devices` first, then the `cdi.k8s.io/*`
/// annotations in key order, each once, as containerd collects them.
pub fn requested_devices<'a>(
    cdi_devices: impl IntoIterator<Item = &'a str>,
    annotations: &BTreeMap<&'a str, &'a str>,
) -> Result<Vec<String>, String> {
    let mut seen = HashSet::new();
    let mut devices = Vec::new();
    let from_annotations = annotations
        .iter()
        .filter(|(key, _)| key.starts_with(ANNOTATION_PREFIX))
        .flat_map(|(key, value)| value.split(',').map(move |device| (Some(*key), device)));
    for (annotation, device) in cdi_devices.into_iter().map(|d| (None, d)).chain(from_annotations) {
        if let Err(e) = parse_qualified(device) {
            return Err(match annotation {
                Some(key) => format!("invalid CDI device in annotation {key:?}: {e}"),
                None => format!("invalid CDI device: {e}"),
            });
        }
        if seen.insert(device) {
            devices.push(device.to_string());
        }
    }
    Ok(devices)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names_as_the_specification_writes_them() {
        let q = parse_qualified("nvidia.com/gpu=0").unwrap();
        assert_eq!((q.vendor, q.class, q.name), ("nvidia.com", "gpu", "0"));
        assert_eq!(q.kind(), "nvidia.com/gpu");
        for good in ["vendor.com/foo-bar123.B_az=x", "a/b=mig-1g.5gb:0", "v/c=d"] {
            assert!(parse_qualified(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "nvidia.com/gpu",
            "/dev/null",
            "gpu=0",
            "nvidia.com/gpu/x=0",
            "nvidia.com/gpu=",
            "=0",
            "1vendor.com/gpu=0",
            "vendor.com/gpu-=0",
            "vendor.com/gpu=-0",
            "vendor.com/gpu=a b",
            "vendor.com/gpu=0:",
            "vendor.com/g:pu=0",
        ] {
            assert!(parse_qualified(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn requests_come_from_the_field_then_the_annotations_once_each() {
        let annotations = BTreeMap::from([
            ("cdi.k8s.io/plugin_b", "example.com/dev=b,example.com/dev=one"),
            ("cdi.k8s.io/plugin_a", "example.com/dev=a"),
            ("other.io/x", "not a device"),
        ]);
        let devices = requested_devices(["example.com/dev=one"], &annotations).unwrap();
        assert_eq!(devices, ["example.com/dev=one", "example.com/dev=a", "example.com/dev=b"]);
        assert_eq!(requested_devices([], &BTreeMap::new()).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn a_bad_name_is_refused_naming_where_it_came_from() {
        let err = requested_devices(["nvidia.com/gpu"], &BTreeMap::new()).unwrap_err();
        assert!(err.contains("\"nvidia.com/gpu\""), "{err}");
        let annotations = BTreeMap::from([("cdi.k8s.io/x", "example.com/dev=a,,")]);
        let err = requested_devices([], &annotations).unwrap_err();
        assert!(err.contains("cdi.k8s.io/x"), "{err}");
    }
}
