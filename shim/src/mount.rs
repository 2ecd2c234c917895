//! Rootfs mounts from Task `Create` (`<bundle>/rootfs`), applied in order, and their removal.
//! How one mount is made (options, binds, propagation, long overlay lower lists) is
//! `berth_sys::mount`, shared with the snapshotters.

use std::path::Path;

use berth_sys::mount::{MountError, mount, unmount_all as unmount_stack};
use containerd_shim_protos::types::mount::Mount;
use nix::mount::MntFlags;

use crate::error::{Error, Result};

fn mount_error(e: MountError) -> Error {
    match e {
        MountError::DataTooLong { .. } => Error::InvalidArgument(e.to_string()),
        MountError::Lower { ref lower, errno } => Error::nix(format!("open overlay lower {lower}"), errno),
        MountError::Syscall { what, errno } => Error::nix(what, errno),
    }
}

/// Mounts all onto `target` in order; on error what was mounted is undone.
pub fn mount_all(mounts: &[Mount], target: &Path) -> Result<()> {
    for m in mounts {
        if let Err(e) = mount(&m.type_, &m.source, &m.options, target) {
            unmount_all(target);
            return Err(mount_error(e));
        }
    }
    Ok(())
}

/// Unmounts everything stacked on `target` (lazy), until nothing is left.
pub fn unmount_all(target: &Path) {
    if let Err(e) = unmount_stack(target, MntFlags::MNT_DETACH) {
        warn!("{e}");
    }
}
