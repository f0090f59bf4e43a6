//! Speaker-follow in a real agent: the courtroom terminal records a room whose seat
//! microphones are an audio host (`gavel-camera-sim`) playing a scripted four-seat
//! conversation; the recorder's level meter feeds the agent's follow core, which drives
//! an emulated VISCA head over a `socat` pty pair. Debounce, hold and return-to-overview
//! come from the courtroom terminal's profile.

use std::time::{Duration, Instant};

use gavel_hil::media::{CameraSim, SimSpec};
use gavel_hil::serial_peers::{Emulator, PtyPair, ViscaHead};
use gavel_hil::{AgentSpec, Broker, Controller, start_agent_on_hardware, unique};

/// Who speaks when (channel, from ms, to ms), timed from the recorder's connection. The
/// channels are the courtroom terminal's seats: judge 0, clerk 1, plaintiff 2,
/// defendant 3, witness 4.
const SCRIPT: &str = "\
# The judge opens, with a breath at 3.0-3.3 s.
0 1000 3000
0 3300 6000
# The plaintiff answers; the defendant talks over them for 1.5 s.
2 7000 13000
3 9000 10500
# The defendant replies.
3 14000 19000
# The witness testifies; the judge talks over the witness for a second.
4 20000 25000
0 22000 23000
# Then silence: back to the overview after the profile's overview_after_ms.
";

#[tokio::test(flavor = "multi_thread")]
async fn a_recording_agent_frames_each_speaker_of_a_scripted_conversation_on_its_visca_camera() {
    let dir = tempfile::tempdir().expect("tmp");
    let started = Instant::now();
    let repo_profile = gavel_profile::load_named(&gavel_hil::profiles_dir(), "courtroom-terminal")
        .expect("courtroom-terminal profile");
    let follow = repo_profile
        .capabilities
        .follow
        .clone()
        .expect("follow settings");
    let preset = |seat: &str| follow.presets[seat];

    // The room: a PTZ head on a serial line, five seat microphones on an audio host.
    let pair = PtyPair::start(dir.path(), "ptz").expect("socat");
    let head = Emulator::start(&pair.device, ViscaHead::new(1));
    let script = dir.path().join("conversation.txt");
    std::fs::write(&script, SCRIPT).expect("script");
    let mics = CameraSim::start(
        dir.path(),
        "audio-host",
        SimSpec::scripted_microphones(5, &script),
        &dir.path().join("clips"),
    )
    .expect("audio host");

    // The terminal's own profile, pointed at this room: the PTZ head on the pty, and only
    // the seat microphones recorded (no cameras to simulate).
    let profiles = dir.path().join("profiles");
    std::fs::create_dir_all(&profiles).expect("profiles dir");
    let text = std::fs::read_to_string(gavel_hil::profiles_dir().join("courtroom-terminal.toml"))
        .expect("profile text");
    let mut doc: toml::Table = toml::from_str(&text).expect("toml");
    let caps = doc["capabilities"].as_table_mut().expect("capabilities");
    caps["ptz"]
        .as_table_mut()
        .expect("ptz")
        .insert("port".into(), pair.host.display().to_string().into());
    caps["record"]
        .as_table_mut()
        .expect("record")
        .insert("sources".into(), toml::Value::Array(vec!["mics".into()]));
    std::fs::write(
        profiles.join("courtroom-terminal.toml"),
        toml::to_string(&doc).expect("toml"),
    )
    .expect("write profile");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[media.mics]\nkind = \"rtsp\"\nurl = \"{}\"\nvideo = \"none\"\naudio = true\n",
            mics.url
        ),
    )
    .expect("agent config");

    let controller = Controller::start(dir.path(), &Broker::Embedded, None).expect("controller");
    let spec = AgentSpec::new(&unique("follow"), "courtroom-terminal");
    let agent = start_agent_on_hardware(
        dir.path(),
        &spec,
        &controller.mqtt,
        &profiles,
        &["--config", &config.display().to_string()],
    )
    .expect("agent");
    controller
        .wait_online(&spec.id, true, Duration::from_secs(20))
        .await
        .expect("online");
    let device = controller.device(&spec.id).await.expect("device");
    let capability = |name: &str| {
        device["capabilities"]
            .as_array()
            .expect("capabilities")
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap_or_default()
    };
    let cap = capability("follow");
    assert_eq!(cap["state"], "running", "{cap}");
    assert!(
        cap["detail"]
            .as_str()
            .is_some_and(|d| d.contains("VISCA camera 1")),
        "{cap}"
    );
    assert_eq!(capability("record")["state"], "running");
    // At start the camera goes to the overview.
    assert_eq!(head.with(|h| h.recalls.clone()), [follow.overview_preset]);

    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/devices/{}/commands", controller.url, spec.id);
    let ack: serde_json::Value = client
        .post(&url)
        .json(&serde_json::json!({
            "type": "start_recording", "hearing_id": "H-follow-1", "by": "clerk"
        }))
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert_eq!(ack["status"], "ok", "{ack}");
    let recording_since = Instant::now();

    // The conversation lasts 25 s; the overview follows 8 s of silence.
    let expected = [
        follow.overview_preset,
        preset("judge"),
        preset("plaintiff"),
        preset("defendant"),
        preset("witness"),
        follow.overview_preset,
    ];
    let deadline = Instant::now() + Duration::from_secs(45);
    while head.with(|h| h.recalls.len()) < expected.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A little longer, to catch any late swing.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (recalls, times) = head.with(|h| (h.recalls.clone(), h.recall_times.clone()));
    let offsets: Vec<String> = times
        .iter()
        .map(|t| {
            format!(
                "{:.1} s",
                t.saturating_duration_since(recording_since).as_secs_f64()
            )
        })
        .collect();
    println!("camera moves after the recording started: {recalls:?} at {offsets:?}");
    let ack: serde_json::Value = client
        .post(&url)
        .json(&serde_json::json!({"type": "stop_recording", "hearing_id": "H-follow-1"}))
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert_eq!(ack["status"], "ok", "{ack}");

    assert_eq!(
        recalls,
        expected,
        "presets the camera received (at {offsets:?}); agent log:\n{}",
        agent.log_text()
    );
    // No oscillation: the overlaps (defendant over the plaintiff, the judge over the
    // witness) moved nothing, and every move waited out the hold time.
    let hold = Duration::from_millis(u64::from(follow.hold_ms));
    for w in times.windows(2) {
        let gap = w[1].saturating_duration_since(w[0]);
        assert!(
            gap + Duration::from_millis(200) >= hold,
            "moves {gap:?} apart: {offsets:?}"
        );
    }

    // The metered seat microphones were recorded all the same: segments on the device
    // and a signed manifest that verifies.
    let hearing_dir = dir
        .path()
        .join(format!("agent-{}", spec.id))
        .join("recordings/H-follow-1");
    let mut report = None;
    let mut last = String::new();
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        match gavel_evidence::verify::verify(&hearing_dir, None) {
            Ok(r) if r.segments >= 3 && r.ok() => {
                report = Some(r);
                break;
            }
            Ok(r) => last = format!("{} segments, {:?}", r.segments, r.findings),
            Err(e) => last = e.to_string(),
        }
    }
    let report = report.unwrap_or_else(|| {
        panic!(
            "no verified recording of the seat microphones: {last}\nagent log:\n{}",
            agent.log_text()
        )
    });
    assert!(report.ok(), "{:?}", report.findings);
    println!(
        "recorded {} segments of the seat microphones; whole test: {:.1} s",
        report.segments,
        started.elapsed().as_secs_f64()
    );
}
