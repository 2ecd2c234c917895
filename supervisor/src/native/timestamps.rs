//! Conversions between record timestamps (nanoseconds since the epoch) and protobuf ones.

use std::time::SystemTime;

pub fn from_nanos(nanos: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: nanos.div_euclid(1_000_000_000),
        nanos: nanos.rem_euclid(1_000_000_000) as i32,
    }
}

pub fn from_system(time: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(time)
}
