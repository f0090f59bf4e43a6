//! `gavelctl transcripts ...`: search every hearing's transcript, show one, export one.

use anyhow::Context;
use clap::Subcommand;

use crate::{Api, table};

/// Hearing transcripts (庭审笔录).
#[derive(Subcommand, Debug)]
pub enum Transcripts {
    /// Lines whose text contains TEXT (Chinese or English), newest hearings first.
    Search {
        text: String,
        #[arg(long)]
        court: Option<String>,
        #[arg(long)]
        room: Option<String>,
        /// Hearings on or after this date (YYYY-MM-DD, the courts' local date).
        #[arg(long)]
        from: Option<String>,
        /// Hearings on or before this date.
        #[arg(long)]
        to: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// A hearing's transcript: time, seat, text in force (and the machine text where it
    /// was corrected), and its sign-off.
    Show { hearing: String },
    /// Writes a hearing's transcript as SRT, WebVTT, HTML or DOCX.
    Export {
        hearing: String,
        #[arg(long, value_parser = ["srt", "vtt", "html", "docx"])]
        format: String,
        /// File to write (default: transcript-<hearing>.<format>; `-` for standard output).
        #[arg(short, long)]
        output: Option<std::path::PathBuf>,
    },
}

fn hms(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub async fn run(api: &Api, json: bool, cmd: Transcripts) -> anyhow::Result<()> {
    match cmd {
        Transcripts::Search {
            text,
            court,
            room,
            from,
            to,
            limit,
        } => {
            let mut query = vec![("q", text.clone()), ("limit", limit.to_string())];
            for (k, v) in [("court", court), ("room", room), ("from", from), ("to", to)] {
                if let Some(v) = v {
                    query.push((k, v));
                }
            }
            let req = api
                .http
                .get(format!("{}/api/v1/transcripts/search", api.base))
                .query(&query);
            let v = api
                .send(req, &format!("searching transcripts for {text:?}"))
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            let hits = v.as_array().cloned().unwrap_or_default();
            let mut t = table();
            t.set_header(["hearing", "case", "court/room", "seat", "time", "text"]);
            for h in &hits {
                let s = |k: &str| h[k].as_str().unwrap_or("").to_owned();
                t.add_row([
                    s("hearing_id"),
                    s("case_number"),
                    format!("{}/{}", s("court"), s("room")),
                    s("seat"),
                    s("time"),
                    s("snippet"),
                ]);
            }
            println!("{t}");
            println!("{} line(s) found", hits.len());
        }
        Transcripts::Show { hearing } => {
            let v = api
                .get(
                    &format!("/api/v1/hearings/{}/transcript", path_segment(&hearing)),
                    &format!("reading the transcript of {hearing}"),
                )
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            let h = &v["hearing"];
            if h.is_object() {
                println!(
                    "{} {} {}/{} judge {}",
                    hearing,
                    h["case_number"].as_str().unwrap_or(""),
                    h["court"].as_str().unwrap_or(""),
                    h["room"].as_str().unwrap_or(""),
                    h["judge"].as_str().unwrap_or("")
                );
            }
            let mut t = table();
            t.set_header(["time", "seat", "text", "state"]);
            for l in v["lines"].as_array().into_iter().flatten() {
                let text = l["text"].as_str().unwrap_or("");
                let machine = l["machine_text"].as_str().unwrap_or("");
                let state = if l["final"] != true {
                    "partial".to_owned()
                } else if text != machine {
                    format!("corrected (machine: {machine})")
                } else {
                    String::new()
                };
                t.add_row([
                    hms(l["offset_ns"].as_u64().unwrap_or(0)),
                    l["seat"].as_str().unwrap_or("").to_owned(),
                    text.to_owned(),
                    state,
                ]);
            }
            println!("{t}");
            match v["signoff"].as_object() {
                Some(s) => println!(
                    "signed off by {} at {}, {} lines, SHA-256 {}{}",
                    s["by"].as_str().unwrap_or(""),
                    s["at"].as_str().unwrap_or(""),
                    s["lines"],
                    s["sha256"].as_str().unwrap_or(""),
                    if v["intact"] == true {
                        " (text as signed)"
                    } else {
                        " — CHANGED SINCE SIGN-OFF"
                    }
                ),
                None => println!("not signed off"),
            }
        }
        Transcripts::Export {
            hearing,
            format,
            output,
        } => {
            let what = format!("exporting the transcript of {hearing} as {format}");
            let req = api
                .http
                .get(format!(
                    "{}/api/v1/hearings/{}/transcript",
                    api.base,
                    path_segment(&hearing)
                ))
                .query(&[("format", format.as_str())]);
            let body = api.download(req, &what).await?;
            let path = output.unwrap_or_else(|| format!("transcript-{hearing}.{format}").into());
            if path.as_os_str() == "-" {
                use std::io::Write as _;
                std::io::stdout().write_all(&body)?;
            } else {
                std::fs::write(&path, &body)
                    .with_context(|| format!("writing {}", path.display()))?;
                eprintln!("wrote {} ({} bytes)", path.display(), body.len());
            }
        }
    }
    Ok(())
}
