//! `gavelctl`: the technician CLI. It speaks only to the controller's HTTP API.

mod hall;
mod ota;
mod patrol;
mod session;
mod transcripts;
mod wall;

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use gavel_fleet::DeviceRecord;
use serde_json::Value;
use time::OffsetDateTime;

/// Gavel technician CLI: inspect and command courtroom devices through the controller.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Controller base URL.
    #[arg(
        long,
        global = true,
        env = "GAVEL_CONTROLLER",
        default_value = "http://127.0.0.1:8700"
    )]
    controller: String,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Top,
}

#[derive(Subcommand, Debug)]
enum Users {
    /// List users and their roles.
    Ls,
    /// Add a user. The password comes from the environment variable GAVEL_NEW_PASSWORD
    /// (never the command line).
    Add {
        name: String,
        /// administrator, technician, inspector, clerk, judge or kiosk.
        #[arg(long)]
        role: String,
        /// The court a clerk works for.
        #[arg(long)]
        court: Option<String>,
    },
    /// Disable a user and end their sessions.
    Disable { name: String },
}

#[derive(Subcommand, Debug)]
enum Top {
    /// Sign in; the session is kept for later commands (or export GAVEL_TOKEN). The password
    /// comes from GAVEL_PASSWORD, else it is read from standard input.
    Login {
        #[arg(long)]
        user: String,
    },
    /// Sign out and forget the saved session.
    Logout,
    /// Users and roles (administrators).
    #[command(subcommand)]
    Users(Users),
    /// The audit log: who did what, when, from where, and every refusal.
    Audit {
        /// Only refusals.
        #[arg(long)]
        denied: bool,
        /// How many entries, newest first.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Export as CSV to this file.
        #[arg(long, value_name = "FILE")]
        csv: Option<std::path::PathBuf>,
    },
    /// Devices known to the controller.
    #[command(subcommand)]
    Devices(Devices),
    /// Make a one-time enrollment token for a new (or replaced) device, with where it
    /// belongs. On the device: `gavel-agent --config FILE enroll --controller URL` with the
    /// token in GAVEL_ENROLL_TOKEN.
    Provision {
        /// The device id to give it, e.g. hz-101-terminal.
        id: String,
        /// Its court.
        #[arg(long, requires = "room")]
        court: Option<String>,
        /// Its room.
        #[arg(long, requires = "court")]
        room: Option<String>,
        /// Its device profile (courtroom-terminal, audio-host, ip-camera, service-kiosk,
        /// command-wall).
        #[arg(long)]
        profile: Option<String>,
        /// A tag for OTA targeting (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// How long the token is valid, in minutes.
        #[arg(long, default_value_t = 60)]
        valid_min: u32,
        /// Then wait up to this many seconds for the device to enroll and come online, and
        /// run its self-test.
        #[arg(long, value_name = "SECONDS")]
        wait: Option<u64>,
        /// After a passing self-test, record a test of this many seconds in the device's
        /// room and show the segments that arrived (needs --court/--room and --wait).
        #[arg(long, value_name = "SECONDS", requires = "wait")]
        test_recording: Option<u64>,
    },
    /// Run a device's self-test again: broker link, clock, each camera, each microphone,
    /// disk. Exits with status 1 when a check fails.
    Selftest { id: String },
    /// Print a shell completion script: `gavelctl completions bash > /etc/bash_completion.d/gavelctl`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Fleet summary: devices, online, offline, courts, rooms.
    Fleet,
    /// Scheduled hearings.
    #[command(subcommand)]
    Hearings(Hearings),
    /// Record-every-hearing and device-health alarms.
    #[command(subcommand)]
    Alarms(Alarms),
    /// Start or stop recording by hand (the clerk's action), with who and why: through the
    /// controller to every recording device of the room.
    #[command(subcommand)]
    Recording(Recording),
    /// Over-the-air updates: bundles and campaigns.
    #[command(subcommand)]
    Ota(ota::Ota),
    /// The service hall: queue, calling numbers at windows, case check codes.
    #[command(subcommand)]
    Hall(hall::Hall),
    /// Command-centre video walls: layouts, sources, focus.
    #[command(subcommand)]
    Wall(wall::Wall),
    /// Hearing patrol: findings and the daily or weekly patrol report.
    #[command(subcommand)]
    Patrol(patrol::Patrol),
    /// Hearing transcripts: search, show, export (SRT, WebVTT, HTML, DOCX).
    #[command(subcommand)]
    Transcripts(transcripts::Transcripts),
    /// Check a hearing's recording folder against its signed manifest (offline: no
    /// controller needed). Names every segment that was changed, removed, reordered or
    /// added; exits with status 1 when anything is wrong.
    Verify {
        /// The hearing folder (holds `manifest.json` and `manifest.sig`).
        dir: std::path::PathBuf,
        /// The device's public key (hex) to trust; without it the signature is checked
        /// against the key named in `manifest.sig` only.
        #[arg(long, value_name = "HEX")]
        key: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum Hearings {
    /// List hearings.
    Ls,
    /// Show one hearing: schedule, parties, status and who moved or cancelled it.
    Show {
        /// Hearing id (see `gavelctl hearings ls`).
        id: String,
    },
    /// Import hearings from a CSV file (case_number,court,room,start,end,judge,parties) or
    /// an iCalendar file (.ics, one VEVENT per hearing): all or nothing, every bad row or
    /// event named by line and field. Hearings already known by id are updated.
    Import {
        file: std::path::PathBuf,
        /// The file's format; default: from the extension (.csv, .ics/.ical), else from
        /// the content.
        #[arg(long, value_enum)]
        format: Option<ImportFormat>,
    },
    /// Schedule one hearing. Times are RFC 3339 (2026-11-27T09:00:00+08:00) or
    /// "YYYY-MM-DD HH:MM" in the courts' offset.
    Create {
        /// Case number, e.g. "(2026)浙0106民初1234号".
        #[arg(long = "case")]
        case_number: String,
        /// Court id, e.g. hz-intermediate.
        #[arg(long)]
        court: String,
        /// Room id, e.g. room-101.
        #[arg(long)]
        room: String,
        /// Scheduled start.
        #[arg(long)]
        start: String,
        /// Scheduled end.
        #[arg(long)]
        end: String,
        /// The presiding judge.
        #[arg(long)]
        judge: String,
        /// A party as role:name; repeat for each.
        #[arg(long = "party", value_name = "ROLE:NAME")]
        parties: Vec<String>,
        /// Hearing id (the case management system's); default: from case number and start.
        #[arg(long)]
        id: Option<String>,
    },
    /// Move a hearing to new times and/or another room. A new --start alone keeps its
    /// duration. Refused once closed or cancelled, and when the room is taken.
    Move {
        /// Hearing id (see `gavelctl hearings ls`).
        id: String,
        /// New start: RFC 3339 or "YYYY-MM-DD HH:MM" in the courts' offset.
        #[arg(long)]
        start: Option<String>,
        /// New end (same formats).
        #[arg(long)]
        end: Option<String>,
        /// New room id.
        #[arg(long)]
        room: Option<String>,
        /// Who moves it (kept with the hearing).
        #[arg(long, env = "USER", default_value = "clerk")]
        by: String,
        /// Why (kept with the hearing).
        #[arg(long, default_value = "")]
        why: String,
    },
    /// Cancel a scheduled hearing (not one in progress: close that one).
    Cancel {
        /// Hearing id (see `gavelctl hearings ls`).
        id: String,
        /// Who cancels it (kept with the hearing).
        #[arg(long, env = "USER", default_value = "clerk")]
        by: String,
        /// Why (required; kept with the hearing).
        #[arg(long)]
        why: String,
    },
    /// Open a hearing (the clerk's action).
    Open {
        id: String,
        #[arg(long, env = "USER", default_value = "clerk")]
        by: String,
    },
    /// Close a hearing.
    Close {
        id: String,
        #[arg(long, env = "USER", default_value = "clerk")]
        by: String,
    },
    /// A hearing's compliance record: coverage and gaps per source, hash chain and seal
    /// per device, every exception.
    Compliance { id: String },
    /// What the archive holds of a hearing: sources, segments (each verified by hash on
    /// arrival), bytes, and the playback page's address.
    Archive { id: String },
    /// A court's daily compliance report: share of hearings fully recorded, every
    /// exception explained.
    Report {
        /// Court id.
        #[arg(long)]
        court: String,
        /// Day (YYYY-MM-DD, the courts' local date); today when absent.
        #[arg(long)]
        date: Option<String>,
        /// `table` (default), `csv` or `html`.
        #[arg(long, default_value = "table", value_parser = ["table", "csv", "html"])]
        format: String,
        /// Write the CSV or HTML to this file instead of standard output.
        #[arg(short, long)]
        output: Option<std::path::PathBuf>,
    },
}

/// Formats `gavelctl hearings import` reads.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ImportFormat {
    Csv,
    Ics,
}

impl ImportFormat {
    /// By --format, else the extension, else the content.
    fn of(given: Option<Self>, file: &std::path::Path, text: &str) -> Self {
        if let Some(f) = given {
            return f;
        }
        match file
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_lowercase)
            .as_deref()
        {
            Some("csv") => Self::Csv,
            Some("ics" | "ical" | "icalendar" | "ifb") => Self::Ics,
            _ if gavel_fleet::hearings::ics::looks_like_ics(text) => Self::Ics,
            _ => Self::Csv,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv",
            Self::Ics => "text/calendar",
        }
    }
}

fn print_hearing(h: &Value) {
    let f = |k: &str| h[k].as_str().unwrap_or("-").to_owned();
    println!("hearing    {}", f("id"));
    println!("case       {}", f("case_number"));
    println!("court      {}  room {}", f("court"), f("room"));
    println!(
        "scheduled  {} to {}",
        f("scheduled_start"),
        f("scheduled_end")
    );
    println!("judge      {}", f("judge"));
    println!("status     {}", f("status"));
    for p in h["parties"].as_array().into_iter().flatten() {
        println!(
            "party      {}: {}",
            p["role"].as_str().unwrap_or("?"),
            p["name"].as_str().unwrap_or("?")
        );
    }
    for c in h["history"].as_array().into_iter().flatten() {
        println!(
            "{:<10} {} by {}{}: {}",
            c["action"].as_str().unwrap_or("?"),
            c["at"].as_str().unwrap_or("?"),
            c["by"].as_str().unwrap_or("?"),
            c["why"]
                .as_str()
                .filter(|w| !w.is_empty())
                .map(|w| format!(" ({w})"))
                .unwrap_or_default(),
            c["detail"].as_str().unwrap_or("")
        );
    }
}

/// Which recording a clerk starts or stops.
#[derive(clap::Args, Debug)]
struct RecordingTarget {
    /// The hearing (its room follows from it; with --court/--room: that hearing in that room).
    #[arg(long, required_unless_present = "room", allow_hyphen_values = true)]
    hearing: Option<String>,
    /// Court of the room (with --room: the room's hearing due now).
    #[arg(long, requires = "room")]
    court: Option<String>,
    /// Room (with --court).
    #[arg(long, requires = "court")]
    room: Option<String>,
    /// Who does it (recorded in the audit trail).
    #[arg(long, env = "USER", default_value = "clerk")]
    by: String,
    /// Why (recorded in the audit trail).
    #[arg(long)]
    why: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Recording {
    /// Start recording.
    Start(RecordingTarget),
    /// Stop recording (the hearing's recording is closed and signed).
    Stop(RecordingTarget),
}

#[derive(Subcommand, Debug)]
enum Alarms {
    /// Open alarms, most urgent first.
    Ls,
    /// Acknowledge an alarm (it stops escalating).
    Ack {
        id: String,
        #[arg(long, env = "USER", default_value = "technician")]
        by: String,
    },
    /// Resolve an alarm.
    Resolve {
        id: String,
        #[arg(long, env = "USER", default_value = "technician")]
        by: String,
    },
}

#[derive(Subcommand, Debug)]
enum Devices {
    /// List devices.
    Ls {
        /// Only devices of this court.
        #[arg(long)]
        court: Option<String>,
        /// Only devices of this room.
        #[arg(long)]
        room: Option<String>,
        /// Only online devices.
        #[arg(long, conflicts_with = "offline")]
        online: bool,
        /// Only offline devices.
        #[arg(long)]
        offline: bool,
    },
    /// Show one device in detail.
    Show {
        /// Hearing id (see `gavelctl hearings ls`).
        id: String,
    },
    /// Check the command path to a device end to end.
    Ping {
        id: String,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 5)]
        timeout: u64,
    },
    /// Revoke every certificate of a device: the broker drops its connection at once and
    /// refuses it from then on (re-enroll it with `gavelctl provision`).
    Revoke { id: String },
    /// Restart a device's agent.
    Restart {
        id: String,
        /// Why (recorded in the device log).
        #[arg(long)]
        reason: Option<String>,
    },
}

/// The error for a request the controller refused, with what to do about it.
fn refused(status: reqwest::StatusCode, msg: &str, what: &str) -> anyhow::Error {
    if status == reqwest::StatusCode::UNAUTHORIZED {
        return anyhow::anyhow!(
            "{what}: not signed in or session expired: run `gavelctl login --user NAME` ({msg})"
        );
    }
    if status == reqwest::StatusCode::FORBIDDEN {
        return anyhow::anyhow!("{what}: {msg} (ask an administrator for a role that may)");
    }
    anyhow::anyhow!("{what}: {status}: {msg}")
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(base: &str) -> anyhow::Result<Self> {
        let base_trimmed = base.trim_end_matches('/');
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = session::token_for(base_trimmed) {
            let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .context("GAVEL_TOKEN holds characters a header cannot carry")?;
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(Duration::from_secs(30))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
        })
    }

    async fn send(&self, req: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Value> {
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach the controller at {} ({what})", self.base))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let msg = body
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("no details");
            return Err(refused(status, msg, what));
        }
        Ok(body)
    }

    /// Sends `req` and returns the body as it came (a file: CSV, HTML, DOCX...); a
    /// refusal is explained like any other request's.
    async fn download(&self, req: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Vec<u8>> {
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach the controller at {} ({what})", self.base))?;
        let status = resp.status();
        let body = resp.bytes().await.with_context(|| what.to_owned())?;
        if !status.is_success() {
            let msg = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            return Err(refused(status, &msg, what));
        }
        Ok(body.to_vec())
    }

    /// Fetches a report as a file (`format`: csv or html; "table" means csv) from
    /// `path` and writes it to `output`, or to standard output when there is none.
    async fn report(
        &self,
        path: &str,
        mut query: Vec<(&str, String)>,
        format: String,
        output: Option<std::path::PathBuf>,
        what: &str,
    ) -> anyhow::Result<()> {
        let format = if format == "table" {
            "csv".to_owned()
        } else {
            format
        };
        query.push(("format", format));
        let req = self.http.get(format!("{}{path}", self.base)).query(&query);
        let body = self.download(req, what).await?;
        match output {
            Some(path) => {
                std::fs::write(&path, &body)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("report written to {}", path.display());
            }
            None => {
                use std::io::Write;
                std::io::stdout()
                    .write_all(&body)
                    .context("writing the report to standard output")?;
            }
        }
        Ok(())
    }

    async fn get(&self, path: &str, what: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(format!("{}{path}", self.base)), what)
            .await
    }

    async fn put(&self, path: &str, body: &Value, what: &str) -> anyhow::Result<Value> {
        self.send(
            self.http.put(format!("{}{path}", self.base)).json(body),
            what,
        )
        .await
    }

    async fn post(&self, path: &str, body: &Value, what: &str) -> anyhow::Result<Value> {
        self.send(
            self.http.post(format!("{}{path}", self.base)).json(body),
            what,
        )
        .await
    }
}

fn print_compliance(c: &Value) {
    let f = |k: &str| c[k].as_str().unwrap_or("-").to_owned();
    println!(
        "{} {} ({}/{}): {}",
        f("hearing_id"),
        f("case_number"),
        f("court"),
        f("room"),
        f("verdict").replace('_', " ")
    );
    println!("required {} → {}", f("required_from"), f("required_to"));
    let mut t = table();
    t.set_header([
        "DEVICE",
        "SOURCE",
        "SEGMENTS",
        "RECORDED",
        "COVERAGE",
        "GAPS",
        "LATEST ARRIVAL",
    ]);
    for s in c["sources"].as_array().into_iter().flatten() {
        t.add_row([
            s["device"].as_str().unwrap_or("-").to_owned(),
            s["source"].as_str().unwrap_or("-").to_owned(),
            s["segments"].to_string(),
            format!(
                "{:.0}/{:.0} s",
                s["recorded_s"].as_f64().unwrap_or(0.0),
                s["required_s"].as_f64().unwrap_or(0.0)
            ),
            format!("{:.1} %", s["coverage"].as_f64().unwrap_or(0.0) * 100.0),
            s["gaps"].as_array().map_or(0, Vec::len).to_string(),
            format!(
                "{:.0} s late",
                s["max_delivery_delay_s"].as_f64().unwrap_or(0.0)
            ),
        ]);
    }
    println!("{t}");
    for d in c["devices"].as_array().into_iter().flatten() {
        println!(
            "{}: hash chain {}, seal {}",
            d["device"].as_str().unwrap_or("-"),
            d["chain"]["state"].as_str().unwrap_or("-"),
            d["seal"]["state"].as_str().unwrap_or("-")
        );
    }
    println!(
        "transcript: {}",
        match (
            c["transcript_required"].as_bool(),
            c["transcript_present"].as_bool()
        ) {
            (_, Some(true)) => "present",
            (Some(true), _) => "MISSING",
            _ => "not required (no transcription in this room)",
        }
    );
    for e in c["exceptions"].as_array().into_iter().flatten() {
        println!("exception: {}", e.as_str().unwrap_or(""));
    }
    for n in c["notes"].as_array().into_iter().flatten() {
        println!("note: {}", n.as_str().unwrap_or(""));
    }
}

fn print_report(r: &Value) {
    let n = |k: &str| r[k].as_u64().unwrap_or(0);
    println!(
        "{} {}: {} hearings; {} complete, {} incomplete, {} not recorded, {} pending, {} open, {} cancelled; fully recorded: {}",
        r["court"].as_str().unwrap_or("-"),
        r["date"].as_str().unwrap_or("-"),
        n("hearings"),
        n("complete"),
        n("incomplete"),
        n("not_recorded"),
        n("pending"),
        n("open"),
        n("cancelled"),
        r["share_fully_recorded"]
            .as_f64()
            .map_or("–".to_owned(), |s| format!("{:.1} %", s * 100.0))
    );
    let mut t = table();
    t.set_header(["START", "ROOM", "CASE", "VERDICT", "COVERAGE", "EXCEPTIONS"]);
    for row in r["rows"].as_array().into_iter().flatten() {
        t.add_row([
            row["scheduled_start"].as_str().unwrap_or("-").to_owned(),
            row["room"].as_str().unwrap_or("-").to_owned(),
            row["case_number"].as_str().unwrap_or("-").to_owned(),
            row["verdict"].as_str().unwrap_or("-").replace('_', " "),
            row["coverage"]
                .as_f64()
                .map_or(String::new(), |c| format!("{:.1} %", c * 100.0)),
            row["explanation"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("\n"),
        ]);
    }
    println!("{t}");
}

fn ago(ts: OffsetDateTime) -> String {
    let s = (OffsetDateTime::now_utc() - ts).whole_seconds().max(0);
    match s {
        0..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m ago", s / 60),
        3600..=86_399 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

fn status(d: &DeviceRecord) -> String {
    if d.online {
        "online".into()
    } else {
        match d.offline_cause {
            Some(c) => format!(
                "offline ({})",
                serde_json::to_value(c)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            ),
            None => "offline".into(),
        }
    }
}

fn lowest_free_disk(d: &DeviceRecord) -> String {
    d.health
        .as_ref()
        .and_then(|h| {
            h.volumes
                .iter()
                .filter(|v| v.total_bytes > 0)
                .map(|v| (v.free_bytes as f64 / v.total_bytes as f64 * 100.0, &v.mount))
                .min_by(|a, b| a.0.total_cmp(&b.0))
        })
        .map(|(pct, mount)| format!("{pct:.0}% {mount}"))
        .unwrap_or_else(|| "-".into())
}

fn table() -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic);
    t
}

fn print_list(devices: &[DeviceRecord]) {
    let mut t = table();
    t.set_header([
        "DEVICE",
        "COURT",
        "ROOM",
        "PROFILE",
        "VERSION",
        "STATUS",
        "CPU",
        "DISK FREE",
        "LAST SEEN",
    ]);
    for d in devices {
        t.add_row([
            d.id.to_string(),
            d.court.clone().unwrap_or_else(|| "-".into()),
            d.room.clone().unwrap_or_else(|| "-".into()),
            d.profile.clone().unwrap_or_else(|| "-".into()),
            d.firmware_version.clone().unwrap_or_else(|| "-".into()),
            status(d),
            d.health
                .as_ref()
                .map(|h| format!("{:.0}%", h.cpu_percent))
                .unwrap_or_else(|| "-".into()),
            lowest_free_disk(d),
            ago(d.last_seen),
        ]);
    }
    println!("{t}");
    let online = devices.iter().filter(|d| d.online).count();
    println!(
        "{} devices, {online} online, {} offline",
        devices.len(),
        devices.len() - online
    );
}

fn print_device(d: &DeviceRecord) {
    let mut t = table();
    let row = |t: &mut Table, k: &str, v: String| {
        t.add_row([k.to_owned(), v]);
    };
    row(&mut t, "device", d.id.to_string());
    row(
        &mut t,
        "status",
        format!("{} since {}", status(d), ago(d.since)),
    );
    row(
        &mut t,
        "court / room",
        format!(
            "{} / {}",
            d.court.as_deref().unwrap_or("-"),
            d.room.as_deref().unwrap_or("-")
        ),
    );
    row(
        &mut t,
        "profile",
        d.profile.clone().unwrap_or_else(|| "-".into()),
    );
    row(
        &mut t,
        "firmware",
        d.firmware_version.clone().unwrap_or_else(|| "-".into()),
    );
    row(
        &mut t,
        "hostname",
        d.hostname.clone().unwrap_or_else(|| "-".into()),
    );
    row(
        &mut t,
        "boot / session",
        format!("{} / {}", d.boot_id.as_deref().unwrap_or("-"), d.bd_seq),
    );
    row(
        &mut t,
        "keepalive / health",
        format!("{} s / {} s", d.keepalive_s, d.health_interval_s),
    );
    row(
        &mut t,
        "first / last seen",
        format!("{} / {}", ago(d.first_seen), ago(d.last_seen)),
    );
    let caps: Vec<String> = d
        .capabilities
        .iter()
        .map(|c| {
            let state = serde_json::to_value(c.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            format!("{} ({state})", c.name)
        })
        .collect();
    row(&mut t, "capabilities", caps.join(", "));
    if let Some(h) = &d.health {
        row(
            &mut t,
            "cpu / load",
            format!("{:.0}% / {:.2}", h.cpu_percent, h.load1),
        );
        let mem = if h.memory.total_bytes > 0 {
            h.memory.used_bytes as f64 / h.memory.total_bytes as f64 * 100.0
        } else {
            0.0
        };
        row(
            &mut t,
            "memory",
            format!(
                "{mem:.0}% of {:.1} GiB",
                h.memory.total_bytes as f64 / (1u64 << 30) as f64
            ),
        );
        for v in &h.volumes {
            row(
                &mut t,
                &format!("disk {}", v.mount),
                format!(
                    "{:.1} GiB free of {:.1} GiB",
                    v.free_bytes as f64 / (1u64 << 30) as f64,
                    v.total_bytes as f64 / (1u64 << 30) as f64
                ),
            );
        }
        for s in &h.temperatures {
            row(
                &mut t,
                &format!("temp {}", s.sensor),
                format!("{:.1} °C", s.celsius),
            );
        }
        for s in &h.humidity {
            row(
                &mut t,
                &format!("humidity {}", s.sensor),
                format!("{:.1} %", s.percent),
            );
        }
        row(
            &mut t,
            "clock",
            match (h.clock.synced, h.clock.offset_ms) {
                (true, Some(o)) => format!("synced, offset {o:.1} ms"),
                (true, None) => "synced".into(),
                (false, _) => "NOT synced".into(),
            },
        );
        row(
            &mut t,
            "uptime (host / agent)",
            format!("{} s / {} s", h.uptime_s, h.agent_uptime_s),
        );
        if let Some(o) = &h.outbox {
            let oldest = o
                .oldest_age_s
                .map(|s| format!(", oldest {s} s"))
                .unwrap_or_default();
            row(
                &mut t,
                "outbox",
                format!(
                    "{} events waiting{oldest}; {} health samples dropped while offline",
                    o.depth, o.dropped_telemetry
                ),
            );
        }
    }
    if let Some(skew) = d.clock_skew_ms {
        row(&mut t, "skew vs controller", format!("{skew} ms"));
    }
    println!("{t}");
}

fn spinner(msg: String) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new_spinner();
    pb.enable_steady_tick(Duration::from_millis(120));
    pb.set_message(msg);
    pb
}

/// Waits until the device is online.
async fn wait_online(api: &Api, id: &str, limit: Duration) -> anyhow::Result<()> {
    let pb = spinner(format!("waiting for {id} to enroll and come online"));
    let started = std::time::Instant::now();
    loop {
        if let Ok(d) = api
            .get(&format!("/api/v1/devices/{id}"), &format!("reading {id}"))
            .await
            && d["online"] == true
        {
            pb.finish_with_message(format!(
                "{id} online after {} s ({} in {}/{})",
                started.elapsed().as_secs(),
                d["profile"].as_str().unwrap_or("-"),
                d["court"].as_str().unwrap_or("-"),
                d["room"].as_str().unwrap_or("-")
            ));
            return Ok(());
        }
        if started.elapsed() > limit {
            pb.abandon_with_message(format!("{id} did not come online"));
            bail!(
                "{id} did not come online within {} s: run `gavel-agent enroll` on it with the token, then start the agent",
                limit.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Runs the device's self-test and prints the table; true when nothing failed.
async fn self_test(api: &Api, id: &str, json: bool) -> anyhow::Result<bool> {
    let pb = spinner(format!(
        "{id}: self-test (broker, clock, cameras, microphones, disk)"
    ));
    let v = api
        .post(
            &format!("/api/v1/devices/{id}/commands"),
            &serde_json::json!({"type": "self_test", "timeout_ms": 30_000}),
            &format!("self-test of {id}"),
        )
        .await;
    pb.finish_and_clear();
    let v = v?;
    let checks = v["reply"]["checks"].as_array().cloned().unwrap_or_default();
    let failed = checks.iter().filter(|c| c["status"] == "fail").count();
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let mut t = table();
        t.set_header(["CHECK", "RESULT", "DETAIL"]);
        for c in &checks {
            t.add_row([
                c["name"].as_str().unwrap_or("-").to_owned(),
                c["status"].as_str().unwrap_or("-").to_uppercase(),
                c["detail"].as_str().unwrap_or("").to_owned(),
            ]);
        }
        println!("{t}");
        println!(
            "{id}: self-test {} ({} checks, {failed} failed)",
            if failed == 0 { "PASSED" } else { "FAILED" },
            checks.len()
        );
    }
    Ok(failed == 0)
}

/// Records `length` in the room and shows the segments the device delivered.
async fn test_record(
    api: &Api,
    id: &str,
    court: &str,
    room: &str,
    length: Duration,
) -> anyhow::Result<()> {
    let hearing = format!(
        "provision-test-{id}-{}",
        OffsetDateTime::now_utc().unix_timestamp()
    );
    let body = serde_json::json!({"hearing_id": hearing, "by": "gavelctl provision", "reason": "provisioning test recording"});
    api.post(
        &format!("/api/v1/rooms/{court}/{room}/recording/start"),
        &body,
        "starting the test recording",
    )
    .await?;
    let pb = indicatif::ProgressBar::new(length.as_secs());
    pb.set_style(
        indicatif::ProgressStyle::with_template("test recording {bar:30} {pos}/{len} s")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    for _ in 0..length.as_secs() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        pb.inc(1);
    }
    pb.finish_and_clear();
    api.post(
        &format!("/api/v1/rooms/{court}/{room}/recording/stop"),
        &body,
        "stopping the test recording",
    )
    .await?;
    // Segments arrive as events once closed and hashed.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let events = api
            .get(
                &format!("/api/v1/devices/{id}/events?limit=500"),
                "reading the device's events",
            )
            .await?;
        let segments: Vec<&Value> = events
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| {
                let b = &e["event"]["body"];
                e["event"]["type"] == "segment" || b["type"] == "segment"
            })
            .filter(|e| e.to_string().contains(&hearing))
            .collect();
        if !segments.is_empty() {
            println!(
                "{id}: test recording {hearing}: {} segment(s) delivered, hashed and chained",
                segments.len()
            );
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!("{id}: no recording segment of {hearing} arrived within 20 s of stopping");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let api = Api::new(&cli.controller)?;
    match cli.command {
        Top::Ota(cmd) => ota::run(&api, cli.json, cmd).await?,
        Top::Hall(cmd) => hall::run(&api, cli.json, cmd).await?,
        Top::Wall(cmd) => wall::run(&api, cli.json, cmd).await?,
        Top::Patrol(cmd) => patrol::run(&api, cli.json, cmd).await?,
        Top::Transcripts(cmd) => transcripts::run(&api, cli.json, cmd).await?,
        Top::Verify { dir, key } => {
            let trusted = match key {
                Some(k) => Some(
                    gavel_evidence::key::public_from_hex(&k)
                        .with_context(|| format!("--key {k:?}: not an ed25519 public key"))?,
                ),
                None => None,
            };
            let report = gavel_evidence::verify::verify(&dir, trusted.as_ref())
                .with_context(|| format!("verifying {}", dir.display()))?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "hearing {}: {} segments, {} sources, {} gaps; signed by {}{}",
                    report.hearing_id,
                    report.segments,
                    report.sources,
                    report.gaps,
                    report.key,
                    if report.key_pinned {
                        " (trusted key)"
                    } else {
                        " (key not pinned: pass --key)"
                    }
                );
                for f in &report.findings {
                    println!("FAIL {f}");
                }
                if report.ok() {
                    println!(
                        "OK every segment matches the signed manifest and the chain is intact"
                    );
                }
            }
            if !report.ok() {
                std::process::exit(1);
            }
        }
        Top::Fleet => {
            let v = api
                .get("/api/v1/fleet", "reading the fleet summary")
                .await?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let s: gavel_fleet::Summary =
                    serde_json::from_value(v).context("unexpected answer from the controller")?;
                println!(
                    "{} devices ({} online, {} offline) in {} rooms of {} courts",
                    s.devices, s.online, s.offline, s.rooms, s.courts
                );
            }
        }
        Top::Devices(Devices::Ls {
            court,
            room,
            online,
            offline,
        }) => {
            let mut query = Vec::new();
            if let Some(c) = &court {
                query.push(("court", c.clone()));
            }
            if let Some(r) = &room {
                query.push(("room", r.clone()));
            }
            if online || offline {
                query.push(("online", online.to_string()));
            }
            let url = format!("{}/api/v1/devices", api.base);
            let v = api
                .send(api.http.get(url).query(&query), "listing devices")
                .await?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let devices: Vec<DeviceRecord> =
                    serde_json::from_value(v).context("unexpected answer from the controller")?;
                print_list(&devices);
            }
        }
        Top::Devices(Devices::Show { id }) => {
            let v = api
                .get(
                    &format!("/api/v1/devices/{id}"),
                    &format!("reading device {id}"),
                )
                .await?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let d: DeviceRecord =
                    serde_json::from_value(v).context("unexpected answer from the controller")?;
                print_device(&d);
            }
        }
        Top::Devices(Devices::Ping { id, timeout }) => {
            let started = std::time::Instant::now();
            let body = serde_json::json!({"type": "ping", "timeout_ms": timeout * 1000});
            let v = api
                .post(
                    &format!("/api/v1/devices/{id}/commands"),
                    &body,
                    &format!("pinging {id}"),
                )
                .await?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "{id}: pong in {} ms (agent up {} s)",
                    started.elapsed().as_millis(),
                    v["reply"]["agent_uptime_s"]
                );
            }
        }
        Top::Hearings(Hearings::Ls) => {
            let v = api.get("/api/v1/hearings", "listing hearings").await?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let mut t = table();
                t.set_header([
                    "HEARING", "CASE", "COURT", "ROOM", "START", "END", "JUDGE", "STATUS",
                ]);
                for h in v.as_array().into_iter().flatten() {
                    let f = |k: &str| h[k].as_str().unwrap_or("-").to_owned();
                    t.add_row([
                        f("id"),
                        f("case_number"),
                        f("court"),
                        f("room"),
                        f("scheduled_start"),
                        f("scheduled_end"),
                        f("judge"),
                        f("status"),
                    ]);
                }
                println!("{t}");
            }
        }
        Top::Hearings(Hearings::Import { file, format }) => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {} (it must be UTF-8 text)", file.display()))?;
            let format = ImportFormat::of(format, &file, &text);
            let resp = api
                .http
                .post(format!("{}/api/v1/hearings/import", api.base))
                .header("content-type", format.content_type())
                .body(text)
                .send()
                .await
                .with_context(|| format!("cannot reach the controller at {}", api.base))?;
            let status = resp.status();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&body)?);
            }
            if status.is_success() {
                if !cli.json {
                    println!(
                        "imported {} hearings from {} ({} unchanged)",
                        body["imported"],
                        file.display(),
                        body["unchanged"].as_u64().unwrap_or(0)
                    );
                }
            } else {
                for e in body["errors"].as_array().into_iter().flatten() {
                    eprintln!(
                        "{}: line {}, field `{}`: {}",
                        file.display(),
                        e["line"],
                        e["field"].as_str().unwrap_or("?"),
                        e["message"].as_str().unwrap_or("?")
                    );
                }
                bail!(
                    "nothing imported from {} (read as {:?}): {}",
                    file.display(),
                    format,
                    body["error"]
                        .as_str()
                        .unwrap_or("the controller refused the file")
                );
            }
        }
        Top::Hearings(Hearings::Show { id }) => {
            let v = api
                .get(&format!("/api/v1/hearings/{id}"), &format!("showing {id}"))
                .await?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_hearing(&v);
            }
        }
        Top::Hearings(Hearings::Create {
            case_number,
            court,
            room,
            start,
            end,
            judge,
            parties,
            id,
        }) => {
            let mut list = Vec::new();
            for p in &parties {
                let (role, name) = p
                    .split_once(':')
                    .with_context(|| format!("--party {p:?} is not role:name"))?;
                list.push(serde_json::json!({"role": role.trim(), "name": name.trim()}));
            }
            let mut body = serde_json::json!({
                "case_number": case_number, "court": court, "room": room,
                "scheduled_start": start, "scheduled_end": end, "judge": judge, "parties": list,
            });
            if let Some(id) = id {
                body["id"] = Value::String(id);
            }
            let v = api
                .post("/api/v1/hearings", &body, "creating the hearing")
                .await?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "{}: scheduled {} to {} in {}",
                    v["id"].as_str().unwrap_or("?"),
                    v["scheduled_start"].as_str().unwrap_or("?"),
                    v["scheduled_end"].as_str().unwrap_or("?"),
                    v["room"].as_str().unwrap_or("?")
                );
            }
        }
        Top::Hearings(Hearings::Move {
            id,
            start,
            end,
            room,
            by,
            why,
        }) => {
            let body = serde_json::json!({
                "scheduled_start": start, "scheduled_end": end, "room": room, "by": by, "why": why,
            });
            let v = api
                .send(
                    api.http
                        .patch(format!("{}/api/v1/hearings/{id}", api.base))
                        .json(&body),
                    &format!("moving {id}"),
                )
                .await?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "{id}: moved by {by} to {} to {} in {}",
                    v["scheduled_start"].as_str().unwrap_or("?"),
                    v["scheduled_end"].as_str().unwrap_or("?"),
                    v["room"].as_str().unwrap_or("?")
                );
            }
        }
        Top::Hearings(Hearings::Cancel { id, by, why }) => {
            let v = api
                .post(
                    &format!("/api/v1/hearings/{id}/cancel"),
                    &serde_json::json!({"by": by, "why": why}),
                    &format!("cancelling {id}"),
                )
                .await?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{id}: cancelled by {by} ({why})");
            }
        }
        Top::Hearings(Hearings::Open { id, by }) => {
            api.send(
                api.http
                    .post(format!("{}/api/v1/hearings/{id}/open", api.base))
                    .json(&serde_json::json!({"by": by})),
                &format!("opening {id}"),
            )
            .await?;
            println!("{id}: opened by {by}");
        }
        Top::Hearings(Hearings::Close { id, by }) => {
            api.send(
                api.http
                    .post(format!("{}/api/v1/hearings/{id}/close", api.base))
                    .json(&serde_json::json!({"by": by})),
                &format!("closing {id}"),
            )
            .await?;
            println!("{id}: closed by {by}");
        }
        Top::Hearings(Hearings::Archive { id }) => {
            let a = api
                .get(
                    &format!("/api/v1/archive/hearings/{id}"),
                    &format!("reading the archive of {id}"),
                )
                .await?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&a)?);
            } else {
                println!(
                    "{id}: {} segments, {} bytes, {:.1} s, in {}",
                    a["segments"],
                    a["bytes"],
                    a["duration_ms"].as_f64().unwrap_or(0.0) / 1000.0,
                    a["location"].as_str().unwrap_or("?")
                );
                for s in a["sources"].as_array().into_iter().flatten() {
                    println!(
                        "  {} ({}): {} segments, {} bytes, {:.1}-{:.1} s",
                        s["source"].as_str().unwrap_or("?"),
                        s["device_id"].as_str().unwrap_or("?"),
                        s["segments"],
                        s["bytes"],
                        s["start_ms"].as_f64().unwrap_or(0.0) / 1000.0,
                        s["end_ms"].as_f64().unwrap_or(0.0) / 1000.0
                    );
                }
                println!("  playback: {}", a["playback"].as_str().unwrap_or("?"));
            }
        }
        Top::Hearings(Hearings::Compliance { id }) => {
            let c = api
                .get(
                    &format!("/api/v1/hearings/{id}/compliance"),
                    &format!("reading the compliance record of {id}"),
                )
                .await?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&c)?);
            } else {
                print_compliance(&c);
            }
        }
        Top::Hearings(Hearings::Report {
            court,
            date,
            format,
            output,
        }) => {
            let mut query = vec![("court", court.clone())];
            if let Some(d) = &date {
                query.push(("date", d.clone()));
            }
            let what = format!("reading the compliance report of {court}");
            if format == "table" && output.is_none() {
                let req = api
                    .http
                    .get(format!("{}/api/v1/reports/compliance", api.base))
                    .query(&query);
                let r = api.send(req, &what).await?;
                if cli.json {
                    println!("{}", serde_json::to_string_pretty(&r)?);
                } else {
                    print_report(&r);
                }
            } else {
                api.report("/api/v1/reports/compliance", query, format, output, &what)
                    .await?;
            }
        }
        Top::Recording(r) => {
            let (action, t) = match r {
                Recording::Start(t) => ("start", t),
                Recording::Stop(t) => ("stop", t),
            };
            let path = match (&t.court, &t.room, &t.hearing) {
                (Some(c), Some(r), _) => format!("/api/v1/rooms/{c}/{r}/recording/{action}"),
                (_, _, Some(h)) => format!("/api/v1/hearings/{h}/recording/{action}"),
                _ => bail!("name a hearing (--hearing) or a room (--court and --room)"),
            };
            let body = serde_json::json!({"hearing_id": t.hearing, "by": t.by, "reason": t.why});
            let resp = api
                .http
                .post(format!("{}{path}", api.base))
                .json(&body)
                .send()
                .await
                .with_context(|| format!("cannot reach the controller at {}", api.base))?;
            let status = resp.status();
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            }
            let Some(devices) = v["devices"].as_array() else {
                bail!(
                    "{action} recording: {status}: {}",
                    v["error"].as_str().unwrap_or("no details")
                );
            };
            if !cli.json {
                for d in devices {
                    let device = d["device"].as_str().unwrap_or("?");
                    let ack = &d["ack"];
                    match ack["status"].as_str() {
                        Some("ok") => println!(
                            "{device}: {} {} ({})",
                            v["hearing_id"].as_str().unwrap_or("?"),
                            ack["reply"]["state"].as_str().unwrap_or("?"),
                            t.by
                        ),
                        Some(other) => println!(
                            "{device}: {other}: {}",
                            ack["error"]
                                .as_str()
                                .or(ack["reason"].as_str())
                                .unwrap_or("no details")
                        ),
                        None => {
                            println!("{device}: {}", d["error"].as_str().unwrap_or("no answer"))
                        }
                    }
                }
            }
            if v["ok"] != Value::Bool(true) {
                bail!("{action} recording: not every device of the room did it");
            }
        }
        Top::Alarms(Alarms::Ls) => {
            let v = api.get("/api/v1/alarms", "listing alarms").await?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let mut t = table();
                t.set_header([
                    "ALARM",
                    "LEVEL",
                    "KIND",
                    "COURT / ROOM",
                    "MESSAGE",
                    "RAISED",
                    "ACK",
                ]);
                let list = v.as_array().cloned().unwrap_or_default();
                for a in &list {
                    let f = |k: &str| a[k].as_str().unwrap_or("-").to_owned();
                    t.add_row([
                        f("id"),
                        a["level"].to_string(),
                        f("kind"),
                        format!("{} / {}", f("court"), f("room")),
                        f("message"),
                        f("raised_at"),
                        a["acknowledged"]["by"].as_str().unwrap_or("-").to_owned(),
                    ]);
                }
                println!("{t}");
                println!("{} open alarms", list.len());
            }
        }
        Top::Alarms(Alarms::Ack { id, by }) => {
            api.send(
                api.http
                    .post(format!("{}/api/v1/alarms/{id}/ack", api.base))
                    .json(&serde_json::json!({"by": by})),
                &format!("acknowledging {id}"),
            )
            .await?;
            println!("{id}: acknowledged by {by}");
        }
        Top::Alarms(Alarms::Resolve { id, by }) => {
            api.send(
                api.http
                    .post(format!("{}/api/v1/alarms/{id}/resolve", api.base))
                    .json(&serde_json::json!({"by": by})),
                &format!("resolving {id}"),
            )
            .await?;
            println!("{id}: resolved by {by}");
        }
        Top::Login { user } => {
            let password = match std::env::var("GAVEL_PASSWORD") {
                Ok(p) => p,
                Err(_) => {
                    eprint!("password for {user}: ");
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .context("reading the password")?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            let v = api
                .post(
                    "/api/v1/login",
                    &serde_json::json!({"user": user, "password": password}),
                    &format!("signing in as {user}"),
                )
                .await?;
            let saved = session::Saved {
                controller: cli.controller.trim_end_matches('/').to_string(),
                user: user.clone(),
                role: v["role"].as_str().unwrap_or("-").to_string(),
                token: v["token"].as_str().unwrap_or_default().to_string(),
                expires_at: v["expires_at"].as_str().unwrap_or("-").to_string(),
            };
            let file = session::save(&saved)?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "signed in as {user} ({}) until {}; session kept in {}",
                    saved.role,
                    saved.expires_at,
                    file.display()
                );
            }
        }
        Top::Logout => {
            let _ = api
                .post("/api/v1/logout", &serde_json::json!({}), "signing out")
                .await;
            session::forget();
            println!("signed out");
        }
        Top::Users(Users::Ls) => {
            let v = api.get("/api/v1/users", "listing users").await?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let mut t = table();
                t.set_header(["USER", "ROLE", "COURT", "STATE"]);
                for u in v.as_array().into_iter().flatten() {
                    t.add_row([
                        u["name"].as_str().unwrap_or("-").to_owned(),
                        u["role"].as_str().unwrap_or("-").to_owned(),
                        u["court"].as_str().unwrap_or("-").to_owned(),
                        if u["disabled"] == true {
                            "disabled"
                        } else {
                            "active"
                        }
                        .to_owned(),
                    ]);
                }
                println!("{t}");
            }
        }
        Top::Users(Users::Add { name, role, court }) => {
            let password = std::env::var("GAVEL_NEW_PASSWORD").context(
                "set the new user's password in the environment variable GAVEL_NEW_PASSWORD",
            )?;
            let v = api
                .post(
                    "/api/v1/users",
                    &serde_json::json!({"name": name, "role": role, "court": court, "password": password}),
                    &format!("adding user {name}"),
                )
                .await?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("user {name} added as {role}");
            }
        }
        Top::Users(Users::Disable { name }) => {
            api.post(
                &format!("/api/v1/users/{name}/disable"),
                &serde_json::json!({}),
                &format!("disabling {name}"),
            )
            .await?;
            println!("user {name} disabled; their sessions ended");
        }
        Top::Audit { denied, limit, csv } => {
            let outcome = if denied { "&outcome=denied" } else { "" };
            if let Some(file) = csv {
                let resp = api
                    .http
                    .get(format!(
                        "{}/api/v1/audit?format=csv&limit={limit}{outcome}",
                        api.base
                    ))
                    .send()
                    .await
                    .context("cannot reach the controller (exporting the audit log)")?;
                let status = resp.status();
                let body = resp.bytes().await.context("reading the audit log")?;
                if !status.is_success() {
                    bail!(
                        "exporting the audit log: {status}: {}",
                        String::from_utf8_lossy(&body)
                    );
                }
                std::fs::write(&file, &body)
                    .with_context(|| format!("writing {}", file.display()))?;
                println!("audit log written to {}", file.display());
            } else {
                let v = api
                    .get(
                        &format!("/api/v1/audit?limit={limit}{outcome}"),
                        "reading the audit log",
                    )
                    .await?;
                if cli.json {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else {
                    let mut t = table();
                    t.set_header(["AT", "WHO", "ROLE", "FROM", "ACTION", "OUTCOME", "DETAIL"]);
                    for e in v.as_array().into_iter().flatten() {
                        t.add_row([
                            e["at_ms"]
                                .as_i64()
                                .and_then(|ms| {
                                    OffsetDateTime::from_unix_timestamp_nanos(
                                        i128::from(ms) * 1_000_000,
                                    )
                                    .ok()
                                })
                                .map(gavel_protocol::rfc3339)
                                .unwrap_or_default(),
                            e["actor"].as_str().unwrap_or("-").to_owned(),
                            e["role"].as_str().unwrap_or("-").to_owned(),
                            e["source"].as_str().unwrap_or("-").to_owned(),
                            e["action"].as_str().unwrap_or("-").to_owned(),
                            e["outcome"].as_str().unwrap_or("-").to_owned(),
                            e["detail"].as_str().unwrap_or("").to_owned(),
                        ]);
                    }
                    println!("{t}");
                }
            }
        }
        Top::Provision {
            id,
            court,
            room,
            profile,
            tags,
            valid_min,
            wait,
            test_recording,
        } => {
            let body = serde_json::json!({
                "court": court,
                "room": room,
                "profile": profile,
                "tags": tags,
                "ttl_s": valid_min.saturating_mul(60),
            });
            let v = api
                .post(
                    &format!("/api/v1/devices/{id}/enrollment"),
                    &body,
                    &format!("making an enrollment token for {id}"),
                )
                .await?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let token = v["token"].as_str().unwrap_or("-");
                println!(
                    "enrollment token for {id} (one use, valid until {}):\n  {token}\n\non the device:\n  GAVEL_ENROLL_TOKEN={token} gavel-agent --config /etc/gavel/agent.toml enroll --controller {}",
                    v["expires_at"].as_str().unwrap_or("-"),
                    cli.controller
                );
            }
            if let Some(secs) = wait {
                wait_online(&api, &id, Duration::from_secs(secs)).await?;
                let passed = self_test(&api, &id, cli.json).await?;
                if !passed {
                    bail!("{id}: self-test failed (see the table above)");
                }
                if let (Some(secs), Some(court), Some(room)) = (test_recording, &court, &room) {
                    test_record(&api, &id, court, room, Duration::from_secs(secs)).await?;
                }
            }
        }
        Top::Selftest { id } => {
            if !self_test(&api, &id, cli.json).await? {
                std::process::exit(1);
            }
        }
        Top::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "gavelctl",
                &mut std::io::stdout(),
            );
        }
        Top::Devices(Devices::Revoke { id }) => {
            let v = api
                .post(
                    &format!("/api/v1/devices/{id}/revoke"),
                    &serde_json::json!({}),
                    &format!("revoking {id}"),
                )
                .await?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let n = v["revoked"].as_array().map_or(0, Vec::len);
                println!("{id}: {n} certificate(s) revoked; the broker refuses it from now on");
            }
        }
        Top::Devices(Devices::Restart { id, reason }) => {
            let body = serde_json::json!({"type": "restart", "reason": reason});
            let v = api
                .post(
                    &format!("/api/v1/devices/{id}/commands"),
                    &body,
                    &format!("restarting {id}"),
                )
                .await?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{id}: restarting (acknowledged)");
            }
        }
    }
    Ok(())
}
