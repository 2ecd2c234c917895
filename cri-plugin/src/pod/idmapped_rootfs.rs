//! A container's root filesystem for a pod with its own user namespace (KEP-127), made the way
//! runc 1.1 can run it: runc predates idmapped mounts in the OCI spec, so berth mounts the
//! overlay itself, each image layer through an idmapped mount (`open_tree` + `mount_setattr`),
//! and hands runc a plain bind of the result. Files the image's root owns then show as the
//! container's root, while on disk they stay uid 0; the writable layer is owned by the host
//! ids the container's root maps to. (Overlayfs itself cannot be idmapped, its layers can.)

use std::io;
use std::path::{Path, PathBuf};

use nix::mount::MntFlags;

use crate::engine::RootfsMount;
use crate::records::sandbox::UserMapping;

/// Mounts `mounts` (one overlay, as the overlay snapshotter prepares it) at `target`.
pub fn mount(mounts: &[RootfsMount], target: &Path, userns: &Path, mapping: &UserMapping) -> io::Result<()> {
    let [overlay] = mounts else {
        return Err(io::Error::other(format!(
            "expected one overlay mount for the root filesystem, got {}",
            mounts.len()
        )));
    };
    if overlay.r#type != "overlay" {
        return Err(io::Error::other(format!(
            "pods with a user namespace need the overlayfs snapshotter (the root filesystem is a {:?} mount)",
            overlay.r#type
        )));
    }
    let staging = target.with_extension("idmapped-layers");
    let mut attached: Vec<PathBuf> = Vec::new();
    let made = (|| -> io::Result<()> {
        let mut options = Vec::new();
        for option in &overlay.options {
            if let Some(lowers) = option.strip_prefix("lowerdir=") {
                let mut mapped = Vec::new();
                for (i, lower) in lowers.split(':').enumerate() {
                    let at = staging.join(i.to_string());
                    berth_sys::idmap::attach_idmapped(Path::new(lower), &at, userns, true)?;
                    attached.push(at.clone());
                    mapped.push(at.display().to_string());
                }
                options.push(format!("lowerdir={}", mapped.join(":")));
            } else {
                if let Some(upper) = option.strip_prefix("upperdir=") {
                    // The container's root owns its writable root directory.
                    std::os::unix::fs::lchown(upper, Some(mapping.uid_host), Some(mapping.gid_host))?;
                }
                options.push(option.clone());
            }
        }
        std::fs::create_dir_all(target)?;
        berth_sys::mount::mount("overlay", &overlay.source, &options, target).map_err(io::Error::other)
    })();
    // The overlay holds its own references to the layers: the idmapped copies can go.
    for at in attached.iter().rev() {
        let _ = berth_sys::mount::unmount_all(at, MntFlags::MNT_DETACH);
    }
    let _ = std::fs::remove_dir_all(&staging);
    made
}
