//! Encoding and decoding with a typed error for every way a payload can be wrong.

use crate::message::{Ack, Birth, Event, Health, Message, PROTOCOL_VERSION, Status};
use crate::topic::{Channel, DeviceTopic, TopicError, clip};

/// Largest payload accepted on any Gavel topic. Real messages are under 4 KiB.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// Serializes a message. Messages are plain data, so this cannot fail.
pub fn encode<M: Message>(message: &M) -> Vec<u8> {
    // Design: every field is a string, number, bool, list or map with string keys;
    // serde_json only fails on non-string map keys or failing Serialize impls.
    serde_json::to_vec(message).unwrap_or_else(|e| unreachable!("message serializes: {e}"))
}

/// Parses and validates a message of type `M`.
pub fn decode<M: Message>(payload: &[u8]) -> Result<M, DecodeError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(DecodeError::TooLarge {
            size: payload.len(),
            max: MAX_PAYLOAD,
        });
    }
    let value: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| DecodeError::Json {
            line: e.line(),
            column: e.column(),
            message: clip(&e.to_string()),
        })?;
    let object = value.as_object().ok_or(DecodeError::NotAnObject {
        found: json_kind(&value),
    })?;
    match object.get("v") {
        None => return Err(DecodeError::MissingVersion),
        Some(v) if v.as_u64() == Some(u64::from(PROTOCOL_VERSION)) => {}
        Some(v) => {
            return Err(DecodeError::UnsupportedVersion {
                found: clip(&v.to_string()),
            });
        }
    }
    let message: M = serde_json::from_value(value).map_err(|e| DecodeError::Schema {
        channel: M::CHANNEL,
        message: clip(&e.to_string()),
    })?;
    message.validate().map_err(|i| DecodeError::Invalid {
        channel: M::CHANNEL,
        field: i.field,
        reason: i.reason,
    })?;
    Ok(message)
}

/// A message published by a device, as the controller sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceMessage {
    Birth(Birth),
    Status(Status),
    Health(Health),
    Event(Event),
    Ack(Ack),
}

/// Parses the topic and the payload of a message received from the broker.
pub fn decode_device_message(
    topic: &str,
    payload: &[u8],
) -> Result<(DeviceTopic, DeviceMessage), IngestError> {
    let topic = DeviceTopic::parse(topic)?;
    let message = match topic.channel {
        Channel::Birth => DeviceMessage::Birth(decode(payload)?),
        Channel::Status => DeviceMessage::Status(decode(payload)?),
        Channel::Health => DeviceMessage::Health(decode(payload)?),
        Channel::Event => DeviceMessage::Event(decode(payload)?),
        Channel::Ack => DeviceMessage::Ack(decode(payload)?),
        Channel::Cmd | Channel::Receipt | Channel::Schedule | Channel::Wall => {
            return Err(IngestError::WrongDirection(topic.channel));
        }
    };
    Ok((topic, message))
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Why a payload is not a valid message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("payload is {size} bytes; at most {max} are accepted")]
    TooLarge { size: usize, max: usize },
    #[error("payload is not JSON (line {line}, column {column}): {message}")]
    Json {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("payload is {found}, not a JSON object")]
    NotAnObject { found: &'static str },
    #[error("payload has no version field `v`")]
    MissingVersion,
    #[error("payload version {found} is not supported (this build speaks v1)")]
    UnsupportedVersion { found: String },
    #[error("{channel} payload does not match the schema: {message}")]
    Schema { channel: Channel, message: String },
    #[error("{channel} payload field `{field}` is invalid: {reason}")]
    Invalid {
        channel: Channel,
        field: String,
        reason: String,
    },
}

impl DecodeError {
    /// Stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::Json { .. } => "not_json",
            DecodeError::NotAnObject { .. } => "not_object",
            DecodeError::MissingVersion => "missing_version",
            DecodeError::UnsupportedVersion { .. } => "unsupported_version",
            DecodeError::Schema { .. } => "schema",
            DecodeError::Invalid { .. } => "invalid_field",
        }
    }
}

/// Why a message received from the broker was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Topic(#[from] TopicError),
    #[error(transparent)]
    Payload(#[from] DecodeError),
    #[error("devices do not publish on the `{0}` channel")]
    WrongDirection(Channel),
}

impl IngestError {
    /// Stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            IngestError::Topic(_) => "bad_topic",
            IngestError::Payload(e) => e.kind(),
            IngestError::WrongDirection(_) => "wrong_direction",
        }
    }
}
