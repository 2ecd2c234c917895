//! In-memory fakes of every backend the plugin talks to (the engine's traits, the pod's host
//! and network), all logging to one [`Recorder`] that can make a chosen call fail, and a
//! [`Harness`] that opens a [`crate::CriRuntime`] on them. For the lifecycle tests: each runs
//! without root in milliseconds.

pub mod engine;
pub mod harness;
pub mod host;
pub mod images;
pub mod network;
pub mod pods;
pub mod recorder;
pub mod steps;
pub mod tasks;

pub use engine::FakeRecords;
pub use harness::{Fakes, Harness};
pub use host::FakePodHost;
pub use images::image;
pub use pods::{IMAGE, IMAGE_ID, Pod};
pub use recorder::INJECTED_CODE;
pub use steps::{Step, assert_outcome, assert_sequence, fails, numbered, tolerated};
