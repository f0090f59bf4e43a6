//! Presence on real pictures: MTCNN through ONNX Runtime (the fetched models and library,
//! `cargo xtask models`) finds the face in the judge's zone of a photograph and none in a
//! zone without one, and the presence core turns that into the right verdicts: no finding
//! while the judge is seen, `judge_absent` when the zone is empty during the hearing.
//!
//! Pictures (models/manifest-patrol.json): `astronaut` (NASA, public domain) has one face
//! in its upper middle; `coffee` (CC0) has none.
#![cfg(feature = "faces")]

use std::path::{Path, PathBuf};

use gavel_patrol::detect::{FaceDetector, Rgb};
use gavel_patrol::presence::{HearingContext, PresenceAnalyzer};
use gavel_profile::{PatrolThresholds, SeatZone};
use gavel_protocol::FindingKind;
use time::{Duration, OffsetDateTime};

fn cache() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/cache")
}

/// A binary PPM (P6, 8-bit).
fn ppm(path: &Path) -> (usize, usize, Vec<u8>) {
    let bytes = std::fs::read(path)
        .unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask models`)", path.display()));
    let mut fields = Vec::new();
    let mut at = 0;
    while fields.len() < 4 {
        while bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        let start = at;
        while !bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        fields.push(String::from_utf8_lossy(&bytes[start..at]).into_owned());
    }
    assert_eq!(fields[0], "P6");
    let (w, h): (usize, usize) = (fields[1].parse().expect("w"), fields[2].parse().expect("h"));
    let data = bytes[at + 1..].to_vec();
    assert_eq!(data.len(), w * h * 3);
    (w, h, data)
}

fn detector() -> FaceDetector {
    let runtime = std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache().join("onnxruntime/libonnxruntime.so.1.32.0"));
    FaceDetector::load(&runtime, &cache().join("mtcnn")).expect("MTCNN through ONNX Runtime")
}

const T0: OffsetDateTime = time::macros::datetime!(2026-11-27 09:00 UTC);

/// Runs the presence core over 40 s of the same picture's faces; the findings raised.
fn verdict(zone: [f64; 4], faces: &[gavel_patrol::presence::Face]) -> Vec<FindingKind> {
    let t = PatrolThresholds {
        absent_onset_s: 30.0,
        ..PatrolThresholds::default()
    };
    let zones = [SeatZone {
        seat: "judge".into(),
        source: "cam-judge".into(),
        rect: zone,
        required_throughout: true,
    }];
    let mut p = PresenceAnalyzer::new(&t, &zones);
    p.context(Some(HearingContext {
        scheduled_start: Some(T0),
        opened: true,
    }));
    let mut out = Vec::new();
    for s in 0..=40 {
        for (_, c) in p.faces(T0 + Duration::seconds(s), "cam-judge", faces) {
            out.push(c.kind);
        }
    }
    out
}

#[test]
fn a_face_in_the_judges_zone_is_seen_and_an_empty_zone_is_an_absent_judge() {
    let mut d = detector();
    let (w, h, data) = ppm(&cache().join("testdata/astronaut.ppm"));
    let image = Rgb {
        width: w,
        height: h,
        data: &data,
    };
    // The judge's zone over the face (upper middle of the photograph).
    let bench = [0.25, 0.0, 0.5, 0.55];
    let faces = d.faces_in(&image, bench).expect("detect");
    println!(
        "astronaut, zone {bench:?}: best face score {:?} ({} candidates)",
        faces.first().map(|f| f.score),
        faces.len()
    );
    assert!(
        faces.first().is_some_and(|f| f.score >= 0.7),
        "no face found: {faces:?}"
    );
    assert_eq!(verdict(bench, &faces), [], "the judge is present");

    // A zone of the same picture without a face (the lower right: suit and flag).
    let empty = [0.55, 0.6, 0.45, 0.4];
    let faces = d.faces_in(&image, empty).expect("detect");
    let best = faces.iter().map(|f| f.score).fold(0.0, f64::max);
    println!("astronaut, zone {empty:?}: best face score {best:.3}");
    assert!(best < 0.7, "a face where there is none: {faces:?}");
    assert_eq!(verdict(empty, &faces), [FindingKind::JudgeAbsent]);

    // A picture without anyone.
    let (w, h, data) = ppm(&cache().join("testdata/coffee.ppm"));
    let image = Rgb {
        width: w,
        height: h,
        data: &data,
    };
    let whole = [0.0, 0.0, 1.0, 1.0];
    let faces = d.faces_in(&image, whole).expect("detect");
    let best = faces.iter().map(|f| f.score).fold(0.0, f64::max);
    println!("coffee, whole picture: best face score {best:.3}");
    assert!(best < 0.7, "a face in a cup of coffee: {faces:?}");
    assert_eq!(verdict(whole, &faces), [FindingKind::JudgeAbsent]);
}

/// Design: ONNX Runtime is loaded once per process, so when the other test loaded it
/// first, the missing models are what fails: either way the error names the path.
#[test]
fn a_missing_runtime_or_model_is_reported_with_why() {
    let err = FaceDetector::load(
        Path::new("/nonexistent/libonnxruntime.so"),
        Path::new("/nonexistent/mtcnn"),
    )
    .err()
    .expect("no runtime or no models");
    assert!(err.to_string().contains("/nonexistent"), "{err}");
}
