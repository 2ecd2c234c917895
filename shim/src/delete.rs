//! The `delete` action: clean up after a dead shim (containerd's `cleanupAfterDeadShim`).
//!
//! `runc delete --force <id>` (warnings only), unmount `<bundle>/rootfs`, remove a stale shim
//! socket, then write the raw protobuf bytes of `containerd.task.v2.DeleteResponse` to stdout
//! (no framing, no newline). The exit status is the recorded one from `<bundle>/exit` when the
//! shim managed to write it, else 137 (128 + SIGKILL) with the current time.

use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;

use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::shim::DeleteResponse;

use crate::args::Args;
use crate::error::{Error, IoContext, Result};
use crate::options::{self, Options};
use crate::runtime::Runtime;
use crate::{exit_file, mount, reaper, start, util};

pub fn delete(args: &Args) -> Result<Vec<u8>> {
    let bundle = if args.bundle.is_empty() {
        std::env::current_dir().ctx(|| "cwd".into())?
    } else {
        PathBuf::from(&args.bundle)
    };
    let opts = Options::load(&bundle)?;
    let rt = Runtime::new(
        opts.binary(),
        opts.runtime_root(&options::default_root(&args.address), &args.namespace),
        &bundle,
        opts.systemd_cgroup,
    );
    let id = args.id.clone();
    let tokio_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("tokio runtime", e))?;
    tokio_rt.block_on(async {
        if let Err(e) = reaper::start() {
            warn!("{e}");
        }
        if let Err(e) = rt.delete(&id, true).await {
            warn!("failed to remove runc container {id}: {e}");
        }
    });
    mount::unmount_all(&bundle.join("rootfs"));
    if let Ok(addr) = std::fs::read_to_string(bundle.join("address")) {
        let path = start::socket_path(addr.trim()).to_string();
        if std::os::unix::net::UnixStream::connect(&path).is_err() {
            let _ = std::fs::remove_file(&path);
        }
    }
    let pid: u32 = match std::fs::read_to_string(bundle.join("init.pid")) {
        Ok(s) => s.trim().parse().unwrap_or(0),
        Err(e) => {
            warn!("read init.pid: {e}");
            0
        }
    };
    let (status, at) = match exit_file::read(&bundle, "") {
        Ok(r) => (r.exit_status, r.exited_at),
        Err(_) => (137, SystemTime::now()),
    };
    let mut r = DeleteResponse::new();
    r.pid = pid;
    r.exit_status = status;
    r.exited_at = util::timestamp(at);
    r.write_to_bytes().map_err(|e| Error::Other(format!("encode DeleteResponse: {e}")))
}

pub fn print(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes).ctx(|| "write DeleteResponse".into())?;
    out.flush().ctx(|| "write DeleteResponse".into())
}
