//! The command-centre video wall end to end: simulated RTSP cameras that each show one
//! solid colour, the controller, and a `command-wall` agent composing them. Frames are
//! taken from the wall's composed output (its frame file, a PPM rewritten several times a
//! second) and each tile's rectangle is checked for its camera's colour.
//!
//! - every layout (`3x3`, `2x2`, `1+5`, `1`) shows each camera in its place; a camera
//!   unplugged shows the "signal lost" slate in its tile while the others keep playing,
//!   and comes back when plugged in again;
//! - an urgent alarm for a room moves that room into the focus tile within 2 s
//!   (measured from the alarm's raise to the first composed frame showing it there); a
//!   camera with a sub-stream is shown from its sub-stream.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gavel_hil::media::{CameraSim, SimSpec};
use gavel_hil::{AgentSpec, Broker, Controller, Proc, start_agent_env, unique};
use serde_json::Value;

/// Output size: `3x3` tiles are 320x180, the cameras' size.
const W: u32 = 960;
const H: u32 = 540;
const COURT: &str = "wall-court";

/// Each camera's colour: far apart from each other, from black and from the slates.
const COLORS: [[u8; 3]; 9] = [
    [230, 40, 40],
    [40, 200, 40],
    [40, 40, 230],
    [230, 230, 40],
    [40, 220, 220],
    [220, 40, 220],
    [240, 240, 240],
    [255, 140, 0],
    [140, 90, 255],
];
/// The "signal lost" slate's background.
const LOST: [u8; 3] = [128, 0, 0];
/// The colour of room-1's sub-stream (a second simulated stream of that camera).
const SUB: [u8; 3] = [120, 60, 20];

fn rgb(c: [u8; 3]) -> u32 {
    (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2])
}

/// A tile's rectangle `(x, y, w, h)`.
type Rect = (u32, u32, u32, u32);

/// The tiles of each layout on a 960x540 output, the focus tile first, written out by
/// hand (independent of the wall's own geometry code).
fn expected_rects(layout: &str) -> Vec<Rect> {
    match layout {
        "1" => vec![(0, 0, 960, 540)],
        "2x2" => vec![
            (0, 0, 480, 270),
            (480, 0, 480, 270),
            (0, 270, 480, 270),
            (480, 270, 480, 270),
        ],
        "3x3" => (0..9)
            .map(|i| ((i % 3) * 320, (i / 3) * 180, 320, 180))
            .collect(),
        "1+5" => vec![
            (0, 0, 640, 360),
            (640, 0, 320, 180),
            (640, 180, 320, 180),
            (0, 360, 320, 180),
            (320, 360, 320, 180),
            (640, 360, 320, 180),
        ],
        other => panic!("no layout {other}"),
    }
}

/// One composed frame from the wall's frame file.
struct Frame {
    w: u32,
    h: u32,
    /// When the wall composed it (its clock: this machine's).
    composed_ms: i64,
    rgb: Vec<u8>,
}

fn read_frame(path: &Path) -> Option<Frame> {
    let bytes = std::fs::read(path).ok()?;
    let mut parts = bytes.splitn(5, |b| *b == b'\n');
    if parts.next()? != b"P6" {
        return None;
    }
    let comment = std::str::from_utf8(parts.next()?).ok()?;
    let composed_ms = comment
        .split("composed_unix_ms=")
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    let size = std::str::from_utf8(parts.next()?).ok()?;
    let (w, h) = size.split_once(' ')?;
    let (w, h): (u32, u32) = (w.parse().ok()?, h.trim().parse().ok()?);
    let _max = parts.next()?;
    let rgb = parts.next()?.to_vec();
    (rgb.len() == (w * h * 3) as usize).then_some(Frame {
        w,
        h,
        composed_ms,
        rgb,
    })
}

impl Frame {
    fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = ((y * self.w + x) * 3) as usize;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    /// Share of sample points in the inner 80% of `r` within 50 of `color` on every
    /// channel (the label and the slate text cover some).
    fn share(&self, r: Rect, color: [u8; 3]) -> f64 {
        let (mut hit, mut all) = (0, 0);
        for i in 0..10 {
            for j in 0..8 {
                let x = r.0 + r.2 / 10 + i * (r.2 * 8 / 10) / 9;
                let y = r.1 + r.3 / 10 + j * (r.3 * 8 / 10) / 7;
                let p = self.pixel(x.min(self.w - 1), y.min(self.h - 1));
                all += 1;
                if p.iter().zip(color).all(|(a, b)| a.abs_diff(b) <= 50) {
                    hit += 1;
                }
            }
        }
        f64::from(hit) / f64::from(all)
    }

    /// The colour at the middle of the upper third of `r` (for messages).
    fn sample(&self, r: Rect) -> [u8; 3] {
        self.pixel(r.0 + r.2 / 2, r.1 + r.3 / 3)
    }

    fn shows(&self, r: Rect, color: [u8; 3]) -> bool {
        self.share(r, color) >= 0.75
    }
}

/// The wall under test: controller, cameras, wall agent.
struct Rig {
    dir: tempfile::TempDir,
    controller: Controller,
    cameras: Vec<CameraSim>,
    _wall: Proc,
    wall_id: String,
    frames: PathBuf,
}

fn room(i: usize) -> String {
    format!("room-{}", i + 1)
}

impl Rig {
    fn start(cameras: usize, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let controller = Controller::start_with_env(dir.path(), &Broker::Embedded, None, env)
            .expect("controller");
        let clips = std::env::temp_dir().join("gavel-clips");
        let cams: Vec<CameraSim> = (0..cameras)
            .map(|i| {
                CameraSim::start(
                    dir.path(),
                    &format!("cam-{}", i + 1),
                    SimSpec::solid(320, 180, 10, rgb(COLORS[i])),
                    &clips,
                )
                .expect("camera")
            })
            .collect();
        let wall_id = unique("wall");
        let mut spec = AgentSpec::new(&wall_id, "command-wall");
        spec.court = COURT.into();
        spec.room = "command-centre".into();
        let frames = dir.path().join("wall-frame.ppm");
        let frames_s = frames.display().to_string();
        let wall = start_agent_env(
            dir.path(),
            &spec,
            &controller.mqtt,
            &[],
            &[
                ("GAVEL_WALL_FRAMES", frames_s.as_str()),
                ("GAVEL_WALL_SIZE", "960x540"),
                ("GAVEL_WALL_FPS", "10"),
                ("GAVEL_WALL_FRAMES_FPS", "10"),
            ],
        )
        .expect("wall agent");
        Self {
            dir,
            controller,
            cameras: cams,
            _wall: wall,
            wall_id,
            frames,
        }
    }

    /// `gavelctl wall layout` with every camera as a source, in order.
    fn set_sources(&self, layout: &str) {
        self.set_sources_sub(layout, None);
    }

    /// Like [`Rig::set_sources`], with a sub-stream for room-1.
    fn set_sources_sub(&self, layout: &str, sub: Option<&str>) {
        let mut args: Vec<String> = vec![
            "wall".into(),
            "layout".into(),
            self.wall_id.clone(),
            layout.into(),
        ];
        for (i, cam) in self.cameras.iter().enumerate() {
            args.push("--source".into());
            let mut source = format!("{COURT}/{}={}", room(i), cam.url);
            if let (0, Some(sub)) = (i, sub) {
                source.push_str(&format!(",sub={sub}"));
            }
            args.push(source);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, out, err) = self.controller.gavelctl(&args);
        assert!(ok, "{err}");
        assert!(out.contains(&format!("layout {layout}")), "{out}");
    }

    fn set_layout(&self, layout: &str) {
        let (ok, out, err) = self
            .controller
            .gavelctl(&["wall", "layout", &self.wall_id, layout]);
        assert!(ok, "{err}");
        assert!(out.contains(&format!("layout {layout}")), "{out}");
    }

    /// Waits until a composed frame shows `want[i]` in tile `i` of `layout`; returns the
    /// frame.
    fn wait_tiles(&self, what: &str, layout: &str, want: &[[u8; 3]], timeout: Duration) -> Frame {
        let rects = expected_rects(layout);
        let start = Instant::now();
        let mut last = String::from("no frame yet");
        loop {
            if let Some(f) = read_frame(&self.frames) {
                assert_eq!((f.w, f.h), (W, H));
                let wrong: Vec<String> = want
                    .iter()
                    .zip(&rects)
                    .enumerate()
                    .filter(|(_, (c, r))| !f.shows(**r, **c))
                    .map(|(i, (c, r))| {
                        format!(
                            "tile {i} {r:?}: want {c:?}, {:.0}% match, sample {:?}",
                            f.share(*r, *c) * 100.0,
                            f.sample(*r)
                        )
                    })
                    .collect();
                if wrong.is_empty() {
                    return f;
                }
                last = wrong.join("; ");
            }
            assert!(
                start.elapsed() < timeout,
                "{what}: not shown within {timeout:?}: {last}\nwall state: {}",
                std::fs::read_to_string(
                    self.dir
                        .path()
                        .join(format!("agent-{}/wall.json", self.wall_id))
                )
                .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn every_layout_shows_each_cameras_pattern_in_its_tile_and_a_lost_camera_shows_the_slate() {
    let mut rig = Rig::start(9, &[]);
    rig.set_sources("3x3");
    let t = Instant::now();
    rig.wait_tiles("3x3", "3x3", &COLORS, Duration::from_secs(30));
    // A bad source is refused by the controller, naming the field; the wall keeps its
    // configuration.
    let (ok, _, err) = rig.controller.gavelctl(&[
        "wall",
        "layout",
        &rig.wall_id,
        "2x2",
        "--source",
        &format!("{COURT}/room-1=http://not-rtsp/x"),
    ]);
    assert!(!ok && err.contains("sources[0].url"), "{err}");
    println!(
        "3x3: all nine cameras in place {:.1} s after the layout was set",
        t.elapsed().as_secs_f64()
    );
    for layout in ["2x2", "1+5", "1"] {
        let t = Instant::now();
        rig.set_layout(layout);
        let n = expected_rects(layout).len();
        rig.wait_tiles(layout, layout, &COLORS[..n], Duration::from_secs(10));
        println!(
            "{layout}: the first {n} cameras in place {:.2} s after the layout was set",
            t.elapsed().as_secs_f64()
        );
    }

    // A camera unplugged: its tile shows the slate; the others keep playing.
    rig.set_layout("2x2");
    rig.wait_tiles("2x2 again", "2x2", &COLORS[..4], Duration::from_secs(10));
    rig.cameras[1].unplug();
    let t = Instant::now();
    let lost = [COLORS[0], LOST, COLORS[2], COLORS[3]];
    rig.wait_tiles("the lost slate", "2x2", &lost, Duration::from_secs(10));
    println!(
        "camera 2 unplugged: its tile shows the lost slate after {:.2} s, the other three keep playing",
        t.elapsed().as_secs_f64()
    );
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(
            rig.dir
                .path()
                .join(format!("agent-{}/wall.json", rig.wall_id)),
        )
        .expect("wall state"),
    )
    .expect("state JSON");
    let tile = &state["tiles"][1];
    assert_eq!(tile["source"], format!("{COURT}/room-2"));
    assert_eq!(tile["health"], "lost", "{state}");
    std::thread::sleep(Duration::from_secs(2));
    rig.cameras[1].replug().expect("replug");
    let t = Instant::now();
    rig.wait_tiles("recovery", "2x2", &COLORS[..4], Duration::from_secs(20));
    println!(
        "camera 2 plugged back in: its tile plays again after {:.2} s",
        t.elapsed().as_secs_f64()
    );
}

#[test]
fn an_urgent_alarm_moves_its_room_into_the_focus_tile_within_2_s() {
    let rig = Rig::start(6, &[("GAVEL_ALARM_GRACE_S", "2")]);
    // room-1's camera also has a sub-stream: the wall pulls that one.
    let sub = CameraSim::start(
        rig.dir.path(),
        "cam-1-sub",
        SimSpec::solid(320, 180, 10, rgb(SUB)),
        &std::env::temp_dir().join("gavel-clips"),
    )
    .expect("sub-stream");
    rig.set_sources_sub("1+5", Some(&sub.url));
    let mut colors = COLORS;
    colors[0] = SUB;
    rig.wait_tiles("1+5", "1+5", &colors[..6], Duration::from_secs(30));

    // A hearing in room-6 from now on, which nothing records: after the 2 s grace the
    // engine raises `not_recording` for room-6, an urgent alarm.
    let now = time::OffsetDateTime::now_utc();
    let fmt = &time::format_description::well_known::Rfc3339;
    let start = now.format(fmt).expect("ts");
    let end = (now + time::Duration::minutes(30)).format(fmt).expect("ts");
    let csv = rig.dir.path().join("hearings.csv");
    std::fs::write(
        &csv,
        format!(
            "case_number,court,room,start,end,judge,parties\n(2026)wall-1,{COURT},room-6,{start},{end},王法官,plaintiff:张三\n"
        ),
    )
    .expect("csv");
    let (ok, _, err) = rig
        .controller
        .gavelctl(&["hearings", "import", &csv.to_string_lossy()]);
    assert!(ok, "{err}");

    // Watch the composed output for room-6's colour in the focus tile while waiting for
    // the alarm.
    let focus = expected_rects("1+5")[0];
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut shown: Option<i64> = None;
    let mut raised: Option<(i64, Value)> = None;
    let mut last_alarm_poll = Instant::now() - Duration::from_secs(1);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    while shown.is_none() || raised.is_none() {
        assert!(
            Instant::now() < deadline,
            "no focus switch within 20 s: alarm {raised:?}, frame {shown:?}"
        );
        if shown.is_none()
            && let Some(f) = read_frame(&rig.frames)
            && f.shows(focus, COLORS[5])
        {
            shown = Some(f.composed_ms);
        }
        if raised.is_none() && last_alarm_poll.elapsed() >= Duration::from_millis(200) {
            last_alarm_poll = Instant::now();
            let alarms = rt
                .block_on(rig.controller.get("/api/v1/alarms"))
                .expect("alarms")
                .unwrap_or_default();
            if let Some(a) = alarms
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["room"] == "room-6" && a["kind"] == "not_recording")
            {
                let at =
                    time::OffsetDateTime::parse(a["raised_at"].as_str().expect("raised_at"), fmt)
                        .expect("raised_at");
                raised = Some(((at.unix_timestamp_nanos() / 1_000_000) as i64, a.clone()));
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (raised_ms, alarm) = raised.expect("alarm");
    let shown_ms = shown.expect("frame");
    let latency_ms = shown_ms - raised_ms;
    println!(
        "focus switch: alarm {} (level {}) raised, room-6 in the focus tile of a composed frame {latency_ms} ms later",
        alarm["kind"], alarm["level"]
    );
    assert!(latency_ms >= 0, "room-6 was in focus before its alarm");
    // The bound.
    assert!(latency_ms <= 2000, "focus switch took {latency_ms} ms");

    // The whole 1+5 wall: room-6 in focus, the others in their order in the small tiles.
    let want = [
        colors[5], colors[0], colors[1], colors[2], colors[3], colors[4],
    ];
    rig.wait_tiles(
        "1+5 with room-6 in focus",
        "1+5",
        &want,
        Duration::from_secs(5),
    );
    let (ok, out, err) = rig
        .controller
        .gavelctl(&["--json", "wall", "show", &rig.wall_id]);
    assert!(ok, "{err}");
    let wall: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(wall["wall"]["focus"]["room"], "room-6", "{wall}");
    assert_eq!(wall["wall"]["focus"]["alarm"], alarm["id"], "{wall}");

    // A room that is not on the wall cannot be focused.
    let (ok, _, err) = rig.controller.gavelctl(&[
        "wall",
        "focus",
        &rig.wall_id,
        "room-99",
        "--court",
        COURT,
        "--by",
        "duty.li",
    ]);
    assert!(!ok && err.contains("not on wall"), "{err}");

    // An operator moves the focus back by hand.
    let (ok, _, err) =
        rig.controller
            .gavelctl(&["wall", "focus", &rig.wall_id, "room-2", "--by", "duty.li"]);
    assert!(ok, "{err}");
    let want = [
        colors[1], colors[0], colors[2], colors[3], colors[4], colors[5],
    ];
    rig.wait_tiles(
        "1+5 with room-2 in focus",
        "1+5",
        &want,
        Duration::from_secs(5),
    );
}

/// A patrol finding moves its room into the focus tile within 2 s: room-4's courtroom
/// terminal (its MQTT traffic, scripted: a birth placing it in room-4, then an urgent
/// `signal_lost` finding as the patrol analyzers send it) -> the controller's alarm engine
/// (a level-3 `patrol` alarm with the room) -> the focus rule -> the wall. Measured from
/// the finding's publication to the first composed frame with room-4 in the focus tile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patrol_finding_moves_its_room_into_the_focus_tile_within_2_s() {
    use gavel_hil::device_mqtt::DeviceMqtt;
    use gavel_protocol::Channel;
    let rig = Rig::start(6, &[]);
    rig.set_sources("1+5");
    rig.wait_tiles("1+5", "1+5", &COLORS[..6], Duration::from_secs(30));

    let device = unique("room-4-terminal");
    let dev = DeviceMqtt::listen(&rig.controller.mqtt, &device).await;
    let fmt = &time::format_description::well_known::Rfc3339;
    let now = || time::OffsetDateTime::now_utc().format(fmt).expect("ts");
    let boot = uuid::Uuid::new_v4().to_string();
    let fixture = |name: &str| -> Value {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../protocol/fixtures")
            .join(name);
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
    };
    let mut birth = fixture("birth.json");
    birth["ts"] = now().into();
    birth["boot_id"] = boot.clone().into();
    birth["hostname"] = device.clone().into();
    birth["placement"] = serde_json::json!({"court": COURT, "room": "room-4"});
    dev.publish(
        Channel::Birth,
        true,
        serde_json::to_vec(&birth).expect("json"),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while rig
        .controller
        .get(&format!("/api/v1/devices/{device}"))
        .await
        .ok()
        .flatten()
        .is_none_or(|d| d["room"] != "room-4")
    {
        assert!(
            Instant::now() < deadline,
            "the terminal's birth was not registered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut finding = fixture("event-finding.json");
    finding["ts"] = now().into();
    finding["boot_id"] = boot.into();
    finding["seq"] = 0.into();
    finding["id"] = "finding-cam-overview-signal_lost-1".into();
    finding["finding"] = "signal_lost".into();
    finding["severity"] = "urgent".into();
    finding["source"] = "cam-overview".into();
    finding["started_at"] = now().into();
    finding.as_object_mut().expect("object").remove("recording");
    let sent = Instant::now();
    dev.publish(
        Channel::Event,
        false,
        serde_json::to_vec(&finding).expect("json"),
    )
    .await;

    let focus = expected_rects("1+5")[0];
    let latency = loop {
        if let Some(f) = read_frame(&rig.frames)
            && f.shows(focus, COLORS[3])
        {
            break sent.elapsed();
        }
        assert!(
            sent.elapsed() < Duration::from_secs(20),
            "room-4 never reached the focus tile after its finding"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!(
        "focus switch: patrol finding published, room-4 in the focus tile of a composed frame {} ms later",
        latency.as_millis()
    );
    assert!(
        latency <= Duration::from_secs(2),
        "focus switch took {latency:?}"
    );
    let alarms = rig
        .controller
        .get("/api/v1/alarms")
        .await
        .expect("alarms")
        .expect("json");
    assert!(
        alarms.as_array().is_some_and(|a| a
            .iter()
            .any(|a| a["kind"] == "patrol" && a["room"] == "room-4" && a["level"] == 3)),
        "{alarms:#}"
    );
}
