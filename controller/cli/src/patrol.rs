//! `gavelctl patrol ...`: hearing patrol findings and the patrol report.

use clap::Subcommand;

use crate::{Api, table};

/// Hearing patrol (庭审巡查).
#[derive(Subcommand, Debug)]
pub enum Patrol {
    /// Findings of the last hours, newest first.
    Findings {
        #[arg(long)]
        court: Option<String>,
        /// Finding type (`signal_lost`, `disturbance`...).
        #[arg(long = "type")]
        kind: Option<String>,
        /// How far back, hours.
        #[arg(long, default_value_t = 24)]
        hours: i64,
    },
    /// A court's patrol report for a day or a week: hearings patrolled, findings by type
    /// and room, unresolved items.
    Report {
        #[arg(long)]
        court: String,
        /// `day` or `week`.
        #[arg(long, default_value = "day", value_parser = ["day", "week"])]
        period: String,
        /// First day (YYYY-MM-DD, the courts' local date); today when absent.
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

pub async fn run(api: &Api, json: bool, cmd: Patrol) -> anyhow::Result<()> {
    match cmd {
        Patrol::Findings { court, kind, hours } => {
            let mut query = vec![("hours", hours.to_string())];
            if let Some(c) = court {
                query.push(("court", c));
            }
            if let Some(k) = kind {
                query.push(("type", k));
            }
            let req = api
                .http
                .get(format!("{}/api/v1/findings", api.base))
                .query(&query);
            let v = api.send(req, "reading the patrol findings").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            let mut t = table();
            t.set_header([
                "started",
                "court/room",
                "type",
                "source",
                "severity",
                "ended",
                "recording",
            ]);
            for f in v.as_array().into_iter().flatten() {
                let s = |k: &str| f[k].as_str().unwrap_or("").to_owned();
                t.add_row([
                    s("started_at"),
                    format!("{}/{}", s("court"), s("room")),
                    s("type"),
                    match f["seat"].as_str() {
                        Some(seat) => format!("{} ({seat})", s("source")),
                        None => s("source"),
                    },
                    s("severity"),
                    f["ended_at"].as_str().unwrap_or("open").to_owned(),
                    match f["hearing_id"].as_str() {
                        Some(h) => {
                            format!("{h} +{} s", f["offset_ms"].as_u64().unwrap_or(0) / 1000)
                        }
                        None => String::new(),
                    },
                ]);
            }
            println!("{t}");
        }
        Patrol::Report {
            court,
            period,
            date,
            format,
            output,
        } => {
            let mut query = vec![("court", court.clone()), ("period", period)];
            if let Some(d) = date {
                query.push(("date", d));
            }
            let what = format!("reading the patrol report of {court}");
            if format == "table" && output.is_none() {
                let req = api
                    .http
                    .get(format!("{}/api/v1/reports/patrol", api.base))
                    .query(&query);
                let r = api.send(req, &what).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&r)?);
                    return Ok(());
                }
                println!(
                    "{court}, {} from {}: {} hearings patrolled, {} findings, {} unresolved",
                    r["period"].as_str().unwrap_or(""),
                    r["from"].as_str().unwrap_or(""),
                    r["hearings_patrolled"],
                    r["findings"],
                    r["unresolved"].as_array().map_or(0, Vec::len)
                );
                let mut t = table();
                t.set_header(["room", "type", "findings"]);
                for (room, kinds) in r["by_room"].as_object().into_iter().flatten() {
                    for (k, n) in kinds.as_object().into_iter().flatten() {
                        t.add_row([room.clone(), k.clone(), n.to_string()]);
                    }
                }
                println!("{t}");
                for u in r["unresolved"].as_array().into_iter().flatten() {
                    println!(
                        "UNRESOLVED {} {} since {}: {}",
                        u["room"].as_str().unwrap_or(""),
                        u["type"].as_str().unwrap_or(""),
                        u["since"].as_str().unwrap_or(""),
                        u["what"].as_str().unwrap_or("")
                    );
                }
                return Ok(());
            }
            api.report("/api/v1/reports/patrol", query, format, output, &what)
                .await?;
        }
    }
    Ok(())
}
