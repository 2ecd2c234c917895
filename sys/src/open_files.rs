//! The open-file limit: berthd raises its own soft limit to the hard one (a few hundred shim
//! connections and clients outgrow the usual 1024), and hands the limit it started with to
//! its shims, which put it back before runc runs, so containers get the node's usual limit,
//! as Go's runtime does for containerd's children.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Carries the soft limit berthd started with to its shims.
pub const SHIM_SOFT_LIMIT_ENV: &str = "BERTH_SHIM_NOFILE_SOFT";

/// What [`raise_soft_limit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raised {
    /// The soft limit before: what children should get back.
    pub original_soft: u64,
    pub soft: u64,
    pub hard: u64,
}

/// Raises this process's soft RLIMIT_NOFILE to its hard limit.
pub fn raise_soft_limit() -> nix::Result<Raised> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(Raised { original_soft: soft, soft: hard.max(soft), hard })
}

/// In a shim: sets the soft limit berthd started with, when berthd said what it was, so that
/// runc and the container inherit it. A value above the hard limit is clamped to it.
pub fn restore_soft_limit_from_env() -> nix::Result<Option<u64>> {
    let Some(wanted) = std::env::var(SHIM_SOFT_LIMIT_ENV).ok().and_then(|v| v.parse::<u64>().ok()) else {
        return Ok(None);
    };
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let soft = wanted.min(hard);
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard)?;
    Ok(Some(soft))
}
