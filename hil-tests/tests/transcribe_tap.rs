//! The recorder's transcription tap never holds up the recording: an in-process recorder
//! records the seat microphones of a simulated audio host while its tap feeds a bounded
//! transcription buffer that nobody drains (a transcriber that has fallen far behind).
//! The recording must cover the whole time and verify, the tap's queue must not drop a
//! buffer, and the buffer must hold 16 kHz PCM of every seat with the script's speaker
//! loudest on its own channel, ending with the hearing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gavel_hil::media::{CameraSim, SimSpec, ffprobe};
use gavel_record::core::CoreSettings;
use gavel_record::index::Index;
use gavel_record::{PcmTap, RecorderSettings, SourceConfig, SourceInput, TapData, VideoCodec};
use gavel_transcribe::{RATE, Read, Tap};

#[tokio::test(flavor = "multi_thread")]
async fn a_transcription_tap_nobody_drains_never_holds_up_the_recording() {
    let dir = tempfile::tempdir().expect("tmp");
    let script = dir.path().join("conversation.txt");
    std::fs::write(&script, "0 500 3000\n2 3500 7000\n4 7500 11000\n").expect("script");
    let mics = CameraSim::start(
        dir.path(),
        "audio-host",
        SimSpec::scripted_microphones(5, &script),
        &dir.path().join("clips"),
    )
    .expect("audio host");

    let store = Arc::new(gavel_store::Store::open(&dir.path().join("store.redb")).expect("store"));
    let key = gavel_evidence::DeviceKey::load_or_create(&dir.path().join("device.key"))
        .expect("device key");
    let index = Index::new(store.clone(), dir.path().join("recordings"), key);
    let outbox = gavel_link::Outbox::new(store, "boot-tap");
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
        sources: vec![SourceConfig {
            id: "mics".into(),
            input: SourceInput::Rtsp {
                url: mics.url.clone(),
                video: VideoCodec::None,
                audio: true,
            },
        }],
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
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (recorder, task) = gavel_record::spawn(settings, index, outbox, async move {
        let _ = stop_rx.await;
    })
    .expect("recorder");
    recorder
        .start("H-tap", Some("test".into()), None)
        .await
        .expect("start");
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(12)).await;
    recorder.stop("H-tap").await.expect("stop");
    let wall = started.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(20);
    while recorder.state().await.expect("state").0.is_some() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        recorder.state().await.expect("state").0,
        None,
        "the tapped pipeline drained and the hearing finished"
    );
    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("recorder stops")
        .expect("recorder task");

    // The recording is whole.
    let hearing = dir.path().join("recordings/H-tap");
    let report = gavel_evidence::verify::verify(&hearing, None).expect("verify");
    assert!(report.ok(), "{:?}", report.findings);
    let mut recorded = 0.0;
    for e in std::fs::read_dir(hearing.join("mics")).expect("segments") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "ts") {
            recorded += ffprobe(&p).expect("ffprobe").duration_s;
        }
    }
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
