//! Live re-serve: viewers share one camera connection and need credentials.

use std::process::{Command, Stdio};
use std::time::Duration;

use gavel_hil::media::{CameraSim, SimSpec, ffprobe_video, wait_for};
use gavel_hil::{Proc, bin, free_port};

fn watch(url: &str, seconds: u32) -> std::process::Child {
    Command::new("ffmpeg")
        .args(["-v", "error", "-rtsp_transport", "tcp", "-i", url, "-t"])
        .arg(seconds.to_string())
        .args(["-c", "copy", "-f", "null", "-"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg runs")
}

#[test]
fn two_viewers_share_one_camera_connection_and_a_viewer_without_credentials_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let clips = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("clips");
    let cam = CameraSim::start(dir.path(), "cam", SimSpec::camera_1080p(), &clips).expect("cam");
    let port = free_port();
    let mut cmd = Command::new(bin("gavel-live"));
    cmd.args(["--port", &port.to_string(), "--viewer", "inspector:s3cret"])
        .arg("--source")
        .arg(format!("cam={}", cam.url));
    let live = Proc::spawn("gavel-live", cmd, dir.path().join("live.log")).expect("spawn");
    wait_for(&live, "READY", Duration::from_secs(10)).expect("serving");

    let url = format!("rtsp://inspector:s3cret@127.0.0.1:{port}/cam/main");
    let a = watch(&url, 4);
    std::thread::sleep(Duration::from_millis(500));
    let b = watch(&url, 3);
    for viewer in [a, b] {
        let out = viewer.wait_with_output().expect("ffmpeg ends");
        assert!(
            out.status.success(),
            "viewer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let log = std::fs::read_to_string(dir.path().join("cam.log")).expect("camera log");
    assert_eq!(
        log.matches("client connected").count(),
        1,
        "two viewers, one camera connection:\n{log}"
    );

    let anonymous = watch(&format!("rtsp://127.0.0.1:{port}/cam/main"), 1)
        .wait_with_output()
        .expect("ffmpeg ends");
    assert!(!anonymous.status.success(), "no credentials, no picture");
    let wrong = watch(
        &format!("rtsp://inspector:guess@127.0.0.1:{port}/cam/main"),
        1,
    )
    .wait_with_output()
    .expect("ffmpeg ends");
    assert!(!wrong.status.success(), "wrong password refused");

    // The camera has no sub-stream of its own: a 640x360 transcode is served.
    let sub = format!("rtsp://inspector:s3cret@127.0.0.1:{port}/cam/sub");
    assert_eq!(
        ffprobe_video(&sub).expect("the sub-stream probes"),
        ("h264".to_owned(), 640, 360)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_terminal_serves_its_camera_live_and_the_controller_relays_its_hls_with_its_own_account()
{
    use gavel_hil::{AgentSpec, Broker, Controller, start_agent_env, unique};

    let dir = tempfile::tempdir().expect("tmp");
    let clips = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("clips");
    let cam = CameraSim::start(dir.path(), "cam", SimSpec::camera_1080p(), &clips).expect("cam");
    let controller = Controller::start_with_env(
        dir.path(),
        &Broker::Embedded,
        None,
        &[
            ("GAVEL_LIVE_USER", "gavel-relay"),
            ("GAVEL_LIVE_PASSWORD", "relay-pw"),
        ],
    )
    .expect("controller");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[media.cam-overview]\nkind = \"rtsp\"\nurl = \"{}\"\n",
            cam.url
        ),
    )
    .expect("config");
    let spec = AgentSpec::new(&unique("live"), "courtroom-terminal");
    let _agent = start_agent_env(
        dir.path(),
        &spec,
        &controller.mqtt,
        &["--config", &config.to_string_lossy()],
        &[(
            "GAVEL_LIVE_VIEWERS",
            "inspector:s3cret,gavel-relay:relay-pw",
        )],
    )
    .expect("agent");
    controller
        .wait_online(&spec.id, true, Duration::from_secs(20))
        .await
        .expect("online");

    // The birth names the endpoints; the capability runs.
    let device = controller.device(&spec.id).await.expect("device");
    let stream = device["capabilities"]
        .as_array()
        .expect("capabilities")
        .iter()
        .find(|c| c["name"] == "stream")
        .cloned()
        .expect("stream capability");
    assert_eq!(stream["state"], "running", "{stream}");
    let rtsp = device["live"]["rtsp"]
        .as_str()
        .expect("rtsp endpoint")
        .to_owned();
    let hls = device["live"]["hls"]
        .as_str()
        .expect("hls endpoint")
        .to_owned();
    assert_eq!(
        device["live"]["sources"],
        serde_json::json!(["cam-overview"])
    );

    // RTSP: two viewers of the main stream share one camera connection. (The terminal's
    // patrol holds a connection of its own to the camera: count what the viewers add.)
    let connections = || {
        std::fs::read_to_string(dir.path().join("cam.log"))
            .expect("camera log")
            .matches("client connected")
            .count()
    };
    std::thread::sleep(Duration::from_secs(3));
    let before = connections();
    let main = format!(
        "{}/cam-overview/main",
        rtsp.replace("rtsp://", "rtsp://inspector:s3cret@")
    );
    let a = watch(&main, 4);
    std::thread::sleep(Duration::from_millis(500));
    let b = watch(&main, 3);
    for viewer in [a, b] {
        let out = viewer.wait_with_output().expect("ffmpeg ends");
        assert!(
            out.status.success(),
            "viewer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        connections() - before,
        1,
        "two viewers, one more camera connection (and no HLS writer before anyone asks)"
    );
    let anonymous = watch(&format!("{rtsp}/cam-overview/main"), 1)
        .wait_with_output()
        .expect("ffmpeg ends");
    assert!(!anonymous.status.success(), "no credentials, no picture");

    // HLS on the device wants an account too.
    let http = reqwest::Client::new();
    let refused = http
        .get(format!("{hls}/cam-overview/index.m3u8"))
        .send()
        .await
        .expect("request");
    assert_eq!(refused.status(), reqwest::StatusCode::UNAUTHORIZED);

    // Through the controller, which signs in with its own account: the playlist (the
    // writer starts on this first request) and a segment a player can decode.
    let relay = format!(
        "{}/api/v1/devices/{}/live/cam-overview",
        controller.url, spec.id
    );
    let playlist = http
        .get(format!("{relay}/index.m3u8"))
        .send()
        .await
        .expect("playlist");
    assert!(playlist.status().is_success(), "{}", playlist.status());
    let playlist = playlist.text().await.expect("text");
    assert!(playlist.starts_with("#EXTM3U"), "{playlist}");
    let segment = playlist
        .lines()
        .find(|l| l.ends_with(".ts"))
        .expect("a segment in the playlist")
        .to_owned();
    let bytes = http
        .get(format!("{relay}/{segment}"))
        .send()
        .await
        .expect("segment")
        .bytes()
        .await
        .expect("body");
    let file = dir.path().join("relayed.ts");
    std::fs::write(&file, &bytes).expect("write");
    assert_eq!(
        ffprobe_video(&file.to_string_lossy()).expect("a decodable sub-stream segment"),
        ("h264".to_owned(), 640, 360)
    );

    // Sources the device does not stream, and names that would leave the folder.
    for (path, why) in [
        (
            format!(
                "{}/api/v1/devices/{}/live/cam-judge/index.m3u8",
                controller.url, spec.id
            ),
            "cam-judge",
        ),
        (format!("{relay}/..%2Fstore.redb"), "not a stream file"),
    ] {
        let r = http.get(&path).send().await.expect("request");
        assert_eq!(r.status(), reqwest::StatusCode::NOT_FOUND, "{path}");
        let text = r.text().await.unwrap_or_default();
        assert!(text.contains(why), "{path}: {text}");
    }
}
