//! Labelled fixture sets generated from synthetic courtroom scenes and seat audio: every
//! analyzer's precision and recall over clips of each fault and of normal footage, and no
//! finding at all on ten minutes of a normal hearing (four cameras at 1 fps, five seat
//! microphones).

use std::collections::{BTreeMap, BTreeSet};

use gavel_patrol::synth::{self, AudioFault, Rng, Scene};
use gavel_patrol::{Frame, Input, Output, Patrol, Session, Settings};
use gavel_protocol::FindingKind;
use time::{Duration, OffsetDateTime};

const T0: OffsetDateTime = time::macros::datetime!(2026-11-27 09:00 UTC);
const SEATS: usize = 5;
const CLIPS_PER_CLASS: u64 = 20;

/// What one clip was generated to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Label {
    Normal,
    Blurred,
    Dark,
    Black,
    NoSignal,
    NoFrames,
    Frozen,
    Occluded,
    SceneChanged,
    NormalAudio,
    DeadMic,
    Noisy,
    Clipped,
    Silent,
    Disturbance,
    ShoutingOnly,
    MotionOnly,
}

impl Label {
    /// The finding a clip with this label must raise.
    fn expected(self) -> Option<FindingKind> {
        Some(match self {
            Label::Normal | Label::NormalAudio | Label::ShoutingOnly | Label::MotionOnly => {
                return None;
            }
            Label::Blurred => FindingKind::Blurred,
            Label::Dark => FindingKind::TooDark,
            Label::Black | Label::NoSignal | Label::NoFrames => FindingKind::SignalLost,
            Label::Frozen => FindingKind::Frozen,
            Label::Occluded => FindingKind::Occluded,
            Label::SceneChanged => FindingKind::SceneChanged,
            Label::DeadMic => FindingKind::DeadMicrophone,
            Label::Noisy => FindingKind::NoiseInterference,
            Label::Clipped => FindingKind::Clipping,
            Label::Silent => FindingKind::RoomSilent,
            Label::Disturbance => FindingKind::Disturbance,
        })
    }
}

fn at(s: f64) -> OffsetDateTime {
    T0 + Duration::seconds_f64(s)
}

fn raised(out: &[Output], into: &mut BTreeSet<FindingKind>) {
    for o in out {
        match o {
            Output::Started(f) | Output::Instant(f) => {
                into.insert(f.kind);
            }
            Output::Ended(_) => {}
        }
    }
}

fn session() -> Input {
    Input::Session(Some(Session {
        hearing_id: "H-fixture".into(),
        scheduled_start: Some(T0),
        recording_since: Some(T0),
    }))
}

fn patrol(video: bool) -> Patrol {
    let seats = (0..SEATS).map(|i| format!("seat-{i}")).collect();
    let cams = if video {
        vec!["cam".to_owned()]
    } else {
        Vec::new()
    };
    let mut p = Patrol::new(Settings::all(), &cams, &[("mics".to_owned(), seats)]);
    p.start(T0);
    p.handle(T0, session());
    p
}

/// A video clip: 30 s at 1 fps of `label`, the room's reference set from a normal frame.
fn video_clip(label: Label, seed: u64) -> BTreeSet<FindingKind> {
    let mut rng = Rng::new(seed * 7919 + label as u64);
    let mut scene = Scene::room(seed, synth::WIDTH, synth::HEIGHT);
    let mut p = patrol(true);
    let mut found = BTreeSet::new();
    let reference = scene.render(0.0);
    p.handle(
        T0,
        Input::Reference {
            source: "cam".into(),
            frame: reference,
        },
    );
    let other = Scene::room(seed + 10_000, synth::WIDTH, synth::HEIGHT);
    let mut changed = if seed.is_multiple_of(2) {
        other.panned(0.5)
    } else {
        scene.panned(rng.range(0.3, 0.6))
    };
    let blur_r = 2 + (seed % 3) as usize;
    let gain = rng.range(0.12, 0.25);
    let share = rng.range(0.6, 0.88);
    let frozen = scene.render(0.5);
    let noise_screen = synth::no_signal(&mut rng, synth::WIDTH, synth::HEIGHT);
    for i in 1..=30 {
        let t = f64::from(i);
        let frame: Option<Frame> = match label {
            Label::Normal => Some(scene.render(t)),
            Label::Blurred => Some(synth::blur(&scene.render(t), blur_r)),
            Label::Dark => Some(scene.render_with(t, gain, 0.0)),
            Label::Black => Some(synth::black(&mut rng, synth::WIDTH, synth::HEIGHT)),
            Label::NoSignal => Some(noise_screen.clone()),
            Label::NoFrames => None,
            Label::Frozen => Some(frozen.clone()),
            Label::Occluded => Some(synth::occlude(&scene.render(t), &mut rng, share)),
            Label::SceneChanged => Some(changed.render(t)),
            Label::MotionOnly => Some(scene.render_with(t, 1.0, 0.15)),
            _ => unreachable!("not a video label"),
        };
        if let Some(frame) = frame {
            raised(
                &p.handle(
                    at(t),
                    Input::Frame {
                        source: "cam".into(),
                        frame,
                    },
                ),
                &mut found,
            );
        }
        raised(&p.handle(at(t), Input::Tick), &mut found);
    }
    found
}

/// An audio clip of `label` (with a normal picture alongside, 1 fps).
fn audio_clip(label: Label, seed: u64) -> BTreeSet<FindingKind> {
    let seconds = match label {
        Label::Silent => 80.0,
        _ => 60.0,
    };
    let channel = (seed % SEATS as u64) as usize;
    let fault = match label {
        Label::NormalAudio | Label::MotionOnly => AudioFault::None,
        Label::DeadMic => AudioFault::Dead(channel),
        Label::Noisy => AudioFault::Noisy(channel),
        Label::Clipped => AudioFault::Clipped(channel),
        Label::Silent => AudioFault::Silent,
        Label::Disturbance | Label::ShoutingOnly => AudioFault::Shouting,
        _ => unreachable!("not an audio label"),
    };
    let samples = synth::room_audio(seed, seconds, SEATS, fault);
    let blocks = synth::blocks(&samples, SEATS, 0.5);
    let mut scene = Scene::room(seed, synth::WIDTH, synth::HEIGHT);
    // Only the disturbance sets need the picture alongside.
    let video = matches!(
        label,
        Label::NormalAudio | Label::Disturbance | Label::ShoutingOnly | Label::MotionOnly
    );
    let mut p = patrol(video);
    let mut found = BTreeSet::new();
    let agitated = matches!(label, Label::Disturbance | Label::MotionOnly);
    for (i, block) in blocks.into_iter().enumerate() {
        let t = (i + 1) as f64 * 0.5;
        raised(
            &p.handle(
                at(t),
                Input::Audio {
                    source: "mics".into(),
                    block,
                },
            ),
            &mut found,
        );
        if video && i % 2 == 1 {
            // The fight breaks out 20 s in and lasts 6 s.
            let agitation = if agitated && (20.0..26.0).contains(&t) {
                0.15
            } else {
                0.0
            };
            let frame = scene.render_with(t, 1.0, agitation);
            raised(
                &p.handle(
                    at(t),
                    Input::Frame {
                        source: "cam".into(),
                        frame,
                    },
                ),
                &mut found,
            );
            raised(&p.handle(at(t), Input::Tick), &mut found);
        }
    }
    found
}

/// Prints the confusion per label and precision/recall per analyzer; fails below 0.95.
fn judge(set: &str, clips: &[(Label, BTreeSet<FindingKind>)]) {
    let mut confusion: BTreeMap<Label, BTreeMap<FindingKind, usize>> = BTreeMap::new();
    for (label, found) in clips {
        let row = confusion.entry(*label).or_default();
        for k in found {
            *row.entry(*k).or_default() += 1;
        }
    }
    println!("{set}: {CLIPS_PER_CLASS} clips per label; findings raised per label:");
    for (label, row) in &confusion {
        println!("  {label:?}: {row:?}");
    }
    let kinds: BTreeSet<FindingKind> = clips.iter().filter_map(|(l, _)| l.expected()).collect();
    println!(
        "{:<20} {:>4} {:>4} {:>4} {:>9} {:>6}",
        "analyzer", "tp", "fp", "fn", "precision", "recall"
    );
    let mut failures = Vec::new();
    for kind in kinds {
        let (mut tp, mut fp, mut fneg) = (0, 0, 0);
        for (label, found) in clips {
            let expected = label.expected() == Some(kind);
            match (expected, found.contains(&kind)) {
                (true, true) => tp += 1,
                (false, true) => fp += 1,
                (true, false) => fneg += 1,
                (false, false) => {}
            }
        }
        let precision = f64::from(tp) / f64::from((tp + fp).max(1));
        let recall = f64::from(tp) / f64::from((tp + fneg).max(1));
        println!(
            "{:<20} {tp:>4} {fp:>4} {fneg:>4} {precision:>9.3} {recall:>6.3}",
            kind.as_str()
        );
        if precision < 0.95 || recall < 0.95 {
            failures.push(format!(
                "{kind}: precision {precision:.3}, recall {recall:.3}"
            ));
        }
    }
    assert!(failures.is_empty(), "below 0.95: {failures:?}");
}

#[test]
fn every_video_analyzer_reaches_95_percent_precision_and_recall_on_labelled_clips() {
    let labels = [
        Label::Normal,
        Label::Blurred,
        Label::Dark,
        Label::Black,
        Label::NoSignal,
        Label::NoFrames,
        Label::Frozen,
        Label::Occluded,
        Label::SceneChanged,
    ];
    let mut clips = Vec::new();
    for seed in 1..=CLIPS_PER_CLASS {
        for label in labels {
            clips.push((label, video_clip(label, seed)));
        }
    }
    judge("video", &clips);
}

#[test]
fn every_audio_analyzer_and_disturbance_reach_95_percent_precision_and_recall() {
    let labels = [
        Label::NormalAudio,
        Label::DeadMic,
        Label::Noisy,
        Label::Clipped,
        Label::Silent,
        Label::Disturbance,
        Label::ShoutingOnly,
        Label::MotionOnly,
    ];
    let mut clips = Vec::new();
    for seed in 1..=CLIPS_PER_CLASS {
        for label in labels {
            clips.push((label, audio_clip(label, seed)));
        }
    }
    judge("audio", &clips);
}

#[test]
fn ten_minutes_of_a_normal_hearing_raise_no_finding() {
    let cams: Vec<String> = (0..4).map(|i| format!("cam-{i}")).collect();
    let seats = (0..SEATS).map(|i| format!("seat-{i}")).collect();
    let mut p = Patrol::new(Settings::all(), &cams, &[("mics".to_owned(), seats)]);
    p.start(T0);
    p.handle(T0, session());
    let mut scenes: Vec<Scene> = (0..4)
        .map(|i| Scene::room(500 + i, synth::WIDTH, synth::HEIGHT))
        .collect();
    for (cam, scene) in cams.iter().zip(scenes.iter_mut()) {
        p.handle(
            T0,
            Input::Reference {
                source: cam.clone(),
                frame: scene.render(0.0),
            },
        );
    }
    let seconds = 600.0;
    let samples = synth::room_audio(77, seconds, SEATS, AudioFault::None);
    let blocks = synth::blocks(&samples, SEATS, 0.5);
    let mut findings = Vec::new();
    let mut frames = 0;
    for (i, block) in blocks.into_iter().enumerate() {
        let t = (i + 1) as f64 * 0.5;
        findings.extend(p.handle(
            at(t),
            Input::Audio {
                source: "mics".into(),
                block,
            },
        ));
        if i % 2 == 1 {
            for (cam, scene) in cams.iter().zip(scenes.iter_mut()) {
                findings.extend(p.handle(
                    at(t),
                    Input::Frame {
                        source: cam.clone(),
                        frame: scene.render(t),
                    },
                ));
                frames += 1;
            }
            findings.extend(p.handle(at(t), Input::Tick));
        }
    }
    println!(
        "normal footage: {seconds} s, {frames} frames from 4 cameras, 5 seat channels: {} findings",
        findings.len()
    );
    assert!(findings.is_empty(), "{findings:#?}");
}
