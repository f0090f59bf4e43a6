//! Recording, judged by `ffprobe` (not our code): simulated RTSP cameras and a 4-channel
//! microphone host, recorded by the real `gavel-recorder` process.
//!
//! Full-length runs: `GAVEL_TEST_HEARING_S=120` (3 cameras + 4 mics), `GAVEL_TEST_KILLS=50`
//! (SIGKILLs), `GAVEL_TEST_UNPLUG_S=20` (camera unplugged).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use gavel_evidence::{Manifest, SegmentEntry};
use gavel_hil::media::{CameraSim, RecSource, RecorderProc, SimSpec, env_secs, ffprobe};
use gavel_hil::{bin, unique};
use gavel_protocol::{Event, EventBody, Phase, RecordingState};
use time::OffsetDateTime;

/// The tests of this file run one at a time: each runs real cameras and a recorder, and
/// four at once on 2 cores starve a steady camera past the 3 s stall limit (seen as a
/// gap on the camera that was never unplugged).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn clips() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("clips")
}

fn manifest(dir: &Path) -> Manifest {
    let bytes = std::fs::read(dir.join("manifest.json")).expect("manifest written");
    serde_json::from_slice(&bytes).expect("manifest parses")
}

fn by_source(m: &Manifest) -> BTreeMap<String, Vec<SegmentEntry>> {
    let mut out: BTreeMap<String, Vec<SegmentEntry>> = BTreeMap::new();
    for s in &m.segments {
        out.entry(s.source.clone()).or_default().push(s.clone());
    }
    for list in out.values_mut() {
        list.sort_by_key(|s| s.offset_ns);
    }
    out
}

fn secs(d: time::Duration) -> f64 {
    d.as_seconds_f64()
}

/// Events the recorder stored in its outbox (read after it has exited).
fn events(data_dir: &Path) -> Vec<Event> {
    let store = gavel_store::Store::open(&data_dir.join("store.redb")).expect("store");
    store
        .entries_from(0, 100_000)
        .expect("outbox")
        .into_iter()
        .map(|(_, e)| serde_json::from_slice(&e.payload).expect("event"))
        .collect()
}

#[test]
fn three_cameras_and_four_microphones_record_a_hearing_that_ffprobe_reads_in_full() {
    let _one = one_at_a_time();
    let hearing_s = env_secs("GAVEL_TEST_HEARING_S", 20);
    let dir = tempfile::tempdir().expect("tmp");
    let mut sources = Vec::new();
    let mut sims = Vec::new();
    for i in 0..3 {
        let id = format!("cam-{i}");
        let sim =
            CameraSim::start(dir.path(), &id, SimSpec::camera_1080p(), &clips()).expect("camera");
        sources.push(RecSource::video(&id, &sim.url));
        sims.push(sim);
    }
    let mics = CameraSim::start(dir.path(), "mics", SimSpec::microphones(4), &clips())
        .expect("microphones");
    sources.push(RecSource::audio("mics", &mics.url));

    let hearing = unique("hearing");
    let rec = RecorderProc::start(&dir.path().join("rec"), &hearing, &sources, 5.0, "rec.log")
        .expect("recorder");
    std::thread::sleep(Duration::from_secs(hearing_s));
    let hdir = rec.hearing_dir();
    rec.stop().expect("clean stop");

    let m = manifest(&hdir);
    let ended = m.ended.expect("a stopped hearing has an end");
    assert_eq!(m.sources.len(), 4);
    assert!(m.gaps.is_empty(), "no gap expected: {:?}", m.gaps);
    let per_source = by_source(&m);
    assert_eq!(per_source.len(), 4, "every source recorded");
    for (source, segments) in &per_source {
        let mut total = 0.0;
        for s in segments {
            let p = ffprobe(&hdir.join(&s.file)).expect("ffprobe reads every segment");
            assert_eq!(p.format, "mpegts", "{}", s.file);
            if source == "mics" {
                assert_eq!(p.streams, [("aac".to_string(), 4)], "{}", s.file);
            } else {
                assert_eq!(p.streams[0].0, "h264", "{}", s.file);
            }
            total += p.duration_s;
        }
        let first = &segments[0];
        let lag = secs(first.wall_start - m.started);
        assert!(lag < 3.0, "{source} started {lag:.2} s after the hearing");
        let span = secs(ended - first.wall_start);
        eprintln!(
            "{source}: {} segments, {total:.2} s of media over {span:.2} s",
            segments.len()
        );
        assert!(
            (span - total).abs() <= 1.0,
            "{source}: segments add up to {total:.2} s but the source recorded for {span:.2} s"
        );
    }
    let report = gavel_evidence::verify::verify(&hdir, None).expect("verify");
    assert!(report.ok(), "{:?}", report.findings);
}

#[test]
fn sigkill_at_random_moments_loses_at_most_2s_per_source_and_the_chain_still_verifies() {
    let _one = one_at_a_time();
    let kills = env_secs("GAVEL_TEST_KILLS", 5);
    let dir = tempfile::tempdir().expect("tmp");
    let cam = CameraSim::start(dir.path(), "cam", SimSpec::camera_1080p(), &clips()).expect("cam");
    let mics =
        CameraSim::start(dir.path(), "mics", SimSpec::microphones(4), &clips()).expect("mics");
    let sources = [
        RecSource::video("cam", &cam.url),
        RecSource::audio("mics", &mics.url),
    ];
    let data = dir.path().join("rec");
    let hearing = unique("kill");
    let mut kill_times = Vec::new();
    for k in 0..kills {
        let mut rec = RecorderProc::start(&data, &hearing, &sources, 2.0, &format!("rec-{k}.log"))
            .expect("recorder");
        std::thread::sleep(Duration::from_millis(2500 + fastrand::u64(0..3000)));
        rec.proc.kill9();
        kill_times.push(OffsetDateTime::now_utc());
    }
    let rec =
        RecorderProc::start(&data, &hearing, &sources, 2.0, "rec-last.log").expect("recorder");
    std::thread::sleep(Duration::from_secs(3));
    let hdir = rec.hearing_dir();
    rec.stop().expect("clean stop");

    let m = manifest(&hdir);
    let per_source = by_source(&m);
    let mut ends: BTreeMap<&str, Vec<(OffsetDateTime, OffsetDateTime)>> = BTreeMap::new();
    for (source, segments) in &per_source {
        for s in segments {
            let p = ffprobe(&hdir.join(&s.file)).expect("every closed segment plays");
            assert!(p.duration_s > 0.0, "{}: empty", s.file);
            ends.entry(source).or_default().push((
                s.wall_start,
                s.wall_start + Duration::from_secs_f64(p.duration_s),
            ));
        }
    }
    for (k, kill) in kill_times.iter().enumerate() {
        for (source, spans) in &ends {
            let last_end = spans
                .iter()
                .filter(|(start, _)| start < kill)
                .map(|(_, end)| *end)
                .max()
                .expect("media before the kill");
            let loss = secs(*kill - last_end);
            eprintln!("kill {k}: {source} lost {loss:.2} s");
            assert!(loss <= 2.0, "kill {k}: {source} lost {loss:.2} s");
        }
    }
    let restarts = m
        .gaps
        .iter()
        .filter(|g| g.reason == "recorder restarted")
        .count();
    assert_eq!(
        restarts as u64,
        kills * 2,
        "one gap per kill per source: {:?}",
        m.gaps
    );
    let report = gavel_evidence::verify::verify(&hdir, None).expect("verify");
    assert!(report.ok(), "{:?}", report.findings);
}

#[test]
fn verify_names_a_changed_a_removed_and_two_swapped_segments() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().expect("tmp");
    let cam = CameraSim::start(dir.path(), "cam", SimSpec::camera_1080p(), &clips()).expect("cam");
    let rec = RecorderProc::start(
        &dir.path().join("rec"),
        &unique("tamper"),
        &[RecSource::video("cam", &cam.url)],
        1.0,
        "rec.log",
    )
    .expect("recorder");
    std::thread::sleep(Duration::from_secs(8));
    let hdir = rec.hearing_dir();
    rec.stop().expect("clean stop");
    let m = manifest(&hdir);
    let index_of = |file: &str| {
        m.segments
            .iter()
            .find(|s| s.file == file)
            .map(|s| s.index)
            .unwrap_or_else(|| panic!("{file} not in the manifest"))
    };
    let key = {
        let sig: serde_json::Value =
            serde_json::from_slice(&std::fs::read(hdir.join("manifest.sig")).expect("sig"))
                .expect("json");
        sig["public_key"].as_str().expect("key").to_owned()
    };
    let verify = |extra: &[&str]| {
        let out = Command::new(bin("gavelctl"))
            .arg("verify")
            .arg(&hdir)
            .args(extra)
            .output()
            .expect("gavelctl runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, out) = verify(&["--key", &key]);
    assert!(ok, "an untouched recording verifies: {out}");
    assert!(out.contains("(trusted key)"), "{out}");

    // One byte changed, one segment deleted, two swapped.
    let changed = hdir.join("cam/00001.ts");
    let mut bytes = std::fs::read(&changed).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&changed, bytes).expect("write");
    std::fs::remove_file(hdir.join("cam/00003.ts")).expect("delete");
    let (a, b) = (hdir.join("cam/00004.ts"), hdir.join("cam/00005.ts"));
    let tmp = hdir.join("cam/swap");
    std::fs::rename(&a, &tmp).expect("swap");
    std::fs::rename(&b, &a).expect("swap");
    std::fs::rename(&tmp, &b).expect("swap");

    let (ok, out) = verify(&["--key", &key]);
    assert!(!ok, "tampering is detected: {out}");
    let (i1, i3, i4, i5) = (
        index_of("cam/00001.ts"),
        index_of("cam/00003.ts"),
        index_of("cam/00004.ts"),
        index_of("cam/00005.ts"),
    );
    for expected in [
        format!("FAIL segment {i1} (cam/00001.ts) was changed"),
        format!("FAIL segment {i3} (cam/00003.ts) was removed"),
        format!("FAIL segment {i4} (cam/00004.ts) was reordered: it holds segment {i5}'s content"),
        format!("FAIL segment {i5} (cam/00005.ts) was reordered: it holds segment {i4}'s content"),
    ] {
        assert!(out.contains(&expected), "missing {expected:?} in:\n{out}");
    }
    assert_eq!(
        out.matches("FAIL").count(),
        4,
        "nothing else reported:\n{out}"
    );

    let other_key = "11".repeat(32);
    let (_, out) = verify(&["--key", &other_key]);
    assert!(
        out.contains("untrusted key") || out.contains("signature is invalid"),
        "{out}"
    );
}

#[test]
fn an_unplugged_camera_degrades_the_recording_records_its_gap_and_recovers_on_replug() {
    let _one = one_at_a_time();
    if std::env::var("GAVEL_TEST_CAMERA_URLS").is_ok() {
        eprintln!("skipped: real cameras cannot be unplugged from here");
        return;
    }
    let unplugged_s = env_secs("GAVEL_TEST_UNPLUG_S", 8);
    let dir = tempfile::tempdir().expect("tmp");
    let steady =
        CameraSim::start(dir.path(), "cam-a", SimSpec::camera_1080p(), &clips()).expect("cam-a");
    let mut flaky =
        CameraSim::start(dir.path(), "cam-b", SimSpec::camera_1080p(), &clips()).expect("cam-b");
    let data = dir.path().join("rec");
    let rec = RecorderProc::start(
        &data,
        &unique("unplug"),
        &[
            RecSource::video("cam-a", &steady.url),
            RecSource::video("cam-b", &flaky.url),
        ],
        2.0,
        "rec.log",
    )
    .expect("recorder");
    std::thread::sleep(Duration::from_secs(5));
    flaky.unplug();
    let unplugged = OffsetDateTime::now_utc();
    std::thread::sleep(Duration::from_secs(unplugged_s));
    flaky.replug().expect("replug");
    let replugged = OffsetDateTime::now_utc();
    // The supervisor's retry delay doubles while the camera is away, up to
    // `backoff_max`: after a long outage the next try can be that far off.
    let backoff_max = gavel_record::core::CoreSettings::default().backoff_max;
    std::thread::sleep(backoff_max + Duration::from_secs(6));
    let hdir = rec.hearing_dir();
    rec.stop().expect("clean stop");

    // Events on the durable link.
    let events = events(&data);
    let degraded = events
        .iter()
        .find(|e| {
            matches!(&e.body, EventBody::Recording { state: RecordingState::Degraded, lost, .. } if lost == &["cam-b"])
        })
        .expect("a degraded event");
    let delay = secs(degraded.ts - unplugged);
    assert!(
        delay <= 5.0,
        "degraded reported {delay:.2} s after the unplug"
    );
    let recovered = events
        .iter()
        .find(|e| {
            e.phase == Phase::End
                && matches!(&e.body, EventBody::SourceLost { source, recovered_at: Some(_), .. } if source == "cam-b")
        })
        .expect("a recovery event");
    assert!(recovered.ts > replugged);
    assert!(
        events.iter().any(|e| e.ts > recovered.ts
            && matches!(
                &e.body,
                EventBody::Recording {
                    state: RecordingState::Recording,
                    ..
                }
            )),
        "back to recording after the replug"
    );

    // The gap, with its span, in the signed manifest; judged against ffprobe durations.
    let m = manifest(&hdir);
    let gaps: Vec<_> = m.gaps.iter().filter(|g| g.source == "cam-b").collect();
    assert_eq!(gaps.len(), 1, "{:?}", m.gaps);
    let gap = gaps[0];
    let gap_to = gap.wall_to.expect("gap closed");
    assert!(
        secs(gap.wall_from - unplugged).abs() <= 1.0,
        "gap starts at the unplug"
    );
    let reconnect = secs(gap_to - replugged);
    assert!(
        (0.0..=backoff_max.as_secs_f64() + 3.0).contains(&reconnect),
        "gap ends {reconnect:.2} s after the replug"
    );
    let segs = by_source(&m);
    let b = &segs["cam-b"];
    let before = b
        .iter()
        .filter(|s| s.wall_start < gap.wall_from)
        .map(|s| {
            s.wall_start
                + Duration::from_secs_f64(ffprobe(&hdir.join(&s.file)).expect("plays").duration_s)
        })
        .max()
        .expect("media before the gap");
    let after = b
        .iter()
        .filter(|s| s.wall_start >= gap.wall_from)
        .map(|s| s.wall_start)
        .min()
        .expect("media after the gap");
    assert!(
        secs(gap.wall_from - before).abs() <= 0.5,
        "gap starts where the media stops"
    );
    assert!(
        secs(after - gap_to).abs() <= 0.5,
        "gap ends where the media resumes"
    );

    // The other camera is unbroken: each segment starts where the previous one ended.
    assert!(m.gaps.iter().all(|g| g.source != "cam-a"));
    let a = &segs["cam-a"];
    for pair in a.windows(2) {
        let d = ffprobe(&hdir.join(&pair[0].file))
            .expect("plays")
            .duration_s;
        let end = pair[0].wall_start + Duration::from_secs_f64(d);
        let jump = secs(pair[1].wall_start - end);
        assert!(
            jump.abs() <= 0.3,
            "cam-a jumps {jump:.2} s after {}",
            pair[0].file
        );
    }
    let report = gavel_evidence::verify::verify(&hdir, None).expect("verify");
    assert!(report.ok(), "{:?}", report.findings);
}
