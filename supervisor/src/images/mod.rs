//! Images: references, registry hosts, pulling and unpacking.

pub mod hosts;
pub mod metrics;
pub mod oci;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod unpack;
