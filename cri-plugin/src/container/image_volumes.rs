//! Image volumes (KEP-4639): an image kubelet pulled, mounted read-only in a container. As in
//! containerd 2.3, one view per pod and image (under the pod's directory) serves all the pod's
//! containers; the container gets a read-only bind of it, or of a directory inside it. A view
//! goes when no container of the pod uses it any more, and at the latest when the pod stops.
//!
//! Refusals start with `ImageVolumeMountFailed`, the prefix kubelet reads
//! (`k8s.io/cri-api/pkg/errors`).

use std::path::{Component, Path, PathBuf};

use berth_proto::runtime::v1 as cri;

use crate::error::CriError;
use crate::records::sandbox::SandboxRecord;
use crate::runtime::CriRuntime;

/// The prefix kubelet classifies image volume failures by.
const FAILED: &str = "ImageVolumeMountFailed";

/// The snapshot key of the pod's view of an image.
fn view_key(sandbox_id: &str, image_id: &str) -> String {
    format!("imagevolume-{sandbox_id}-{}", image_hex(image_id))
}

fn image_hex(image_id: &str) -> &str {
    image_id.rsplit(':').next().unwrap_or(image_id)
}

/// Where the pod's view of an image is mounted.
pub(crate) fn view_dir(sandbox: &Path, image_id: &str) -> PathBuf {
    sandbox.join("image-volumes").join(image_hex(image_id))
}

/// `root/sub_path`, which must stay inside `root` (symlinks resolved) and be a directory.
fn sub_directory(root: &Path, sub_path: &str) -> Result<PathBuf, CriError> {
    let relative = Path::new(sub_path);
    if relative.is_absolute() || relative.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(CriError::invalid_argument(format!(
            "{FAILED}: image sub-path {sub_path:?} must be relative, without \"..\""
        )));
    }
    let root =
        root.canonicalize().map_err(|e| CriError::internal(format!("{FAILED}: {}: {e}", root.display())))?;
    let resolved = root.join(relative).canonicalize().map_err(|e| {
        CriError::invalid_argument(format!(
            "{FAILED}: image sub-path {sub_path:?} does not exist in the image: {e}"
        ))
    })?;
    if !resolved.starts_with(&root) {
        return Err(CriError::invalid_argument(format!(
            "{FAILED}: image sub-path {sub_path:?} leaves the image"
        )));
    }
    if !resolved.is_dir() {
        return Err(CriError::invalid_argument(format!(
            "{FAILED}: image sub-path {sub_path:?} is not a directory"
        )));
    }
    Ok(resolved)
}

impl CriRuntime {
    /// The config with each image mount turned into a read-only bind of the pod's view of
    /// that image (mounted now if it is not yet), and the IDs of the images it uses.
    pub(super) async fn resolve_image_volumes(
        &self,
        sandbox: &SandboxRecord,
        config: &cri::ContainerConfig,
    ) -> Result<(cri::ContainerConfig, Vec<String>), CriError> {
        let mut resolved = config.clone();
        let mut used = Vec::new();
        for mount in &mut resolved.mounts {
            let Some(image) = mount.image.as_ref().map(|i| i.image.clone()).filter(|i| !i.is_empty()) else {
                continue;
            };
            if !mount.host_path.is_empty() {
                return Err(CriError::invalid_argument(format!(
                    "{FAILED}: the mount of image {image:?} at {:?} also names a host path",
                    mount.container_path
                )));
            }
            if !mount.readonly {
                return Err(CriError::invalid_argument(format!(
                    "{FAILED}: image {image:?} can only be mounted read-only (at {:?})",
                    mount.container_path
                )));
            }
            let summary = self
                .images
                .find(&image)
                .await
                .map_err(|e| {
                    CriError::unknown(format!("{FAILED}: look up image {image:?}: {}", e.message()))
                })?
                .ok_or_else(|| {
                    CriError::not_found(format!(
                        "{FAILED}: image {image:?} is not on the node: pull it first"
                    ))
                })?;
            let dir = view_dir(&sandbox.dir, &summary.id);
            self.rootfs.mount_image_view(&view_key(&sandbox.id, &summary.id), &summary, &dir).await.map_err(
                |e| CriError::unknown(format!("{FAILED}: mount image {image:?}: {}", e.message())),
            )?;
            let source = if mount.image_sub_path.is_empty() {
                dir
            } else {
                let (dir, sub) = (dir.clone(), mount.image_sub_path.clone());
                tokio::task::spawn_blocking(move || sub_directory(&dir, &sub))
                    .await
                    .map_err(|e| CriError::internal(format!("image volume task: {e}")))??
            };
            mount.host_path = source.display().to_string();
            mount.image = None;
            mount.image_sub_path.clear();
            used.push(summary.id.clone());
        }
        used.sort();
        used.dedup();
        Ok((resolved, used))
    }

    /// Releases the pod's image views: those no container of the pod still uses, or all of
    /// them (`all`, when the pod stops). A view that cannot be released is logged and kept
    /// for the next try.
    pub(crate) async fn release_image_volumes(&self, sandbox: &SandboxRecord, all: bool) {
        let base = sandbox.dir.join("image-volumes");
        let Ok(mut entries) = tokio::fs::read_dir(&base).await else { return };
        let in_use: Vec<String> = if all {
            Vec::new()
        } else {
            self.containers
                .list()
                .into_iter()
                .filter(|c| c.sandbox_id == sandbox.id)
                .flat_map(|c| c.image_volumes.iter().map(|id| image_hex(id).to_string()).collect::<Vec<_>>())
                .collect()
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let hex = entry.file_name().to_string_lossy().into_owned();
            if in_use.contains(&hex) {
                continue;
            }
            let key = format!("imagevolume-{}-{hex}", sandbox.id);
            if let Err(e) = self.rootfs.release_image_view(&key, &entry.path()).await {
                tracing::warn!(pod = %sandbox.id, view = %key, error = %e.message(), "releasing an image volume");
            }
        }
    }

    /// Releases the views of pods that no longer exist (a berthd that died while removing
    /// one); called once at start.
    pub(crate) async fn release_orphaned_image_volumes(&self) {
        let keys = match self.rootfs.image_view_keys().await {
            Ok(keys) => keys,
            Err(e) => {
                tracing::warn!(error = %e.message(), "listing image volumes");
                return;
            }
        };
        for key in keys {
            let Some(rest) = key.strip_prefix("imagevolume-") else { continue };
            let Some((sandbox_id, hex)) = rest.split_once('-') else { continue };
            if self.sandboxes.get(sandbox_id).is_some() {
                continue;
            }
            let target = self.paths.sandbox_dir(sandbox_id).join("image-volumes").join(hex);
            match self.rootfs.release_image_view(&key, &target).await {
                Ok(()) => tracing::info!(view = %key, "released the image volume of a pod that is gone"),
                Err(e) => {
                    tracing::warn!(view = %key, error = %e.message(), "releasing an orphaned image volume")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_paths_stay_inside_the_image_and_name_directories() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("data/sub")).unwrap();
        std::fs::write(root.path().join("data/file"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc", root.path().join("out")).unwrap();
        std::os::unix::fs::symlink("data/sub", root.path().join("in")).unwrap();
        assert_eq!(
            sub_directory(root.path(), "data/sub").unwrap(),
            root.path().canonicalize().unwrap().join("data/sub")
        );
        assert!(sub_directory(root.path(), "in").is_ok(), "a link that stays inside");
        for bad in ["../x", "/etc", "out", "data/file", "missing"] {
            let err = sub_directory(root.path(), bad).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad}");
            assert!(err.message().starts_with("ImageVolumeMountFailed: "), "{err}");
        }
    }
}
