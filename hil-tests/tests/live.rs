//! Live re-serve: viewers share one camera connection and need credentials.

use std::process::{Command, Stdio};
use std::time::Duration;

use gavel_hil::media::{CameraSim, SimSpec, wait_for};
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
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-rtsp_transport",
            "tcp",
            "-select_streams",
            "v:0",
        ])
        .args([
            "-show_entries",
            "stream=codec_name,width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(format!("rtsp://inspector:s3cret@127.0.0.1:{port}/cam/sub"))
        .output()
        .expect("ffprobe runs");
    assert_eq!(
        String::from_utf8_lossy(&probe.stdout).trim(),
        "h264,640,360",
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
}
