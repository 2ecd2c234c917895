//! OCI images built in Rust: tar layers (gzip-compressed), an image config, a manifest, and an
//! index, as a registry stores them. The usual image is `busybox`, made from Debian's
//! `busybox-static` binary so no network is needed.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_TYPE_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MEDIA_TYPE_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const MEDIA_TYPE_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// Where Debian's `busybox-static` puts its binary.
pub const BUSYBOX_STATIC: &str = "/bin/busybox";

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Bytes with their digest and media type: what a registry stores and a descriptor names.
#[derive(Debug, Clone)]
pub struct Blob {
    pub media_type: String,
    pub digest: String,
    pub bytes: Vec<u8>,
}

impl Blob {
    pub fn new(media_type: &str, bytes: Vec<u8>) -> Self {
        Self { media_type: media_type.to_string(), digest: sha256_digest(&bytes), bytes }
    }

    /// The OCI descriptor of this blob.
    pub fn descriptor(&self) -> serde_json::Value {
        serde_json::json!({ "mediaType": self.media_type, "digest": self.digest, "size": self.bytes.len() })
    }
}

/// Builds one layer tar. Entries are written in the order given.
pub struct LayerBuilder {
    tar: tar::Builder<Vec<u8>>,
}

impl Default for LayerBuilder {
    fn default() -> Self {
        Self { tar: tar::Builder::new(Vec::new()) }
    }
}

impl LayerBuilder {
    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(size);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_700_000_000);
        header
    }

    pub fn dir(mut self, path: &str, mode: u32) -> Self {
        let mut header = Self::header(tar::EntryType::Directory, mode, 0);
        self.tar.append_data(&mut header, path, std::io::empty()).unwrap();
        self
    }

    pub fn file(mut self, path: &str, mode: u32, contents: &[u8]) -> Self {
        let mut header = Self::header(tar::EntryType::Regular, mode, contents.len() as u64);
        self.tar.append_data(&mut header, path, contents).unwrap();
        self
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut header = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.tar.append_link(&mut header, path, target).unwrap();
        self
    }

    /// A device node or FIFO (`kind` Char, Block or Fifo) with its device numbers, the way a
    /// hostile image would ship `/etc/passwd` as `/dev/zero` (1:5).
    pub fn node(mut self, path: &str, kind: tar::EntryType, major: u32, minor: u32) -> Self {
        let mut header = Self::header(kind, 0o644, 0);
        header.set_device_major(major).unwrap();
        header.set_device_minor(minor).unwrap();
        self.tar.append_data(&mut header, path, std::io::empty()).unwrap();
        self
    }

    /// An entry written with its name bytes as given, for layers that try what a well-formed
    /// tar never would (`../x`, `/etc/x`): `kind` is the tar type, `link` the link target.
    pub fn raw(mut self, name: &str, kind: tar::EntryType, link: Option<&str>, contents: &[u8]) -> Self {
        let mut header = Self::header(kind, 0o644, contents.len() as u64);
        {
            let gnu = header.as_gnu_mut().unwrap();
            gnu.name = [0; 100];
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(link) = link {
                gnu.linkname = [0; 100];
                gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
        }
        header.set_cksum();
        self.tar.append(&header, contents).unwrap();
        self
    }

    /// The uncompressed tar.
    pub fn into_tar(self) -> Vec<u8> {
        self.tar.into_inner().unwrap()
    }
}

/// A single-platform image: its layers (compressed), config and manifest.
#[derive(Debug, Clone)]
pub struct OciImage {
    pub layers: Vec<Blob>,
    pub config: Blob,
    pub manifest: Blob,
}

impl OciImage {
    /// The image ID CRI reports: the config digest.
    pub fn id(&self) -> &str {
        &self.config.digest
    }
}

/// Assembles an [`OciImage`] from layer tars and image config fields.
/// How a layer is stored in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCompression {
    Gzip,
    Zstd,
    None,
}

pub struct ImageBuilder {
    layer_tars: Vec<Vec<u8>>,
    compressions: Vec<LayerCompression>,
    architecture: String,
    variant: Option<String>,
    config: serde_json::Value,
    /// diffIDs the config claims instead of the layers' own (a broken image).
    claimed_diff_ids: Option<Vec<String>>,
}

impl Default for ImageBuilder {
    fn default() -> Self {
        Self {
            layer_tars: Vec::new(),
            compressions: Vec::new(),
            architecture: "amd64".to_string(),
            variant: None,
            config: serde_json::json!({ "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] }),
            claimed_diff_ids: None,
        }
    }
}

impl ImageBuilder {
    /// A busybox image: the static binary, applets linked in `/bin`, `/etc/passwd` and
    /// `/etc/group`, `Cmd ["sh"]`.
    pub fn busybox() -> std::io::Result<Self> {
        let busybox = std::fs::read(BUSYBOX_STATIC)?;
        let mut layer = LayerBuilder::default()
            .dir("bin", 0o755)
            .dir("etc", 0o755)
            .dir("tmp", 0o1777)
            .file("bin/busybox", 0o755, &busybox)
            .file(
                "etc/passwd",
                0o644,
                b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
            )
            .file("etc/group", 0o644, b"root:x:0:\nnogroup:x:65534:\n");
        for applet in
            ["sh", "echo", "cat", "ls", "sleep", "true", "false", "id", "env", "touch", "mkdir", "ps"]
        {
            layer = layer.symlink(&format!("bin/{applet}"), "busybox");
        }
        let mut image = Self::default().layer(layer.into_tar());
        image.config["Cmd"] = serde_json::json!(["sh"]);
        Ok(image)
    }

    /// Adds a gzip-compressed layer.
    pub fn layer(self, tar: Vec<u8>) -> Self {
        self.layer_with(tar, LayerCompression::Gzip)
    }

    pub fn layer_with(mut self, tar: Vec<u8>, compression: LayerCompression) -> Self {
        self.layer_tars.push(tar);
        self.compressions.push(compression);
        self
    }

    pub fn architecture(mut self, architecture: &str, variant: Option<&str>) -> Self {
        self.architecture = architecture.to_string();
        self.variant = variant.map(str::to_string);
        self
    }

    /// Makes the config claim `diff_ids` for the layers, whatever they really are.
    pub fn claim_diff_ids(mut self, diff_ids: Vec<String>) -> Self {
        self.claimed_diff_ids = Some(diff_ids);
        self
    }

    /// Sets a field of the image's runtime config (`Cmd`, `Entrypoint`, `User`, `Env`, …).
    pub fn config_field(mut self, key: &str, value: serde_json::Value) -> Self {
        self.config[key] = value;
        self
    }

    pub fn build(self) -> OciImage {
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for (tar, compression) in self.layer_tars.iter().zip(&self.compressions) {
            diff_ids.push(sha256_digest(tar));
            layers.push(match compression {
                LayerCompression::Gzip => {
                    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
                    gz.write_all(tar).unwrap();
                    Blob::new(MEDIA_TYPE_LAYER_GZIP, gz.finish().unwrap())
                }
                LayerCompression::Zstd => {
                    Blob::new(MEDIA_TYPE_LAYER_ZSTD, zstd::encode_all(tar.as_slice(), 3).unwrap())
                }
                LayerCompression::None => Blob::new(MEDIA_TYPE_LAYER_TAR, tar.clone()),
            });
        }
        let mut config = serde_json::json!({
            "architecture": self.architecture,
            "os": "linux",
            "config": self.config,
            "rootfs": { "type": "layers", "diff_ids": self.claimed_diff_ids.unwrap_or(diff_ids) },
        });
        if let Some(variant) = &self.variant {
            config["variant"] = serde_json::json!(variant);
        }
        let config = Blob::new(MEDIA_TYPE_CONFIG, serde_json::to_vec(&config).unwrap());
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_MANIFEST,
            "config": config.descriptor(),
            "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
        });
        let manifest = Blob::new(MEDIA_TYPE_MANIFEST, serde_json::to_vec(&manifest).unwrap());
        OciImage { layers, config, manifest }
    }
}

/// An image index over several images, each with its platform.
pub fn index(images: &[(&OciImage, &str, Option<&str>)]) -> Blob {
    let manifests: Vec<serde_json::Value> = images
        .iter()
        .map(|(image, architecture, variant)| {
            let mut descriptor = image.manifest.descriptor();
            let mut platform = serde_json::json!({ "architecture": architecture, "os": "linux" });
            if let Some(variant) = variant {
                platform["variant"] = serde_json::json!(variant);
            }
            descriptor["platform"] = platform;
            descriptor
        })
        .collect();
    let index =
        serde_json::json!({ "schemaVersion": 2, "mediaType": MEDIA_TYPE_INDEX, "manifests": manifests });
    Blob::new(MEDIA_TYPE_INDEX, serde_json::to_vec(&index).unwrap())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_and_descriptors_agree() {
        let image =
            ImageBuilder::default().layer(LayerBuilder::default().file("a", 0o644, b"hi").into_tar()).build();
        assert_eq!(image.layers.len(), 1);
        let manifest: serde_json::Value = serde_json::from_slice(&image.manifest.bytes).unwrap();
        assert_eq!(manifest["config"]["digest"], image.config.digest.as_str());
        assert_eq!(manifest["layers"][0]["size"], image.layers[0].bytes.len());
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
