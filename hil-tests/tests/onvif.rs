//! ONVIF cameras end to end against stub cameras serving recorded SOAP responses:
//! discovery, configuration into the device configuration, clock check, PTZ presets,
//! and clean errors for an unreachable camera and for wrong credentials.

use std::time::Duration;

use gavel_devices::onvif::{self, Camera, CameraConfig, CameraError, Credentials};
use gavel_hil::onvif_stub::{OnvifStub, StubCamera};
use time::OffsetDateTime;

const WAIT: Duration = Duration::from_millis(500);
const TOLERANCE: Duration = Duration::from_secs(5);

fn creds(cam: &StubCamera) -> Credentials {
    Credentials {
        user: cam.user.clone(),
        password: cam.password.clone(),
    }
}

#[tokio::test]
async fn two_stub_cameras_are_discovered_and_configured_end_to_end() {
    let bench = StubCamera::new("Bench Camera", "DS-BENCH-0001");
    let mut overview = StubCamera::new("Overview Camera", "DS-OVERVIEW-0002");
    overview.clock_skew_s = 90;
    let a = OnvifStub::start(bench.clone()).await.expect("stub a");
    let b = OnvifStub::start(overview.clone()).await.expect("stub b");

    // Discovery: both answer a probe, each once, with its device service URL.
    let found = onvif::discover(&[a.discovery, b.discovery], false, WAIT)
        .await
        .expect("discovery");
    assert_eq!(found.len(), 2, "{found:?}");
    let by_endpoint = |e: &str| found.iter().find(|d| d.endpoint == e).expect("found");
    assert_eq!(
        by_endpoint(&a.endpoint).xaddrs,
        std::slice::from_ref(&a.device_url)
    );
    assert_eq!(
        by_endpoint(&b.endpoint).name().as_deref(),
        Some("Overview Camera")
    );

    // Configuration from the discovered addresses, written as the device configuration.
    let now = OffsetDateTime::now_utc();
    let mut configs = Vec::new();
    for (d, cam) in [
        (by_endpoint(&a.endpoint), &bench),
        (by_endpoint(&b.endpoint), &overview),
    ] {
        let c = onvif::configure(&d.xaddrs[0], &creds(cam), now, TOLERANCE)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        configs.push(c);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("cameras.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&configs).expect("json")).expect("write");
    let stored: Vec<CameraConfig> =
        serde_json::from_slice(&std::fs::read(&file).expect("read")).expect("parse");
    assert_eq!(stored, configs);

    let [ca, cb] = &stored[..] else {
        panic!("two cameras")
    };
    assert_eq!(ca.serial, "DS-BENCH-0001");
    assert_eq!(cb.serial, "DS-OVERVIEW-0002");
    assert_eq!(ca.manufacturer, "HIKVISION");
    let names: Vec<&str> = ca.profiles.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["mainStream", "subStream"]);
    assert_eq!(
        ca.profiles[0].uri,
        "rtsp://127.0.0.1:554/Streaming/Channels/101?transportmode=unicast&profile=Profile_1"
    );
    assert!(
        ca.profiles[1].uri.contains("Channels/102"),
        "{:?}",
        ca.profiles[1]
    );
    assert!(ca.profiles[0].ptz && !ca.profiles[1].ptz);
    assert!(
        ca.ptz_url
            .as_deref()
            .is_some_and(|u| u.ends_with("/onvif/PTZ"))
    );

    // Clock: the bench camera is on time, the overview camera 90 s ahead.
    assert!(ca.clock.in_tolerance, "{:?}", ca.clock);
    assert!(!cb.clock.in_tolerance, "{:?}", cb.clock);
    assert!((85..=95).contains(&cb.clock.offset_s), "{:?}", cb.clock);

    // PTZ: save a preset and move to one, through the stored configuration.
    let ptz = Camera::new(cb, &creds(&overview), &cb.profiles[0].token).expect("ptz");
    let token = ptz
        .set_preset("judge", Some("2"))
        .await
        .expect("set preset");
    assert_eq!(token, "2");
    ptz.goto_preset("2").await.expect("goto");
    ptz.goto_preset("1").await.expect("goto");
    assert_eq!(b.gotos(), ["2", "1"]);
    let presets = ptz.presets().await.expect("presets");
    assert!(
        presets.contains(&("2".to_owned(), "judge".to_owned())),
        "{presets:?}"
    );
    assert!(a.gotos().is_empty(), "the other camera did not move");
    assert!(
        b.calls().iter().all(|c| c.authorized),
        "every call carried valid credentials: {:?}",
        b.calls()
    );
}

#[tokio::test]
async fn an_unreachable_camera_gives_a_clean_error_naming_it() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let url = format!("http://127.0.0.1:{port}/onvif/device_service");
    let cam = StubCamera::new("gone", "0");
    let err = onvif::configure(&url, &creds(&cam), OffsetDateTime::now_utc(), TOLERANCE)
        .await
        .expect_err("nothing listens");
    assert!(matches!(err, CameraError::Unreachable { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&url) && text.contains("unreachable"),
        "{text}"
    );

    // Discovery of an address where nothing answers finds nothing, without error.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let found = onvif::discover(&[silent.local_addr().expect("addr")], false, WAIT)
        .await
        .expect("discovery");
    assert!(found.is_empty());
}

#[tokio::test]
async fn wrong_credentials_give_a_clean_error_naming_camera_and_user() {
    let cam = StubCamera::new("Bench Camera", "DS-BENCH-0001");
    let stub = OnvifStub::start(cam.clone()).await.expect("stub");
    let wrong = Credentials {
        user: "admin".into(),
        password: "not-the-password".into(),
    };
    let err = onvif::configure(
        &stub.device_url,
        &wrong,
        OffsetDateTime::now_utc(),
        TOLERANCE,
    )
    .await
    .expect_err("refused");
    assert!(matches!(err, CameraError::Unauthorized { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&stub.device_url), "{text}");
    assert!(
        text.contains("credentials refused for user \"admin\""),
        "{text}"
    );
    assert!(!text.contains("not-the-password"), "{text}");
    // The clock was read (allowed without credentials); the first protected call failed.
    let ops: Vec<String> = stub.calls().into_iter().map(|c| c.operation).collect();
    assert_eq!(ops, ["GetSystemDateAndTime", "GetDeviceInformation"]);

    let unknown_user = Credentials {
        user: "intruder".into(),
        password: cam.password.clone(),
    };
    let err = onvif::configure(
        &stub.device_url,
        &unknown_user,
        OffsetDateTime::now_utc(),
        TOLERANCE,
    )
    .await
    .expect_err("refused");
    assert!(err.to_string().contains("\"intruder\""), "{err}");
}

/// The technician's command on the device: `gavel-agent cameras discover` finds the stub
/// cameras, `gavel-agent cameras configure` assigns them to the profile's sources in the
/// agent config (comments kept) and keeps their details; an unreachable camera or a wrong
/// password fails with a clear error and writes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn gavel_agent_cameras_writes_discovered_cameras_into_the_device_configuration() {
    let judge = StubCamera::new("Judge Camera", "DS-JUDGE-0003");
    let mut overview = StubCamera::new("Overview Camera", "DS-OVERVIEW-0004");
    overview.clock_skew_s = 90;
    let a = OnvifStub::start(judge.clone()).await.expect("stub a");
    let b = OnvifStub::start(overview.clone()).await.expect("stub b");
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "# room 101 terminal\nsimulate_hardware = false\n").expect("config");
    let data = dir.path().join("data");
    let agent = |args: &[String], password: &str| {
        let out = std::process::Command::new(gavel_hil::bin("gavel-agent"))
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .env("GAVEL_CAMERA_PASSWORD", password)
            .output()
            .expect("gavel-agent runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();

    let (ok, out, err) = agent(
        &s(&[
            "cameras",
            "discover",
            "--probe",
            &a.discovery.to_string(),
            "--probe",
            &b.discovery.to_string(),
            "--wait",
            "1",
        ]),
        "",
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("Judge Camera") && out.contains(&a.device_url),
        "{out}"
    );
    assert!(
        out.contains("Overview Camera") && out.contains(&b.device_url),
        "{out}"
    );

    // Wrong password: a clear error, nothing written.
    let configure = s(&[
        "cameras",
        "configure",
        "--camera",
        &format!("cam-judge={}", a.device_url),
        "--camera",
        &format!("cam-overview={}", b.device_url),
        "--user",
        &judge.user,
    ]);
    let (ok, _, err) = agent(&configure, "wrong");
    assert!(!ok);
    assert!(err.contains("credentials refused"), "{err}");
    assert!(!data.join("cameras.json").exists());
    assert_eq!(
        std::fs::read_to_string(&config).expect("config"),
        "# room 101 terminal\nsimulate_hardware = false\n"
    );

    let (ok, out, err) = agent(&configure, &judge.password);
    assert!(ok, "{err}");
    assert!(out.contains("cam-overview: HIKVISION"), "{out}");
    assert!(
        out.contains("clock OFF by +"),
        "the overview camera's clock is reported: {out}"
    );
    let written = std::fs::read_to_string(&config).expect("config");
    assert!(written.starts_with("# room 101 terminal\n"), "{written}");
    let parsed = gavel_agent_config(&written);
    assert_eq!(
        parsed["media"]["cam-judge"]["url"].as_str(),
        Some(
            "rtsp://admin:Court%232026@127.0.0.1:554/Streaming/Channels/101?transportmode=unicast&profile=Profile_1"
        ),
        "{written}"
    );
    assert_eq!(
        parsed["media"]["cam-overview"]["kind"].as_str(),
        Some("rtsp")
    );
    let details: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("cameras.json")).expect("details"))
            .expect("json");
    assert_eq!(details["cam-judge"]["serial"], "DS-JUDGE-0003");
    assert_eq!(details["cam-overview"]["clock"]["in_tolerance"], false);

    // PTZ presets through the configured camera, by source.
    let preset = |action: &[&str]| {
        let mut a = s(&[
            "cameras",
            "preset",
            "--source",
            "cam-overview",
            "--user",
            "admin",
        ]);
        a.extend(s(action));
        a
    };
    let (ok, out, err) = agent(&preset(&["set", "judge", "--token", "2"]), &judge.password);
    assert!(ok, "{err}");
    assert!(out.contains("saved as 2"), "{out}");
    let (ok, _, err) = agent(&preset(&["goto", "2"]), &judge.password);
    assert!(ok, "{err}");
    assert_eq!(b.gotos(), ["2"], "the overview camera moved");
    assert!(a.gotos().is_empty(), "the judge camera did not");
    let (ok, out, err) = agent(&preset(&["ls"]), &judge.password);
    assert!(ok, "{err}");
    assert!(out.contains("2\tjudge"), "{out}");
    let (ok, _, err) = agent(
        &s(&[
            "cameras", "preset", "--source", "cam-nope", "--user", "admin", "ls",
        ]),
        &judge.password,
    );
    assert!(!ok);
    assert!(
        err.contains("no camera configured for source \"cam-nope\""),
        "{err}"
    );

    // An unreachable camera: named, and the config is not touched again.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let gone = format!("http://127.0.0.1:{port}/onvif/device_service");
    let (ok, _, err) = agent(
        &s(&[
            "cameras",
            "configure",
            "--camera",
            &format!("cam-judge={gone}"),
            "--user",
            "admin",
        ]),
        &judge.password,
    );
    assert!(!ok);
    assert!(err.contains(&gone) && err.contains("unreachable"), "{err}");
    assert_eq!(std::fs::read_to_string(&config).expect("config"), written);
}

fn gavel_agent_config(text: &str) -> toml::Value {
    toml::from_str(text).expect("the written config is TOML")
}
