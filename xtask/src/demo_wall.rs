//! The demo's command-centre video wall: four simulated RTSP cameras (one per courtroom,
//! each a solid colour, `gavel-camera-sim`), `wall-1` composing them in a 2x2 layout set
//! with `gavelctl wall layout`, and a hearing in `room-103`, a room whose terminal is
//! missing: nothing records it, the engine raises `not_recording` after the grace, and the
//! focus rule moves room-103 into wall-1's focus tile. The narration follows the
//! controller's wall configuration and the wall's own state file (`wall.json`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::demo::{COURT, Child2, say};

/// The wall device.
pub const WALL: &str = "wall-1";
/// The rooms on the wall, with their cameras' colours.
const ROOMS: [(&str, &str); 4] = [
    ("room-101", "0xe62828"),
    ("room-102", "0x28c828"),
    ("tribunal-xixi", "0x2828e6"),
    ("room-103", "0xe6e628"),
];
/// The room whose terminal is missing: its hearing is not recorded.
const PROBLEM_ROOM: &str = "room-103";

/// What the narration remembers.
#[derive(Default)]
pub struct WallWatch {
    focus: Option<String>,
    live: usize,
    pub cameras: Vec<Child2>,
}

fn free_port() -> Option<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()
        .map(|a| a.port())
}

/// Starts the cameras, sets wall-1's layout and imports room-103's hearing.
pub fn start(
    bin: &Path,
    dir: &Path,
    gavelctl: impl Fn(&[&str]) -> Result<String, String>,
    t0: Instant,
) -> Result<WallWatch, String> {
    let mut watch = WallWatch::default();
    let mut sources = Vec::new();
    for (room, color) in ROOMS {
        let port = free_port().ok_or("no free port for a camera")?;
        let log = dir.join("logs").join(format!("camera-{room}.log"));
        let mut cmd = Command::new(bin.join("gavel-camera-sim"));
        cmd.args(["--port", &port.to_string(), "--resolution", "320x180"])
            .args(["--fps", "10", "--color", color, "--clip-cache"])
            .arg(dir.join("clips"));
        let child = Child2::spawn(&format!("camera {room}"), cmd, &log)?;
        let start = Instant::now();
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("READY")
        {
            if start.elapsed() > Duration::from_secs(30) {
                return Err(format!(
                    "camera {room} did not start; see {}",
                    log.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        watch.cameras.push(child);
        sources.push(format!("{COURT}/{room}=rtsp://127.0.0.1:{port}/main"));
    }
    let mut args = vec!["wall", "layout", WALL, "2x2"];
    for s in &sources {
        args.extend(["--source", s.as_str()]);
    }
    gavelctl(&args)?;
    say(
        t0,
        "command centre: wall-1 composes the four courtrooms' cameras in a 2x2 layout (gavelctl wall layout wall-1 2x2 --source ...)",
    );
    // room-103's hearing starts now; the room has no terminal, so nothing records it.
    let now = time::OffsetDateTime::now_utc();
    let fmt = &time::format_description::well_known::Rfc3339;
    let at = |s: i64| {
        (now + time::Duration::seconds(s))
            .replace_nanosecond(0)
            .ok()
            .and_then(|t| t.format(fmt).ok())
            .unwrap_or_default()
    };
    let csv = dir.join("hearings-room-103.csv");
    std::fs::write(
        &csv,
        format!(
            "case_number,court,room,start,end,judge,parties\n\
             (2026)浙0106民初1420号,{COURT},{PROBLEM_ROOM},{},{},赵法官,plaintiff:冯某; defendant:陈某\n",
            at(0),
            at(60 * 60)
        ),
    )
    .map_err(|e| e.to_string())?;
    gavelctl(&["hearings", "import", &csv.to_string_lossy()])?;
    say(
        t0,
        "clerk: a hearing in room-103 starts now, but the room's terminal is missing: nobody records it",
    );
    Ok(watch)
}

fn state_file(dir: &Path) -> PathBuf {
    dir.join("agents").join(WALL).join("wall.json")
}

/// Narrates focus changes (from the controller) and what the wall composes (its state
/// file); called about once a second.
pub fn narrate(
    watch: &mut WallWatch,
    dir: &Path,
    json: impl Fn(&[&str]) -> Result<Value, String>,
    t0: Instant,
) {
    let Ok(wall) = json(&["wall", "show", WALL]) else {
        return;
    };
    let focus = wall["wall"]["focus"]["room"].as_str().map(str::to_owned);
    let state_path = state_file(dir);
    let state: Value = std::fs::read_to_string(&state_path)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(Value::Null);
    let live = state["tiles"]
        .as_array()
        .map_or(0, |t| t.iter().filter(|t| t["health"] == "live").count());
    if live != watch.live {
        say(
            t0,
            &format!(
                "wall-1 composes {live} live tile(s) ({}x{}, labels court · room)",
                state["width"], state["height"]
            ),
        );
        watch.live = live;
    }
    if focus == watch.focus {
        return;
    }
    let Some(room) = focus.clone() else {
        watch.focus = None;
        return;
    };
    // Narrated once the wall applied it: its state file shows the room in tile 0.
    let applied = state["tiles"][0]["source"] == format!("{COURT}/{room}");
    if !applied {
        return;
    }
    let reason = wall["wall"]["focus"]["reason"].as_str().unwrap_or("?");
    say(
        t0,
        &format!(
            "command centre: {reason} -> wall-1 moves {room} into its focus tile (its wall.json shows {room} in tile 0)"
        ),
    );
    watch.focus = focus;
}

/// The smoke check: the wall composes at least one live tile.
pub fn check(watch: &WallWatch) -> Result<(), String> {
    if watch.live == 0 {
        return Err("wall-1 composes no live tile".into());
    }
    Ok(())
}
