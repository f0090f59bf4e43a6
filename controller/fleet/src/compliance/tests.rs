use super::*;
use crate::hearings::Party;
use gavel_evidence::DeviceKey;
use time::macros::datetime;

const T0: OffsetDateTime = datetime!(2026-11-27 09:00 +8);

fn hearing(status: HearingStatus) -> Hearing {
    Hearing {
        id: "h1".into(),
        case_number: "(2026)浙0106民初1234号".into(),
        court: "hz".into(),
        room: "room-101".into(),
        scheduled_start: T0,
        scheduled_end: T0 + Duration::minutes(1),
        judge: "王法官".into(),
        parties: vec![Party {
            role: "plaintiff".into(),
            name: "张三".into(),
        }],
        status,
        opened_at: None,
        closed_at: (status == HearingStatus::Closed).then_some(T0 + Duration::minutes(1)),
        history: Vec::new(),
    }
}

/// A device's segments of `seconds` each over `sources`, from `start`, chained exactly as
/// the recorder chains them; `skip` leaves out wall-clock spans (a source that stopped).
struct Rig {
    key: DeviceKey,
    device: String,
    segments: Vec<SegmentRec>,
}

impl Rig {
    fn new(device: &str) -> Self {
        Self {
            key: DeviceKey::from_secret([3; 32]),
            device: device.into(),
            segments: Vec::new(),
        }
    }

    fn record(&mut self, source: &str, from: OffsetDateTime, to: OffsetDateTime, seg_s: i64) {
        let mut t = from;
        while t < to {
            let end = (t + Duration::seconds(seg_s)).min(to);
            self.push(source, t, end, t + Duration::seconds(1));
            t = end;
        }
    }

    fn push(
        &mut self,
        source: &str,
        start: OffsetDateTime,
        end: OffsetDateTime,
        received: OffsetDateTime,
    ) {
        let index = self.segments.len() as u64;
        let prev = self
            .segments
            .last()
            .map(|s| s.chain.clone())
            .unwrap_or_else(|| gavel_evidence::genesis("h1"));
        let mut e = SegmentEntry {
            index,
            source: source.into(),
            file: format!("{source}/{index:05}.ts"),
            sha256: format!("{:064x}", index + 1),
            bytes: 1000,
            offset_ns: (start - T0).whole_nanoseconds().max(0) as u64,
            duration_ns: (end - start).whole_nanoseconds() as u64,
            wall_start: start,
            stream_start_ns: index * 1_000,
            recovered: false,
            chain: String::new(),
        };
        e.chain = gavel_evidence::link(&prev, &e);
        self.segments.push(SegmentRec {
            device: self.device.clone(),
            source: e.source,
            index,
            file: e.file,
            sha256: e.sha256,
            bytes: e.bytes,
            offset_ns: e.offset_ns,
            duration_ns: e.duration_ns,
            wall_start: e.wall_start,
            chain: e.chain,
            stream_start_ns: Some(e.stream_start_ns),
            recovered: false,
            received,
        });
    }

    fn seal(&self) -> SealRec {
        let seal = Seal {
            hearing_id: "h1".into(),
            segments: self.segments.len() as u64,
            chain_head: self
                .segments
                .last()
                .map(|s| s.chain.clone())
                .unwrap_or_else(|| gavel_evidence::genesis("h1")),
            manifest_sha256: "ab".repeat(32),
        };
        SealRec {
            device: self.device.clone(),
            segments: seal.segments,
            chain_head: seal.chain_head.clone(),
            manifest_sha256: seal.manifest_sha256.clone(),
            public_key: self.key.public_hex(),
            signature: seal.sign(&self.key),
        }
    }

    fn evidence(&self, sources: &[&str]) -> Evidence {
        Evidence {
            recording_devices: [self.device.clone()].into(),
            sources: [(
                self.device.clone(),
                sources.iter().map(|s| s.to_string()).collect(),
            )]
            .into(),
            segments: self.segments.clone(),
            seals: vec![self.seal()],
            pinned_keys: [(self.device.clone(), self.key.public_hex())].into(),
            ..Default::default()
        }
    }
}

fn assess_at(h: &Hearing, e: &Evidence) -> Compliance {
    assess(h, e, Settings::default(), T0 + Duration::hours(1))
}

#[test]
fn a_fully_recorded_sealed_hearing_is_complete() {
    let mut rig = Rig::new("term-1");
    // Pre-roll: recording starts 5 s before the scheduled start, ends after the close.
    rig.record(
        "cam",
        T0 - Duration::seconds(5),
        T0 + Duration::seconds(62),
        10,
    );
    rig.record(
        "mic",
        T0 - Duration::seconds(5),
        T0 + Duration::seconds(62),
        10,
    );
    let c = assess_at(
        &hearing(HearingStatus::Closed),
        &rig.evidence(&["cam", "mic"]),
    );
    assert_eq!(c.verdict, Verdict::Complete, "{:#?}", c.exceptions);
    assert!(c.exceptions.is_empty());
    assert_eq!(c.sources.len(), 2);
    for s in &c.sources {
        assert_eq!(s.required_s, 60.0);
        assert_eq!(s.recorded_s, 60.0);
        assert!(s.gaps.is_empty());
    }
    assert!(
        matches!(c.devices[0].chain, ChainCheck::Verified { segments } if segments == rig.segments.len() as u64)
    );
    assert!(matches!(c.devices[0].seal, SealCheck::Verified { .. }));
}

#[test]
fn a_lost_source_is_a_named_gap_and_the_hearing_is_incomplete() {
    let mut rig = Rig::new("term-1");
    rig.record("mic", T0, T0 + Duration::seconds(60), 10);
    rig.record("cam", T0, T0 + Duration::seconds(20), 10);
    rig.record(
        "cam",
        T0 + Duration::seconds(35),
        T0 + Duration::seconds(60),
        10,
    );
    let mut e = rig.evidence(&["cam", "mic"]);
    e.lost.push(LostRec {
        device: "term-1".into(),
        source: "cam".into(),
        lost_at: T0 + Duration::seconds(20),
        recovered_at: Some(T0 + Duration::seconds(35)),
        detail: Some("camera unplugged".into()),
    });
    let c = assess_at(&hearing(HearingStatus::Closed), &e);
    assert_eq!(c.verdict, Verdict::Incomplete);
    let cam = c.sources.iter().find(|s| s.source == "cam").expect("cam");
    assert_eq!(cam.gaps.len(), 1);
    assert_eq!(cam.gaps[0].seconds, 15.0);
    assert_eq!(cam.gaps[0].from, T0 + Duration::seconds(20));
    assert!(
        cam.gaps[0].reason.contains("camera unplugged"),
        "{}",
        cam.gaps[0].reason
    );
    assert_eq!(cam.recorded_s, 45.0);
    assert!((cam.coverage - 0.75).abs() < 1e-9);
    assert_eq!(c.exceptions.len(), 1, "{:?}", c.exceptions);
    assert!(
        c.exceptions[0].starts_with("term-1/cam: not recorded 09:00:20–09:00:35"),
        "{}",
        c.exceptions[0]
    );
}

#[test]
fn gaps_within_the_tolerance_are_segment_boundaries_not_exceptions() {
    let mut rig = Rig::new("term-1");
    rig.record("cam", T0, T0 + Duration::seconds(30), 10);
    // A crash lost the open segment: 1.5 s missing.
    rig.record(
        "cam",
        T0 + Duration::milliseconds(31_500),
        T0 + Duration::seconds(61),
        10,
    );
    let c = assess_at(&hearing(HearingStatus::Closed), &rig.evidence(&["cam"]));
    assert_eq!(c.verdict, Verdict::Complete, "{:?}", c.exceptions);
}

#[test]
fn late_start_and_early_stop_are_named() {
    let mut rig = Rig::new("term-1");
    rig.record(
        "cam",
        T0 + Duration::seconds(10),
        T0 + Duration::seconds(50),
        10,
    );
    let c = assess_at(&hearing(HearingStatus::Closed), &rig.evidence(&["cam"]));
    assert_eq!(c.verdict, Verdict::Incomplete);
    let reasons: Vec<&str> = c.sources[0]
        .gaps
        .iter()
        .map(|g| g.reason.as_str())
        .collect();
    assert_eq!(
        reasons,
        ["recording started late", "recording stopped early"]
    );
}

#[test]
fn late_delivery_after_an_outage_is_a_note_not_an_exception() {
    let mut rig = Rig::new("term-1");
    rig.record("cam", T0, T0 + Duration::seconds(60), 10);
    // Segments of the middle third arrived when the broker came back.
    for s in &mut rig.segments {
        if s.wall_start >= T0 + Duration::seconds(20) && s.wall_start < T0 + Duration::seconds(40) {
            s.received = T0 + Duration::seconds(45);
        }
    }
    let c = assess_at(&hearing(HearingStatus::Closed), &rig.evidence(&["cam"]));
    assert_eq!(c.verdict, Verdict::Complete, "{:?}", c.exceptions);
    assert_eq!(c.sources[0].max_delivery_delay_s, 15.0);
    assert_eq!(c.notes.len(), 1);
    assert!(c.notes[0].contains("up to 15 s"), "{}", c.notes[0]);
}

#[test]
fn a_tampered_or_missing_segment_breaks_the_chain() {
    let mut rig = Rig::new("term-1");
    rig.record("cam", T0, T0 + Duration::seconds(60), 10);
    let mut e = rig.evidence(&["cam"]);
    e.segments[2].sha256 = format!("{:064x}", 999);
    let c = assess_at(&hearing(HearingStatus::Closed), &e);
    assert_eq!(c.verdict, Verdict::Incomplete);
    assert!(
        matches!(c.devices[0].chain, ChainCheck::Broken { index: 2, .. }),
        "{:?}",
        c.devices[0].chain
    );

    let mut e = rig.evidence(&["cam"]);
    e.segments.remove(3);
    let c = assess_at(&hearing(HearingStatus::Closed), &e);
    assert!(matches!(
        c.devices[0].chain,
        ChainCheck::Broken { index: 3, .. }
    ));
    assert!(matches!(c.devices[0].seal, SealCheck::Invalid { .. }));
    assert_eq!(c.verdict, Verdict::Incomplete);
}

#[test]
fn a_seal_by_another_key_or_with_a_bad_signature_is_invalid() {
    let mut rig = Rig::new("term-1");
    rig.record("cam", T0, T0 + Duration::seconds(60), 10);
    let mut e = rig.evidence(&["cam"]);
    e.pinned_keys.insert(
        "term-1".into(),
        DeviceKey::from_secret([4; 32]).public_hex(),
    );
    let c = assess_at(&hearing(HearingStatus::Closed), &e);
    assert!(
        matches!(&c.devices[0].seal, SealCheck::Invalid { why } if why.contains("device's key"))
    );
    assert_eq!(c.verdict, Verdict::Incomplete);

    let mut e = rig.evidence(&["cam"]);
    e.seals[0].segments += 1;
    let c = assess_at(&hearing(HearingStatus::Closed), &e);
    assert!(matches!(&c.devices[0].seal, SealCheck::Invalid { why } if why.contains("signature")));
}

#[test]
fn a_closed_hearing_waits_for_the_seal_and_names_the_device() {
    let mut rig = Rig::new("term-1");
    rig.record("cam", T0, T0 + Duration::seconds(40), 10);
    let mut e = rig.evidence(&["cam"]);
    e.seals.clear();
    let c = assess_at(&hearing(HearingStatus::Closed), &e);
    assert_eq!(c.verdict, Verdict::Pending);
    assert!(c.notes.iter().any(|n| n.contains("term-1")));
}

#[test]
fn a_room_that_never_recorded_is_not_recorded_and_says_which_device() {
    let e = Evidence {
        recording_devices: ["term-1".to_owned()].into(),
        ..Default::default()
    };
    let c = assess_at(&hearing(HearingStatus::Closed), &e);
    assert_eq!(c.verdict, Verdict::NotRecorded);
    assert!(
        c.exceptions
            .iter()
            .any(|x| x.contains("term-1") && x.contains("recorded nothing"))
    );
}

#[test]
fn open_and_cancelled_hearings_are_not_judged() {
    let mut rig = Rig::new("term-1");
    rig.record("cam", T0, T0 + Duration::seconds(30), 10);
    let c = assess_at(&hearing(HearingStatus::InProgress), &rig.evidence(&["cam"]));
    assert_eq!(c.verdict, Verdict::Open);
    let c = assess_at(&hearing(HearingStatus::Cancelled), &rig.evidence(&["cam"]));
    assert_eq!(c.verdict, Verdict::Cancelled);
}

#[test]
fn a_required_transcript_that_is_missing_is_an_exception() {
    let mut rig = Rig::new("term-1");
    rig.record("cam", T0, T0 + Duration::seconds(60), 10);
    let mut e = rig.evidence(&["cam"]);
    e.transcript_required = true;
    let c = assess_at(&hearing(HearingStatus::Closed), &e);
    assert_eq!(c.verdict, Verdict::Incomplete);
    assert_eq!(c.exceptions, ["no transcript"]);
    e.transcript_present = true;
    assert_eq!(
        assess_at(&hearing(HearingStatus::Closed), &e).verdict,
        Verdict::Complete
    );
}

#[test]
fn the_daily_report_counts_shares_and_explains_every_exception() {
    use crate::report::daily;
    let offset = time::UtcOffset::from_hms(8, 0, 0).expect("offset");
    let mut ok = Rig::new("term-1");
    ok.record("cam", T0, T0 + Duration::seconds(60), 10);
    let good = assess_at(&hearing(HearingStatus::Closed), &ok.evidence(&["cam"]));
    let mut bad_h = hearing(HearingStatus::Closed);
    bad_h.id = "h2".into();
    bad_h.room = "room-102".into();
    let mut bad = assess_at(
        &bad_h,
        &Evidence {
            recording_devices: ["term-2".to_owned()].into(),
            ..Default::default()
        },
    );
    bad.hearing_id = "h2".into();
    let mut cancelled = hearing(HearingStatus::Cancelled);
    cancelled.id = "h3".into();
    let mut other_day = hearing(HearingStatus::Closed);
    other_day.id = "h4".into();
    other_day.scheduled_start += Duration::days(1);
    let hearings = vec![hearing(HearingStatus::Closed), bad_h, cancelled, other_day];
    let compliance = [("h1".to_owned(), good), ("h2".to_owned(), bad)].into();
    let r = daily("hz", T0.date(), offset, &hearings, &compliance);
    assert_eq!(
        (
            r.hearings,
            r.assessed,
            r.complete,
            r.not_recorded,
            r.cancelled
        ),
        (3, 2, 1, 1, 1)
    );
    assert_eq!(r.share_fully_recorded, Some(0.5));
    let h2 = r.rows.iter().find(|x| x.hearing_id == "h2").expect("h2");
    assert!(h2.explanation.iter().any(|e| e.contains("term-2")));
    let csv = r.to_csv(offset);
    assert_eq!(csv.lines().count(), 4, "{csv}");
    assert!(
        csv.lines()
            .any(|l| l.starts_with("2026-11-27,hz,room-102,09:00,09:01,h2,")
                && l.contains("not recorded")),
        "{csv}"
    );
    let html = r.to_html(offset);
    assert!(html.contains("50.0 %"));
    assert!(html.contains("term-2 is a recording device of the room and recorded nothing"));
    assert!(!html.contains("<script"));
}
