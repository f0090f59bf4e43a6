//! Hearing patrol findings (庭审智能巡查): what the device's analyzers found, carried as
//! the `finding` event (added within v1).

use serde::{Deserialize, Serialize};

use crate::message::Invalid;

/// What a patrol analyzer found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// Video: the picture is out of focus.
    Blurred,
    /// Video: the picture is too dark.
    TooDark,
    /// Video: no frames, or black / flat "no signal" frames.
    SignalLost,
    /// Video: the picture does not change at all.
    Frozen,
    /// Video: something covers the lens.
    Occluded,
    /// Video: the picture no longer shows the room's reference scene.
    SceneChanged,
    /// Audio: a seat's microphone is silent while the room talks.
    DeadMicrophone,
    /// Audio: a continuous noise (hum, hiss) on a channel.
    NoiseInterference,
    /// Audio: a channel clips.
    Clipping,
    /// Audio: the whole room is silent during a hearing.
    RoomSilent,
    /// Sudden loud audio with large motion (quarrel, fight, intrusion): urgent.
    Disturbance,
    /// Presence: the judge's seat is empty during the hearing.
    JudgeAbsent,
    /// Presence: a party's seat is empty at the hearing's start.
    PartyAbsent,
    /// Presence: someone left their seat mid-hearing.
    LeftMidHearing,
    /// The hearing was not opened on time (nobody on the bench after the start).
    NotOpenedOnTime,
}

impl FindingKind {
    /// Every kind, in declaration order.
    pub const ALL: [FindingKind; 15] = [
        FindingKind::Blurred,
        FindingKind::TooDark,
        FindingKind::SignalLost,
        FindingKind::Frozen,
        FindingKind::Occluded,
        FindingKind::SceneChanged,
        FindingKind::DeadMicrophone,
        FindingKind::NoiseInterference,
        FindingKind::Clipping,
        FindingKind::RoomSilent,
        FindingKind::Disturbance,
        FindingKind::JudgeAbsent,
        FindingKind::PartyAbsent,
        FindingKind::LeftMidHearing,
        FindingKind::NotOpenedOnTime,
    ];

    /// The wire name (`signal_lost`).
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Blurred => "blurred",
            FindingKind::TooDark => "too_dark",
            FindingKind::SignalLost => "signal_lost",
            FindingKind::Frozen => "frozen",
            FindingKind::Occluded => "occluded",
            FindingKind::SceneChanged => "scene_changed",
            FindingKind::DeadMicrophone => "dead_microphone",
            FindingKind::NoiseInterference => "noise_interference",
            FindingKind::Clipping => "clipping",
            FindingKind::RoomSilent => "room_silent",
            FindingKind::Disturbance => "disturbance",
            FindingKind::JudgeAbsent => "judge_absent",
            FindingKind::PartyAbsent => "party_absent",
            FindingKind::LeftMidHearing => "left_mid_hearing",
            FindingKind::NotOpenedOnTime => "not_opened_on_time",
        }
    }

    /// The kind of a wire name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The severity a device gives this kind: disturbance and a lost signal are urgent
    /// (someone must look now), conduct and equipment faults are warnings.
    pub fn default_severity(self) -> Severity {
        match self {
            FindingKind::Disturbance | FindingKind::SignalLost => Severity::Urgent,
            FindingKind::NotOpenedOnTime | FindingKind::RoomSilent => Severity::Info,
            _ => Severity::Warning,
        }
    }
}

impl std::fmt::Display for FindingKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How soon someone must look at a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Urgent,
}

impl Severity {
    /// The alarm level of this severity (1 notice, 2 warning, 3 urgent).
    pub fn level(self) -> u8 {
        match self {
            Severity::Info => 1,
            Severity::Warning => 2,
            Severity::Urgent => 3,
        }
    }
}

/// Largest inline JPEG snapshot, in base64 characters (about 36 KiB of JPEG): the event
/// must fit one MQTT message with room to spare.
pub const MAX_SNAPSHOT_B64: usize = 48 * 1024;

/// The finding's picture: a small JPEG inline (base64), or a reference to one kept on the
/// device (`<source>/<file>` under the device's snapshot folder).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Standard base64 of a JPEG file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jpeg_base64: Option<String>,
    /// Reference to a snapshot kept on the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub width: u32,
    pub height: u32,
}

/// Where the finding is in the recording: the hearing and the offset on its timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingLink {
    pub hearing_id: String,
    /// Milliseconds after the hearing's recording started.
    pub offset_ms: u64,
}

pub(crate) fn check_snapshot(s: &Snapshot) -> Result<(), Invalid> {
    if let Some(b) = &s.jpeg_base64 {
        if b.len() > MAX_SNAPSHOT_B64 {
            return Err(Invalid::new(
                "snapshot.jpeg_base64",
                format!("{} characters; at most {MAX_SNAPSHOT_B64}", b.len()),
            ));
        }
        let ok = b.len() % 4 == 0
            && b.bytes().enumerate().all(|(i, c)| {
                c.is_ascii_alphanumeric()
                    || c == b'+'
                    || c == b'/'
                    || (c == b'=' && i + 3 >= b.len())
            });
        // A JPEG starts with FF D8 FF: "/9j/" in base64.
        if !ok || !b.starts_with("/9j/") {
            return Err(Invalid::new(
                "snapshot.jpeg_base64",
                "not the standard base64 of a JPEG file",
            ));
        }
    }
    if s.jpeg_base64.is_none() && s.reference.is_none() {
        return Err(Invalid::new(
            "snapshot",
            "neither jpeg_base64 nor reference set",
        ));
    }
    if s.width == 0 || s.height == 0 || s.width > 7680 || s.height > 4320 {
        return Err(Invalid::new("snapshot.width", "size outside 1x1-7680x4320"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_wire_name() {
        for k in FindingKind::ALL {
            assert_eq!(FindingKind::parse(k.as_str()), Some(k));
            let json = serde_json::to_string(&k).expect("json");
            assert_eq!(json, format!("\"{}\"", k.as_str()));
        }
        assert_eq!(FindingKind::parse("bored"), None);
    }

    #[test]
    fn disturbance_and_signal_loss_are_urgent() {
        assert_eq!(FindingKind::Disturbance.default_severity().level(), 3);
        assert_eq!(FindingKind::SignalLost.default_severity().level(), 3);
        assert_eq!(FindingKind::Blurred.default_severity().level(), 2);
    }
}
