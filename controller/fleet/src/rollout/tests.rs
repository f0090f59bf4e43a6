use super::*;
use time::macros::datetime;

fn fleet(rooms: usize, per_room: usize) -> Vec<TargetDevice> {
    let mut v = Vec::new();
    for r in 0..rooms {
        for d in 0..per_room {
            v.push(TargetDevice {
                id: format!("r{r:05}-d{d}"),
                profile: if d == 0 {
                    "courtroom-terminal"
                } else {
                    "ip-camera"
                }
                .into(),
                court: format!("court-{}", r % 93),
                room: format!("room-{r:05}"),
                tags: if r % 2 == 0 {
                    vec!["even".into()]
                } else {
                    vec![]
                },
            });
        }
    }
    v
}

fn spec() -> CampaignSpec {
    let mut s = CampaignSpec::new("c1", "2.0.0", "http://c/bundles/x.gota");
    s.expected_install = Duration::minutes(5);
    s.guard = Duration::minutes(10);
    s
}

const T0: OffsetDateTime = datetime!(2026-11-27 20:00 UTC);

fn installs(out: &[Output]) -> Vec<String> {
    out.iter()
        .filter_map(|o| match o {
            Output::Install { device } => Some(device.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn selector_targets_by_profile_court_room_tag_and_list() {
    let f = fleet(10, 3);
    let count = |sel: Selector| f.iter().filter(|d| sel.matches(d)).count();
    assert_eq!(count(Selector::default()), 30);
    let by_profile = Selector {
        profile: Some("courtroom-terminal".into()),
        ..Default::default()
    };
    assert_eq!(count(by_profile), 10);
    let by_room = Selector {
        room: Some("room-00003".into()),
        ..Default::default()
    };
    assert_eq!(count(by_room), 3);
    let by_tag = Selector {
        tag: Some("even".into()),
        ..Default::default()
    };
    assert_eq!(count(by_tag), 15);
    let list = Selector {
        devices: vec!["r00001-d1".into(), "nope".into()],
        ..Default::default()
    };
    assert_eq!(count(list), 1);
}

#[test]
fn waves_are_a_canary_room_then_ten_percent_then_the_rest() {
    let c = Campaign::plan(spec(), &fleet(100, 3));
    assert_eq!(c.waves.len(), 3);
    assert_eq!(c.waves[0].len(), 3, "one room");
    assert_eq!(c.waves[1].len(), 30, "10 % of 300, whole rooms");
    assert_eq!(c.waves[2].len(), 267);
}

#[test]
fn next_wave_starts_only_when_the_canary_succeeded() {
    let mut c = Campaign::plan(spec(), &fleet(20, 2));
    let out = c.handle(T0, Input::Tick);
    assert_eq!(installs(&out).len(), 2);
    assert!(out.contains(&Output::WaveStarted {
        wave: 0,
        devices: 2
    }));
    assert!(installs(&c.handle(T0, Input::Tick)).is_empty());
    for d in installs(&out) {
        c.handle(
            T0,
            Input::Result {
                device: d,
                outcome: Ok(()),
            },
        );
    }
    let out = c.handle(T0, Input::Tick);
    assert!(out.contains(&Output::WaveStarted {
        wave: 1,
        devices: 4
    }));
    assert_eq!(installs(&out).len(), 4);
}

#[test]
fn failures_past_the_threshold_halt_the_wave() {
    let mut s = spec();
    s.waves = vec![WaveSize::Rooms(1), WaveSize::Percent(50)];
    s.failure_threshold = 0.25;
    let mut c = Campaign::plan(s, &fleet(8, 1));
    let canary = installs(&c.handle(T0, Input::Tick));
    c.handle(
        T0,
        Input::Result {
            device: canary[0].clone(),
            outcome: Ok(()),
        },
    );
    let wave1 = installs(&c.handle(T0, Input::Tick));
    assert_eq!(wave1.len(), 4);
    // One failure of four is 25 %: not past the threshold.
    c.handle(
        T0,
        Input::Result {
            device: wave1[0].clone(),
            outcome: Err("rolled back: record not running".into()),
        },
    );
    assert_eq!(c.handle(T0, Input::Tick), vec![]);
    assert_eq!(c.state, CampaignState::Running);
    c.handle(
        T0,
        Input::Result {
            device: wave1[1].clone(),
            outcome: Err("rolled back".into()),
        },
    );
    let out = c.handle(T0, Input::Tick);
    assert!(
        matches!(&c.state, CampaignState::Halted { reason } if reason.contains("2 of 4")),
        "{:?}",
        c.state
    );
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::State(CampaignState::Halted { .. })))
    );
    // Halted: the remaining results are recorded but nothing new is sent.
    c.handle(
        T0,
        Input::Result {
            device: wave1[2].clone(),
            outcome: Ok(()),
        },
    );
    c.handle(
        T0,
        Input::Result {
            device: wave1[3].clone(),
            outcome: Ok(()),
        },
    );
    assert!(installs(&c.handle(T0, Input::Tick)).is_empty());
    assert_eq!(c.progress().pending, 3);
}

#[test]
fn pause_resume_and_abort() {
    let mut s = spec();
    s.max_in_flight = 1;
    s.waves = vec![WaveSize::Rest];
    let mut c = Campaign::plan(s, &fleet(3, 1));
    let first = installs(&c.handle(T0, Input::Tick));
    assert_eq!(first.len(), 1);
    c.handle(T0, Input::Pause);
    c.handle(
        T0,
        Input::Result {
            device: first[0].clone(),
            outcome: Ok(()),
        },
    );
    assert!(installs(&c.handle(T0, Input::Tick)).is_empty());
    assert_eq!(installs(&c.handle(T0, Input::Resume)).len(), 1);
    c.handle(T0, Input::Abort);
    assert_eq!(c.state, CampaignState::Aborted);
    assert!(installs(&c.handle(T0, Input::Resume)).is_empty());
}

#[test]
fn room_with_a_hearing_in_progress_is_not_updated_until_the_hearing_ends() {
    let mut s = spec();
    s.waves = vec![WaveSize::Rest];
    let mut c = Campaign::plan(s, &fleet(2, 1));
    let busy = RoomSchedule {
        in_session: true,
        busy: vec![],
    };
    c.handle(
        T0,
        Input::Schedule {
            court: "court-0".into(),
            room: "room-00000".into(),
            schedule: busy,
        },
    );
    let out = installs(&c.handle(T0, Input::Tick));
    assert_eq!(out, vec!["r00001-d0".to_string()]);
    assert_eq!(c.progress().deferred_by_hearing, 1);
    // Still in session an hour later.
    assert!(installs(&c.handle(T0 + Duration::hours(1), Input::Tick)).is_empty());
    // The hearing ends.
    c.handle(
        T0,
        Input::Schedule {
            court: "court-0".into(),
            room: "room-00000".into(),
            schedule: RoomSchedule::default(),
        },
    );
    assert_eq!(
        installs(&c.handle(T0 + Duration::hours(1), Input::Tick)),
        vec!["r00000-d0".to_string()]
    );
}

#[test]
fn installs_are_planned_into_free_time_before_the_next_hearing_and_into_windows() {
    let mut s = spec();
    s.waves = vec![WaveSize::Rest];
    s.maintenance = vec![MaintenanceWindow {
        start_hour: 18,
        end_hour: 7,
    }];
    let mut c = Campaign::plan(s, &fleet(1, 1));
    // A hearing at 20:10: 5 min install + 10 min guard do not fit before it.
    let hearing = RoomSchedule {
        in_session: false,
        busy: vec![(T0 + Duration::minutes(10), T0 + Duration::hours(2))],
    };
    c.handle(
        T0,
        Input::Schedule {
            court: "court-0".into(),
            room: "room-00000".into(),
            schedule: hearing,
        },
    );
    assert!(installs(&c.handle(T0, Input::Tick)).is_empty());
    assert!(installs(&c.handle(T0 + Duration::hours(1), Input::Tick)).is_empty());
    // After the hearing, inside the window.
    assert_eq!(
        installs(&c.handle(T0 + Duration::hours(2), Input::Tick)).len(),
        1
    );
    // Outside the maintenance window nothing starts even when free.
    let mut c2 = Campaign::plan(c.spec.clone(), &fleet(1, 1));
    assert!(installs(&c2.handle(datetime!(2026-11-27 10:00 UTC), Input::Tick)).is_empty());
}

#[test]
fn silent_devices_fail_after_the_install_timeout() {
    let mut s = spec();
    s.waves = vec![WaveSize::Rest];
    s.failure_threshold = 1.0;
    let mut c = Campaign::plan(s, &fleet(1, 1));
    c.handle(T0, Input::Tick);
    c.handle(T0 + Duration::hours(3), Input::Tick);
    assert_eq!(c.progress().failed, 1);
    assert_eq!(c.state, CampaignState::Completed);
}

mod simulation;

#[test]
fn campaign_survives_a_serde_round_trip_as_the_store_keeps_it() {
    let mut c = Campaign::plan(spec(), &fleet(10, 2));
    let sent = installs(&c.handle(T0, Input::Tick));
    c.handle(
        T0,
        Input::Result {
            device: sent[0].clone(),
            outcome: Err("rolled back".into()),
        },
    );
    let json = serde_json::to_string(&c).unwrap();
    let back: Campaign = serde_json::from_str(&json).unwrap();
    assert_eq!(back.progress(), c.progress());
    assert_eq!(back.waves, c.waves);
    assert_eq!(back.devices, c.devices);
}

#[test]
fn room_schedules_follow_the_hearings_in_session_busy_closed_and_cancelled() {
    use crate::hearings::{Hearing, HearingStatus};
    let now = datetime!(2026-11-27 09:00 UTC);
    let h = |id: &str, room: &str, start_min: i64, len_min: i64, status: HearingStatus| Hearing {
        id: id.into(),
        case_number: id.into(),
        court: "hz".into(),
        room: room.into(),
        scheduled_start: now + Duration::minutes(start_min),
        scheduled_end: now + Duration::minutes(start_min + len_min),
        judge: "J".into(),
        parties: vec![],
        status,
        opened_at: None,
        closed_at: None,
        history: Vec::new(),
    };
    let hearings = [
        // Due in 30 s: its devices are already recording (pre-roll 1 min).
        h("a", "r1", 0, 60, HearingStatus::Scheduled),
        // Opened, overrunning its schedule.
        h("b", "r2", -120, 60, HearingStatus::InProgress),
        // This afternoon.
        h("c", "r3", 300, 60, HearingStatus::Scheduled),
        // Closed and cancelled ones hold nothing.
        h("d", "r4", -10, 60, HearingStatus::Closed),
        h("e", "r4", 100, 60, HearingStatus::Cancelled),
    ];
    let s = room_schedules(&hearings, Duration::minutes(1), now);
    let r = |room: &str| s.get(&("hz".to_owned(), room.to_owned())).cloned();
    let r1 = r("r1").expect("r1");
    assert!(r1.in_session);
    assert_eq!(
        r1.busy,
        [(now - Duration::minutes(1), now + Duration::minutes(60))]
    );
    assert!(
        r("r2").expect("r2").in_session,
        "an open hearing holds its room"
    );
    let r3 = r("r3").expect("r3");
    assert!(!r3.in_session);
    assert!(r3.free(now, now + Duration::minutes(60)));
    assert!(!r3.free(now + Duration::minutes(290), now + Duration::minutes(310)));
    assert_eq!(r("r4"), None);
}
