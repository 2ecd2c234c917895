//! CheckpointContainer: CRIU (through the shim and the OCI runtime) dumps the running
//! container into an image directory, which becomes a tar archive at the requested location
//! (`checkpoint/` with CRIU's images, `config.dump` with the container's CRI record,
//! `spec.dump` with its process), leaving the container running. A node without CRIU gets a
//! clear FailedPrecondition, and nothing is made.

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_proto::runtime::v1 as cri;

use crate::error::CriError;
use crate::records::container::ContainerState;
use crate::runtime::CriRuntime;

/// `criu` on PATH, where the OCI runtime looks for it.
fn find_criu() -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths).map(|dir| dir.join("criu")).find(|p| p.is_file())
}

/// Writes `dir` (CRIU's images) and the dumps into a tar archive at `location`, atomically.
/// The archive holds the container's memory: it is made 0600, never through a symlink left
/// at its partial name, and symlinks among the images go in as symlinks, not as the files
/// they point at.
fn write_archive(location: &Path, images: &Path, config: &[u8], spec: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let partial = location.with_extension("partial");
    match std::fs::remove_file(&partial) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&partial)?;
    let mut archive = tar::Builder::new(file);
    archive.follow_symlinks(false);
    archive.append_dir_all("checkpoint", images)?;
    for (name, bytes) in [("config.dump", config), ("spec.dump", spec)] {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o600);
        header.set_cksum();
        archive.append_data(&mut header, name, bytes)?;
    }
    archive.into_inner()?.sync_all()?;
    std::fs::rename(&partial, location)
}

impl CriRuntime {
    pub async fn checkpoint_container(
        &self,
        request: cri::CheckpointContainerRequest,
    ) -> Result<(), CriError> {
        let container = self.container(&request.container_id)?;
        let location = PathBuf::from(&request.location);
        if request.location.is_empty() || !location.is_absolute() {
            return Err(CriError::invalid_argument("CheckpointContainer needs an absolute archive location"));
        }
        if container.state != ContainerState::Running {
            return Err(CriError::failed_precondition(format!(
                "container {:?} is not running: only a running container can be checkpointed",
                container.id
            )));
        }
        if find_criu().is_none() {
            return Err(CriError::failed_precondition(
                "checkpointing needs CRIU, which this node does not have (`criu` is not on PATH; on Debian: apt-get install criu)",
            ));
        }
        let work = self.paths.state.join("checkpoints").join(&container.id);
        let _ = tokio::fs::remove_dir_all(&work).await;
        let images = work.join("images");
        tokio::fs::create_dir_all(&images)
            .await
            .map_err(|e| CriError::internal(format!("create {}: {e}", images.display())))?;
        let dump = self.tasks.checkpoint(&container.id, &images);
        let dumped = if request.timeout > 0 {
            tokio::time::timeout(Duration::from_secs(request.timeout as u64), dump)
                .await
                .map_err(|_| {
                    CriError::deadline_exceeded(format!("checkpoint did not finish in {}s", request.timeout))
                })
                .and_then(|r| r)
        } else {
            dump.await
        };
        let archived = match dumped {
            Ok(()) => {
                let config = serde_json::to_vec_pretty(&container).unwrap_or_default();
                let spec = serde_json::to_vec_pretty(&container.process).unwrap_or_default();
                let images = images.clone();
                tokio::task::spawn_blocking(move || write_archive(&location, &images, &config, &spec))
                    .await
                    .map_err(|e| CriError::internal(format!("archive task: {e}")))?
                    .map_err(|e| {
                        CriError::internal(format!("write the checkpoint archive {}: {e}", request.location))
                    })
            }
            Err(e) => Err(e),
        };
        let _ = tokio::fs::remove_dir_all(&work).await;
        archived
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn archive_holds_images_and_dumps() {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("images");
        std::fs::create_dir_all(&images).unwrap();
        std::fs::write(images.join("core-1.img"), b"criu").unwrap();
        let location = dir.path().join("out.tar");
        write_archive(&location, &images, b"{}", b"{\"args\":[]}").unwrap();
        let mut names: Vec<String> = tar::Archive::new(std::fs::File::open(&location).unwrap())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["checkpoint/", "checkpoint/core-1.img", "config.dump", "spec.dump"]);
        assert!(!location.with_extension("partial").exists());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&location).unwrap().permissions().mode() & 0o777, 0o600);
    }

    /// A symlink planted at the partial name, or among the images, reaches no host file.
    #[test]
    fn archive_follows_no_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"host file").unwrap();
        let images = dir.path().join("images");
        std::fs::create_dir_all(&images).unwrap();
        std::os::unix::fs::symlink(&victim, images.join("link.img")).unwrap();
        let location = dir.path().join("out.tar");
        std::os::unix::fs::symlink(&victim, location.with_extension("partial")).unwrap();
        write_archive(&location, &images, b"{}", b"{}").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"host file");
        let mut archive = tar::Archive::new(std::fs::File::open(&location).unwrap());
        let link = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .find(|e| e.path().unwrap().ends_with("link.img"))
            .unwrap();
        assert_eq!(link.header().entry_type(), tar::EntryType::Symlink);
        assert_eq!(link.link_name().unwrap().unwrap(), victim);
    }
}
