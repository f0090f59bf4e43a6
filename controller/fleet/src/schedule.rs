//! Room schedules for devices: which hearings a room's recording devices must know, and the
//! version of each room's schedule. Pure: the caller gives the time and publishes.
//!
//! Design: a schedule's version only grows. It is the controller's wall clock in
//! milliseconds when the room's content last changed, and at least one more than the
//! previous version of the room: publishing the same content again keeps its version, and
//! a restarted controller (which forgets the previous versions) still publishes a newer
//! one as long as its clock did not step back past the last change.

use std::collections::BTreeMap;

use gavel_protocol::{PROTOCOL_VERSION, Schedule, ScheduledHearing, ScheduledStatus};
use time::{Duration, OffsetDateTime};

use crate::hearings::{Hearing, HearingStatus};

/// What a schedule carries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Recording starts this long before a hearing's scheduled start.
    pub pre_roll: Duration,
    /// Hearings that ended longer ago than this are left out.
    pub keep_past: Duration,
    /// Hearings that start later than this from now are left out.
    pub look_ahead: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            pre_roll: Duration::seconds(60),
            keep_past: Duration::days(1),
            look_ahead: Duration::days(14),
        }
    }
}

fn status(s: HearingStatus) -> ScheduledStatus {
    match s {
        HearingStatus::Scheduled => ScheduledStatus::Scheduled,
        HearingStatus::InProgress => ScheduledStatus::InProgress,
        HearingStatus::Closed => ScheduledStatus::Closed,
        HearingStatus::Cancelled => ScheduledStatus::Cancelled,
    }
}

/// The hearings of `court`/`room` a device must know at `now`, by start (at most
/// [`gavel_protocol::MAX_SCHEDULE`], the soonest kept).
pub fn room_hearings<'a>(
    hearings: impl IntoIterator<Item = &'a Hearing>,
    court: &str,
    room: &str,
    now: OffsetDateTime,
    settings: &Settings,
) -> Vec<ScheduledHearing> {
    let mut list: Vec<ScheduledHearing> = hearings
        .into_iter()
        .filter(|h| h.court == court && h.room == room)
        .filter(|h| h.scheduled_end + settings.keep_past > now)
        .filter(|h| h.scheduled_start < now + settings.look_ahead)
        .filter(|h| gavel_protocol::check_hearing_id(&h.id).is_ok())
        .map(|h| ScheduledHearing {
            id: h.id.clone(),
            case_number: h
                .case_number
                .chars()
                .take(gavel_protocol::MAX_TEXT)
                .collect(),
            start: h.scheduled_start,
            end: h.scheduled_end,
            pre_roll_s: settings
                .pre_roll
                .whole_seconds()
                .clamp(0, i64::from(gavel_protocol::MAX_PRE_ROLL_S)) as u32,
            status: status(h.status),
        })
        .collect();
    list.sort_by(|a, b| (a.start, &a.id).cmp(&(b.start, &b.id)));
    // Design: keep the hearings nearest to now when a room has more than fit: the ones
    // that ended longest ago go first, then the furthest ahead.
    while list.len() > gavel_protocol::MAX_SCHEDULE {
        if list.first().is_some_and(|h| h.end <= now) {
            list.remove(0);
        } else {
            list.pop();
        }
    }
    list
}

/// The versions of every room's schedule.
#[derive(Debug, Default)]
pub struct Versions {
    rooms: BTreeMap<(String, String), (u64, Vec<ScheduledHearing>)>,
}

impl Versions {
    /// The schedule message for a room with these hearings: the same version as last time
    /// when nothing changed, a newer one otherwise.
    pub fn schedule(
        &mut self,
        court: &str,
        room: &str,
        hearings: Vec<ScheduledHearing>,
        now: OffsetDateTime,
    ) -> Schedule {
        let now_ms = u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        let key = (court.to_owned(), room.to_owned());
        let version = match self.rooms.get(&key) {
            Some((v, same)) if *same == hearings => *v,
            Some((v, _)) => now_ms.max(v + 1),
            None => now_ms.max(1),
        };
        self.rooms.insert(key, (version, hearings.clone()));
        Schedule {
            v: PROTOCOL_VERSION,
            ts: now,
            court: court.to_owned(),
            room: room.to_owned(),
            version,
            hearings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gavel_protocol::Message;
    use time::macros::datetime;

    fn hearing(id: &str, room: &str, start: OffsetDateTime, status: HearingStatus) -> Hearing {
        Hearing {
            id: id.into(),
            case_number: format!("case {id}"),
            court: "hz".into(),
            room: room.into(),
            scheduled_start: start,
            scheduled_end: start + Duration::hours(1),
            judge: "J".into(),
            parties: vec![],
            status,
            opened_at: None,
            closed_at: None,
            history: Vec::new(),
        }
    }

    #[test]
    fn a_room_schedule_holds_that_rooms_recent_and_coming_hearings_by_start_with_pre_roll() {
        let now = datetime!(2026-11-27 09:00 UTC);
        let hs = [
            hearing(
                "b",
                "room-1",
                now + Duration::hours(3),
                HearingStatus::Scheduled,
            ),
            hearing(
                "a",
                "room-1",
                now + Duration::hours(1),
                HearingStatus::Cancelled,
            ),
            hearing("other-room", "room-2", now, HearingStatus::Scheduled),
            hearing(
                "long-ago",
                "room-1",
                now - Duration::days(3),
                HearingStatus::Closed,
            ),
            hearing(
                "far-ahead",
                "room-1",
                now + Duration::days(30),
                HearingStatus::Scheduled,
            ),
            hearing(
                "earlier",
                "room-1",
                now - Duration::hours(5),
                HearingStatus::Closed,
            ),
        ];
        let list = room_hearings(&hs, "hz", "room-1", now, &Settings::default());
        let ids: Vec<&str> = list.iter().map(|h| h.id.as_str()).collect();
        assert_eq!(ids, ["earlier", "a", "b"]);
        assert_eq!(list[1].status, ScheduledStatus::Cancelled);
        assert_eq!(list[2].pre_roll_s, 60);
    }

    #[test]
    fn the_version_stays_for_the_same_content_and_grows_for_any_change() {
        let now = datetime!(2026-11-27 09:00 UTC);
        let hs = [hearing("a", "room-1", now, HearingStatus::Scheduled)];
        let mut versions = Versions::default();
        let list = room_hearings(&hs, "hz", "room-1", now, &Settings::default());
        let first = versions.schedule("hz", "room-1", list.clone(), now);
        assert!(first.validate().is_ok());
        let again = versions.schedule("hz", "room-1", list.clone(), now + Duration::minutes(5));
        assert_eq!(again.version, first.version);
        let mut closed = list.clone();
        closed[0].status = ScheduledStatus::Closed;
        // Even with the clock stepped back, a change gets a newer version.
        let changed = versions.schedule("hz", "room-1", closed, now - Duration::hours(1));
        assert_eq!(changed.version, first.version + 1);
        let later = versions.schedule("hz", "room-1", vec![], now + Duration::minutes(10));
        assert_eq!(
            later.version,
            (now + Duration::minutes(10)).unix_timestamp() as u64 * 1000
        );
    }

    #[test]
    fn hearings_whose_ids_cannot_name_a_folder_are_left_out() {
        let now = datetime!(2026-11-27 09:00 UTC);
        let hs = [
            hearing("../x", "room-1", now, HearingStatus::Scheduled),
            hearing(
                "ok",
                "room-1",
                now + Duration::hours(2),
                HearingStatus::Scheduled,
            ),
        ];
        let list = room_hearings(&hs, "hz", "room-1", now, &Settings::default());
        assert_eq!(list.len(), 1);
        let s = Versions::default().schedule("hz", "room-1", list, now);
        assert!(s.validate().is_ok());
    }
}
