//! `gavelctl ota ...`: build, sign, verify and publish bundles; run campaigns.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;
use gavel_fleet::rollout::{CampaignState, Progress};
use gavel_ota::bundle::{self, BuildSpec};
use gavel_ota::signature::{self, Keyring};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::{Api, table};

/// Over-the-air updates.
#[derive(Subcommand, Debug)]
pub enum Ota {
    /// Make a new ed25519 signing key pair (keep the `.key` offline; devices get the `.pub`).
    Keygen {
        /// Writes PREFIX.key and PREFIX.pub.
        prefix: PathBuf,
    },
    /// Build an unsigned bundle from an image (a delta when --base is given).
    Build {
        /// The image to install.
        #[arg(long)]
        image: PathBuf,
        /// Its version (MAJOR.MINOR.PATCH).
        #[arg(long)]
        version: String,
        /// Device profiles it runs on (repeat).
        #[arg(long = "compatible", required = true)]
        compatible: Vec<String>,
        /// Devices must run at least this version.
        #[arg(long)]
        min_version: Option<String>,
        /// Build a delta against this base image...
        #[arg(long, requires = "base_version")]
        base: Option<PathBuf>,
        /// ...which is this version.
        #[arg(long)]
        base_version: Option<String>,
        /// Release notes title.
        #[arg(long)]
        description: Option<String>,
        /// Output bundle.
        #[arg(long, short)]
        out: PathBuf,
        /// Sign right away with this key (otherwise run `sign` where the key lives).
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Sign a built bundle in place.
    Sign {
        bundle: PathBuf,
        /// The signing key file.
        #[arg(long)]
        key: PathBuf,
    },
    /// Check a bundle's signature and payload against public keys.
    Verify {
        bundle: PathBuf,
        /// Trusted public key files (repeat).
        #[arg(long = "pub", required = true)]
        public: Vec<PathBuf>,
    },
    /// Upload a signed bundle to the controller: a `.gota` (`gavelctl ota build`) or a
    /// RAUC bundle (`.raucb`, `compatible=gavel-<profile>`, version MAJOR.MINOR.PATCH).
    Publish { bundle: PathBuf },
    /// Bundles published on the controller.
    Ls,
    /// Campaigns: staged rollouts of a bundle.
    #[command(subcommand)]
    Campaign(Campaign),
}

/// Campaign commands.
#[derive(Subcommand, Debug)]
pub enum Campaign {
    /// Start a campaign (canary room, then 10 %, then the rest).
    Create {
        /// Published bundle name (see `gavelctl ota ls`).
        #[arg(long)]
        bundle: String,
        /// Campaign id (default: derived from the bundle).
        #[arg(long)]
        id: Option<String>,
        /// Only this profile.
        #[arg(long)]
        profile: Option<String>,
        /// Only this court.
        #[arg(long)]
        court: Option<String>,
        /// Only this room.
        #[arg(long)]
        room: Option<String>,
        /// Only devices with this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Only these devices (repeat).
        #[arg(long = "device")]
        devices: Vec<String>,
        /// Halt a wave when more than this share fails (0-1).
        #[arg(long, default_value_t = 0.2)]
        threshold: f64,
        /// Install only inside this daily maintenance window, UTC hours START-END (e.g.
        /// 22-6, may wrap midnight; repeatable). Rooms in session are never touched.
        #[arg(long = "window", value_name = "START-END", value_parser = parse_window)]
        windows: Vec<(u8, u8)>,
    },
    /// List campaigns.
    Ls,
    /// Show a campaign's progress; with --watch, live progress bars until it ends.
    Status {
        id: String,
        #[arg(long)]
        watch: bool,
    },
    /// Stop sending new installs.
    Pause { id: String },
    /// Continue a paused or halted campaign.
    Resume { id: String },
    /// Stop a campaign for good.
    Abort { id: String },
}

fn bytes_bar(len: u64, msg: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:>10} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb.set_message(msg.to_owned());
    pb
}

fn print_json(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Runs an `ota` command.
pub async fn run(api: &Api, json: bool, cmd: Ota) -> anyhow::Result<()> {
    match cmd {
        Ota::Keygen { prefix } => {
            let kp = signature::Keypair::generate()?;
            let (k, p) = (prefix.with_extension("key"), prefix.with_extension("pub"));
            kp.write(&k, &p, "Gavel OTA signing key")
                .with_context(|| format!("writing {} and {}", k.display(), p.display()))?;
            println!(
                "wrote {} (secret, mode 0600) and {}",
                k.display(),
                p.display()
            );
        }
        Ota::Build {
            image,
            version,
            compatible,
            min_version,
            base,
            base_version,
            description,
            out,
            key,
        } => {
            let version = version.parse()?;
            let min_version = min_version.map(|v| v.parse()).transpose()?;
            let base = match (base, base_version) {
                (Some(b), Some(v)) => Some((b, v.parse()?)),
                _ => None,
            };
            let image_len = std::fs::metadata(&image)
                .with_context(|| format!("reading {}", image.display()))?
                .len();
            let spec = BuildSpec {
                version,
                compatible,
                min_version,
                image,
                base,
                description,
            };
            let pb = if spec.base.is_some() {
                let s = ProgressBar::new_spinner();
                s.set_message("computing delta");
                s.enable_steady_tick(Duration::from_millis(120));
                s
            } else {
                bytes_bar(image_len, "payload")
            };
            let out2 = out.clone();
            let pb2 = pb.clone();
            let (manifest, stats) = tokio::task::spawn_blocking(move || {
                bundle::build(&out2, &spec, &mut |n| pb2.set_position(n))
            })
            .await??;
            pb.finish_and_clear();
            if let Some(k) = key {
                let key = signature::load_signing_key(&k)?;
                bundle::sign_in_place(&out, &key)?;
            }
            let size = std::fs::metadata(&out)?.len();
            println!(
                "built {} ({} bytes): version {} for [{}]",
                out.display(),
                size,
                manifest.version,
                manifest.compatible.join(", ")
            );
            if let Some(s) = stats {
                println!(
                    "delta against {}: {} bytes = {:.2} % of the {}-byte image (saves {:.1} %); {} bytes copied from the base, {} literal",
                    manifest
                        .delta_base
                        .as_ref()
                        .map(|d| d.version.to_string())
                        .unwrap_or_default(),
                    s.delta_size,
                    s.ratio() * 100.0,
                    s.target_size,
                    (1.0 - s.ratio()) * 100.0,
                    s.copied,
                    s.literal
                );
            }
        }
        Ota::Sign { bundle: path, key } => {
            let key = signature::load_signing_key(&key)?;
            let m = bundle::sign_in_place(&path, &key)?;
            println!("signed {} (version {})", path.display(), m.version);
        }
        Ota::Verify {
            bundle: path,
            public,
        } => {
            let ring = Keyring::load(&public)?;
            let b = gavel_ota::Bundle::open(&path)?;
            let m = tokio::task::spawn_blocking(move || b.verify(&ring)).await??;
            println!(
                "{}: signature and payload OK; version {} for [{}], {} payload",
                path.display(),
                m.version,
                m.compatible.join(", "),
                if m.delta_base.is_some() {
                    "delta"
                } else {
                    "full"
                }
            );
        }
        Ota::Publish { bundle: path } => {
            let len = std::fs::metadata(&path)
                .with_context(|| format!("reading {}", path.display()))?
                .len();
            let pb = bytes_bar(len, "reading");
            let bytes = {
                use std::io::Read;
                let mut f = std::fs::File::open(&path)?;
                let mut buf = Vec::with_capacity(len as usize);
                let mut chunk = vec![0u8; 1 << 20];
                loop {
                    let n = f.read(&mut chunk)?;
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    pb.set_position(buf.len() as u64);
                }
                buf
            };
            pb.set_message("uploading");
            pb.enable_steady_tick(Duration::from_millis(120));
            let url = format!("{}/api/v1/ota/bundles", api.base);
            // The session's client (it carries the sign-in), with a long timeout for
            // large bundles on slow links.
            let req = api
                .http
                .post(url)
                .timeout(Duration::from_secs(3600))
                .body(bytes);
            let v = api.send(req, "publishing the bundle").await?;
            pb.finish_and_clear();
            if json {
                print_json(&v)?;
            } else {
                println!(
                    "published {} ({} bytes, sha256 {}): version {} for [{}]",
                    v["name"].as_str().unwrap_or("?"),
                    v["size"],
                    v["sha256"].as_str().unwrap_or("?"),
                    v["manifest"]["version"].as_str().unwrap_or("?"),
                    v["manifest"]["compatible"]
                        .as_array()
                        .map(|a| a
                            .iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(", "))
                        .unwrap_or_default()
                );
            }
        }
        Ota::Ls => {
            let v = api.get("/api/v1/ota/bundles", "listing bundles").await?;
            if json {
                return print_json(&v);
            }
            let mut t = table();
            t.set_header(["BUNDLE", "VERSION", "PROFILES", "KIND", "SIZE"]);
            for b in v.as_array().into_iter().flatten() {
                let m = &b["manifest"];
                t.add_row([
                    b["name"].as_str().unwrap_or("?").to_owned(),
                    m["version"].as_str().unwrap_or("?").to_owned(),
                    m["compatible"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .collect::<Vec<_>>()
                                .join(", ")
                        })
                        .unwrap_or_default(),
                    if b["format"] == "raucb" {
                        "rauc"
                    } else if m["delta_base"].is_object() {
                        "delta"
                    } else {
                        "full"
                    }
                    .to_owned(),
                    b["size"].to_string(),
                ]);
            }
            println!("{t}");
        }
        Ota::Campaign(c) => campaign(api, json, c).await?,
    }
    Ok(())
}

/// `START-END` in whole UTC hours, e.g. `22-6`.
fn parse_window(s: &str) -> Result<(u8, u8), String> {
    let bad = || format!("{s:?}: expected START-END in UTC hours 0-23, e.g. 22-6");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let a: u8 = a.trim().parse().map_err(|_| bad())?;
    let b: u8 = b.trim().parse().map_err(|_| bad())?;
    if a > 23 || b > 23 || a == b {
        return Err(bad());
    }
    Ok((a, b))
}

async fn campaign(api: &Api, json: bool, cmd: Campaign) -> anyhow::Result<()> {
    match cmd {
        Campaign::Create {
            bundle,
            id,
            profile,
            court,
            room,
            tag,
            devices,
            threshold,
            windows,
        } => {
            if !(0.0..=1.0).contains(&threshold) {
                bail!("--threshold {threshold} is outside 0-1");
            }
            let maintenance: Vec<serde_json::Value> = windows
                .iter()
                .map(|(a, b)| serde_json::json!({"start_hour": a, "end_hour": b}))
                .collect();
            let body = serde_json::json!({
                "id": id, "bundle": bundle, "failure_threshold": threshold,
                "selector": {"profile": profile, "court": court, "room": room, "tag": tag, "devices": devices},
                "maintenance": maintenance,
            });
            let v = api
                .post("/api/v1/ota/campaigns", &body, "creating the campaign")
                .await?;
            if json {
                return print_json(&v);
            }
            println!(
                "campaign {} started: {} devices in {} waves",
                v["id"].as_str().unwrap_or("?"),
                v["progress"]["total"],
                v["progress"]["waves"]
            );
        }
        Campaign::Ls => {
            let v = api
                .get("/api/v1/ota/campaigns", "listing campaigns")
                .await?;
            if json {
                return print_json(&v);
            }
            let mut t = table();
            t.set_header([
                "CAMPAIGN", "VERSION", "STATE", "WAVE", "DONE", "FAILED", "TOTAL",
            ]);
            for c in v.as_array().into_iter().flatten() {
                let p: Progress = serde_json::from_value(c["progress"].clone()).unwrap_or_default();
                t.add_row([
                    c["id"].as_str().unwrap_or("?").to_owned(),
                    c["version"].as_str().unwrap_or("?").to_owned(),
                    state_text(&c["state"]),
                    format!("{}/{}", (p.wave + 1).min(p.waves), p.waves),
                    p.succeeded.to_string(),
                    p.failed.to_string(),
                    p.total.to_string(),
                ]);
            }
            println!("{t}");
        }
        Campaign::Status { id, watch } => {
            let path = format!("/api/v1/ota/campaigns/{id}");
            if !watch {
                let v = api.get(&path, "reading the campaign").await?;
                if json {
                    return print_json(&v);
                }
                print_status(&v);
                return Ok(());
            }
            let mp = MultiProgress::new();
            let style = ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            let bars: Vec<ProgressBar> = ["succeeded", "failed", "installing"]
                .iter()
                .map(|m| {
                    let b = mp.add(ProgressBar::new(1));
                    b.set_style(style.clone());
                    b.set_message(*m);
                    b
                })
                .collect();
            let info = mp.add(ProgressBar::new_spinner());
            loop {
                let v = api.get(&path, "reading the campaign").await?;
                let p: Progress = serde_json::from_value(v["progress"].clone()).unwrap_or_default();
                for (b, n) in bars.iter().zip([p.succeeded, p.failed, p.installing]) {
                    b.set_length(p.total as u64);
                    b.set_position(n as u64);
                }
                info.set_message(format!(
                    "{}: wave {}/{}, {} pending, {} held back by hearings",
                    state_text(&v["state"]),
                    (p.wave + 1).min(p.waves),
                    p.waves,
                    p.pending,
                    p.deferred_by_hearing
                ));
                let state: Option<CampaignState> = serde_json::from_value(v["state"].clone()).ok();
                if !matches!(
                    state,
                    Some(CampaignState::Running) | Some(CampaignState::Paused)
                ) {
                    for b in &bars {
                        b.finish();
                    }
                    info.finish();
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        Campaign::Pause { id } => act(api, json, &id, "pause").await?,
        Campaign::Resume { id } => act(api, json, &id, "resume").await?,
        Campaign::Abort { id } => act(api, json, &id, "abort").await?,
    }
    Ok(())
}

async fn act(api: &Api, json: bool, id: &str, what: &str) -> anyhow::Result<()> {
    let v = api
        .post(
            &format!("/api/v1/ota/campaigns/{id}/{what}"),
            &Value::Null,
            &format!("{what} campaign {id}"),
        )
        .await?;
    if json {
        return print_json(&v);
    }
    println!("{id}: {}", state_text(&v["state"]));
    Ok(())
}

fn state_text(v: &Value) -> String {
    match (v["state"].as_str(), v["reason"].as_str()) {
        (Some(s), Some(r)) => format!("{s} ({r})"),
        (Some(s), None) => s.to_owned(),
        _ => "?".into(),
    }
}

fn print_status(v: &Value) {
    let p: Progress = serde_json::from_value(v["progress"].clone()).unwrap_or_default();
    println!(
        "campaign {} ({}): {}\n  wave {}/{}; {} succeeded, {} failed, {} installing, {} pending ({} held back by hearings) of {}",
        v["id"].as_str().unwrap_or("?"),
        v["version"].as_str().unwrap_or("?"),
        state_text(&v["state"]),
        (p.wave + 1).min(p.waves),
        p.waves,
        p.succeeded,
        p.failed,
        p.installing,
        p.pending,
        p.deferred_by_hearing,
        p.total
    );
}
