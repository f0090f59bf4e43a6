//! MQTT topic scheme: `gavel/v1/dev/{device_id}/{channel}`.
//!
//! Design: the device id is always the fourth level, so a broker ACL pattern such as
//! `pattern write gavel/v1/dev/%u/#` confines each device to its own prefix. Only this
//! module builds or parses topic strings.

use std::fmt;

use crate::ids::{DeviceId, IdError};

/// First level of every Gavel topic.
pub const ROOT: &str = "gavel";
/// Topic version. Bumped only on a breaking change of the topic layout or messages.
pub const TOPIC_VERSION: &str = "v1";

/// What a message on a device topic is about. The channel is the last topic level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    /// Device -> controller: who the device is and what it runs (retained, QoS 1).
    Birth,
    /// Device -> controller: online, or offline via the last will (retained, QoS 1).
    Status,
    /// Device -> controller: periodic health telemetry (QoS 0).
    Health,
    /// Device -> controller: typed events with start/update/end phases (QoS 1).
    Event,
    /// Controller -> device: commands with correlation ids (QoS 1).
    Cmd,
    /// Device -> controller: command acknowledgements (QoS 1).
    Ack,
    /// Controller -> device: events stored up to a sequence number (retained, QoS 1).
    Receipt,
    /// Controller -> device: the hearing schedule of the device's room (retained, QoS 1).
    Schedule,
    /// Controller -> wall device: the video wall's layout, sources and focus (retained, QoS 1).
    Wall,
}

impl Channel {
    /// Every channel, in table order.
    pub const ALL: [Channel; 9] = [
        Channel::Birth,
        Channel::Status,
        Channel::Health,
        Channel::Event,
        Channel::Cmd,
        Channel::Ack,
        Channel::Receipt,
        Channel::Schedule,
        Channel::Wall,
    ];

    /// The topic level for this channel.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Birth => "birth",
            Channel::Status => "status",
            Channel::Health => "health",
            Channel::Event => "event",
            Channel::Cmd => "cmd",
            Channel::Ack => "ack",
            Channel::Receipt => "receipt",
            Channel::Schedule => "schedule",
            Channel::Wall => "wall",
        }
    }

    /// MQTT quality of service used when publishing on this channel.
    pub fn qos(self) -> u8 {
        match self {
            Channel::Health => 0,
            _ => 1,
        }
    }

    /// Whether messages on this channel are published with the retain flag.
    pub fn retained(self) -> bool {
        matches!(
            self,
            Channel::Birth | Channel::Status | Channel::Receipt | Channel::Schedule | Channel::Wall
        )
    }

    /// Whether the device publishes on this channel (false: the controller does).
    pub fn from_device(self) -> bool {
        !matches!(
            self,
            Channel::Cmd | Channel::Receipt | Channel::Schedule | Channel::Wall
        )
    }

    fn parse(level: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == level)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed Gavel device topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceTopic {
    /// The device the topic belongs to.
    pub device: DeviceId,
    /// What the topic carries.
    pub channel: Channel,
}

impl DeviceTopic {
    /// The topic for `channel` of `device`.
    pub fn new(device: DeviceId, channel: Channel) -> Self {
        Self { device, channel }
    }

    /// Parses a topic string, naming what is wrong with it when it is not a Gavel device topic.
    pub fn parse(topic: &str) -> Result<Self, TopicError> {
        let mut levels = topic.split('/');
        let root = levels.next().unwrap_or_default();
        if root != ROOT {
            return Err(TopicError::NotGavel(clip(topic)));
        }
        let version = levels
            .next()
            .ok_or_else(|| TopicError::Truncated(clip(topic)))?;
        if version != TOPIC_VERSION {
            return Err(TopicError::UnsupportedVersion(clip(version)));
        }
        match levels.next() {
            Some("dev") => {}
            Some(other) => return Err(TopicError::UnknownScope(clip(other))),
            None => return Err(TopicError::Truncated(clip(topic))),
        }
        let device = levels
            .next()
            .ok_or_else(|| TopicError::Truncated(clip(topic)))?;
        let device = DeviceId::new(device).map_err(TopicError::BadDeviceId)?;
        let channel = levels
            .next()
            .ok_or_else(|| TopicError::Truncated(clip(topic)))?;
        let channel =
            Channel::parse(channel).ok_or_else(|| TopicError::UnknownChannel(clip(channel)))?;
        if levels.next().is_some() {
            return Err(TopicError::TooDeep(clip(topic)));
        }
        Ok(Self { device, channel })
    }
}

impl fmt::Display for DeviceTopic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{ROOT}/{TOPIC_VERSION}/dev/{}/{}",
            self.device, self.channel
        )
    }
}

/// Subscription filters.
pub mod filter {
    use super::*;

    /// Everything every device publishes (the controller's ingest subscription).
    pub fn all_devices() -> String {
        format!("{ROOT}/{TOPIC_VERSION}/dev/+/+")
    }

    /// What one device subscribes to: its commands, its receipts and its room's schedule.
    pub fn device_inbox(device: &DeviceId) -> [String; 3] {
        [
            DeviceTopic::new(device.clone(), Channel::Cmd).to_string(),
            DeviceTopic::new(device.clone(), Channel::Receipt).to_string(),
            DeviceTopic::new(device.clone(), Channel::Schedule).to_string(),
        ]
    }

    /// What a video wall subscribes to besides its inbox: its configuration.
    pub fn wall_config(device: &DeviceId) -> String {
        DeviceTopic::new(device.clone(), Channel::Wall).to_string()
    }

    /// Mosquitto ACL pattern for devices, with `%u` as the device id (the certificate
    /// identity or user name).
    pub fn acl_device_prefix() -> String {
        format!("{ROOT}/{TOPIC_VERSION}/dev/%u/#")
    }

    /// A clustered controller's ingest subscriptions. The bulk of device traffic, health
    /// telemetry, goes through an MQTT shared subscription in `group` (each message to one
    /// instance of the group). Births, statuses, events and acks go to every instance:
    /// births and statuses are few and retained (they give a starting instance the whole
    /// registry; shared subscriptions get no retained messages); events are sequenced per
    /// device and boot, so each instance needs the whole stream (a split stream is a gap
    /// to every instance), and the database's unique `(device, boot, seq)` stores each
    /// once; an API call waiting for an ack may run on any instance.
    pub fn cluster_ingest(group: &str) -> Vec<String> {
        let shared = [Channel::Health]
            .into_iter()
            .map(|c| format!("$share/{group}/{ROOT}/{TOPIC_VERSION}/dev/+/{c}"));
        let every = [
            Channel::Birth,
            Channel::Status,
            Channel::Event,
            Channel::Ack,
        ]
        .into_iter()
        .map(|c| format!("{ROOT}/{TOPIC_VERSION}/dev/+/{c}"));
        shared.chain(every).collect()
    }

    /// Controller to controller: enforcement inputs every instance forwards to the elected
    /// scheduler (QoS 1, not retained; a JSON array of inputs).
    pub fn cluster_inputs() -> String {
        format!("{ROOT}/{TOPIC_VERSION}/ctl/enforce")
    }

    /// Controller to controller: alarm changes the scheduler announces to every instance's
    /// dashboards (QoS 1, not retained).
    pub fn cluster_alarms() -> String {
        format!("{ROOT}/{TOPIC_VERSION}/ctl/alarm")
    }
}

/// Why a topic string is not a Gavel device topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic {0:?} is not under `gavel/`")]
    NotGavel(String),
    #[error("topic version {0:?} is not supported (this build speaks v1)")]
    UnsupportedVersion(String),
    #[error("topic scope {0:?} is unknown (expected `dev`)")]
    UnknownScope(String),
    #[error("topic {0:?} ends early: expected gavel/v1/dev/<device>/<channel>")]
    Truncated(String),
    #[error("topic {0:?} has levels after the channel")]
    TooDeep(String),
    #[error("topic channel {0:?} is unknown")]
    UnknownChannel(String),
    #[error("topic device id: {0}")]
    BadDeviceId(IdError),
}

/// Keeps hostile input out of logs: at most 80 characters of it.
pub(crate) fn clip(s: &str) -> String {
    const MAX: usize = 80;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(s: &str) -> DeviceId {
        DeviceId::new(s).expect("valid id")
    }

    #[test]
    fn a_cluster_shares_health_but_every_instance_gets_births_statuses_events_acks() {
        let filters = filter::cluster_ingest("g");
        assert_eq!(
            filters,
            [
                "$share/g/gavel/v1/dev/+/health",
                "gavel/v1/dev/+/birth",
                "gavel/v1/dev/+/status",
                "gavel/v1/dev/+/event",
                "gavel/v1/dev/+/ack",
            ]
        );
        // Controller-to-controller topics are outside the device prefix (and its ACL).
        assert!(DeviceTopic::parse(&filter::cluster_inputs()).is_err());
        assert!(DeviceTopic::parse(&filter::cluster_alarms()).is_err());
    }

    #[test]
    fn every_channel_round_trips_through_its_topic_string() {
        for channel in Channel::ALL {
            let topic = DeviceTopic::new(dev("room-101-terminal"), channel);
            let text = topic.to_string();
            assert_eq!(
                text,
                format!("gavel/v1/dev/room-101-terminal/{}", channel.as_str())
            );
            assert_eq!(DeviceTopic::parse(&text), Ok(topic));
        }
    }

    #[test]
    fn foreign_and_malformed_topics_name_what_is_wrong() {
        let cases = [
            ("home/v1/dev/a/birth", "not under"),
            ("gavel/v9/dev/a/birth", "version"),
            ("gavel/v1/room/a/birth", "scope"),
            ("gavel/v1/dev", "ends early"),
            ("gavel/v1/dev/a", "ends early"),
            ("gavel/v1/dev/a/birth/x", "levels after"),
            ("gavel/v1/dev/a/bogus", "channel"),
            ("gavel/v1/dev/A B/birth", "device id"),
            ("gavel/v1/dev//birth", "device id"),
        ];
        for (topic, expected) in cases {
            let err = DeviceTopic::parse(topic).expect_err(topic).to_string();
            assert!(err.contains(expected), "{topic}: {err}");
        }
    }

    #[test]
    fn only_status_birth_receipt_schedule_and_wall_are_retained_and_only_health_is_qos0() {
        for c in Channel::ALL {
            assert_eq!(
                c.retained(),
                matches!(
                    c,
                    Channel::Birth
                        | Channel::Status
                        | Channel::Receipt
                        | Channel::Schedule
                        | Channel::Wall
                )
            );
            assert_eq!(c.qos() == 0, c == Channel::Health);
        }
    }

    #[test]
    fn ingest_filter_matches_device_topics_only_at_channel_depth() {
        assert_eq!(filter::all_devices(), "gavel/v1/dev/+/+");
        assert_eq!(filter::acl_device_prefix(), "gavel/v1/dev/%u/#");
        assert_eq!(
            filter::device_inbox(&dev("cam-1")),
            [
                "gavel/v1/dev/cam-1/cmd",
                "gavel/v1/dev/cam-1/receipt",
                "gavel/v1/dev/cam-1/schedule"
            ]
        );
        assert_eq!(
            filter::wall_config(&dev("wall-1")),
            "gavel/v1/dev/wall-1/wall"
        );
        assert!(!Channel::Wall.from_device());
    }

    #[test]
    fn hostile_topic_text_is_clipped_in_errors() {
        let long = format!("x{}", "y".repeat(10_000));
        let err = DeviceTopic::parse(&long).expect_err("foreign").to_string();
        assert!(err.len() < 200, "{}", err.len());
    }
}
