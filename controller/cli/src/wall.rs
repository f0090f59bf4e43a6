//! `gavelctl wall ...`: the command centre's video walls (layouts, sources, focus).

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use crate::{Api, table};

/// Video walls: layout, sources and the focus tile.
#[derive(Subcommand, Debug)]
pub enum Wall {
    /// Every configured wall.
    Ls,
    /// One wall: layout, focus and its sources in tile order.
    Show { device: String },
    /// Set a wall's layout (`1`, `2x2`, `3x3`, `1+5`) and, with --source, its sources in
    /// tile order (without --source the wall keeps the sources it has).
    Layout {
        device: String,
        layout: String,
        /// `COURT/ROOM=URL[,sub=SUB_URL][,case=CASE_NUMBER]`, in tile order (repeat). The
        /// wall pulls the sub-stream where one is given.
        #[arg(long = "source")]
        sources: Vec<String>,
    },
    /// Move a room into the focus tile (or clear the focus with --clear).
    Focus {
        device: String,
        /// The room (on the wall).
        room: Option<String>,
        /// Its court (default: the court of the wall's source for that room).
        #[arg(long)]
        court: Option<String>,
        /// Clear the focus: tiles in the configured order.
        #[arg(long, conflicts_with = "room")]
        clear: bool,
        /// Who moves it.
        #[arg(long)]
        by: String,
    },
}

/// Parses `COURT/ROOM=URL[,sub=SUB_URL][,case=CASE]`.
fn parse_source(s: &str) -> anyhow::Result<Value> {
    let (place, rest) = s
        .split_once('=')
        .with_context(|| format!("--source {s:?}: expected COURT/ROOM=URL"))?;
    let (court, room) = place
        .split_once('/')
        .with_context(|| format!("--source {s:?}: expected COURT/ROOM before '='"))?;
    let mut parts = rest.split(',');
    let url = parts.next().unwrap_or_default();
    let mut source = json!({"court": court, "room": room, "url": url});
    for p in parts {
        match p.split_once('=') {
            Some(("sub", v)) => source["sub_url"] = json!(v),
            Some(("case", v)) => source["case_number"] = json!(v),
            _ => bail!("--source {s:?}: {p:?} is neither sub=URL nor case=CASE"),
        }
    }
    Ok(source)
}

fn print_wall(entry: &Value) {
    let w = &entry["wall"];
    let focus = match w["focus"].as_object() {
        Some(f) => format!(
            "{}/{} ({})",
            f["court"].as_str().unwrap_or("?"),
            f["room"].as_str().unwrap_or("?"),
            f["reason"].as_str().unwrap_or("")
        ),
        None => "-".into(),
    };
    println!(
        "{}: layout {}, version {}, focus {focus}",
        entry["device"].as_str().unwrap_or("?"),
        w["layout"].as_str().unwrap_or("?"),
        w["version"]
    );
    let mut t = table();
    t.set_header(["#", "COURT", "ROOM", "CASE", "STREAM"]);
    let mut sources: Vec<&Value> = w["sources"].as_array().into_iter().flatten().collect();
    // Tile order: the focus room first.
    if let Some(f) = w["focus"].as_object()
        && let Some(at) = sources
            .iter()
            .position(|s| s["court"] == f["court"] && s["room"] == f["room"])
    {
        let focused = sources.remove(at);
        sources.insert(0, focused);
    }
    for (i, s) in sources.iter().enumerate() {
        t.add_row([
            (i + 1).to_string(),
            s["court"].as_str().unwrap_or("").to_owned(),
            s["room"].as_str().unwrap_or("").to_owned(),
            s["case_number"].as_str().unwrap_or("-").to_owned(),
            s["sub_url"]
                .as_str()
                .or(s["url"].as_str())
                .unwrap_or("")
                .to_owned(),
        ]);
    }
    println!("{t}");
}

pub async fn run(api: &Api, as_json: bool, cmd: Wall) -> anyhow::Result<()> {
    let out = match cmd {
        Wall::Ls => api.get("/api/v1/walls", "listing walls").await?,
        Wall::Show { device } => {
            api.get(&format!("/api/v1/walls/{device}"), "showing the wall")
                .await?
        }
        Wall::Layout {
            device,
            layout,
            sources,
        } => {
            let sources: Vec<Value> = if sources.is_empty() {
                let current = api
                    .get(&format!("/api/v1/walls/{device}"), "reading the wall")
                    .await
                    .context("give the wall's sources with --source (it has none yet)")?;
                current["wall"]["sources"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            } else {
                sources
                    .iter()
                    .map(|s| parse_source(s))
                    .collect::<anyhow::Result<_>>()?
            };
            api.put(
                &format!("/api/v1/walls/{device}"),
                &json!({"layout": layout, "sources": sources}),
                "setting the wall",
            )
            .await?
        }
        Wall::Focus {
            device,
            room,
            court,
            clear,
            by,
        } => {
            if room.is_none() && !clear {
                bail!("name the room to focus, or --clear");
            }
            api.post(
                &format!("/api/v1/walls/{device}/focus"),
                &json!({"room": room, "court": court, "by": by}),
                "moving the focus",
            )
            .await?
        }
    };
    if as_json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if let Some(list) = out.as_array() {
        if list.is_empty() {
            println!("no walls configured");
        }
        for entry in list {
            print_wall(entry);
        }
    } else {
        print_wall(&out);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_names_court_room_stream_sub_stream_and_case() {
        let s = parse_source("hz/room-101=rtsp://a/main,sub=rtsp://a/sub,case=(2026)1号")
            .expect("parses");
        assert_eq!(s["court"], "hz");
        assert_eq!(s["room"], "room-101");
        assert_eq!(s["url"], "rtsp://a/main");
        assert_eq!(s["sub_url"], "rtsp://a/sub");
        assert_eq!(s["case_number"], "(2026)1号");
        assert!(parse_source("room-101=rtsp://a").is_err());
        assert!(parse_source("hz/r=rtsp://a,zoom=2").is_err());
    }
}
