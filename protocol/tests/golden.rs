//! Golden fixtures: one JSON file per message kind in `protocol/fixtures/`. Each must
//! decode, validate, and encode back to the same JSON value.

use std::path::PathBuf;

use gavel_protocol::{
    Ack, Birth, Command, Event, Health, Message, Receipt, Schedule, Status, decode, encode,
};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn round_trip<M: Message + std::fmt::Debug + PartialEq>(name: &str) -> M {
    let bytes = fixture(name);
    let message: M = decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    let encoded = encode(&message);
    let again: serde_json::Value = serde_json::from_slice(&encoded).expect("encoded is JSON");
    let original: serde_json::Value = serde_json::from_slice(&bytes).expect("fixture is JSON");
    assert_eq!(again, original, "{name} does not round-trip");
    let twice: M = decode(&encoded).expect("re-decodes");
    assert_eq!(twice, message);
    message
}

#[test]
fn every_fixture_file_is_covered_by_a_test() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("fixtures dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "ack-announcing.json",
            "ack-certificate-installed.json",
            "ack-config.json",
            "ack-legal-hold.json",
            "ack-ota-accepted.json",
            "ack-pong.json",
            "ack-recording.json",
            "ack-rejected.json",
            "ack-replaying.json",
            "ack-self-test.json",
            "ack-snapshot.json",
            "birth-live.json",
            "birth.json",
            "command-announce.json",
            "command-get-config.json",
            "command-install-certificate.json",
            "command-legal-hold.json",
            "command-ota-install.json",
            "command-ping.json",
            "command-rebirth.json",
            "command-replay.json",
            "command-restart.json",
            "command-self-test.json",
            "command-snapshot.json",
            "command-start-recording.json",
            "command-stop-recording.json",
            "event-agent-start.json",
            "event-capability.json",
            "event-cert-renewal.json",
            "event-finding-end.json",
            "event-finding.json",
            "event-ota-rolled-back.json",
            "event-probe.json",
            "event-recording-request.json",
            "event-recording.json",
            "event-sealed.json",
            "event-segment.json",
            "event-source-lost.json",
            "event-storage.json",
            "event-ticket.json",
            "event-transcript-partial.json",
            "event-transcript.json",
            "health-environment.json",
            "health-outbox.json",
            "health.json",
            "receipt.json",
            "schedule.json",
            "status-death.json",
            "status-online.json",
            "status-shutdown.json",
            "wall.json",
        ]
    );
}

#[test]
fn birth_fixture_round_trips() {
    let b: Birth = round_trip("birth.json");
    assert_eq!(b.profile, "courtroom-terminal");
    assert_eq!(b.capabilities.len(), 2);
    assert_eq!(b.tags, ["pilot", "building-a"]);
}

#[test]
fn a_birth_with_a_bad_tag_is_refused_naming_it() {
    let mut b: Birth = round_trip("birth.json");
    b.tags.push("Building A".into());
    let err = gavel_protocol::decode::<Birth>(&gavel_protocol::encode(&b))
        .expect_err("refused")
        .to_string();
    assert!(err.contains("tags[2]"), "{err}");
}

#[test]
fn status_fixtures_round_trip() {
    let online: Status = round_trip("status-online.json");
    assert_eq!(
        online,
        Status::online(&online.boot_id, 0, online.ts.expect("ts"))
    );
    let death: Status = round_trip("status-death.json");
    assert_eq!(death, Status::death(&death.boot_id, 0));
    let _: Status = round_trip("status-shutdown.json");
}

#[test]
fn health_fixture_round_trips() {
    let h: Health = round_trip("health.json");
    assert_eq!(h.volumes[0].mount, "/data");
    assert!(h.humidity.is_empty(), "humidity is optional");
    let h: Health = round_trip("health-outbox.json");
    assert_eq!(h.outbox.map(|o| o.depth), Some(310));
}

#[test]
fn health_with_machine_room_sensor_round_trips() {
    let h: Health = round_trip("health-environment.json");
    assert_eq!(h.temperatures[1].sensor, "machine-room");
    assert_eq!(h.humidity[0].sensor, "machine-room");
    assert_eq!(h.humidity[0].percent, 41.5);
}

#[test]
fn event_fixtures_round_trip() {
    let e: Event = round_trip("event-agent-start.json");
    assert_eq!(e.phase, gavel_protocol::Phase::Start);
    let e: Event = round_trip("event-capability.json");
    assert!(e.historical);
    let e: Event = round_trip("event-probe.json");
    assert_eq!(e.body, gavel_protocol::EventBody::Probe { n: 2 });
}

#[test]
fn command_fixtures_round_trip() {
    for name in [
        "command-ping.json",
        "command-get-config.json",
        "command-restart.json",
        "command-self-test.json",
        "command-install-certificate.json",
        "command-start-recording.json",
        "command-stop-recording.json",
    ] {
        let _: Command = round_trip(name);
    }
}

#[test]
fn storage_and_legal_hold_fixtures_round_trip() {
    let e: Event = round_trip("event-storage.json");
    assert!(matches!(
        e.body,
        gavel_protocol::EventBody::Storage {
            alarm: gavel_protocol::StorageAlarm::RecordingAtRisk,
            seconds_left: Some(37),
            ..
        }
    ));
    let c: Command = round_trip("command-legal-hold.json");
    assert_eq!(c.body.name(), "legal_hold");
    let a: Ack = round_trip("ack-legal-hold.json");
    assert!(matches!(
        a.outcome,
        gavel_protocol::Outcome::Ok {
            reply: gavel_protocol::Reply::LegalHold { hold: true, .. }
        }
    ));
    // A bad hearing id in a hold is refused naming the field.
    let mut bad = c.clone();
    bad.body = gavel_protocol::CommandBody::LegalHold {
        hearing_id: "../etc".into(),
        hold: true,
        by: None,
    };
    let err = gavel_protocol::decode::<Command>(&gavel_protocol::encode(&bad))
        .expect_err("refused")
        .to_string();
    assert!(err.contains("hearing_id"), "{err}");
}

#[test]
fn ota_fixtures_round_trip() {
    let c: Command = round_trip("command-ota-install.json");
    assert_eq!(c.body.name(), "ota_install");
    let a: Ack = round_trip("ack-ota-accepted.json");
    assert!(matches!(
        a.outcome,
        gavel_protocol::Outcome::Ok {
            reply: gavel_protocol::Reply::OtaAccepted { .. }
        }
    ));
    let e: Event = round_trip("event-ota-rolled-back.json");
    assert!(matches!(
        e.body,
        gavel_protocol::EventBody::Ota {
            stage: gavel_protocol::OtaStage::RolledBack,
            ..
        }
    ));
}

#[test]
fn ack_fixtures_round_trip() {
    for name in [
        "ack-pong.json",
        "ack-config.json",
        "ack-rejected.json",
        "ack-replaying.json",
        "ack-recording.json",
        "ack-self-test.json",
        "ack-certificate-installed.json",
        "ack-snapshot.json",
    ] {
        let _: Ack = round_trip(name);
    }
}

#[test]
fn the_snapshot_command_and_its_jpeg_answer_round_trip() {
    let c: Command = round_trip("command-snapshot.json");
    assert_eq!(c.body.name(), "snapshot");
    let a: Ack = round_trip("ack-snapshot.json");
    let text = String::from_utf8(fixture("ack-snapshot.json"))
        .expect("utf8")
        .replace("/9j/", "AAAA");
    let err = gavel_protocol::decode::<Ack>(text.as_bytes())
        .expect_err("not a JPEG")
        .to_string();
    assert!(err.contains("snapshot.jpeg_base64"), "{err}");
    assert!(matches!(
        a.outcome,
        gavel_protocol::Outcome::Ok {
            reply: gavel_protocol::Reply::Snapshot { .. }
        }
    ));
}

#[test]
fn receipt_fixture_round_trips() {
    let r: Receipt = round_trip("receipt.json");
    assert_eq!(r.through_seq, 16);
}

#[test]
fn recording_event_fixtures_round_trip() {
    use gavel_protocol::{EventBody, RecordingState};
    let e: Event = round_trip("event-recording.json");
    assert!(matches!(
        e.body,
        EventBody::Recording { state: RecordingState::Degraded, ref lost, .. } if lost == &["cam-judge"]
    ));
    let e: Event = round_trip("event-segment.json");
    assert!(matches!(
        e.body,
        EventBody::Segment {
            index: 3,
            stream_start_ns: Some(10_000_000_000),
            recovered: false,
            ..
        }
    ));
    let e: Event = round_trip("event-cert-renewal.json");
    assert!(matches!(
        e.body,
        gavel_protocol::EventBody::CertRenewal { .. }
    ));
    let e: Event = round_trip("event-sealed.json");
    assert!(matches!(e.body, EventBody::Sealed { segments: 252, .. }));
    let e: Event = round_trip("event-source-lost.json");
    assert!(matches!(
        e.body,
        EventBody::SourceLost {
            recovered_at: Some(_),
            ..
        }
    ));
}

#[test]
fn finding_fixtures_round_trip_with_snapshot_and_recording_link() {
    use gavel_protocol::{EventBody, FindingKind, Severity};
    let e: Event = round_trip("event-finding.json");
    let EventBody::Finding {
        finding,
        severity,
        snapshot,
        recording,
        ended_at,
        ..
    } = &e.body
    else {
        panic!("not a finding: {e:?}");
    };
    assert_eq!(*finding, FindingKind::Occluded);
    assert_eq!(*severity, Severity::Warning);
    assert!(ended_at.is_none());
    let jpeg = snapshot.as_ref().and_then(|s| s.jpeg_base64.as_ref());
    assert!(jpeg.is_some_and(|j| j.starts_with("/9j/")));
    assert_eq!(e.body.hearing_id(), Some("H2026-0117"));
    assert_eq!(recording.as_ref().map(|r| r.offset_ms), Some(722_000));
    let end: Event = round_trip("event-finding-end.json");
    assert!(matches!(
        end.body,
        EventBody::Finding {
            finding: FindingKind::DeadMicrophone,
            ended_at: Some(_),
            ..
        }
    ));
}

#[test]
fn a_finding_with_a_bad_snapshot_or_no_end_is_refused_naming_the_field() {
    use gavel_protocol::EventBody;
    let mut e: Event = round_trip("event-finding.json");
    if let EventBody::Finding { snapshot, .. } = &mut e.body
        && let Some(s) = snapshot
    {
        s.jpeg_base64 = Some("not base64!".into());
    }
    let err = gavel_protocol::decode::<Event>(&gavel_protocol::encode(&e))
        .expect_err("refused")
        .to_string();
    assert!(err.contains("snapshot.jpeg_base64"), "{err}");
    let mut e: Event = round_trip("event-finding.json");
    e.phase = gavel_protocol::Phase::End;
    assert_eq!(e.validate().expect_err("no end").field, "ended_at");
    let text = String::from_utf8(fixture("event-finding.json"))
        .expect("utf8")
        .replace("\"occluded\"", "\"sleepy\"");
    let err = gavel_protocol::decode::<Event>(text.as_bytes())
        .expect_err("unknown kind")
        .to_string();
    assert!(err.contains("sleepy"), "{err}");
}

#[test]
fn a_recording_command_with_a_path_in_its_hearing_id_is_refused() {
    let mut c: Command = round_trip("command-start-recording.json");
    if let gavel_protocol::CommandBody::StartRecording { hearing_id, .. } = &mut c.body {
        *hearing_id = "../etc".into();
    }
    let err = c.validate().expect_err("path refused");
    assert_eq!(err.field, "hearing_id");
}

#[test]
fn schedule_fixture_round_trips() {
    use gavel_protocol::ScheduledStatus;
    let s: Schedule = round_trip("schedule.json");
    assert_eq!(s.room, "room-101");
    assert_eq!(s.hearings.len(), 2);
    assert_eq!(s.hearings[0].pre_roll_s, 60);
    assert_eq!(s.hearings[1].status, ScheduledStatus::Cancelled);
}

#[test]
fn a_schedule_with_a_hearing_ending_before_it_starts_names_the_field() {
    let mut s: Schedule = round_trip("schedule.json");
    s.hearings[1].end = s.hearings[1].start;
    let err = s.validate().expect_err("refused");
    assert_eq!(err.field, "hearings[1].end");
    let mut s: Schedule = round_trip("schedule.json");
    s.hearings[0].id = "../x".into();
    assert_eq!(s.validate().expect_err("refused").field, "hearings[0].id");
}

#[test]
fn recording_request_event_fixture_round_trips() {
    use gavel_protocol::{EventBody, RecordingAction, RequestOrigin};
    let e: Event = round_trip("event-recording-request.json");
    assert!(matches!(
        e.body,
        EventBody::RecordingRequest {
            action: RecordingAction::Stop,
            via: RequestOrigin::Terminal,
            ref by,
            ..
        } if by == "clerk.wang"
    ));
}

#[test]
fn ticket_event_fixture_round_trips() {
    use gavel_protocol::EventBody;
    let e: Event = round_trip("event-ticket.json");
    assert!(matches!(
        e.body,
        EventBody::Ticket { ref number, ref service, ref day, .. }
            if number == "A1007" && service == "filing" && day == "2026-11-27"
    ));
}

#[test]
fn announce_command_and_ack_fixtures_round_trip() {
    let c: Command = round_trip("command-announce.json");
    assert_eq!(c.body.name(), "announce");
    let a: Ack = round_trip("ack-announcing.json");
    assert!(matches!(
        a.outcome,
        gavel_protocol::Outcome::Ok {
            reply: gavel_protocol::Reply::Announcing { ref number }
        } if number == "A1007"
    ));
}

#[test]
fn a_ticket_with_a_bad_number_or_day_is_refused_naming_the_field() {
    let text = String::from_utf8(fixture("event-ticket.json")).expect("utf-8");
    for (from, to, field) in [
        ("\"number\": \"A1007\"", "\"number\": \"a1007\"", "number"),
        ("\"number\": \"A1007\"", "\"number\": \"A10X7\"", "number"),
        ("\"day\": \"2026-11-27\"", "\"day\": \"27.11.2026\"", "day"),
        (
            "\"service\": \"filing\"",
            "\"service\": \"Filing!\"",
            "service",
        ),
    ] {
        let bad = text.replace(from, to);
        assert_ne!(bad, text);
        let err = gavel_protocol::decode::<Event>(bad.as_bytes()).expect_err("refused");
        assert!(err.to_string().contains(field), "{field}: {err}");
    }
}

#[test]
fn transcript_line_fixtures_round_trip_and_share_the_line_id() {
    use gavel_protocol::{EventBody, Phase};
    let partial: Event = round_trip("event-transcript-partial.json");
    let last: Event = round_trip("event-transcript.json");
    assert_eq!(partial.phase, Phase::Update);
    assert_eq!(last.phase, Phase::End);
    assert_eq!(partial.id, last.id);
    assert_eq!(last.body.hearing_id(), Some("H2026-0117"));
    assert!(matches!(
        last.body,
        EventBody::Transcript { ref seat, ref text, line: 12, .. }
            if seat == "judge" && text.starts_with("现在开庭")
    ));
}

#[test]
fn a_transcript_line_with_a_bad_field_is_refused_naming_it() {
    let text = String::from_utf8(fixture("event-transcript.json")).expect("utf-8");
    for (from, to, field) in [
        ("\"seat\": \"judge\"", "\"seat\": \"\"", "seat"),
        ("\"confidence\": 0.87", "\"confidence\": 1.5", "confidence"),
        ("\"phase\": \"end\"", "\"phase\": \"start\"", "phase"),
        (
            "\"hearing_id\": \"H2026-0117\"",
            "\"hearing_id\": \"\"",
            "hearing_id",
        ),
    ] {
        let bad = text.replace(from, to);
        assert_ne!(bad, text, "{from} not in the fixture");
        let err = decode::<Event>(bad.as_bytes()).expect_err(field);
        assert!(err.to_string().contains(field), "{field}: {err}");
    }
}

#[test]
fn a_long_transcript_line_passes_up_to_its_own_limit_and_no_further() {
    let text = String::from_utf8(fixture("event-transcript.json")).expect("utf-8");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let original = v["text"].as_str().expect("text").to_owned();
    let with = |line: &str| {
        let mut v = v.clone();
        v["text"] = line.into();
        serde_json::to_vec(&v).expect("json")
    };
    // Longer than other free text (MAX_TEXT), within the line limit: a long utterance.
    let long = "原告陈述诉讼请求。".repeat(60);
    assert!(long.len() > gavel_protocol::MAX_TEXT && long.len() <= gavel_protocol::MAX_LINE_TEXT);
    let e = decode::<Event>(&with(&long)).expect("a long line is accepted");
    assert!(
        matches!(e.body, gavel_protocol::EventBody::Transcript { ref text, .. } if *text == long)
    );
    let too_long = "x".repeat(gavel_protocol::MAX_LINE_TEXT + 1);
    let err = decode::<Event>(&with(&too_long)).expect_err("over the limit");
    assert!(err.to_string().contains("text"), "{err}");
    assert!(decode::<Event>(&with(&original)).is_ok());
}

#[test]
fn a_streaming_device_names_its_live_endpoints_in_the_birth() {
    let b: Birth = round_trip("birth-live.json");
    let live = b.live.expect("live endpoints");
    assert_eq!(live.rtsp, "rtsp://10.20.1.11:8554");
    assert_eq!(live.hls.as_deref(), Some("http://10.20.1.11:8555/live"));
    assert_eq!(live.sources, ["cam-overview", "cam-judge"]);
    let plain: Birth = round_trip("birth.json");
    assert!(plain.live.is_none(), "older agents send no live endpoints");
}

#[test]
fn live_endpoints_with_a_wrong_scheme_or_source_are_refused_naming_the_field() {
    let text = String::from_utf8(fixture("birth-live.json")).expect("utf-8");
    for (from, to, field) in [
        (
            "rtsp://10.20.1.11:8554",
            "http://10.20.1.11:8554",
            "live.rtsp",
        ),
        ("http://10.20.1.11:8555/live", "ftp://x/live", "live.hls"),
        ("\"cam-judge\"", "\"cam/judge\"", "live.sources[1]"),
    ] {
        let bad = text.replace(from, to);
        assert_ne!(bad, text, "{from} not in the fixture");
        let err = decode::<Birth>(bad.as_bytes()).expect_err(field);
        assert!(err.to_string().contains(field), "{field}: {err}");
    }
}
