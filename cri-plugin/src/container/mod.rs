//! CRI containers: created from an image and a config inside a pod sandbox, run by the
//! engine's tasks (one shim each), their logs written by the shim in the CRI format.

pub mod checkpoint;
pub mod create;
pub mod events;
pub mod exec_process;
pub mod exec_sync;
pub mod image_volumes;
pub mod lifecycle;
pub mod status;
pub mod update;

#[cfg(test)]
mod tests;
