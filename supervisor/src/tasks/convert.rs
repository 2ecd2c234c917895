//! Conversions between the native API's prost types and the shim protocol's rust-protobuf
//! types (containerd-shim-protos), which describe the same wire messages.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use containerd_shim_protos::protobuf::well_known_types::any::Any as ShimAny;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp as ShimTimestamp;
use containerd_shim_protos::types::mount::Mount as ShimMount;

pub fn to_shim_any(any: &prost_types::Any) -> ShimAny {
    let mut out = ShimAny::new();
    out.type_url = any.type_url.clone();
    out.value = any.value.clone();
    out
}

pub fn from_shim_any(any: &ShimAny) -> prost_types::Any {
    prost_types::Any { type_url: any.type_url.clone(), value: any.value.clone() }
}

pub fn to_shim_mount(mount: &berth_proto::containerd::types::Mount) -> ShimMount {
    let mut out = ShimMount::new();
    out.type_ = mount.r#type.clone();
    out.source = mount.source.clone();
    out.target = mount.target.clone();
    out.options = mount.options.clone();
    out
}

pub fn from_shim_timestamp(timestamp: &ShimTimestamp) -> SystemTime {
    UNIX_EPOCH + Duration::new(timestamp.seconds.max(0) as u64, timestamp.nanos.max(0) as u32)
}

pub fn to_shim_timestamp(time: SystemTime) -> ShimTimestamp {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut out = ShimTimestamp::new();
    out.seconds = since.as_secs() as i64;
    out.nanos = since.subsec_nanos() as i32;
    out
}

pub fn to_prost_timestamp(time: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(time)
}
