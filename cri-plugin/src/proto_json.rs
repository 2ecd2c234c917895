//! Records keep CRI messages (configs) as base64 protobuf inside their JSON: prost types
//! have no serde, and protobuf is the form these messages are defined in.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Deserializer, Serializer};

pub fn serialize<S: Serializer, M: prost::Message>(message: &M, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&STANDARD.encode(message.encode_to_vec()))
}

pub fn deserialize<'de, D: Deserializer<'de>, M: prost::Message + Default>(
    deserializer: D,
) -> Result<M, D::Error> {
    let text = String::deserialize(deserializer)?;
    let bytes = STANDARD.decode(text).map_err(serde::de::Error::custom)?;
    M::decode(bytes.as_slice()).map_err(serde::de::Error::custom)
}
