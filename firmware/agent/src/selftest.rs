//! The device self-test a technician runs at provisioning (`gavelctl provision --wait`) and
//! later (`gavelctl selftest ID`): broker link, clock against the controller's, each camera
//! answering, each microphone carrying signal, the data disk. Blocking: run it on
//! `spawn_blocking`.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::{Duration, Instant};

use gavel_protocol::{CheckStatus, SelfCheck};
use gavel_record::SourceInput;
use time::OffsetDateTime;

/// Clock offsets above this fail the check.
pub const CLOCK_LIMIT_S: f64 = 2.0;
/// Free space below this share of the disk warns; below a tenth of it fails.
pub const DISK_WARN_FRACTION: f64 = 0.10;
/// A microphone whose loudest level stays below this has no signal.
pub const SILENCE_DBFS: f64 = -70.0;

/// What the self-test looks at.
pub struct Input {
    pub device: String,
    pub tls: bool,
    /// The command's timestamp: the controller's clock when it sent it.
    pub controller_ts: OffsetDateTime,
    pub received_at: OffsetDateTime,
    pub sources: Vec<(String, SourceInput)>,
    pub data_dir: std::path::PathBuf,
}

fn check(name: impl Into<String>, status: CheckStatus, detail: impl Into<String>) -> SelfCheck {
    SelfCheck {
        name: name.into(),
        status,
        detail: detail.into(),
    }
}

/// Runs every check.
pub fn run(input: &Input) -> Vec<SelfCheck> {
    let mut out = vec![
        check(
            "broker",
            if input.tls {
                CheckStatus::Pass
            } else {
                CheckStatus::Warn
            },
            if input.tls {
                format!("connected over mutual TLS as {}", input.device)
            } else {
                format!(
                    "connected as {} over plain MQTT: enroll the device for TLS",
                    input.device
                )
            },
        ),
        clock(input.controller_ts, input.received_at),
    ];
    for (id, source) in &input.sources {
        out.extend(source_checks(id, source));
    }
    out.push(disk(&input.data_dir));
    out
}

/// The device clock against the controller's (the command's send time; the link's delay
/// counts against the device, so the check is conservative).
pub fn clock(controller: OffsetDateTime, device: OffsetDateTime) -> SelfCheck {
    let offset = (device - controller).as_seconds_f64();
    let status = if offset.abs() <= CLOCK_LIMIT_S {
        CheckStatus::Pass
    } else {
        CheckStatus::Fail
    };
    let detail = if status == CheckStatus::Pass {
        format!("{:+.2} s from the controller's clock", offset)
    } else {
        format!(
            "{:+.2} s from the controller's clock (limit {CLOCK_LIMIT_S} s): check NTP",
            offset
        )
    };
    check("clock", status, detail)
}

fn source_checks(id: &str, source: &SourceInput) -> Vec<SelfCheck> {
    match source {
        SourceInput::Rtsp { url, audio, .. } => {
            let kind = if *audio { "audio-host" } else { "camera" };
            let mut v = vec![rtsp_answers(&format!("{kind}:{id}"), url)];
            if *audio {
                v.push(microphone(
                    id,
                    &format!(
                        "uridecodebin uri={} caps=audio/x-raw expose-all-streams=false",
                        quote(url)
                    ),
                ));
            }
            v
        }
        SourceInput::V4l2 { device } => vec![if Path::new(device).exists() {
            check(
                format!("camera:{id}"),
                CheckStatus::Pass,
                format!("{device} present"),
            )
        } else {
            check(
                format!("camera:{id}"),
                CheckStatus::Fail,
                format!("{device} missing: is the camera plugged in?"),
            )
        }],
        SourceInput::Alsa { device, .. } => {
            vec![microphone(id, &format!("alsasrc device={}", quote(device)))]
        }
        SourceInput::Test { .. } => vec![check(
            format!("camera:{id}"),
            CheckStatus::Skip,
            "simulated test pattern",
        )],
    }
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Hides the password of a URL for reports.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Does the camera answer an RTSP DESCRIBE? (200, or 401 when it wants credentials we do
/// not send here: reachable either way, said so.)
pub fn rtsp_answers(name: &str, url: &str) -> SelfCheck {
    let shown = redact(url);
    let parsed = match url::Url::parse(url) {
        Ok(u) => u,
        Err(e) => return check(name, CheckStatus::Fail, format!("{shown}: not a URL ({e})")),
    };
    let host = parsed.host_str().unwrap_or_default().to_string();
    let port = parsed.port().unwrap_or(554);
    let addr = match (host.as_str(), port)
        .to_socket_addrs()
        .map(|mut a| a.next())
    {
        Ok(Some(a)) => a,
        _ => {
            return check(
                name,
                CheckStatus::Fail,
                format!("{shown}: cannot resolve {host}"),
            );
        }
    };
    let started = Instant::now();
    let answer = (|| -> std::io::Result<String> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut bare = parsed.clone();
        let _ = bare.set_username("");
        let _ = bare.set_password(None);
        write!(
            s,
            "DESCRIBE {bare} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\nUser-Agent: gavel-selftest\r\n\r\n"
        )?;
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    })();
    match answer {
        Ok(text) => {
            let line = text.lines().next().unwrap_or_default().to_string();
            let ms = started.elapsed().as_millis();
            if line.starts_with("RTSP/1.0 200") {
                check(
                    name,
                    CheckStatus::Pass,
                    format!("{shown} answered DESCRIBE in {ms} ms"),
                )
            } else if line.starts_with("RTSP/1.0 401") {
                check(
                    name,
                    CheckStatus::Pass,
                    format!("{shown} answered in {ms} ms (asks for credentials)"),
                )
            } else {
                check(
                    name,
                    CheckStatus::Fail,
                    format!("{shown} answered {line:?}"),
                )
            }
        }
        Err(e) => check(name, CheckStatus::Fail, format!("{shown}: {e}")),
    }
}

/// Listens for two seconds through `src` (a GStreamer source description producing raw
/// audio) and reports the loudest level.
fn microphone(id: &str, src: &str) -> SelfCheck {
    let name = format!("microphone:{id}");
    match loudest_dbfs(src, Duration::from_secs(2)) {
        Ok(db) if db > SILENCE_DBFS => check(
            name,
            CheckStatus::Pass,
            format!("signal, loudest {db:.1} dBFS"),
        ),
        Ok(db) => check(
            name,
            CheckStatus::Fail,
            format!("no signal: loudest {db:.1} dBFS over 2 s (muted or unplugged?)"),
        ),
        Err(e) => check(name, CheckStatus::Fail, e),
    }
}

fn loudest_dbfs(src: &str, listen: Duration) -> Result<f64, String> {
    use gstreamer as gst;
    use gstreamer::prelude::*;
    gst::init().map_err(|e| format!("GStreamer: {e}"))?;
    let pipeline = gst::parse::launch(&format!(
        "{src} ! queue ! audioconvert ! level interval=100000000 post-messages=true ! fakesink sync=false"
    ))
    .map_err(|e| format!("cannot build the audio probe: {e}"))?;
    let bus = pipeline.bus().ok_or("no bus")?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| format!("cannot start the audio probe: {e}"))?;
    let deadline = Instant::now() + listen + Duration::from_secs(3);
    let mut first: Option<Instant> = None;
    let mut loudest = f64::NEG_INFINITY;
    let result = loop {
        let now = Instant::now();
        if now > deadline || first.is_some_and(|f| now - f > listen) {
            break if first.is_some() {
                Ok(loudest)
            } else {
                Err("no audio arrived within 5 s".to_string())
            };
        }
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(200)) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Error(e) => break Err(format!("audio probe: {}", e.error())),
            gst::MessageView::Element(e) => {
                if let Some(s) = e.structure()
                    && s.name() == "level"
                    && let Ok(peaks) = s.get::<gst::glib::ValueArray>("peak")
                {
                    first.get_or_insert(now);
                    for v in peaks.iter() {
                        if let Ok(db) = v.get::<f64>() {
                            loudest = loudest.max(db);
                        }
                    }
                }
            }
            _ => {}
        }
    };
    let _ = pipeline.set_state(gst::State::Null);
    result
}

/// Free space and a write + fsync probe on the data folder.
pub fn disk(dir: &Path) -> SelfCheck {
    if let Err(e) = std::fs::create_dir_all(dir) {
        return check("disk", CheckStatus::Fail, format!("{}: {e}", dir.display()));
    }
    let probe = dir.join(".selftest-probe");
    let writable = std::fs::File::create(&probe)
        .and_then(|mut f| {
            f.write_all(b"gavel self-test")?;
            f.sync_all()
        })
        .and_then(|()| std::fs::remove_file(&probe));
    if let Err(e) = writable {
        return check(
            "disk",
            CheckStatus::Fail,
            format!("{} is not writable: {e}", dir.display()),
        );
    }
    let (free, total) = match statvfs(dir) {
        Some(x) => x,
        None => return check("disk", CheckStatus::Warn, "writable; free space unknown"),
    };
    let fraction = if total > 0 {
        free as f64 / total as f64
    } else {
        0.0
    };
    let gb = |b: u64| b as f64 / 1e9;
    let detail = format!(
        "{:.1} GB free of {:.1} GB ({:.0} %), writable",
        gb(free),
        gb(total),
        fraction * 100.0
    );
    let status = if fraction < DISK_WARN_FRACTION / 10.0 {
        CheckStatus::Fail
    } else if fraction < DISK_WARN_FRACTION {
        CheckStatus::Warn
    } else {
        CheckStatus::Pass
    };
    check("disk", status, detail)
}

fn statvfs(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid NUL-terminated string and `s` a writable statvfs.
    if unsafe { libc::statvfs(path.as_ptr(), &mut s) } != 0 {
        return None;
    }
    let frsize = s.f_frsize as u64;
    Some((s.f_bavail as u64 * frsize, s.f_blocks as u64 * frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: f64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time")
            + time::Duration::seconds_f64(s)
    }

    #[test]
    fn a_clock_within_two_seconds_passes_and_beyond_fails_with_the_offset() {
        assert_eq!(clock(t(0.0), t(0.4)).status, CheckStatus::Pass);
        let late = clock(t(0.0), t(-3.5));
        assert_eq!(late.status, CheckStatus::Fail);
        assert!(
            late.detail.contains("-3.50 s") && late.detail.contains("NTP"),
            "{}",
            late.detail
        );
    }

    #[test]
    fn an_unreachable_camera_fails_naming_it_without_its_password() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        let c = rtsp_answers(
            "camera:x",
            &format!("rtsp://admin:secret@127.0.0.1:{port}/main"),
        );
        assert_eq!(c.status, CheckStatus::Fail);
        assert!(
            c.detail.contains("127.0.0.1") && !c.detail.contains("secret"),
            "{}",
            c.detail
        );
    }

    #[test]
    fn a_writable_data_folder_passes_or_warns_with_its_free_space() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = disk(dir.path());
        assert_ne!(c.status, CheckStatus::Fail, "{}", c.detail);
        assert!(c.detail.contains("GB free"), "{}", c.detail);
    }

    #[test]
    fn a_silent_microphone_fails_and_a_tone_passes() {
        let silent = microphone(
            "mic",
            "audiotestsrc wave=silence is-live=true ! audio/x-raw,rate=16000",
        );
        assert_eq!(silent.status, CheckStatus::Fail, "{}", silent.detail);
        let tone = microphone(
            "mic",
            "audiotestsrc wave=sine volume=0.3 is-live=true ! audio/x-raw,rate=16000",
        );
        assert_eq!(tone.status, CheckStatus::Pass, "{}", tone.detail);
    }
}
