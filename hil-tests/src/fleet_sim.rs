//! Simulated courtrooms for the alarm-latency benchmark: many device ids over a few MQTT
//! connections through a real broker, a hearing schedule imported through the API, and
//! device behaviour that makes alarm conditions hold at known times.
//!
//! Per scenario: `rooms` rooms with one device each (birth, status, health every
//! `health_every`); `hearings` hearings in rooms 0..hearings, starts spread evenly over
//! `window`. Even-numbered hearings' rooms never record: `not_recording` holds from start
//! plus grace (known from the schedule). Odd-numbered ones record from 2 s before the start
//! (segment events every 10 s), then lose a source 3 s after the start: `source_lost`
//! holds from the moment the simulator publishes that event (its clock, taken just before
//! publishing). Latency is the stored alarm's `raised_at` minus that condition time, both on
//! this machine's clock.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{Context, bail};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::Controller;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub rooms: usize,
    pub hearings: usize,
    /// MQTT connections the device ids share.
    pub connections: usize,
    /// Grace period the controller runs with (`GAVEL_ALARM_GRACE_S`).
    pub grace_s: i64,
    /// First hearing starts this long after the import.
    pub lead: Duration,
    /// Hearing starts are spread over this window.
    pub window: Duration,
    pub health_every: Duration,
}

/// What came out.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub expected: usize,
    /// Expected alarms found in the stored history (first raise per condition).
    pub raised: usize,
    /// Conditions with no stored alarm (kind and room).
    pub missing: Vec<String>,
    /// Conditions with more than one stored alarm.
    pub duplicates: usize,
    /// Latency per kind, milliseconds, sorted.
    pub latency_ms: BTreeMap<String, Vec<f64>>,
    /// Alarms of other kinds in the history.
    pub other: BTreeMap<String, usize>,
    /// Device messages the simulator published.
    pub published: u64,
}

impl Outcome {
    /// Every latency, sorted.
    pub fn all_latencies(&self) -> Vec<f64> {
        let mut all: Vec<f64> = self.latency_ms.values().flatten().copied().collect();
        all.sort_by(f64::total_cmp);
        all
    }
}

/// The `q` quantile (0-1) of sorted values.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Device {
    id: String,
    room: String,
    boot: String,
    seq: u64,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn topic(device: &str, channel: &str) -> String {
    format!("gavel/v1/dev/{device}/{channel}")
}

const COURT: &str = "bench-court";

fn health(now: OffsetDateTime) -> Value {
    json!({
        "v": 1, "ts": rfc3339(now), "uptime_s": 86400, "agent_uptime_s": 60,
        "cpu_percent": 12.5, "load1": 0.4,
        "memory": { "total_bytes": 8589934592u64, "used_bytes": 2147483648u64 },
        "volumes": [ { "mount": "/data", "total_bytes": 1000000000000u64, "free_bytes": 750000000000u64 } ],
        "temperatures": [ { "sensor": "cpu", "celsius": 48.5 } ],
        "clock": { "synced": true, "offset_ms": 0.8, "max_error_ms": 12.0 }
    })
}

impl Device {
    fn event(&mut self, now: OffsetDateTime, hearing: &str, body: Value) -> Value {
        let mut e = json!({
            "v": 1, "ts": rfc3339(now), "boot_id": self.boot, "seq": self.seq,
            "id": format!("{}-{}", self.id, self.seq), "phase": "update", "historical": false,
            "hearing_id": hearing,
        });
        if let (Some(e), Value::Object(b)) = (e.as_object_mut(), body) {
            e.extend(b);
        }
        self.seq += 1;
        e
    }
}

/// Connections shared by the simulated devices; each has its event loop driven by a task.
struct Links {
    clients: Vec<AsyncClient>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    published: u64,
}

impl Links {
    async fn connect(host: &str, port: u16, n: usize, tag: &str) -> Self {
        let mut clients = Vec::new();
        let mut tasks = Vec::new();
        for i in 0..n {
            let mut o = MqttOptions::new(format!("{tag}-link{i}"), host, port);
            o.set_keep_alive(Duration::from_secs(30))
                .set_inflight(1000)
                .set_clean_session(true);
            let (client, mut eventloop) = AsyncClient::new(o, 10_000);
            tasks.push(tokio::spawn(async move {
                loop {
                    match eventloop.poll().await {
                        Ok(Event::Incoming(Packet::Disconnect)) => break,
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                }
            }));
            clients.push(client);
        }
        Self {
            clients,
            tasks,
            published: 0,
        }
    }

    async fn publish(&mut self, link: usize, topic: String, payload: &Value) -> anyhow::Result<()> {
        let client = &self.clients[link % self.clients.len()];
        client
            .publish(topic, QoS::AtLeastOnce, false, serde_json::to_vec(payload)?)
            .await
            .context("publishing")?;
        self.published += 1;
        Ok(())
    }
}

impl Drop for Links {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    StartRecording(usize),
    Segment(usize),
    LoseSource(usize),
    Health(usize),
}

/// Runs `scenario` against `controller` (which must run with `grace_s`).
pub async fn run(controller: &Controller, s: &Scenario) -> anyhow::Result<Outcome> {
    if s.hearings > s.rooms {
        bail!("more hearings than rooms");
    }
    let tag = crate::unique("sim");
    let (host, port) = controller.mqtt.clone();
    let mut links = Links::connect(&host, port, s.connections, &tag).await;
    let mut devices: Vec<Device> = (0..s.rooms)
        .map(|i| Device {
            id: format!("{tag}-d{i}"),
            room: format!("{tag}-r{i}"),
            boot: uuid::Uuid::new_v4().to_string(),
            seq: 0,
        })
        .collect();

    // Registration: birth and online status of every device.
    let health_s = s.health_every.as_secs().max(1);
    for (i, d) in devices.iter().enumerate() {
        let now = OffsetDateTime::now_utc();
        let birth = json!({
            "v": 1, "ts": rfc3339(now), "boot_id": d.boot, "bd_seq": 0, "seq_base": 0,
            "profile": "courtroom-terminal", "firmware_version": "0.1.0", "hostname": d.id,
            "placement": { "court": COURT, "room": d.room },
            "capabilities": [ { "name": "health", "state": "running" } ],
            "keepalive_s": 30, "health_interval_s": health_s
        });
        links.publish(i, topic(&d.id, "birth"), &birth).await?;
        let status = json!({ "v": 1, "state": "online", "boot_id": d.boot, "bd_seq": 0, "ts": rfc3339(now) });
        links.publish(i, topic(&d.id, "status"), &status).await?;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    loop {
        let known = controller
            .get("/api/v1/fleet")
            .await?
            .and_then(|v| v["online"].as_u64())
            .unwrap_or(0);
        if known >= s.rooms as u64 {
            break;
        }
        if std::time::Instant::now() > deadline {
            bail!("only {known} of {} devices registered", s.rooms);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The schedule.
    let t0 = OffsetDateTime::now_utc() + s.lead;
    let window_ms = s.window.as_millis() as i64;
    let starts: Vec<OffsetDateTime> = (0..s.hearings)
        .map(|i| t0 + time::Duration::milliseconds(window_ms * i as i64 / s.hearings.max(1) as i64))
        .collect();
    // Imported in chunks: a request body is limited (2 MB), and a case management system
    // imports per court and day anyway.
    let client = reqwest::Client::new();
    for (chunk_no, chunk) in starts.chunks(5_000).enumerate() {
        let mut csv = String::from("case_number,court,room,start,end,judge,parties\n");
        for (j, start) in chunk.iter().enumerate() {
            let i = chunk_no * 5_000 + j;
            csv.push_str(&format!(
                "(2026)bench-{i},{COURT},{},{},{},judge,plaintiff:p\n",
                devices[i].room,
                rfc3339(*start),
                rfc3339(*start + time::Duration::hours(1)),
            ));
        }
        let resp = client
            .post(format!("{}/api/v1/hearings/import", controller.url))
            .header("content-type", "text/csv")
            .body(csv)
            .timeout(Duration::from_secs(600))
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("import: {}: {}", resp.status(), resp.text().await?);
        }
    }

    // Expected conditions: (kind, room) -> condition time (None until it holds).
    let mut conditions: HashMap<(String, String), Option<OffsetDateTime>> = HashMap::new();
    let grace = time::Duration::seconds(s.grace_s);
    let mut plan: Vec<(OffsetDateTime, Action)> = Vec::new();
    for (i, start) in starts.iter().enumerate() {
        if i % 2 == 0 {
            conditions.insert(
                ("not_recording".into(), devices[i].room.clone()),
                Some(*start + grace),
            );
        } else {
            conditions.insert(("source_lost".into(), devices[i].room.clone()), None);
            plan.push((
                *start - time::Duration::seconds(2),
                Action::StartRecording(i),
            ));
            plan.push((*start + time::Duration::seconds(3), Action::LoseSource(i)));
        }
    }
    let end = t0 + s.window + grace + time::Duration::seconds(5);
    for (i, start) in starts.iter().enumerate() {
        if i % 2 == 1 {
            let mut t = *start + time::Duration::seconds(8);
            while t < end {
                plan.push((t, Action::Segment(i)));
                t += time::Duration::seconds(10);
            }
        }
    }
    let mut t = OffsetDateTime::now_utc();
    let per_device = time::Duration::milliseconds(
        (s.health_every.as_millis() as i64 / s.rooms.max(1) as i64).max(0),
    );
    // Health for every device, spread evenly, until the end.
    let mut i = 0usize;
    while t < end {
        plan.push((t, Action::Health(i % s.rooms)));
        i += 1;
        t += per_device.max(time::Duration::microseconds(20));
    }
    plan.sort();

    for (at, action) in plan {
        let wait = at - OffsetDateTime::now_utc();
        if wait > time::Duration::milliseconds(2) {
            tokio::time::sleep(wait.unsigned_abs()).await;
        }
        let now = OffsetDateTime::now_utc();
        match action {
            Action::Health(d) => {
                let id = devices[d].id.clone();
                links.publish(d, topic(&id, "health"), &health(now)).await?;
            }
            Action::StartRecording(d) => {
                let hearing = format!("bench-{d}");
                let e = devices[d].event(
                    now,
                    &hearing,
                    json!({ "type": "recording", "state": "recording", "sources": ["cam-1", "mics"] }),
                );
                let id = devices[d].id.clone();
                links.publish(d, topic(&id, "event"), &e).await?;
            }
            Action::Segment(d) => {
                let hearing = format!("bench-{d}");
                let seq = devices[d].seq;
                let e = devices[d].event(
                    now,
                    &hearing,
                    json!({ "type": "segment", "phase": "end", "source": "mics", "index": seq,
                        "file": format!("mics/{seq:05}.ts"),
                        "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                        "bytes": 1000, "offset_ns": 0, "duration_ns": 10000000000u64,
                        "wall_start": rfc3339(now),
                        "chain": "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752" }),
                );
                let id = devices[d].id.clone();
                links.publish(d, topic(&id, "event"), &e).await?;
            }
            Action::LoseSource(d) => {
                let hearing = format!("bench-{d}");
                let e = devices[d].event(
                    now,
                    &hearing,
                    json!({ "type": "recording", "state": "degraded", "sources": ["cam-1", "mics"], "lost": ["cam-1"] }),
                );
                let id = devices[d].id.clone();
                let room = devices[d].room.clone();
                // The condition holds from here: the time is taken before publishing.
                conditions.insert(("source_lost".into(), room), Some(now));
                links.publish(d, topic(&id, "event"), &e).await?;
            }
        }
    }

    // Wait until the controller has raised as many alarms as expected (counter), then read
    // the stored history once.
    let expected = conditions.len();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while controller.metric("gavel_alarms_raised_total").await < expected as u64
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let history = controller
        .get(&format!(
            "/api/v1/alarms/history?limit={}",
            expected * 4 + 1000
        ))
        .await?
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();
    let mut first: HashMap<(String, String), (OffsetDateTime, usize)> = HashMap::new();
    let mut other = BTreeMap::new();
    for a in &history {
        let kind = a["kind"].as_str().unwrap_or_default().to_owned();
        let room = a["room"].as_str().unwrap_or_default().to_owned();
        let key = (kind.clone(), room);
        if !conditions.contains_key(&key) {
            *other.entry(kind).or_default() += 1;
            continue;
        }
        let raised = a["raised_at"]
            .as_str()
            .and_then(|t| {
                OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
            })
            .context("raised_at")?;
        let e = first.entry(key).or_insert((raised, 0));
        e.0 = e.0.min(raised);
        e.1 += 1;
    }
    let mut latency_ms: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut missing = Vec::new();
    for (key, condition) in &conditions {
        match (first.get(key), condition) {
            (Some((raised, _)), Some(at)) => latency_ms
                .entry(key.0.clone())
                .or_default()
                .push((*raised - *at).as_seconds_f64() * 1000.0),
            _ => missing.push(format!("{} {}", key.0, key.1)),
        }
    }
    for v in latency_ms.values_mut() {
        v.sort_by(f64::total_cmp);
    }
    missing.sort();
    Ok(Outcome {
        expected,
        raised: first.len(),
        missing,
        duplicates: first.values().filter(|(_, n)| *n > 1).count(),
        latency_ms,
        other,
        published: links.published,
    })
}
