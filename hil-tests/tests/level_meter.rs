//! The recorder's audio meter (speaker-follow's seat levels) never holds up the recording:
//! an in-process recorder records the seat microphones of a simulated audio host with a
//! meter every 10 ms into a channel of one that nobody reads. The recording must cover
//! the whole time and verify, as without a meter, and stopping must still drain the
//! pipeline to its end of stream.

use std::time::Duration;

use gavel_hil::media::{probe_segments, record_in_process, seat_microphones};
use gavel_record::core::CoreSettings;
use gavel_record::{Meter, RecorderSettings};

#[tokio::test(flavor = "multi_thread")]
async fn a_meter_nobody_reads_never_holds_up_the_recording() {
    let dir = tempfile::tempdir().expect("tmp");
    let (_mics, source) = seat_microphones(dir.path()).expect("audio host");
    // Room for one report, and nobody reads it: every later level must be dropped.
    let (levels, mut unread) = tokio::sync::mpsc::channel(1);
    let settings = RecorderSettings {
        device_id: Some("meter-test".into()),
        tap: None,
        segment: Duration::from_secs(4),
        sources: vec![source],
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
    // Fails unless the metered pipeline drained and the hearing finished.
    let wall = record_in_process(dir.path(), settings, "H-meter", 12)
        .await
        .expect("recorded");

    // The one report that fitted is there; everything after it was dropped, not waited
    // for.
    let first = unread.try_recv().expect("one level report");
    assert_eq!(first.source, "mics");
    assert_eq!(first.rms_dbfs.len(), 5, "one level per seat channel");
    assert!(unread.try_recv().is_err());

    let hearing = dir.path().join("recordings/H-meter");
    let report = gavel_evidence::verify::verify(&hearing, None).expect("verify");
    assert!(report.ok(), "{:?}", report.findings);
    let segments = probe_segments(&hearing.join("mics")).expect("segments");
    let mut recorded = 0.0;
    for (file, p) in &segments {
        assert_eq!(p.streams, [("aac".to_owned(), 5)], "{}", file.display());
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
