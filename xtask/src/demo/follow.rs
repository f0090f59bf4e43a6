//! Speaker-follow and live transcription in one courtroom of the demo: room-101's seat
//! microphones are a simulated audio host (`gavel-camera-sim --seat-script`) playing a
//! looping four-seat conversation of English court sentences spoken by espeak-ng;
//! room-101's terminal records them, its level meter feeds speaker-follow, and its
//! transcriber (whisper tiny.en, `crate::demo_transcript`) writes the lines. The demo
//! narrates the PTZ preset changes from the terminal's log. The PTZ head is simulated
//! (the agent runs with `--simulate-hardware`), the levels and the speech are real.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::{Child2, say};

/// The room whose camera follows its speakers.
pub(super) const ROOM: &str = "room-101";

/// Who speaks when (channel, from ms, to ms) and says what, looped: judge 0, plaintiff 2,
/// defendant 3 (who talks over the plaintiff once), witness 4.
pub(crate) const SCRIPT: &[(u32, u64, u64, &str)] = &[
    (0, 1000, 6000, "The court is now in session."),
    (2, 7000, 12000, "The plaintiff may call the first witness."),
    (3, 9000, 10000, "Objection."),
    (3, 13000, 18000, "The defendant pleads not guilty."),
    (4, 19000, 24000, "I signed the contract in March."),
];

/// Speaks `text` into a 16 kHz mono WAV file with espeak-ng and sox.
fn speak(text: &str, out: &Path) -> Result<(), String> {
    let raw = out.with_extension("raw.wav");
    let ok = |c: &mut Command, what: &str| match c.output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "{what}: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("{what}: {e} (apt-get install espeak-ng sox)")),
    };
    ok(
        Command::new("espeak-ng")
            .args(["-v", "en-us", "-s", "150", "-w"])
            .arg(&raw)
            .arg(text),
        "espeak-ng",
    )?;
    ok(
        Command::new("sox")
            .arg(&raw)
            .args(["-r", "16000", "-c", "1", "-b", "16"])
            .arg(out),
        "sox",
    )?;
    let _ = std::fs::remove_file(&raw);
    Ok(())
}

/// The audio host's script: each span with its sentence's recording, or (without
/// espeak-ng) a tone, which still drives speaker-follow.
fn script(dir: &Path) -> String {
    let speech = dir.join("speech");
    let _ = std::fs::create_dir_all(&speech);
    let mut out = String::new();
    for (i, (channel, from, to, text)) in SCRIPT.iter().enumerate() {
        let wav = speech.join(format!("line-{i}.wav"));
        match speak(text, &wav) {
            Ok(()) => out.push_str(&format!("{channel} {from} {to} {}\n", wav.display())),
            Err(e) => {
                println!("    (a tone instead of speech on seat channel {channel}: {e})");
                out.push_str(&format!("{channel} {from} {to}\n"));
            }
        }
    }
    out
}

/// The running audio host and where to read the terminal's log.
pub(super) struct Follow {
    _audio_host: Child2,
    log: PathBuf,
    read: u64,
}

/// Starts the audio host and writes the terminal's agent config
/// (`<dir>/config/room-101-terminal.toml`, picked up by `Court::start_agent`).
pub(super) fn setup(dir: &Path, bin: &Path) -> Result<Follow, String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("finding a free port: {e}"))?
        .port();
    let script = dir.join("conversation.txt");
    std::fs::write(&script, self::script(dir)).map_err(|e| format!("{}: {e}", script.display()))?;
    let mut cmd = Command::new(bin.join("gavel-camera-sim"));
    cmd.args([
        "--port",
        &port.to_string(),
        "--no-video",
        "--audio-channels",
        "5",
    ])
    .arg("--seat-script")
    .arg(&script)
    .arg("--seat-script-loop");
    let sim_log = dir.join("logs").join(format!("{ROOM}-seat-mics.log"));
    let sim = Child2::spawn("seat microphones", cmd, &sim_log)?;
    let start = Instant::now();
    while !std::fs::read_to_string(&sim_log).is_ok_and(|t| t.contains("READY")) {
        if start.elapsed() > Duration::from_secs(15) {
            return Err(format!(
                "the simulated seat microphones did not start; see {}",
                sim_log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let config = dir.join("config");
    std::fs::create_dir_all(&config).map_err(|e| format!("{}: {e}", config.display()))?;
    let file = config.join(format!("{ROOM}-terminal.toml"));
    std::fs::write(
        &file,
        format!(
            "# The seat microphones of {ROOM}: a simulated audio host.\n[media.mics]\nkind = \"rtsp\"\nurl = \"rtsp://127.0.0.1:{port}/main\"\nvideo = \"none\"\naudio = true\n"
        ),
    )
    .map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(Follow {
        _audio_host: sim,
        log: dir.join("logs").join(format!("{ROOM}-terminal.log")),
        read: 0,
    })
}

/// The value of `key=` in a log line (ANSI colours already stripped).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(&format!("{key}="))? + key.len() + 1;
    line[at..].split_whitespace().next()
}

/// `line` without ANSI escape sequences.
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Follow {
    /// Narrates the camera moves the terminal logged since the last call.
    pub(super) fn narrate(&mut self, t0: Instant) {
        let Ok(mut f) = std::fs::File::open(&self.log) else {
            return;
        };
        let mut text = String::new();
        if f.seek(SeekFrom::Start(self.read)).is_err() || f.read_to_string(&mut text).is_err() {
            return;
        }
        // Only whole lines; the rest is read next time.
        let Some(end) = text.rfind('\n') else { return };
        self.read += end as u64 + 1;
        for line in text[..end].lines().map(plain) {
            if !line.contains("speaker-follow: camera moved") {
                continue;
            }
            let shot = field(&line, "shot").unwrap_or("?");
            let preset = field(&line, "preset").unwrap_or("?");
            say(
                t0,
                &format!("{ROOM}: speaker-follow framed the {shot} (PTZ preset {preset})"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_coloured_log_line_gives_its_shot_and_preset() {
        let line = "\u{1b}[32m INFO\u{1b}[0m \u{1b}[2mgavel_agent::follow\u{1b}[0m: speaker-follow: camera moved \u{1b}[3mshot\u{1b}[0m\u{1b}[2m=\u{1b}[0mplaintiff \u{1b}[3mpreset\u{1b}[0m\u{1b}[2m=\u{1b}[0m3";
        let p = plain(line);
        assert_eq!(field(&p, "shot"), Some("plaintiff"));
        assert_eq!(field(&p, "preset"), Some("3"));
    }
}
