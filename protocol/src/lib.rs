//! # gavel-protocol
//!
//! The one crate both devices and the controller share: MQTT topics, messages, versions.
//! Only this crate builds or parses topic strings and message payloads.
//!
//! | channel | direction | QoS | retained |
//! |---|---|---|---|
//! | `birth` | device -> controller | 1 | yes |
//! | `status` | device -> controller (and last will) | 1 | yes |
//! | `health` | device -> controller | 0 | no |
//! | `event` | device -> controller | 1 | no |
//! | `cmd` | controller -> device | 1 | no |
//! | `ack` | device -> controller | 1 | no |
//! | `receipt` | controller -> device | 1 | yes |
//! | `schedule` | controller -> device | 1 | yes |
//! | `wall` | controller -> wall device | 1 | yes |

pub mod acl;
pub mod codec;
pub mod finding;
pub mod ids;
pub mod message;
pub mod topic;
pub mod wall;

pub use codec::{
    DecodeError, DeviceMessage, IngestError, MAX_PAYLOAD, decode, decode_device_message, encode,
};
pub use finding::{FindingKind, RecordingLink, Severity, Snapshot};
pub use ids::{DeviceId, IdError};
pub use message::*;
pub use topic::{Channel, DeviceTopic, TopicError, filter};
pub use wall::{MAX_WALL_TILES, Wall, WallFocus, WallLayout, WallSource};

/// Formats a timestamp as RFC 3339 (for logs and APIs outside the wire messages).
pub fn rfc3339(ts: time::OffsetDateTime) -> String {
    ts.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| ts.unix_timestamp().to_string())
}
