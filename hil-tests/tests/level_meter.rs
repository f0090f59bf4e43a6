//! The recorder's audio meter (speaker-follow's seat levels) never holds up the recording:
//! an in-process recorder records the seat microphones of a simulated audio host with a
//! meter every 10 ms into a channel of one that nobody reads. The recording must cover
//! the whole time and verify, as without a meter, and stopping must still drain the
//! pipeline to its end of stream.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gavel_hil::media::{CameraSim, SimSpec, ffprobe};
use gavel_record::core::CoreSettings;
use gavel_record::index::Index;
use gavel_record::{Meter, RecorderSettings, SourceConfig, SourceInput, VideoCodec};

#[tokio::test(flavor = "multi_thread")]
async fn a_meter_nobody_reads_never_holds_up_the_recording() {
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
    let outbox = gavel_link::Outbox::new(store, "boot-meter");
    // Room for one report, and nobody reads it: every later level must be dropped.
    let (levels, mut unread) = tokio::sync::mpsc::channel(1);
    let settings = RecorderSettings {
        device_id: Some("meter-test".into()),
        tap: None,
        segment: Duration::from_secs(4),
        sources: vec![SourceConfig {
            id: "mics".into(),
            input: SourceInput::Rtsp {
                url: mics.url.clone(),
                video: VideoCodec::None,
                audio: true,
            },
        }],
        // A drain that never ends would hold the hearing open for a minute instead of
        // being cut short by the default 5 s teardown: the metered pipeline must drain.
        core: CoreSettings {
            drain_timeout: Duration::from_secs(60),
            ..CoreSettings::default()
        },
        meter: Some(Meter {
            sources: vec!["mics".into()],
            interval: Duration::from_millis(10),
            levels,
        }),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (recorder, task) = gavel_record::spawn(settings, index, outbox, async move {
        let _ = stop_rx.await;
    })
    .expect("recorder");
    recorder
        .start("H-meter", Some("test".into()), None)
        .await
        .expect("start");
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(12)).await;
    recorder.stop("H-meter").await.expect("stop");
    let wall = started.elapsed().as_secs_f64();
    // Wait for the hearing to finish (every segment closed), then end the recorder.
    let deadline = Instant::now() + Duration::from_secs(20);
    while recorder.state().await.expect("state").0.is_some() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        recorder.state().await.expect("state").0,
        None,
        "the metered pipeline drained and the hearing finished"
    );
    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("recorder stops")
        .expect("recorder task");

    // The one report that fitted is there; everything after it was dropped, not waited
    // for.
    let first = unread.try_recv().expect("one level report");
    assert_eq!(first.source, "mics");
    assert_eq!(first.rms_dbfs.len(), 5, "one level per seat channel");
    assert!(unread.try_recv().is_err());

    let hearing = dir.path().join("recordings/H-meter");
    let report = gavel_evidence::verify::verify(&hearing, None).expect("verify");
    assert!(report.ok(), "{:?}", report.findings);
    let mut recorded = 0.0;
    let mut segments: Vec<_> = std::fs::read_dir(hearing.join("mics"))
        .expect("segments")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ts"))
        .collect();
    segments.sort();
    for s in &segments {
        let p = ffprobe(s).expect("ffprobe");
        assert_eq!(p.streams, [("aac".to_owned(), 5)], "{}", s.display());
        recorded += p.duration_s;
    }
    println!(
        "recorded {recorded:.1} s of audio in {} segments over {wall:.1} s with an unread meter",
        segments.len()
    );
    // The recording starts once the audio host answers (about a second) and keeps every
    // second after that.
    assert!(recorded >= wall - 2.5, "{recorded:.1} s of {wall:.1} s");
}
