//! The registry against real directories: lookups, precedence, conflicts, bad files, changes.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::*;

/// A spec of kind `kind` declaring `devices`, each setting `DEV=<name>`, and the spec itself
/// setting `SPEC=<tag>`.
fn spec(kind: &str, tag: &str, devices: &[&str]) -> String {
    let mut text =
        format!("cdiVersion: 0.6.0\nkind: {kind}\ncontainerEdits:\n  env: [SPEC={tag}]\ndevices:\n");
    for d in devices {
        text.push_str(&format!("  - name: {d}\n    containerEdits:\n      env: [DEV={d}]\n"));
    }
    text
}

/// Writes a whole new file (a new inode), as tools that write specs do.
fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    let temp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(&temp, &path).unwrap();
    path
}

fn dirs(n: usize) -> (tempfile::TempDir, Vec<PathBuf>) {
    let top = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = (0..n).map(|i| top.path().join(format!("cdi{i}"))).collect();
    for dir in &dirs {
        std::fs::create_dir(dir).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    (top, dirs)
}

fn envs(edits: &[SourcedEdits]) -> Vec<String> {
    edits.iter().flat_map(|e| e.edits.env.clone()).collect()
}

fn devices(list: &[&str]) -> Vec<String> {
    list.iter().map(|d| d.to_string()).collect()
}

#[test]
fn devices_resolve_with_their_specs_edits_once_before_them() {
    let (_top, dirs) = dirs(1);
    let yaml = write(&dirs[0], "dev.yaml", &spec("example.com/dev", "yaml", &["one", "two"]));
    let json = r#"{"cdiVersion":"0.3.0","kind":"example.com/other","devices":[{"name":"x","containerEdits":{"env":["DEV=x"]}}]}"#;
    write(&dirs[0], "other.json", json);
    write(&dirs[0], "ignored.txt", "not a spec");
    let registry = CdiRegistry::new(&dirs);
    let edits = registry
        .resolve(&devices(&["example.com/dev=two", "example.com/other=x", "example.com/dev=one"]))
        .unwrap();
    assert_eq!(envs(&edits), ["SPEC=yaml", "DEV=two", "DEV=x", "DEV=one"]);
    assert_eq!(edits[0].file, yaml);
    assert_eq!(edits[0].device, "example.com/dev=two", "the spec's edits are charged to its first device");
    assert_eq!(registry.resolve(&[]).unwrap(), Vec::new());
}

#[test]
fn the_later_directory_wins_and_one_directory_cannot_declare_a_device_twice() {
    let (_top, dirs) = dirs(2);
    write(&dirs[0], "a.yaml", &spec("example.com/dev", "early", &["one", "both"]));
    write(&dirs[1], "b.yaml", &spec("example.com/dev", "late", &["one"]));
    let registry = CdiRegistry::new(&dirs);
    assert_eq!(
        envs(&registry.resolve(&devices(&["example.com/dev=one"])).unwrap()),
        ["SPEC=late", "DEV=one"]
    );

    // Two specs of the later directory: neither wins, both are named.
    let clash = write(&dirs[1], "c.yaml", &spec("example.com/dev", "clash", &["one"]));
    match registry.resolve(&devices(&["example.com/dev=one"])) {
        Err(CdiError::Conflict { device, files }) => {
            assert_eq!(device, "example.com/dev=one");
            assert_eq!(files, [dirs[1].join("b.yaml"), clash.clone()]);
        }
        other => panic!("{other:?}"),
    }
    // The other devices of those specs still resolve.
    assert!(registry.resolve(&devices(&["example.com/dev=both"])).is_ok());
    // A conflict of an earlier directory is settled by a later one.
    std::fs::remove_file(&clash).unwrap();
    write(&dirs[0], "d.yaml", &spec("example.com/dev", "clash", &["both"]));
    assert!(matches!(registry.resolve(&devices(&["example.com/dev=both"])), Err(CdiError::Conflict { .. })));
    write(&dirs[1], "e.yaml", &spec("example.com/dev", "settled", &["both"]));
    let settled = registry.resolve(&devices(&["example.com/dev=both"])).unwrap();
    assert_eq!(envs(&settled), ["SPEC=settled", "DEV=both"]);
    let described = registry.describe();
    assert_eq!(described["devices"]["example.com/dev=both"], dirs[1].join("e.yaml").display().to_string());
}

#[test]
fn unknown_devices_and_invalid_specs_are_named_and_valid_specs_keep_resolving() {
    let (_top, dirs) = dirs(1);
    write(&dirs[0], "good.yaml", &spec("example.com/dev", "good", &["one"]));
    // Valid YAML, invalid spec: a device with nothing to do.
    let invalid =
        write(&dirs[0], "invalid.yaml", "cdiVersion: 0.3.0\nkind: example.com/bad\ndevices:\n  - name: x\n");
    // Not a spec at all, though its kind can be made out.
    let broken = write(&dirs[0], "broken.yaml", "cdiVersion: 0.3.0\nkind: example.com/broken\nbogus: [\n");
    let registry = CdiRegistry::new(&dirs);

    assert_eq!(
        envs(&registry.resolve(&devices(&["example.com/dev=one"])).unwrap()),
        ["SPEC=good", "DEV=one"]
    );
    match registry.resolve(&devices(&["example.com/bad=x"])) {
        Err(CdiError::InvalidSpec { device, file, error }) => {
            assert_eq!((device.as_str(), file), ("example.com/bad=x", invalid.clone()));
            assert!(error.contains("changes nothing"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    let err = registry.resolve(&devices(&["example.com/dev=two"])).unwrap_err();
    assert!(matches!(err, CdiError::UnknownDevice { .. }));
    let text = err.to_string();
    assert!(text.contains("\"example.com/dev=two\"") && text.contains("good.yaml"), "{text}");
    assert!(text.contains("broken.yaml"), "an unreadable spec might be the one: {text}");
    let err = registry.resolve(&devices(&["example.com/none=x"])).unwrap_err().to_string();
    assert!(
        err.contains("declares the kind \"example.com/none\"")
            && err.contains(&dirs[0].display().to_string()),
        "{err}"
    );

    let described = registry.describe();
    assert!(
        described["invalidSpecs"][invalid.display().to_string()]
            .as_str()
            .unwrap()
            .contains("changes nothing")
    );
    assert!(described["invalidSpecs"][broken.display().to_string()].is_string());
    assert_eq!(described["devices"].as_object().unwrap().len(), 1);
}

#[test]
fn changes_count_from_the_next_lookup() {
    let (_top, dirs) = dirs(1);
    let registry = CdiRegistry::new(&dirs);
    assert!(registry.resolve(&devices(&["example.com/dev=one"])).is_err());
    let path = write(&dirs[0], "dev.yaml", &spec("example.com/dev", "v1", &["one"]));
    assert_eq!(envs(&registry.resolve(&devices(&["example.com/dev=one"])).unwrap()), ["SPEC=v1", "DEV=one"]);
    write(&dirs[0], "dev.yaml", &spec("example.com/dev", "v2", &["one", "two"]));
    assert_eq!(envs(&registry.resolve(&devices(&["example.com/dev=two"])).unwrap()), ["SPEC=v2", "DEV=two"]);
    // Written in place, same size, within the same timestamp tick: still seen.
    std::fs::write(&path, spec("example.com/dev", "v3", &["one", "two"])).unwrap();
    assert_eq!(envs(&registry.resolve(&devices(&["example.com/dev=two"])).unwrap()), ["SPEC=v3", "DEV=two"]);
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(
        registry.resolve(&devices(&["example.com/dev=one"])),
        Err(CdiError::UnknownDevice { .. })
    ));
    // A directory made after berthd started counts too.
    std::fs::remove_dir(&dirs[0]).unwrap();
    assert!(registry.resolve(&devices(&["example.com/dev=one"])).is_err());
    std::fs::create_dir(&dirs[0]).unwrap();
    std::fs::set_permissions(&dirs[0], std::fs::Permissions::from_mode(0o755)).unwrap();
    write(&dirs[0], "dev.yaml", &spec("example.com/dev", "v4", &["one"]));
    assert!(registry.resolve(&devices(&["example.com/dev=one"])).is_ok());
}

#[test]
fn what_others_can_write_is_refused() {
    let (_top, dirs) = dirs(2);
    write(&dirs[0], "dev.yaml", &spec("example.com/dev", "open", &["one"]));
    std::fs::set_permissions(&dirs[0], std::fs::Permissions::from_mode(0o777)).unwrap();
    let file = write(&dirs[1], "file.yaml", &spec("example.com/file", "open", &["one"]));
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
    let registry = CdiRegistry::new(&dirs);

    let err = registry.resolve(&devices(&["example.com/dev=one"])).unwrap_err().to_string();
    assert!(err.contains(&format!("the directory {} is refused", dirs[0].display())), "{err}");
    assert!(err.contains("every user can write it"), "{err}");
    match registry.resolve(&devices(&["example.com/file=one"])) {
        Err(CdiError::InvalidSpec { file: at, error, .. }) => {
            assert_eq!(at, file);
            assert!(error.contains("every user can write it"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    assert!(registry.describe()["refusedDirs"][dirs[0].display().to_string()].is_string());

    // Made safe, both count.
    std::fs::set_permissions(&dirs[0], std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(registry.resolve(&devices(&["example.com/dev=one", "example.com/file=one"])).is_ok());
}

#[test]
fn odd_files_neither_hang_nor_stop_the_others() {
    let (_top, dirs) = dirs(1);
    write(&dirs[0], "good.yaml", &spec("example.com/dev", "good", &["one"]));
    nix::unistd::mkfifo(&dirs[0].join("fifo.yaml"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    std::fs::create_dir(dirs[0].join("sub.yaml")).unwrap();
    write(&dirs[0].join("sub.yaml"), "nested.yaml", &spec("example.com/nested", "n", &["one"]));
    std::os::unix::fs::symlink("/nonexistent", dirs[0].join("dangling.json")).unwrap();
    std::fs::write(dirs[0].join("big.json"), vec![b' '; (MAX_SPEC_BYTES + 1) as usize]).unwrap();
    let registry = CdiRegistry::new(&dirs);
    assert!(registry.resolve(&devices(&["example.com/dev=one"])).is_ok());
    assert!(registry.resolve(&devices(&["example.com/nested=one"])).is_err(), "subdirectories are not read");
    let invalid = registry.describe()["invalidSpecs"].clone();
    assert!(
        invalid[dirs[0].join("fifo.yaml").display().to_string()]
            .as_str()
            .unwrap()
            .contains("not a regular file")
    );
    assert!(
        invalid[dirs[0].join("big.json").display().to_string()].as_str().unwrap().contains("larger than")
    );
}
