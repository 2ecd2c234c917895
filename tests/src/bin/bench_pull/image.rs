//! The benchmark's images: generated here, deterministically, from a seeded PRNG.

use std::time::{Duration, Instant};

use berth_tests::{ImageBuilder, LayerBuilder, OciImage};

use super::*;

/// SplitMix64: small, fast, and the same sequence everywhere.
pub(crate) struct Prng(u64);

impl Prng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// File contents: 4 KiB chunks, each either random bytes (like compressed data or machine
/// code) or text: lines drawn from a pool of lines made of a small vocabulary (like sources,
/// configs, symbol tables), which deflate finds again within its window.
pub(crate) struct ContentGen {
    pub(crate) rng: Prng,
    pub(crate) lines: Vec<Vec<u8>>,
}

impl ContentGen {
    /// Out of 256, how many chunks are random bytes; tuned for a gzip ratio near 2.5.
    const RANDOM_PER_256: u64 = 64;
    const CHUNK: usize = 4096;
    const LINES: usize = 256;

    pub(crate) fn new(seed: u64) -> Self {
        let mut rng = Prng(seed);
        let words: Vec<Vec<u8>> = (0..512)
            .map(|_| {
                let len = rng.range(2, 11) as usize;
                (0..len).map(|_| b'a' + (rng.next() % 26) as u8).collect()
            })
            .collect();
        let lines = (0..Self::LINES)
            .map(|_| {
                let mut line = Vec::new();
                for _ in 0..rng.range(3, 12) {
                    line.extend_from_slice(&words[(rng.next() % 512) as usize]);
                    line.push(b' ');
                }
                line.push(b'\n');
                line
            })
            .collect();
        Self { rng: Prng(seed ^ 0x5eed), lines }
    }

    pub(crate) fn fill(&mut self, out: &mut Vec<u8>, len: usize) {
        let end = out.len() + len;
        while out.len() < end {
            let want = (end - out.len()).min(Self::CHUNK);
            if self.rng.next() % 256 < Self::RANDOM_PER_256 {
                self.random(out, want);
            } else {
                self.text(out, want);
            }
        }
    }

    pub(crate) fn random(&mut self, out: &mut Vec<u8>, len: usize) {
        let end = out.len() + len;
        while out.len() + 8 <= end {
            out.extend_from_slice(&self.rng.next().to_le_bytes());
        }
        let tail = end - out.len();
        out.extend_from_slice(&self.rng.next().to_le_bytes()[..tail]);
    }

    pub(crate) fn text(&mut self, out: &mut Vec<u8>, len: usize) {
        let end = out.len() + len;
        while out.len() < end {
            let line = &self.lines[(self.rng.next() % Self::LINES as u64) as usize];
            let room = end - out.len();
            out.extend_from_slice(&line[..line.len().min(room)]);
        }
    }
}

/// One generated layer: `small` files of 4–64 KiB spread over directories, `large` files of
/// `large_size` bytes, under `prefix`.
#[derive(Clone, Copy)]
pub(crate) struct LayerSpec {
    pub(crate) prefix: &'static str,
    pub(crate) small: usize,
    pub(crate) large: usize,
    pub(crate) large_size: usize,
    pub(crate) seed: u64,
}

pub(crate) const LAYERS: [LayerSpec; 3] = [
    LayerSpec { prefix: "usr/lib/os", small: 5000, large: 0, large_size: 0, seed: 2 },
    LayerSpec { prefix: "opt/runtime", small: 3000, large: 4, large_size: 31 << 20, seed: 3 },
    LayerSpec { prefix: "app", small: 1500, large: 2, large_size: 31 << 20, seed: 4 },
];

/// Returns the layer tar and how many regular files it holds.
pub(crate) fn generate_layer(spec: &LayerSpec) -> (Vec<u8>, usize) {
    let mut content = ContentGen::new(spec.seed);
    let mut sizes = Prng(spec.seed.wrapping_mul(0x1000_0000_01b3));
    let mut layer = LayerBuilder::default();
    let mut path = String::new();
    for part in spec.prefix.split('/') {
        if !path.is_empty() {
            path.push('/');
        }
        path.push_str(part);
        layer = layer.dir(&path, 0o755);
    }
    let mut buf = Vec::with_capacity(spec.large_size.max(64 << 10));
    let per_dir = 100;
    for i in 0..spec.small {
        if i % per_dir == 0 {
            layer = layer.dir(&format!("{}/d{:03}", spec.prefix, i / per_dir), 0o755);
        }
        buf.clear();
        let len = sizes.range(4 << 10, 64 << 10) as usize;
        content.fill(&mut buf, len);
        let mode = if i % 7 == 0 { 0o755 } else { 0o644 };
        layer = layer.file(&format!("{}/d{:03}/f{i:05}", spec.prefix, i / per_dir), mode, &buf);
        if i % 50 == 0 {
            layer =
                layer.symlink(&format!("{}/d{:03}/l{i:05}", spec.prefix, i / per_dir), &format!("f{i:05}"));
        }
    }
    for i in 0..spec.large {
        buf.clear();
        content.fill(&mut buf, spec.large_size);
        layer = layer.file(&format!("{}/large{i}.bin", spec.prefix), 0o644, &buf);
    }
    (layer.into_tar(), spec.small + spec.large)
}

pub(crate) struct ImageStats {
    pub(crate) wire_bytes: u64,
    pub(crate) uncompressed_bytes: u64,
    pub(crate) layers: usize,
    pub(crate) files: usize,
    pub(crate) generate: Duration,
}

/// An image's layer tars before compression: the base layer (busybox) and the generated ones.
pub(crate) struct Generated {
    pub(crate) base: Vec<u8>,
    pub(crate) layers: Vec<Vec<u8>>,
    pub(crate) files: usize,
    pub(crate) generate: Duration,
}

/// The layers of image `variant`: 0 is the benchmark image; 1 and 2 are the `--three-images`
/// extras, half its size, with other seeds (so no layer is shared).
pub(crate) fn layer_specs(variant: u64) -> Vec<LayerSpec> {
    LAYERS
        .iter()
        .map(|spec| {
            if variant == 0 {
                *spec
            } else {
                LayerSpec {
                    small: spec.small / 2,
                    large: spec.large / 2,
                    seed: spec.seed + 1000 * variant,
                    ..*spec
                }
            }
        })
        .collect()
}

/// The busybox layer's tar, as [`ImageBuilder::busybox`] makes it; variants add a file naming
/// them, so their base layers differ from the benchmark image's and from each other.
pub(crate) fn base_layer(variant: u64) -> Vec<u8> {
    if variant == 0 {
        use std::io::Read as _;
        let image = ImageBuilder::busybox().expect("read /bin/busybox (install busybox-static)").build();
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(image.layers[0].bytes.as_slice()).read_to_end(&mut tar).expect("gunzip");
        return tar;
    }
    let busybox = std::fs::read(berth_tests::image::BUSYBOX_STATIC).expect("read /bin/busybox");
    LayerBuilder::default()
        .dir("bin", 0o755)
        .dir("etc", 0o755)
        .file("bin/busybox", 0o755, &busybox)
        .symlink("bin/sh", "busybox")
        .file("etc/bench-variant", 0o644, format!("{variant}\n").as_bytes())
        .into_tar()
}

pub(crate) fn generate(variant: u64) -> Generated {
    let started = Instant::now();
    let specs = layer_specs(variant);
    let generated: Vec<(Vec<u8>, usize)> = std::thread::scope(|scope| {
        let handles: Vec<_> = specs.iter().map(|spec| scope.spawn(move || generate_layer(spec))).collect();
        handles.into_iter().map(|h| h.join().expect("layer generator")).collect()
    });
    // busybox, /etc/passwd, /etc/group (or the variant's file).
    let files = 3 + generated.iter().map(|(_, n)| n).sum::<usize>();
    let layers = generated.into_iter().map(|(tar, _)| tar).collect();
    Generated { base: base_layer(variant), layers, files, generate: started.elapsed() }
}

/// Compresses the layers (in order, one thread) into an image: with gzip and variant 0, the
/// image `ImageBuilder::busybox().layer(…)…` makes.
pub(crate) fn assemble(
    generated: &Generated,
    compression: berth_tests::image::LayerCompression,
) -> (OciImage, ImageStats) {
    let started = Instant::now();
    let mut builder = ImageBuilder::default()
        .config_field("Cmd", serde_json::json!(["sh"]))
        .layer_with(generated.base.clone(), compression);
    let mut uncompressed = generated.base.len() as u64;
    for tar in &generated.layers {
        uncompressed += tar.len() as u64;
        builder = builder.layer_with(tar.clone(), compression);
    }
    let image = builder.build();
    let wire_bytes = image.layers.iter().map(|l| l.bytes.len() as u64).sum::<u64>()
        + image.config.bytes.len() as u64
        + image.manifest.bytes.len() as u64;
    let stats = ImageStats {
        wire_bytes,
        uncompressed_bytes: uncompressed,
        layers: image.layers.len(),
        files: generated.files,
        generate: generated.generate + started.elapsed(),
    };
    (image, stats)
}

pub(crate) fn describe(label: &str, image: &OciImage, stats: &ImageStats) {
    eprintln!(
        "  {label}: {} layers, {} files, {} uncompressed, {} on the wire, in {:.1} s; id {}",
        stats.layers,
        stats.files,
        mb(stats.uncompressed_bytes),
        mb(stats.wire_bytes),
        stats.generate.as_secs_f64(),
        image.id()
    );
}
