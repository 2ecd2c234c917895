#!/usr/bin/env python3
"""Writes the fuzz targets' seed inputs into fuzz/corpus/<target>/seed-*: a few small valid
inputs each, so the fuzzer starts from real protocol bytes. Run from anywhere; then minimise
with `cargo +nightly fuzz cmin <target>`. Standard library only."""

import gzip
import io
import json
import os
import re
import struct
import tarfile
import zlib

FUZZ = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(FUZZ)


def write(target, name, data):
    directory = os.path.join(FUZZ, "corpus", target)
    os.makedirs(directory, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(directory, "seed-" + name), "wb") as f:
        f.write(data)


# --- spdy_frame: mode byte 0 = a connection, 1 = compressed blocks, 2 = a raw block.


def spdy_dictionary():
    """The SPDY/3 dictionary, read from headers.rs so it cannot drift."""
    source = open(os.path.join(ROOT, "stream-wire/src/spdy/headers.rs")).read()
    words = source.split("const DICTIONARY_WORDS: &[&str] = &[", 1)[1].split("];", 1)[0]
    tail = source.split("const DICTIONARY_TAIL: &str = concat!(", 1)[1].split(");", 1)[0]
    out = b""
    for word in re.findall(r'"([^"]*)"', words):
        out += struct.pack(">I", len(word)) + word.encode()
    out += "".join(re.findall(r'"([^"]*)"', tail)).encode()
    assert len(out) == 1423, len(out)
    return out


def header_block(headers):
    out = struct.pack(">I", len(headers))
    for name, value in headers:
        out += struct.pack(">I", len(name)) + name + struct.pack(">I", len(value)) + value
    return out


def control(kind, flags, payload):
    return struct.pack(">HHI", 0x8003, kind, (flags << 24) | len(payload)) + payload


def data_frame(stream_id, flags, payload):
    return struct.pack(">II", stream_id, (flags << 24) | len(payload)) + payload


class Compressor:
    """One direction's zlib stream: blocks must be used in the order they were compressed."""

    def __init__(self):
        self.zlib = zlib.compressobj(zdict=spdy_dictionary())

    def __call__(self, block):
        return self.zlib.compress(block) + self.zlib.flush(zlib.Z_SYNC_FLUSH)


blocks = [
    header_block([(b"streamtype", b"error")]),
    header_block([(b"streamtype", b"stdout"), (b"port", b"8080"), (b"requestid", b"0")]),
    header_block([(b"streamtype", b"stdin\x00data")]),
]


def syn_stream(compress, stream_id, flags, block):
    return control(1, flags, struct.pack(">IIBB", stream_id, 0, 0, 0) + compress(block))


compress = Compressor()
connection = (
    syn_stream(compress, 1, 0, blocks[0])
    + syn_stream(compress, 3, 0x02, blocks[1])
    + control(2, 0, struct.pack(">I", 1) + compress(header_block([(b"status", b"200")])))
    + data_frame(3, 0, b"hello")
    + data_frame(3, 1, b"")
    + control(3, 0, struct.pack(">II", 1, 5))
    + control(4, 1, struct.pack(">III", 1, 0x01000007, 65536))
    + control(6, 0, struct.pack(">I", 1))
    + control(9, 0, struct.pack(">II", 1, 4096))
    + control(8, 1, struct.pack(">I", 3) + compress(header_block([(b"x", b"y")])))
    + control(7, 0, struct.pack(">II", 5, 0))
)
write("spdy_frame", "connection", b"\x00" + connection)
write("spdy_frame", "syn-stream", b"\x00" + syn_stream(Compressor(), 5, 0x01, blocks[2]))
compress = Compressor()
write("spdy_frame", "blocks", b"\x01" + b"".join(struct.pack(">H", len(c)) + c for c in map(compress, blocks)))
write("spdy_frame", "raw-block", b"\x02" + blocks[1])
write("spdy_frame", "raw-multi", b"\x02" + blocks[2])

# --- websocket_channel: mode % 4: 0 message (bit 4 base64, bit 5 close signal), 1
# handshake, 2 outcome round trip (protocol in the high nibble), 3 outcome decode.

write("websocket_channel", "binary", b"\x00" + b"\x01hello\n")
write("websocket_channel", "base64", b"\x10" + b"1aGVsbG8K")
write("websocket_channel", "close", b"\x20" + b"\xff\x00")
write("websocket_channel", "offers", b"\x01v4.channel.k8s.io, v5.channel.k8s.io\nbase64.channel.k8s.io")
write("websocket_channel", "ports", b"\x01port=80&x=1&port=8080%2C9090")
status = {
    "metadata": {},
    "status": "Failure",
    "message": "command terminated with non-zero exit code: exit status 3",
    "reason": "NonZeroExitCode",
    "details": {"causes": [{"reason": "ExitCode", "message": "3"}]},
}
write("websocket_channel", "status-v4", b"\x32" + json.dumps(status).encode())
write("websocket_channel", "text-v1", b"\x02command terminated with non-zero exit code: exit status 2")
write("websocket_channel", "status-any", b"\x03" + json.dumps({"metadata": {}, "status": "Success"}).encode())

# --- layer_apply: mode byte (bit 0: delete-mode whiteouts), then a tar, gzip or not.


def tar_layer(build, compress_with=None):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        build(tar)
    data = buf.getvalue().rstrip(b"\x00") + b"\x00" * 1024
    if compress_with == "gzip":
        data = gzip.compress(data, mtime=0)
    return data


def add(tar, name, kind=tarfile.REGTYPE, data=b"", link="", mode=0o644, pax=None):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = 1_600_000_000
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    if pax:
        info.pax_headers = pax
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def basic(tar):
    add(tar, "./", tarfile.DIRTYPE, mode=0o755)
    add(tar, "etc/", tarfile.DIRTYPE, mode=0o755)
    add(tar, "etc/passwd", data=b"root:x:0:0::/root:/bin/sh\n")
    add(tar, "bin/sh", data=b"#!", mode=0o755, pax={"mtime": "1600000000.5"})
    add(tar, "bin/ash", tarfile.LNKTYPE, link="bin/sh")
    add(tar, "lib", tarfile.SYMTYPE, link="/usr/lib")
    add(tar, "dev/null", tarfile.CHRTYPE, mode=0o666)
    add(tar, "run/fifo", tarfile.FIFOTYPE)


def whiteouts(tar):
    add(tar, "etc/", tarfile.DIRTYPE, mode=0o755)
    add(tar, "etc/.wh.passwd")
    add(tar, "var/.wh..wh..opq")
    add(tar, "var/x", data=b"x", pax={"SCHILY.xattr.user.k": "v"})


def hostile(tar):
    add(tar, "escape", tarfile.SYMTYPE, link="../host")
    add(tar, "escape/secret", data=b"overwritten")
    add(tar, "abs", tarfile.SYMTYPE, link="/etc")
    add(tar, "abs/berth-fuzz", data=b"x")
    add(tar, "link", tarfile.LNKTYPE, link="escape/secret")
    add(tar, "../host/secret", data=b"x")


write("layer_apply", "basic", b"\x00" + tar_layer(basic))
write("layer_apply", "basic-gzip", b"\x00" + tar_layer(basic, "gzip"))
write("layer_apply", "whiteouts-overlay", b"\x00" + tar_layer(whiteouts))
write("layer_apply", "whiteouts-delete", b"\x01" + tar_layer(whiteouts))
write("layer_apply", "hostile", b"\x01" + tar_layer(hostile))

# --- image_reference

for i, ref in enumerate(
    [
        "busybox",
        "quay.io/x/y:1",
        "localhost:5000/a/b:tag@sha256:" + "a" * 64,
        "docker.io/library/nginx@sha256:" + "0" * 64,
        "[::1]:5000/repo",
    ]
):
    write("image_reference", str(i), ref)

# --- image_documents: mode % 4: 0 index, 1 manifest, 2 config, 3 media type and digest.

digest = "sha256:" + "b" * 64
index = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [
        {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest,
            "size": 100,
            "platform": {"architecture": a, "os": "linux", **({"variant": v} if v else {})},
        }
        for a, v in [("amd64", None), ("arm64", "v8"), ("arm", "v7")]
    ],
}
manifest = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
    "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": digest, "size": 10},
    "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": digest, "size": 5}],
}
config = {
    "architecture": "amd64",
    "os": "linux",
    "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"], "User": "1000:1000"},
    "rootfs": {"type": "layers", "diff_ids": [digest, "sha256:" + "c" * 64]},
}
write("image_documents", "index", b"\x00" + json.dumps(index).encode())
write("image_documents", "manifest", b"\x01" + json.dumps(manifest).encode())
write("image_documents", "config", b"\x02" + json.dumps(config).encode())
write("image_documents", "media-type", b"\x03application/vnd.oci.image.index.v1+json\n" + digest.encode())

# --- hosts_toml: mode % 4 picks the registry.

write(
    "hosts_toml",
    "full",
    b"\x00"
    + b'''server = "https://registry.example.com"
[header]
  x-custom = ["a", "b"]
[host."https://mirror.example.com/v2/proxy-cache"]
  capabilities = ["pull", "resolve"]
  ca = "certs/mirror.crt"
  client = [["client.cert", "client.key"], "both.pem"]
  skip_verify = false
  dial_timeout = "5s"
  [host."https://mirror.example.com/v2/proxy-cache".header]
    x-forwarded-for-registry = "registry.example.com"
[host."http://127.0.0.1:5000/custom/../api"]
  override_path = true
''',
)
write("hosts_toml", "server-only", b'\x02server = "http://127.0.0.1:5000"\nca = ["/a.crt"]\n')

# --- cni_result

bridge = {
    "cniVersion": "1.0.0",
    "interfaces": [
        {"name": "berth0", "mac": "aa:bb:cc:dd:ee:01"},
        {"name": "eth0", "mac": "aa:bb:cc:dd:ee:03", "sandbox": "/run/netns/x"},
    ],
    "ips": [
        {"address": "fd00::5/64", "gateway": "fd00::1", "interface": 1},
        {"address": "10.88.0.5/16", "gateway": "10.88.0.1", "interface": 1},
    ],
    "routes": [{"dst": "0.0.0.0/0"}],
    "dns": {"nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"]},
}
legacy = {"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.7/8", "gateway": "10.0.0.1", "routes": [{"dst": "0.0.0.0/0"}]}}
write("cni_result", "bridge", json.dumps(bridge))
write("cni_result", "legacy", json.dumps(legacy))

# --- cri_log: two bytes pick where the log is cut into reads.

write(
    "cri_log",
    "lines",
    b"\x40\xa0"
    + b"2024-01-01T00:00:00.1Z stdout P hel\n"
    + b"2024-01-01T00:00:00.2Z stderr F oops\n"
    + b"2024-01-01T00:00:00.3Z stdout F lo world\n"
    + b"not a cri line\n"
    + b"2024-01-01T00:00:00.4Z stderr P half",
)

# --- hpack_authority: mode % 3: 0 a connection's bytes (two cut bytes first), 1 a first
# header block, 2 length-prefixed blocks.

grpcio = open(os.path.join(ROOT, "grpc-authority/src/testdata/grpcio-1.85.3-client.bin"), "rb").read()
tests = open(os.path.join(ROOT, "grpc-authority/src/tests.rs")).read()
huffman_first = bytes.fromhex(
    "".join(re.findall(r"[0-9a-f]+", tests.split("HUFFMAN_FIRST: &str = ", 1)[1].split(";", 1)[0]))
)
huffman_again = bytes.fromhex(re.search(r'HUFFMAN_AGAIN: &str = "([0-9a-f]+)"', tests).group(1))


def literal(name, value):
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


plain_block = b"\x83\x86" + literal(b":path", b"/x.Y/Z") + b"\x41" + bytes([len(b"run%2Fberth.sock")]) + b"run%2Fberth.sock"
go_block = b"\x83\x86" + b"\x41\x09localhost" + literal(b"te", b"trailers")
write("hpack_authority", "grpcio", b"\x00\x30\x90" + grpcio)
write("hpack_authority", "first-huffman", b"\x01" + huffman_first)
write("hpack_authority", "first-plain", b"\x01" + plain_block)
write("hpack_authority", "first-go", b"\x01" + go_block)
write(
    "hpack_authority",
    "blocks",
    b"\x02" + b"".join(struct.pack(">H", len(b)) + b for b in [huffman_first, huffman_again, plain_block]),
)
