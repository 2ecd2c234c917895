//! What a pod sandbox is made of, below the CRI calls that make and unmake it (`sandbox/`): the
//! host's namespaces and processes ([`host::PodHost`], its pidfds), the pod's network
//! ([`network::PodNetwork`], which CNI implements), its own cgroup, the files in its
//! directory, and the starts in flight.

pub mod cgroup;
pub mod files;
pub mod host;
pub mod idmapped_rootfs;
pub mod network;
pub mod pidfd;
pub mod starts;
