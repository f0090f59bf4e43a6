//! `gavelctl hall`: the service hall's queue, windows calling numbers, case check codes.

use anyhow::bail;
use clap::Subcommand;
use serde_json::Value;

use crate::{Api, table};

#[derive(Subcommand, Debug)]
pub enum Hall {
    /// The queue of a court's hall: waiting per service with estimates, windows, calls.
    Queue {
        /// Court (the kiosks' placement court).
        court: String,
    },
    /// A window calls the next waiting number (announced and shown on the display).
    Call {
        court: String,
        /// Window name, e.g. `3`.
        window: String,
        /// Only these services (repeat; default: any).
        #[arg(long = "service")]
        services: Vec<String>,
    },
    /// A window calls its current number again.
    Recall { court: String, window: String },
    /// The check code of a case number, to print on the litigant's notice.
    CheckCode {
        /// Case number, e.g. `(2026)浙0106民初1234号`.
        case: String,
    },
}

fn print_call(v: &Value) -> anyhow::Result<()> {
    match v["called"].as_object() {
        Some(c) => {
            let f = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("?").to_owned();
            let recall = c.get("recall").and_then(Value::as_bool).unwrap_or(false);
            println!(
                "{} ({}) to window {}{}",
                f("number"),
                f("service"),
                f("window"),
                if recall { ", again" } else { "" }
            );
            Ok(())
        }
        None => bail!("{}", v["reason"].as_str().unwrap_or("nothing called")),
    }
}

async fn act(api: &Api, path: &str, body: &Value) -> anyhow::Result<Value> {
    let resp = api
        .http
        .post(format!("{}{path}", api.base))
        .json(body)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the controller at {}: {e}", api.base))?;
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    // 409 carries the reason nobody was called; anything else without `called` is an error.
    if !status.is_success() && v.get("called").is_none() {
        bail!("{status}: {}", v["error"].as_str().unwrap_or("no details"));
    }
    Ok(v)
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub async fn run(api: &Api, json: bool, cmd: Hall) -> anyhow::Result<()> {
    match cmd {
        Hall::Queue { court } => {
            let v = api
                .get(
                    &format!("/api/v1/hall/{}", encode(&court)),
                    "reading the hall queue",
                )
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            println!("{court} · {}", v["day"].as_str().unwrap_or("?"));
            let mut t = table();
            t.set_header(["SERVICE", "WAITING", "ESTIMATE", "SERVICE TIME", "WINDOWS"]);
            for s in v["services"].as_array().into_iter().flatten() {
                t.add_row([
                    s["service"].as_str().unwrap_or("?").to_owned(),
                    s["waiting"].to_string(),
                    format!("{} min", s["estimate_s"].as_u64().unwrap_or(0) / 60),
                    format!("{} s", s["service_s"].as_u64().unwrap_or(0)),
                    s["windows"].to_string(),
                ]);
            }
            println!("{t}");
            let mut t = table();
            t.set_header(["CALLED", "WINDOW", "SERVICE", "AT"]);
            for c in v["calls"].as_array().into_iter().flatten() {
                t.add_row([
                    c["number"].as_str().unwrap_or("?").to_owned(),
                    c["window"].as_str().unwrap_or("?").to_owned(),
                    c["service"].as_str().unwrap_or("?").to_owned(),
                    c["at"].as_str().unwrap_or("?").to_owned(),
                ]);
            }
            println!("{t}");
        }
        Hall::Call {
            court,
            window,
            services,
        } => {
            let path = format!(
                "/api/v1/hall/{}/windows/{}/call",
                encode(&court),
                encode(&window)
            );
            let v = act(api, &path, &serde_json::json!({ "services": services })).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_call(&v)?;
            }
        }
        Hall::Recall { court, window } => {
            let path = format!(
                "/api/v1/hall/{}/windows/{}/recall",
                encode(&court),
                encode(&window)
            );
            let v = act(api, &path, &Value::Null).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_call(&v)?;
            }
        }
        Hall::CheckCode { case } => {
            let v = api
                .get(
                    &format!("/api/v1/hall/check-code?case={}", encode(&case)),
                    "reading the check code",
                )
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{}", v["check_code"].as_str().unwrap_or("?"));
            }
        }
    }
    Ok(())
}
