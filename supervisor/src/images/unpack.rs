//! Unpacking one layer into a snapshot: decompress (gzip via zlib-rs, zstd, or plain), check
//! the uncompressed bytes against the config's diffID, apply the tar, and commit the snapshot
//! under its chainID. A failure removes the half-made snapshot.

use std::io::{BufRead, BufReader, Read};

use berth_snapshotter::{Labels, Snapshotter};
use sha2::{Digest as _, Sha256};

use crate::content::{ContentStore, Digest};
use crate::error::{Error, Result};

/// How a layer blob is compressed, from its media type, or its first bytes when the media
/// type does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Plain,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn detect(media_type: &str, head: &[u8]) -> Self {
        if media_type.ends_with("+gzip") || media_type.ends_with(".gzip") {
            Compression::Gzip
        } else if media_type.ends_with("+zstd") || media_type.ends_with(".zstd") {
            Compression::Zstd
        } else if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::Plain
        }
    }
}

/// Hashes what passes through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        Self { inner, hasher: Sha256::new(), bytes: 0 }
    }

    /// Reads what is left (tar padding after the end marker) and returns the digest and size.
    pub fn finish(mut self) -> std::io::Result<(Digest, u64)> {
        std::io::copy(&mut self, &mut std::io::sink())?;
        Ok((Digest::from_hasher(self.hasher), self.bytes))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Where a layer's compressed bytes come from: its blob in the content store, or the
/// download itself as it arrives (the blob is committed beside it).
pub enum LayerSource<'a> {
    Content(&'a ContentStore),
    Stream(Box<dyn Read + Send>),
}

impl LayerSource<'_> {
    fn open(self, blob: &Digest) -> Result<Box<dyn Read + Send>> {
        match self {
            LayerSource::Content(content) => Ok(Box::new(content.open_blob(blob)?)),
            LayerSource::Stream(stream) => Ok(stream),
        }
    }
}

/// The uncompressed stream of a layer's compressed bytes.
pub fn decompressed(compressed: Box<dyn Read + Send>, media_type: &str) -> Result<Box<dyn Read + Send>> {
    let mut buffered = BufReader::with_capacity(1 << 20, compressed);
    let head = buffered.fill_buf().map_err(|e| Error::io("read layer", e))?.to_vec();
    Ok(match Compression::detect(media_type, &head) {
        Compression::Plain => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(buffered)
                .map_err(|e| Error::io("open zstd layer", e))?,
        ),
    })
}

/// Decompresses `blob` and applies it into `mounts`, returning the uncompressed digest and size.
///
/// Two threads share the work: this one writes files while a second reads, inflates and hashes
/// the blob, handing over chunks through a small bounded queue, so inflating and writing
/// overlap on two cores.
pub fn apply_blob(
    content: &ContentStore,
    blob: &Digest,
    media_type: &str,
    mounts: &[berth_snapshotter::Mount],
) -> Result<(Digest, u64)> {
    apply_layer_with(LayerSource::Content(content), blob, media_type, |tar| {
        berth_snapshotter::apply_layer_to_mounts(tar, mounts)
    })
}

/// [`apply_blob`] from any source, with the applying step given: `apply` reads the
/// uncompressed tar.
pub fn apply_layer_with(
    source: LayerSource<'_>,
    blob: &Digest,
    media_type: &str,
    apply: impl FnOnce(&mut dyn Read) -> berth_snapshotter::Result<berth_snapshotter::ApplyStats>,
) -> Result<(Digest, u64)> {
    let compressed = source.open(blob)?;
    let mut reader = HashingReader::new(decompressed(compressed, media_type)?);
    let (sender, receiver) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(8);
    let inflater = std::thread::Builder::new()
        .name("berth-inflate".into())
        .spawn(move || -> std::io::Result<(Digest, u64)> {
            loop {
                let mut chunk = vec![0; 1 << 20];
                let mut filled = 0;
                while filled < chunk.len() {
                    match reader.read(&mut chunk[filled..]) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            let kind = e.kind();
                            let _ = sender.blocking_send(Err(e));
                            return Err(std::io::Error::new(kind, "inflating the layer failed"));
                        }
                    }
                }
                if filled == 0 {
                    drop(sender);
                    return reader.finish();
                }
                chunk.truncate(filled);
                // The applier stopped (it failed): stop inflating.
                if sender.blocking_send(Ok(chunk.into())).is_err() {
                    return Err(std::io::Error::other("the layer apply stopped"));
                }
            }
        })
        .map_err(|e| Error::io("start the inflate thread", e))?;
    let applied = apply(&mut ChunkReader::new(receiver));
    let inflated = inflater.join().map_err(|_| Error::Internal("the inflate thread panicked".into()))?;
    applied.map_err(Error::from)?;
    inflated.map_err(|e| Error::io(format!("read layer {blob}"), e))
}

/// Reads the chunks another thread or task sends, in order, as one stream: a download as it
/// arrives, or a layer as the inflate thread inflates it. Blocking: it runs on a thread of its
/// own, never on the async executor. A sender gone without an error is the end of the stream.
pub struct ChunkReader {
    receiver: tokio::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>,
    current: bytes::Bytes,
}

impl ChunkReader {
    pub fn new(receiver: tokio::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>) -> Self {
        Self { receiver, current: bytes::Bytes::new() }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.receiver.blocking_recv() {
                Some(chunk) => self.current = chunk?,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// One layer to unpack.
pub struct LayerUnpack<'a> {
    pub blob: &'a Digest,
    pub media_type: &'a str,
    pub diff_id: &'a str,
    /// Snapshot name of the layers below (namespaced), if any.
    pub parent: Option<&'a str>,
    /// Snapshot name to commit this layer as (namespaced chainID).
    pub name: &'a str,
    /// Key of the temporary active snapshot.
    pub key: &'a str,
}

/// Unpacks a layer from `source` unless its snapshot exists already. Returns whether it did
/// the work.
pub fn unpack_layer(
    snapshotter: &dyn Snapshotter,
    source: LayerSource<'_>,
    layer: &LayerUnpack<'_>,
) -> Result<bool> {
    if snapshotter.stat(layer.name).is_ok() {
        return Ok(false);
    }
    let labels = Labels::from([("containerd.io/snapshot.ref".to_string(), layer.name.to_string())]);
    let mounts = snapshotter.prepare(layer.key, layer.parent, labels).map_err(Error::from)?;
    let apply = |tar: &mut dyn Read| berth_snapshotter::apply_layer_to_mounts(tar, &mounts);
    let applied = apply_layer_with(source, layer.blob, layer.media_type, apply).and_then(|(digest, _)| {
        if digest.to_string() != layer.diff_id {
            return Err(Error::FailedPrecondition(format!(
                "layer {} unpacks to {digest}, but the image config says {}",
                layer.blob, layer.diff_id
            )));
        }
        match snapshotter.commit(layer.name, layer.key, Labels::new()) {
            Ok(()) => Ok(true),
            // Another unpack of the same layers won the race: theirs is as good as ours.
            Err(e) if e.code() == berth_snapshotter::Code::AlreadyExists => {
                let _ = snapshotter.remove(layer.key);
                Ok(false)
            }
            Err(e) => Err(Error::from(e)),
        }
    });
    if applied.is_err()
        && let Err(e) = snapshotter.remove(layer.key)
        && e.code() != berth_snapshotter::Code::NotFound
    {
        tracing::warn!(key = layer.key, error = %e, "removing a failed unpack");
    }
    applied
}

/// A layer unpacked apart, waiting to be stacked onto its parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detached {
    /// Key of its active snapshot.
    pub key: String,
    /// Directories the layer used without listing them: they take their attributes from the
    /// layers below when stacked.
    pub implied: Vec<std::path::PathBuf>,
}

/// Unpacks a layer into its own parentless active snapshot `key`, overlay style, for a
/// snapshotter that stacks layers ([`Snapshotter::can_stack`]); the caller commits it onto its
/// parent later. Returns `None` when the layer's snapshot exists already.
pub fn unpack_detached(
    snapshotter: &dyn Snapshotter,
    source: LayerSource<'_>,
    layer: &LayerUnpack<'_>,
) -> Result<Option<Detached>> {
    if snapshotter.stat(layer.name).is_ok() {
        return Ok(None);
    }
    let labels = Labels::from([("containerd.io/snapshot.ref".to_string(), layer.name.to_string())]);
    let mounts = snapshotter.prepare(layer.key, None, labels).map_err(Error::from)?;
    let target = std::path::PathBuf::from(mounts.first().map(|m| m.source.as_str()).unwrap_or_default());
    let mut implied = Vec::new();
    let applied = apply_layer_with(source, layer.blob, layer.media_type, |tar| {
        let (stats, dirs) = berth_snapshotter::apply_layer_detached(tar, &target)?;
        implied = dirs;
        Ok(stats)
    })
    .and_then(|(digest, _)| {
        if digest.to_string() != layer.diff_id {
            return Err(Error::FailedPrecondition(format!(
                "layer {} unpacks to {digest}, but the image config says {}",
                layer.blob, layer.diff_id
            )));
        }
        Ok(Some(Detached { key: layer.key.to_string(), implied: std::mem::take(&mut implied) }))
    });
    if applied.is_err() {
        let _ = snapshotter.remove(layer.key);
    }
    applied
}

/// Commits a layer unpacked apart onto the layers below it; a snapshot that appeared
/// meanwhile (another pull of the same layers) wins, and ours goes.
pub fn stack_layer(
    snapshotter: &dyn Snapshotter,
    layer: &Detached,
    name: &str,
    parent: Option<&str>,
) -> Result<()> {
    let key = layer.key.as_str();
    match snapshotter.commit_onto(name, key, parent, &layer.implied, Labels::new()) {
        Ok(()) => Ok(()),
        Err(e) if e.code() == berth_snapshotter::Code::AlreadyExists => {
            let _ = snapshotter.remove(key);
            Ok(())
        }
        Err(e) => {
            let _ = snapshotter.remove(key);
            Err(Error::from(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_compression() {
        assert_eq!(
            Compression::detect("application/vnd.oci.image.layer.v1.tar+gzip", b""),
            Compression::Gzip
        );
        assert_eq!(
            Compression::detect("application/vnd.docker.image.rootfs.diff.tar.gzip", b""),
            Compression::Gzip
        );
        assert_eq!(
            Compression::detect("application/vnd.oci.image.layer.v1.tar+zstd", b""),
            Compression::Zstd
        );
        assert_eq!(
            Compression::detect("application/vnd.oci.image.layer.v1.tar", b"ustar"),
            Compression::Plain
        );
        assert_eq!(Compression::detect("", &[0x1f, 0x8b, 8]), Compression::Gzip);
    }

    #[test]
    fn chunk_reader_joins_chunks_and_passes_errors() {
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        sender.try_send(Ok(bytes::Bytes::from_static(b"ab"))).unwrap();
        sender.try_send(Ok(bytes::Bytes::new())).unwrap();
        sender.try_send(Ok(bytes::Bytes::from_static(b"cde"))).unwrap();
        drop(sender);
        let mut all = String::new();
        ChunkReader::new(receiver).read_to_string(&mut all).unwrap();
        assert_eq!(all, "abcde");

        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        sender.try_send(Ok(bytes::Bytes::from_static(b"ab"))).unwrap();
        sender.try_send(Err(std::io::Error::other("cut"))).unwrap();
        let mut all = Vec::new();
        let err = ChunkReader::new(receiver).read_to_end(&mut all).unwrap_err();
        assert_eq!(err.to_string(), "cut");
    }

    #[test]
    fn hashing_reader_counts_everything() {
        let mut reader = HashingReader::new(&b"hello world"[..]);
        let mut first = [0u8; 5];
        reader.read_exact(&mut first).unwrap();
        let (digest, size) = reader.finish().unwrap();
        assert_eq!((digest, size), (Digest::of(b"hello world"), 11));
    }
}
