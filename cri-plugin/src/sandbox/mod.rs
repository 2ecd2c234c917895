//! Pod sandboxes: the namespaces, network and files a pod's containers share.
//!
//! berth needs no infra container and no registry to start a pod: the network, IPC and UTS
//! namespaces are created and pinned by berth itself (`pod/host.rs`), CNI attaches the network
//! (`pod/network.rs`), and the pod's files are written in its directory (`pod/files.rs`). The
//! calls here make and unmake a pod from those parts; its record is `records/sandbox.rs`.

pub mod infra;
pub mod run;
pub mod status;
pub mod stop;
pub mod userns;
pub mod watch;

#[cfg(test)]
mod tests;
