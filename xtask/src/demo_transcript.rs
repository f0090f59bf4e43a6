//! Transcripts in the demo. Until the terminals' own speech recognition runs in the demo,
//! a SIMULATED transcriber (device `room-101-asr-sim`, said so in the narration) publishes
//! a few scripted lines of room-101's hearing over MQTT (`mosquitto_pub`), exactly as a
//! device's outbox would: a partial line, its final version, and a second final line. The
//! narration then gives the proofreading page's address and runs a transcript search.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::demo::say;

/// The simulated device.
pub(crate) const SIM: &str = "room-101-asr-sim";

/// Where the demo's transcript scene stands.
pub(crate) struct Scene {
    stage: u8,
    boot: String,
    seq: u64,
    hearing: Option<String>,
}

impl Scene {
    pub(crate) fn new() -> Self {
        Self {
            stage: 0,
            boot: format!("demo-{}", std::process::id()),
            seq: 0,
            hearing: None,
        }
    }

    fn publish(
        &self,
        mqtt: &str,
        channel: &str,
        retain: bool,
        payload: &serde_json::Value,
    ) -> Result<(), String> {
        let (host, port) = mqtt
            .rsplit_once(':')
            .ok_or("broker address without a port")?;
        let host = if host == "0.0.0.0" { "127.0.0.1" } else { host };
        let mut cmd = Command::new("mosquitto_pub");
        cmd.args(["-h", host, "-p", port, "-q", "1", "-t"])
            .arg(format!("gavel/v1/dev/{SIM}/{channel}"))
            .arg("-m")
            .arg(payload.to_string());
        if retain {
            cmd.arg("-r");
        }
        let out = cmd
            .output()
            .map_err(|e| format!("mosquitto_pub (apt-get install mosquitto-clients): {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    fn line(
        &mut self,
        mqtt: &str,
        seat: &str,
        n: u64,
        (at_ms, dur_ms): (u64, u64),
        text: &str,
        fin: bool,
    ) -> Result<(), String> {
        let hearing = self.hearing.clone().unwrap_or_default();
        let e = json!({
            "v": 1, "ts": now(), "boot_id": self.boot, "seq": self.seq,
            "id": format!("tr-{hearing}-{seat}-{n}"),
            "phase": if fin { "end" } else { "update" }, "historical": false,
            "type": "transcript", "hearing_id": hearing, "seat": seat, "source": "mics:0",
            "line": n, "offset_ns": at_ms * 1_000_000, "duration_ns": dur_ms * 1_000_000,
            "text": text, "language": "zh", "model": "simulated"
        });
        self.publish(mqtt, "event", false, &e)?;
        self.seq += 1;
        Ok(())
    }

    /// One look at the scene (`(mqtt, url)` of the controller); `hearing` asks what
    /// room-101's terminal records now.
    pub(crate) fn tick(
        &mut self,
        t0: Instant,
        elapsed: Duration,
        (mqtt, url): (&str, &str),
        hearing: impl FnOnce() -> Option<String>,
        gavelctl: impl Fn(&[&str]) -> Result<String, String>,
    ) {
        if self.stage == 0 && elapsed >= Duration::from_secs(12) {
            let Some(h) = hearing() else { return };
            self.stage = 1;
            self.hearing = Some(h.clone());
            let birth = json!({
                "v": 1, "ts": now(), "boot_id": self.boot, "bd_seq": 0, "seq_base": 0,
                "profile": "courtroom-terminal", "firmware_version": "demo-simulated", "hostname": SIM,
                "placement": {"court": crate::demo::COURT, "room": "room-101"},
                "capabilities": [{"name": "transcribe", "state": "running", "detail": "SIMULATED: scripted lines, no speech recognition"}],
                "keepalive_s": 60, "health_interval_s": 30
            });
            let status =
                json!({"v": 1, "state": "online", "boot_id": self.boot, "bd_seq": 0, "ts": now()});
            let sent = self
                .publish(mqtt, "birth", true, &birth)
                .and_then(|()| self.publish(mqtt, "status", true, &status))
                .and_then(|()| self.line(mqtt, "judge", 0, (2_000, 1_500), "现在开庭，请原", false))
                .and_then(|()| {
                    self.line(
                        mqtt,
                        "judge",
                        0,
                        (2_000, 3_400),
                        "现在开庭，请原告陈述诉讼请求。",
                        true,
                    )
                })
                .and_then(|()| {
                    self.line(
                        mqtt,
                        "plaintiff",
                        0,
                        (6_000, 4_200),
                        "请求判令被告支付货款二万元。",
                        true,
                    )
                });
            match sent {
                Ok(()) => say(
                    t0,
                    &format!(
                        "transcript: a SIMULATED transcriber ({SIM}, scripted lines, not speech recognition) sends room-101's hearing {h} a partial line, its final version and a second line; proofread and sign it at {url}/hearings/{h}/transcript"
                    ),
                ),
                Err(e) => say(t0, &format!("transcript scene skipped: {e}")),
            }
        } else if self.stage == 1 && elapsed >= Duration::from_secs(16) {
            self.stage = 2;
            match gavelctl(&["transcripts", "search", "原告"]) {
                Ok(out) => say(
                    t0,
                    &format!(
                        "clerk: gavelctl transcripts search 原告 -> {}",
                        out.lines().last().unwrap_or("").trim()
                    ),
                ),
                Err(e) => say(t0, &format!("transcript search failed: {e}")),
            }
        }
    }
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
