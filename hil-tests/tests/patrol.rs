//! Hearing patrol through the whole system, watched in the inspectors' console in headless
//! Chromium: a courtroom terminal records a hearing from a simulated camera; the console
//! shows the live hearing's tile playing the device's live sub-stream (HLS through the
//! controller), and a snapshot comes on request; the camera is unplugged,
//! the terminal's patrol finds the lost signal and the controller raises an urgent alarm
//! of the room; the inspector acknowledges it, adds a note and opens the recording at its
//! time; the court's patrol report counts it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fantoccini::Locator;
use gavel_hil::media::{CameraSim, SimSpec};
use gavel_hil::{AgentSpec, Broker, ChromeDriver, Controller, start_agent_with, unique};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

fn clips() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("clips")
}

async fn wait_for(client: &fantoccini::Client, css: &str, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if client.find(Locator::Css(css)).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_shows_a_live_hearing_and_an_unplugged_cameras_finding_acknowledged_and_opened()
{
    let dir = tempfile::tempdir().expect("tmp");
    let controller = Controller::start(dir.path(), &Broker::Embedded, None).expect("controller");
    let mut cam = CameraSim::start(
        dir.path(),
        "cam",
        SimSpec::camera_1080p().textured(),
        &clips(),
    )
    .expect("camera");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[media.cam-overview]\nkind = \"rtsp\"\nurl = \"{}\"\n",
            cam.url
        ),
    )
    .expect("config");
    let mut spec = AgentSpec::new(&unique("term"), "courtroom-terminal");
    spec.room = unique("room");
    let _agent = start_agent_with(
        dir.path(),
        &spec,
        &controller.mqtt,
        &["--config", &config.to_string_lossy()],
    )
    .expect("agent");
    controller
        .wait_online(&spec.id, true, Duration::from_secs(20))
        .await
        .expect("online");

    // A hearing now; the clerk starts recording it.
    let now = OffsetDateTime::now_utc();
    let csv = dir.path().join("h.csv");
    std::fs::write(
        &csv,
        format!(
            "case_number,court,room,start,end,judge,parties\n(2026)patrol-1,test-court,{},{},{},王法官,plaintiff:张三\n",
            spec.room,
            (now + time::Duration::seconds(1)).format(&Rfc3339).expect("ts"),
            (now + time::Duration::seconds(300)).format(&Rfc3339).expect("ts"),
        ),
    )
    .expect("csv");
    let (ok, _, err) = controller.gavelctl(&["hearings", "import", &csv.to_string_lossy()]);
    assert!(ok, "{err}");
    let id = controller.hearing_id("(2026)patrol-1");
    let ack = controller
        .command(
            &spec.id,
            json!({"type": "start_recording", "hearing_id": id, "by": "clerk"}),
        )
        .await
        .expect("start_recording");
    assert_eq!(ack["status"], "ok", "{ack}");

    let driver = ChromeDriver::start().expect("chromedriver");
    let client = driver.session().await.expect("session");
    client
        .goto(&format!("{}/patrol", controller.url))
        .await
        .expect("open the console");
    let tile = format!(".tile[data-hearing=\"{id}\"]");
    assert!(
        wait_for(&client, &tile, Duration::from_secs(20)).await,
        "no tile for the live hearing"
    );
    // The tile plays the terminal's live sub-stream: HLS written on demand by the device
    // and relayed by the controller, decoded by Chromium (640x360 transcode).
    let mut width = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(40) {
        let w = client
            .execute(
                &format!("var v = document.querySelector('{tile} video.feed'); return v && v.readyState >= 2 ? v.videoWidth : 0;"),
                vec![],
            )
            .await
            .expect("script");
        width = w.as_u64().unwrap_or(0);
        if width > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "live tile playing {width} px wide after {:.1} s",
        start.elapsed().as_secs_f64()
    );
    assert_eq!(
        width, 640,
        "the live tile plays the device's HLS sub-stream"
    );
    let advanced = client
        .execute(
            &format!("var v = document.querySelector('{tile} video.feed'); var t = v.currentTime; return new Promise(function (ok) {{ setTimeout(function () {{ ok(v.currentTime - t); }}, 3000); }});"),
            vec![],
        )
        .await
        .expect("script");
    let state = client
        .execute(
            &format!("var v = document.querySelector('{tile} video.feed'); return {{paused: v.paused, t: v.currentTime, ready: v.readyState, net: v.networkState, err: v.error && (v.error.code + ' ' + v.error.message), src: v.currentSrc, n: document.querySelectorAll('video.feed').length}};"),
            vec![],
        )
        .await
        .expect("script");
    assert!(
        advanced.as_f64().unwrap_or(0.0) > 1.0,
        "the live video moves: {advanced} {state}"
    );
    // A still picture on request (consoles without video, reports).
    let jpeg = reqwest::get(format!(
        "{}/api/v1/devices/{}/snapshot.jpg",
        controller.url, spec.id
    ))
    .await
    .expect("snapshot")
    .bytes()
    .await
    .expect("body");
    assert!(jpeg.starts_with(&[0xff, 0xd8]), "a JPEG snapshot");

    // Recording runs a few seconds, then the camera is unplugged.
    tokio::time::sleep(Duration::from_secs(4)).await;
    cam.unplug();
    let unplugged = Instant::now();
    let alarm = ".alarm[data-finding-type=\"signal_lost\"][data-level=\"3\"]";
    assert!(
        wait_for(&client, alarm, Duration::from_secs(40)).await,
        "no urgent signal-lost finding in the feed"
    );
    println!(
        "signal-lost finding in the console {:.1} s after the unplug",
        unplugged.elapsed().as_secs_f64()
    );
    // The controller's alarm is urgent and names the room (the video wall follows these).
    let alarms = controller
        .get("/api/v1/alarms")
        .await
        .expect("alarms")
        .expect("json");
    let a = alarms
        .as_array()
        .expect("list")
        .iter()
        .find(|a| a["kind"] == "patrol" && a["finding"]["kind"] == "signal_lost")
        .expect("patrol alarm")
        .clone();
    assert_eq!(a["level"], 3, "{a:#}");
    assert_eq!(a["room"], spec.room.as_str(), "{a:#}");
    assert_eq!(a["finding"]["source"], "cam-overview", "{a:#}");
    assert_eq!(a["finding"]["hearing_id"], id.as_str(), "{a:#}");

    // Acknowledge in the console.
    client
        .find(Locator::Css(&format!("{alarm} button.ack")))
        .await
        .expect("ack button")
        .click()
        .await
        .expect("click ack");
    assert!(
        wait_for(
            &client,
            ".alarm[data-finding-type=\"signal_lost\"][data-acked=\"true\"]",
            Duration::from_secs(10)
        )
        .await,
        "the acknowledgement does not show"
    );
    // A note for the management office.
    client
        .find(Locator::Css(
            ".alarm[data-finding-type=\"signal_lost\"] input.note-text",
        ))
        .await
        .expect("note field")
        .send_keys("called the clerk of the room")
        .await
        .expect("type the note");
    client
        .find(Locator::Css(
            ".alarm[data-finding-type=\"signal_lost\"] button.note",
        ))
        .await
        .expect("note button")
        .click()
        .await
        .expect("add the note");
    let mut noted = false;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) && !noted {
        if let Ok(n) = client
            .find(Locator::Css(
                ".alarm[data-finding-type=\"signal_lost\"] .notes",
            ))
            .await
        {
            noted = n
                .text()
                .await
                .unwrap_or_default()
                .contains("called the clerk");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(noted, "the note does not show");
    // Open the recording at the finding's time.
    client
        .find(Locator::Css(
            ".alarm[data-finding-type=\"signal_lost\"] a.rec",
        ))
        .await
        .expect("recording link")
        .click()
        .await
        .expect("click recording");
    let rec = format!("#recording[data-hearing=\"{id}\"] tr[data-segment-source]");
    assert!(
        wait_for(&client, &rec, Duration::from_secs(10)).await,
        "the recording at the finding's time did not open"
    );
    let text = client
        .find(Locator::Css(&format!("#recording[data-hearing=\"{id}\"]")))
        .await
        .expect("recording")
        .text()
        .await
        .expect("text");
    println!("recording view: {}", text.replace('\n', " | "));
    assert!(text.contains(".ts"), "{text}");
    client.close().await.expect("close");

    // The court's patrol report counts the finding for the room, in a table and in CSV.
    // The court day of the hearing (courts keep +08:00), so a run across midnight counts it.
    let day = (now + time::Duration::hours(8)).date().to_string();
    let (ok, out, err) =
        controller.gavelctl(&["patrol", "report", "--court", "test-court", "--date", &day]);
    assert!(ok, "{err}");
    println!("{out}");
    assert!(
        out.contains("signal_lost") && out.contains(spec.room.as_str()),
        "{out}"
    );
    assert!(out.contains("1 hearings patrolled"), "{out}");
    let (ok, csv, err) = controller.gavelctl(&[
        "patrol",
        "report",
        "--court",
        "test-court",
        "--period",
        "week",
        "--date",
        &day,
        "--format",
        "csv",
    ]);
    assert!(ok, "{err}");
    assert!(
        csv.lines()
            .any(|l| l.starts_with("findings,") && l.contains("signal_lost")),
        "{csv}"
    );
}
