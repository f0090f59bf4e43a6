//! Speaker-follow on a scripted four-seat conversation: the courtroom terminal's profile
//! settings drive the follow core, whose moves go over a real serial link (socat pty
//! pair) to an emulated VISCA head. Time is scripted (100 ms audio-meter frames), the
//! camera commands are real.

use std::collections::BTreeMap;
use std::time::Duration;

use gavel_devices::follow::{Follow, FollowSettings, Input, Output, Shot};
use gavel_devices::serial::PortSettings;
use gavel_devices::visca::ViscaCamera;
use gavel_hil::serial_peers::{Emulator, PtyPair, ViscaHead};

/// Who speaks when, in milliseconds from the start of the hearing.
const SCRIPT: &[(&str, u64, u64)] = &[
    // The judge opens, with a breath at 4.0-4.3 s.
    ("judge", 1_000, 4_000),
    ("judge", 4_300, 9_000),
    // The plaintiff answers; the defendant talks over them for 1.5 s.
    ("plaintiff", 9_500, 16_000),
    ("defendant", 12_000, 13_500),
    // The defendant replies.
    ("defendant", 16_500, 22_000),
    // The witness testifies; the judge says "sustained" (0.3 s) and later talks over
    // the witness for a second.
    ("witness", 22_400, 30_000),
    ("judge", 23_000, 23_300),
    ("judge", 25_000, 26_000),
    // Silence from 30 s; the judge resumes at 40 s.
    ("judge", 40_000, 45_000),
];

const END_MS: u64 = 48_000;
const FRAME_MS: u64 = 100;

fn speaking(seat: &str, t: u64) -> bool {
    SCRIPT
        .iter()
        .any(|(s, from, to)| *s == seat && (*from..*to).contains(&t))
}

#[test]
fn a_scripted_four_seat_conversation_frames_each_turn_without_oscillation() {
    let profile = gavel_profile::load_named(&gavel_hil::profiles_dir(), "courtroom-terminal")
        .expect("profile");
    let follow_cfg = profile.capabilities.follow.as_ref().expect("follow");
    let settings = FollowSettings::from(follow_cfg);
    let hold_ms = u64::from(follow_cfg.hold_ms);
    let preset = |seat: &str| settings.presets[seat];

    let dir = tempfile::tempdir().expect("tempdir");
    let pair = PtyPair::start(dir.path(), "ptz").expect("socat");
    let head = Emulator::start(&pair.device, ViscaHead::new(1));
    let mut cam = ViscaCamera::new(PortSettings::new(&pair.host, 9600), 1).expect("camera");

    let mut core = Follow::new(settings.clone());
    let seats = ["judge", "plaintiff", "defendant", "witness"];
    let mut moves: Vec<(u64, Shot, u8)> = Vec::new();
    for t in (0..=END_MS).step_by(FRAME_MS as usize) {
        let now = Duration::from_millis(t);
        let mut outputs = core.handle(now, Input::Tick);
        for seat in seats {
            let dbfs = if speaking(seat, t) { -18.0 } else { -65.0 };
            outputs.extend(core.handle(
                now,
                Input::Level {
                    seat: seat.into(),
                    dbfs,
                },
            ));
        }
        for Output::GotoPreset { shot, preset } in outputs {
            cam.recall_preset(preset)
                .unwrap_or_else(|e| panic!("at {t} ms: {e}"));
            moves.push((t, shot, preset));
        }
    }

    let shots: Vec<Shot> = moves.iter().map(|(_, s, _)| s.clone()).collect();
    let seat = |s: &str| Shot::Seat(s.into());
    assert_eq!(
        shots,
        [
            Shot::Overview,
            seat("judge"),
            seat("plaintiff"),
            seat("defendant"),
            seat("witness"),
            Shot::Overview,
            seat("judge"),
        ],
        "moves: {moves:?}"
    );
    let overview = settings.overview_preset;
    let expected = [
        overview,
        preset("judge"),
        preset("plaintiff"),
        preset("defendant"),
        preset("witness"),
        overview,
        preset("judge"),
    ];
    assert_eq!(
        head.with(|h| h.recalls.clone()),
        expected,
        "what the camera did"
    );

    // No oscillation: every move waits out the hold time, and the overlaps (defendant
    // over the plaintiff, the judge over the witness) caused none.
    for pair in moves.windows(2) {
        assert!(
            pair[1].0 - pair[0].0 >= hold_ms,
            "moves too close: {pair:?}"
        );
    }
    let at = |shot: &Shot| moves.iter().find(|(_, s, _)| s == shot).map(|(t, _, _)| *t);
    assert!(
        at(&seat("defendant")).is_some_and(|t| t > 16_000),
        "{moves:?}"
    );
    // Turn changes land when the previous speaker's release runs out (judge at 9.0 s +
    // 1.2 s, defendant at 22.0 s + 1.2 s); the first shot of the judge waits out the
    // hold of the opening overview (0 s + 3 s).
    let timing: BTreeMap<&str, u64> =
        [("judge", 3_000), ("plaintiff", 10_200), ("witness", 23_200)]
            .into_iter()
            .collect();
    for (s, t) in timing {
        assert_eq!(at(&seat(s)), Some(t), "{s}: {moves:?}");
    }
}
