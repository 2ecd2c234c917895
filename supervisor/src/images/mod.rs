//! Images: references, registry hosts, pulling and unpacking, and the CRI's view of images.

pub mod cri_store;
pub mod hosts;
pub mod metrics;
pub mod oci;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod unpack;
