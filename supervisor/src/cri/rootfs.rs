//! Containers' root filesystems for the CRI plugin ([`berth_cri_plugin::RootfsStore`]):
//! writable snapshots in the `k8s.io` namespace on the top layer of an image, and files read
//! from an image through a short-lived read-only view.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_cri_plugin::{CriError, ImageSummary, LayerUsage, RootfsMount, RootfsStore};
use berth_snapshotter::Snapshotter;

use super::images::CRI_NAMESPACE;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::gc::ROOT_LABEL;
use crate::native::snapshots::to_api_mount;

/// Files read from images, by (image ID, path): images never change, and kubelet creates
/// many containers from one image.
type FileCache = HashMap<(String, String), Option<Vec<u8>>>;

/// Longest symlink chain followed inside an image, as the kernel's limit.
const MAX_LINKS: usize = 40;

/// The largest file read from an image (its `/etc/passwd` and `/etc/group`). Real ones are a
/// few KiB; an image is untrusted, and a bigger file costs berthd memory for nothing.
pub const MAX_IMAGE_FILE: u64 = 4 << 20;

/// Options added to every mount of an image view: berthd only reads regular files from it,
/// so no device node, set-id bit or program in an image may do anything through it.
const VIEW_MOUNT_OPTIONS: [&str; 3] = ["nodev", "nosuid", "noexec"];

pub struct CriRootfs {
    engine: Arc<Engine>,
    files: Mutex<FileCache>,
}

impl CriRootfs {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine, files: Mutex::default() }
    }

    fn snapshotter(&self) -> Result<Arc<dyn Snapshotter>> {
        let name = &self.engine.config.images.snapshotter;
        self.engine
            .snapshotters
            .get(name)
            .cloned()
            .ok_or_else(|| Error::Config(format!("no snapshotter {name:?}")))
    }

    /// The committed snapshot of the image's top layer.
    fn top_layer(image: &ImageSummary) -> Result<String> {
        if image.chain_id.is_empty() {
            return Err(Error::FailedPrecondition(format!("image {} has no layers", image.id)));
        }
        Ok(format!("{CRI_NAMESPACE}/{}", image.chain_id))
    }

    fn read_file_blocking(&self, parent: &str, path: &str) -> Result<Option<Vec<u8>>> {
        let snapshotter = self.snapshotter()?;
        let nonce = berth_sys::clock::now_nanos();
        let key = format!("{CRI_NAMESPACE}/berth-read-{nonce}-{:?}", std::thread::current().id());
        let mut mounts = snapshotter.view(&key, Some(parent), HashMap::new()).map_err(Error::from)?;
        for mount in &mut mounts {
            mount.options.extend(VIEW_MOUNT_OPTIONS.iter().map(|o| o.to_string()));
        }
        let target = self
            .engine
            .config
            .state
            .join("cri")
            .join("image-views")
            .join(key.rsplit('/').next().unwrap_or("view").replace(['(', ')'], ""));
        let read = (|| -> Result<Option<Vec<u8>>> {
            std::fs::create_dir_all(&target)
                .map_err(|e| Error::io(format!("create {}", target.display()), e))?;
            berth_snapshotter::mount_all(&mounts, &target).map_err(Error::from)?;
            let contents = read_in_root(&target, path);
            let _ = berth_snapshotter::unmount(&target);
            contents
        })();
        let _ = std::fs::remove_dir(&target);
        if let Err(e) = snapshotter.remove(&key) {
            tracing::warn!(%key, error = %e, "removing an image view");
        }
        read
    }
}

/// Whether something is mounted on `path`: its device differs from its parent's.
fn is_mount_point(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(here), Some(Ok(parent))) = (std::fs::metadata(path), path.parent().map(std::fs::metadata)) else {
        return false;
    };
    here.dev() != parent.dev()
}

/// Reads `path` inside `root`, resolving every symlink as if `root` were `/`, so an image
/// cannot make berthd read a host file.
fn read_in_root(root: &Path, path: &str) -> Result<Option<Vec<u8>>> {
    let mut resolved = PathBuf::new();
    let mut links = 0;
    let mut components: Vec<std::ffi::OsString> = Vec::new();
    let push_components = |p: &Path, into: &mut Vec<std::ffi::OsString>| {
        let mut parts: Vec<_> = p
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_os_string()),
                Component::ParentDir => Some("..".into()),
                _ => None,
            })
            .collect();
        parts.reverse();
        into.extend(parts);
    };
    push_components(Path::new(path), &mut components);
    while let Some(part) = components.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&part);
        let full = root.join(&candidate);
        match std::fs::symlink_metadata(&full) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(Error::InvalidArgument(format!(
                        "too many symlinks resolving {path} in the image"
                    )));
                }
                let target = std::fs::read_link(&full)
                    .map_err(|e| Error::io(format!("readlink {}", full.display()), e))?;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                push_components(&target, &mut components);
            }
            Ok(_) => resolved = candidate,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("stat {}", full.display()), e)),
        }
    }
    read_regular_file(&root.join(&resolved), path)
}

/// Reads a regular file of at most [`MAX_IMAGE_FILE`] bytes. Anything else an image may put
/// there is refused before a byte is read: a FIFO would block the read forever, a character
/// device such as `/dev/zero` (1:5) would never end. The open itself neither follows a
/// symlink nor waits for a FIFO's writer.
fn read_regular_file(full: &Path, path: &str) -> Result<Option<Vec<u8>>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;

    // The type is checked before the open (a device on the view's nodev mount cannot even be
    // opened) and again on the open file, which is what is read.
    match std::fs::symlink_metadata(full) {
        Ok(meta) => refuse_special_file(&meta, path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("stat {path} in the image"), e)),
    }
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(full)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("open {path} in the image"), e)),
    };
    let meta = file.metadata().map_err(|e| Error::io(format!("stat {path} in the image"), e))?;
    if meta.is_dir() {
        return Ok(None);
    }
    refuse_special_file(&meta, path)?;
    if meta.len() > MAX_IMAGE_FILE {
        return Err(image_file_too_large(path, meta.len()));
    }
    // The size is checked again while reading: a file may not be what its inode said.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_IMAGE_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(format!("read {path} in the image"), e))?;
    if bytes.len() as u64 > MAX_IMAGE_FILE {
        return Err(image_file_too_large(path, bytes.len() as u64));
    }
    Ok(Some(bytes))
}

/// A FailedPrecondition for anything but a regular file or a directory.
fn refuse_special_file(meta: &std::fs::Metadata, path: &str) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let kind = meta.file_type();
    if !kind.is_file() && !kind.is_dir() {
        let what = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() {
            "a character device"
        } else if kind.is_block_device() {
            "a block device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "of an unknown kind"
        };
        return Err(Error::FailedPrecondition(format!(
            "{path} in the image is {what}, not a regular file: berth reads only regular files from images"
        )));
    }
    Ok(())
}

fn image_file_too_large(path: &str, size: u64) -> Error {
    Error::FailedPrecondition(format!(
        "{path} in the image has {size} bytes, more than the {MAX_IMAGE_FILE} berth reads from an image"
    ))
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T, CriError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| CriError::internal(format!("rootfs task: {e}")))?
        .map_err(CriError::from)
}

#[tonic::async_trait]
impl RootfsStore for CriRootfs {
    async fn prepare(&self, key: &str, image: &ImageSummary) -> Result<Vec<RootfsMount>, CriError> {
        let snapshotter = self.snapshotter()?;
        let parent = Self::top_layer(image)?;
        let scoped = format!("{CRI_NAMESPACE}/{key}");
        // A root label: the snapshot is the container's until RemoveContainer removes it.
        let labels = HashMap::from([(
            ROOT_LABEL.to_string(),
            humantime::format_rfc3339(std::time::SystemTime::now()).to_string(),
        )]);
        let mounts = self
            .engine
            .gc
            .outside_collection(move || {
                snapshotter.prepare(&scoped, Some(&parent), labels).map_err(Error::from)
            })
            .await?;
        Ok(mounts.into_iter().map(to_api_mount).collect())
    }

    async fn remove(&self, key: &str) -> Result<(), CriError> {
        let snapshotter = self.snapshotter()?;
        let scoped = format!("{CRI_NAMESPACE}/{key}");
        blocking(move || match snapshotter.remove(&scoped) {
            Ok(()) => Ok(()),
            Err(e) if e.code() == berth_snapshotter::Code::NotFound => Ok(()),
            Err(e) => Err(Error::from(e)),
        })
        .await
    }

    async fn usage(&self, key: &str) -> Result<LayerUsage, CriError> {
        let snapshotter = self.snapshotter()?;
        let scoped = format!("{CRI_NAMESPACE}/{key}");
        let usage = blocking(move || snapshotter.usage(&scoped).map_err(Error::from)).await?;
        Ok(LayerUsage { bytes: usage.bytes, inodes: usage.inodes })
    }

    async fn mount_image_view(&self, key: &str, image: &ImageSummary, target: &Path) -> Result<(), CriError> {
        let snapshotter = self.snapshotter()?;
        let parent = Self::top_layer(image)?;
        let scoped = format!("{CRI_NAMESPACE}/{key}");
        let target = target.to_path_buf();
        // A root label: the view (and so the layers under it) stays until it is released.
        let labels = HashMap::from([(
            ROOT_LABEL.to_string(),
            humantime::format_rfc3339(std::time::SystemTime::now()).to_string(),
        )]);
        self.engine
            .gc
            .outside_collection_blocking(move || {
                let mut mounts = match snapshotter.view(&scoped, Some(&parent), labels) {
                    Ok(mounts) => mounts,
                    Err(e) if e.code() == berth_snapshotter::Code::AlreadyExists => {
                        if is_mount_point(&target) {
                            return Ok(());
                        }
                        snapshotter.mounts(&scoped).map_err(Error::from)?
                    }
                    Err(e) => return Err(Error::from(e)),
                };
                // Device nodes and set-id programs of an image do nothing through a volume.
                for mount in &mut mounts {
                    mount.options.extend(["nodev", "nosuid"].map(String::from));
                }
                std::fs::create_dir_all(&target)
                    .map_err(|e| Error::io(format!("create {}", target.display()), e))?;
                if let Err(e) = berth_snapshotter::mount_all(&mounts, &target) {
                    let _ = snapshotter.remove(&scoped);
                    return Err(Error::from(e));
                }
                Ok(())
            })
            .await
            .map_err(CriError::from)
    }

    async fn release_image_view(&self, key: &str, target: &Path) -> Result<(), CriError> {
        let snapshotter = self.snapshotter()?;
        let scoped = format!("{CRI_NAMESPACE}/{key}");
        let target = target.to_path_buf();
        blocking(move || {
            berth_sys::mount::unmount_all(&target, nix::mount::MntFlags::MNT_DETACH).map_err(|e| {
                Error::Internal(format!("unmount the image volume {}: {e}", target.display()))
            })?;
            match std::fs::remove_dir(&target) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io(format!("remove {}", target.display()), e));
                }
                _ => {}
            }
            match snapshotter.remove(&scoped) {
                Ok(()) => Ok(()),
                Err(e) if e.code() == berth_snapshotter::Code::NotFound => Ok(()),
                Err(e) => Err(Error::from(e)),
            }
        })
        .await
    }

    async fn image_view_keys(&self) -> Result<Vec<String>, CriError> {
        let snapshotter = self.snapshotter()?;
        let prefix = format!("{CRI_NAMESPACE}/");
        blocking(move || {
            let all = snapshotter.walk(None).map_err(Error::from)?;
            Ok(all
                .into_iter()
                .filter(|info| info.kind == berth_snapshotter::Kind::View)
                .filter_map(|info| info.name.strip_prefix(&prefix).map(str::to_string))
                .collect())
        })
        .await
    }

    async fn read_image_file(&self, image: &ImageSummary, path: &str) -> Result<Option<Vec<u8>>, CriError> {
        let cache_key = (image.id.clone(), path.to_string());
        if let Some(cached) = self.files.lock().ok().and_then(|files| files.get(&cache_key).cloned()) {
            return Ok(cached);
        }
        let this = CriRootfs { engine: self.engine.clone(), files: Mutex::default() };
        let (parent, file) = (Self::top_layer(image)?, path.to_string());
        let contents = blocking(move || this.read_file_blocking(&parent, &file)).await?;
        if let Ok(mut files) = self.files.lock() {
            files.insert(cache_key, contents.clone());
        }
        Ok(contents)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        std::fs::write(dir.path().join("secret"), "host secret").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("etc/link")).unwrap();
        std::os::unix::fs::symlink("../../secret", root.join("etc/escape")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("etc/absolute")).unwrap();
        assert_eq!(read_in_root(&root, "/etc/passwd").unwrap().unwrap(), b"root:x:0:0::/root:/bin/sh\n");
        assert_eq!(read_in_root(&root, "/etc/link").unwrap().unwrap(), b"root:x:0:0::/root:/bin/sh\n");
        assert_eq!(read_in_root(&root, "/etc/escape").unwrap(), None);
        assert_eq!(read_in_root(&root, "/etc/absolute").unwrap(), None);
        assert_eq!(read_in_root(&root, "/etc/group").unwrap(), None);
        assert_eq!(read_in_root(&root, "/etc").unwrap(), None);
    }

    /// A hostile image's `/etc/group` as a FIFO used to block CreateContainer forever.
    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        nix::unistd::mkfifo(&dir.path().join("etc/group"), nix::sys::stat::Mode::from_bits_truncate(0o644))
            .unwrap();
        let error = read_in_root(dir.path(), "/etc/group").unwrap_err().to_string();
        assert!(error.contains("/etc/group in the image is a FIFO"), "{error}");
    }

    /// A hostile image's `/etc/passwd` as /dev/zero (1:5) used to grow berthd by gigabytes.
    /// The host's own /dev/zero stands in for the image's node (mknod may be refused here).
    #[test]
    fn a_device_is_refused() {
        let error = read_regular_file(Path::new("/dev/zero"), "/etc/passwd").unwrap_err().to_string();
        assert!(error.contains("/etc/passwd in the image is a character device"), "{error}");
    }

    #[test]
    fn a_file_past_the_limit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        let passwd = dir.path().join("etc/passwd");
        std::fs::write(&passwd, vec![b'x'; MAX_IMAGE_FILE as usize]).unwrap();
        assert_eq!(read_in_root(dir.path(), "/etc/passwd").unwrap().unwrap().len() as u64, MAX_IMAGE_FILE);
        std::fs::write(&passwd, vec![b'x'; MAX_IMAGE_FILE as usize + 1]).unwrap();
        let error = read_in_root(dir.path(), "/etc/passwd").unwrap_err().to_string();
        assert!(error.contains("more than the"), "{error}");
    }
}
