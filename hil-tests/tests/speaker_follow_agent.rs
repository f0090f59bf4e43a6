//! Speaker-follow in a real agent: the courtroom terminal records a room whose seat
//! microphones are an audio host (`gavel-camera-sim`) playing a scripted four-seat
//! conversation; the recorder's level meter feeds the agent's follow core, which drives
//! an emulated VISCA head over a `socat` pty pair. Debounce, hold and return-to-overview
//! come from the courtroom terminal's profile.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gavel_hil::media::{CameraSim, SimSpec};
use gavel_hil::onvif_stub::{OnvifStub, StubCamera};
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

/// A copy of the courtroom terminal's profile in `dir/profiles` whose PTZ camera is `ptz`
/// and which records only the seat microphones; returns the folder.
fn terminal_profile(dir: &Path, ptz: toml::Table) -> PathBuf {
    let profiles = dir.join("profiles");
    std::fs::create_dir_all(&profiles).expect("profiles dir");
    let text = std::fs::read_to_string(gavel_hil::profiles_dir().join("courtroom-terminal.toml"))
        .expect("profile text");
    let mut doc: toml::Table = toml::from_str(&text).expect("toml");
    let caps = doc["capabilities"].as_table_mut().expect("capabilities");
    caps.insert("ptz".into(), toml::Value::Table(ptz));
    caps["record"]
        .as_table_mut()
        .expect("record")
        .insert("sources".into(), toml::Value::Array(vec!["mics".into()]));
    std::fs::write(
        profiles.join("courtroom-terminal.toml"),
        toml::to_string(&doc).expect("toml"),
    )
    .expect("write profile");
    profiles
}

/// Sends a recording command for `hearing` through the controller; asserts it is acked.
async fn recording(controller: &Controller, device: &str, kind: &str, hearing: &str) {
    let ack = controller
        .command(
            device,
            serde_json::json!({"type": kind, "hearing_id": hearing, "by": "clerk"}),
        )
        .await
        .expect(kind);
    assert_eq!(ack["status"], "ok", "{kind}: {ack}");
}

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
    let mut ptz = toml::Table::new();
    ptz.insert("control".into(), "visca".into());
    ptz.insert("port".into(), pair.host.display().to_string().into());
    let profiles = terminal_profile(dir.path(), ptz);
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
    let cap = controller.capability(&spec.id, "follow").await;
    assert_eq!(cap["state"], "running", "{cap}");
    assert!(
        cap["detail"]
            .as_str()
            .is_some_and(|d| d.contains("VISCA camera 1")),
        "{cap}"
    );
    assert_eq!(
        controller.capability(&spec.id, "record").await["state"],
        "running"
    );
    // At start the camera goes to the overview.
    assert_eq!(head.with(|h| h.recalls.clone()), [follow.overview_preset]);

    recording(&controller, &spec.id, "start_recording", "H-follow-1").await;
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
    recording(&controller, &spec.id, "stop_recording", "H-follow-1").await;

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

/// The same wiring with an ONVIF camera: the PTZ presets of the overview camera (an ONVIF
/// stub) configured by `gavel-agent cameras configure`, its credentials taken from the
/// recorded URL, the preset numbers sent as preset tokens.
#[tokio::test(flavor = "multi_thread")]
async fn a_recording_agent_drives_an_onvif_camera_to_the_speakers_preset() {
    let dir = tempfile::tempdir().expect("tmp");
    let cam = StubCamera::new("Overview Camera", "DS-OVERVIEW-0005");
    let stub = OnvifStub::start(cam.clone()).await.expect("stub");
    let script = dir.path().join("conversation.txt");
    // The judge, then the plaintiff.
    std::fs::write(&script, "0 1000 4000\n2 4500 8000\n").expect("script");
    let mics = CameraSim::start(
        dir.path(),
        "audio-host",
        SimSpec::scripted_microphones(5, &script),
        &dir.path().join("clips"),
    )
    .expect("audio host");
    let mut ptz = toml::Table::new();
    ptz.insert("control".into(), "onvif".into());
    ptz.insert("source".into(), "cam-overview".into());
    let profiles = terminal_profile(dir.path(), ptz);

    let spec = AgentSpec::new(&unique("follow-onvif"), "courtroom-terminal");
    let data = dir.path().join(format!("agent-{}", spec.id));
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[media.mics]\nkind = \"rtsp\"\nurl = \"{}\"\nvideo = \"none\"\naudio = true\n",
            mics.url
        ),
    )
    .expect("agent config");
    let out = std::process::Command::new(gavel_hil::bin("gavel-agent"))
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .args(["cameras", "configure", "--user", &cam.user, "--camera"])
        .arg(format!("cam-overview={}", stub.device_url))
        .env("GAVEL_CAMERA_PASSWORD", &cam.password)
        .output()
        .expect("gavel-agent cameras configure");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let controller = Controller::start(dir.path(), &Broker::Embedded, None).expect("controller");
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
    let cap = controller.capability(&spec.id, "follow").await;
    assert_eq!(cap["state"], "running", "{cap}");
    assert!(
        cap["detail"]
            .as_str()
            .is_some_and(|d| d.contains("ONVIF camera of cam-overview")),
        "{cap}"
    );

    recording(&controller, &spec.id, "start_recording", "H-follow-2").await;
    let deadline = Instant::now() + Duration::from_secs(25);
    while stub.gotos().len() < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    recording(&controller, &spec.id, "stop_recording", "H-follow-2").await;
    // Overview, judge, plaintiff: the profile's presets as tokens, with the credentials
    // of the recorded URL (only authorised calls count).
    assert_eq!(
        stub.gotos(),
        ["0", "1", "3"],
        "agent log:\n{}",
        agent.log_text()
    );
}
