//! The recorder's transcription tap never holds up the recording: an in-process recorder
//! records the seat microphones of a simulated audio host while its tap feeds a bounded
//! transcription buffer that nobody drains (a transcriber that has fallen far behind).
//! The recording must cover the whole time and verify, the tap's queue must not drop a
//! buffer, and the buffer must hold 16 kHz PCM of every seat with the script's speaker
//! loudest on its own channel, ending with the hearing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gavel_hil::media::{probe_segments, record_in_process, seat_microphones};
use gavel_record::core::CoreSettings;
use gavel_record::{PcmTap, RecorderSettings, TapData};
use gavel_transcribe::{RATE, Read, Tap};

#[tokio::test(flavor = "multi_thread")]
async fn a_transcription_tap_nobody_drains_never_holds_up_the_recording() {
    let dir = tempfile::tempdir().expect("tmp");
    let (_mics, source) = seat_microphones(dir.path()).expect("audio host");
    // A buffer of 60 s that nobody reads during the hearing.
    let buffer: Arc<Mutex<Option<Tap>>> = Arc::new(Mutex::new(None));
    let ended = Arc::new(AtomicBool::new(false));
    let sink = {
        let (buffer, ended) = (buffer.clone(), ended.clone());
        move |data: TapData<'_>| match data {
            TapData::Pcm {
                hearing_id,
                channels,
                samples,
                ..
            } => {
                assert_eq!(hearing_id, "H-tap");
                buffer
                    .lock()
                    .expect("buffer")
                    .get_or_insert_with(|| Tap::new(channels, RATE as usize * 60))
                    .push(samples);
            }
            TapData::End { .. } => ended.store(true, Ordering::Relaxed),
        }
    };
    let dropped = Arc::new(AtomicU64::new(0));
    let settings = RecorderSettings {
        device_id: Some("tap-test".into()),
        segment: Duration::from_secs(4),
        sources: vec![source],
        core: CoreSettings {
            drain_timeout: Duration::from_secs(60),
            ..CoreSettings::default()
        },
        meter: None,
        tap: Some(PcmTap {
            sources: vec!["mics".into()],
            sink: Arc::new(sink),
            dropped: dropped.clone(),
        }),
    };
    // Fails unless the tapped pipeline drained and the hearing finished.
    let wall = record_in_process(dir.path(), settings, "H-tap", 12)
        .await
        .expect("recorded");

    // The recording is whole.
    let hearing = dir.path().join("recordings/H-tap");
    let report = gavel_evidence::verify::verify(&hearing, None).expect("verify");
    assert!(report.ok(), "{:?}", report.findings);
    let recorded: f64 = probe_segments(&hearing.join("mics"))
        .expect("segments")
        .iter()
        .map(|(_, p)| p.duration_s)
        .sum();
    assert!(recorded >= wall - 2.5, "{recorded:.1} s of {wall:.1} s");

    // The tap lost nothing, and its audio is the seats' audio at 16 kHz.
    assert_eq!(
        dropped.load(Ordering::Relaxed),
        0,
        "the tap's queue overran"
    );
    assert!(
        ended.load(Ordering::Relaxed),
        "the tap saw the end of the hearing"
    );
    let tap = buffer
        .lock()
        .expect("buffer")
        .take()
        .expect("the tap got audio");
    assert_eq!(tap.channels(), 5, "one channel per seat");
    assert_eq!(tap.stats().discarded.load(Ordering::Relaxed), 0);
    let frames = tap.stats().written.load(Ordering::Relaxed);
    let tapped = frames as f64 / f64::from(RATE);
    println!(
        "recorded {recorded:.1} s, tapped {tapped:.1} s of 5-channel 16 kHz PCM, never drained during the hearing"
    );
    assert!(
        (tapped - recorded).abs() < 1.5,
        "tapped {tapped:.1} s, recorded {recorded:.1} s"
    );
    let Read::Audio(pcm) = tap.read(frames as usize, Duration::ZERO) else {
        panic!("audio expected");
    };
    // Energy per channel: the script's speakers (0, 2, 4) far above the silent seats.
    let energy: Vec<f32> = pcm
        .iter()
        .map(|c| c.iter().map(|s| s * s).sum::<f32>() / c.len() as f32)
        .collect();
    println!("channel energy {energy:?}");
    for speaking in [0, 2, 4] {
        for silent in [1, 3] {
            assert!(energy[speaking] > 10.0 * energy[silent], "{energy:?}");
        }
    }
}
