//! `gavel-agent`: runs on every courtroom device.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use gavel_agent::{AgentConfig, Exit};
use tracing_subscriber::EnvFilter;

/// The Gavel device agent: connects to the controller, reports health, answers commands.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Configuration file (TOML); see agent.example.toml.
    #[arg(short, long, env = "GAVEL_AGENT_CONFIG")]
    config: Option<PathBuf>,
    /// Device id (overrides the file).
    #[arg(long)]
    device_id: Option<String>,
    /// Device profile name (overrides the file).
    #[arg(long)]
    profile: Option<String>,
    /// Folder holding the device profiles.
    #[arg(long)]
    profiles_dir: Option<PathBuf>,
    /// Broker HOST:PORT (overrides the file).
    #[arg(long)]
    broker: Option<String>,
    /// Court the device is installed in.
    #[arg(long, requires = "room")]
    court: Option<String>,
    /// Room the device is installed in.
    #[arg(long, requires = "court")]
    room: Option<String>,
    /// A tag for OTA targeting (repeatable; adds to the config's `tags`).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Seconds between health messages (overrides the profile).
    #[arg(long)]
    health_interval: Option<u32>,
    /// MQTT keepalive in seconds (overrides the profile).
    #[arg(long)]
    keepalive: Option<u16>,
    /// Simulate peripherals (lamp, sensors): demos and rigs without the hardware.
    #[arg(long)]
    simulate_hardware: bool,
    /// Emit this many synthetic probe events per second (link self-test and soak runs).
    #[arg(long, value_name = "EVENTS_PER_S")]
    probe_rate: Option<f64>,
    /// Send unconfirmed events again after this many seconds without a receipt.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    resend_after: u64,
    /// Enable over-the-air updates, trusting this public key file (repeatable; adds to
    /// the config's `ota.trusted_keys`).
    #[arg(long, value_name = "FILE")]
    ota_key: Vec<PathBuf>,
    /// Folder of the A/B slots (default `<data_dir>/ota`); needs `[ota]` or `--ota-key`.
    #[arg(long, value_name = "DIR")]
    ota_dir: Option<PathBuf>,
    /// Commit a newly booted slot only if healthy within this many seconds.
    #[arg(long, value_name = "SECONDS")]
    ota_health_deadline: Option<u64>,
    /// No OTA install or reboot this many seconds before a scheduled hearing.
    #[arg(long, value_name = "SECONDS")]
    ota_guard: Option<u64>,
    /// Folder for the device's durable state (overrides the file and GAVEL_DATA_DIR).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Sub>,
}

#[derive(clap::Subcommand, Debug)]
enum Sub {
    /// The clerk's control at the courtroom terminal: start or stop recording through the
    /// running agent (over its local socket), with who and why; works without the
    /// controller.
    #[command(subcommand)]
    Clerk(Clerk),
    /// The room's ONVIF cameras: find them on the network, and write their streams into
    /// this device's configuration (no stream address typed by hand).
    #[command(subcommand)]
    Cameras(Cameras),
    /// The receipt printer (kiosk queue tickets): check it from the device's console.
    Printer {
        /// Serial port (default: the profile's `capabilities.printer.port`).
        #[arg(long)]
        port: Option<String>,
        /// Baud rate (default: the profile's).
        #[arg(long)]
        baud: Option<u32>,
        #[command(subcommand)]
        action: PrinterAction,
    },
    /// Enroll this device with the controller: make its key here, send a signing request
    /// with the technician's one-time token, and write the certificate, the CA and the
    /// device's assignment (id, court, room, profile, TLS broker) into --config.
    Enroll {
        /// The controller's API address, e.g. http://controller.court:8700.
        #[arg(long)]
        controller: String,
        /// The one-time token from `gavelctl provision` (or the environment variable
        /// GAVEL_ENROLL_TOKEN, which keeps it out of the shell history).
        #[arg(long, env = "GAVEL_ENROLL_TOKEN", hide_env_values = true)]
        token: String,
        /// Where the key and certificates go (default `<data_dir>/identity`).
        #[arg(long)]
        identity_dir: Option<PathBuf>,
        /// Host name of the TLS broker, when it is not the controller's host.
        #[arg(long)]
        broker_host: Option<String>,
    },
}

#[derive(clap::Subcommand, Debug)]
enum PrinterAction {
    /// Ask the printer whether it is online and has paper.
    Status,
    /// Print a test page (Chinese and Latin text, a ruler as wide as the paper).
    Test,
}

#[derive(clap::Subcommand, Debug)]
enum Cameras {
    /// Find ONVIF cameras (WS-Discovery on the local network, or probes to given
    /// addresses).
    Discover {
        /// Probe this address (HOST:PORT, repeatable) instead of multicast.
        #[arg(long = "probe", value_name = "HOST:PORT")]
        probes: Vec<std::net::SocketAddr>,
        /// Seconds to wait for answers.
        #[arg(long, default_value_t = 3)]
        wait: u64,
    },
    /// Read each camera (identity, stream profiles, clock) and assign it to a recorded
    /// source of the profile: `[media.<source>]` in the config, details in
    /// `<data_dir>/cameras.json`.
    Configure {
        /// SOURCE=DEVICE-SERVICE-URL, e.g.
        /// cam-judge=http://10.0.0.6/onvif/device_service (repeatable).
        #[arg(long = "camera", value_name = "SOURCE=URL", required = true, value_parser = gavel_agent::cameras::parse_assignment)]
        cameras: Vec<(String, String)>,
        /// ONVIF user of the cameras.
        #[arg(long)]
        user: String,
        /// Environment variable holding the cameras' password (kept off the command line).
        #[arg(long, value_name = "VAR", default_value = "GAVEL_CAMERA_PASSWORD")]
        password_env: String,
        /// Most clock difference accepted, in seconds (larger is reported).
        #[arg(long, default_value_t = 2)]
        clock_tolerance: u64,
        /// Only show what was found; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// PTZ presets of a configured camera (through its main profile): list, save the
    /// current position under a name, or move to one.
    Preset {
        /// Source id of the camera (as configured).
        #[arg(long)]
        source: String,
        /// ONVIF user of the camera.
        #[arg(long)]
        user: String,
        /// Environment variable holding the camera's password.
        #[arg(long, value_name = "VAR", default_value = "GAVEL_CAMERA_PASSWORD")]
        password_env: String,
        #[command(subcommand)]
        action: PresetAction,
    },
}

#[derive(clap::Subcommand, Debug)]
enum PresetAction {
    /// List the camera's presets.
    Ls,
    /// Save the current position as preset NAME (optionally overwriting TOKEN).
    Set {
        name: String,
        #[arg(long)]
        token: Option<String>,
    },
    /// Move to preset TOKEN.
    Goto { token: String },
}

#[derive(clap::Subcommand, Debug)]
enum Clerk {
    /// Start recording (without --hearing: the schedule's hearing due now).
    Start(ClerkArgs),
    /// Stop recording (without --hearing: the hearing being recorded).
    Stop(ClerkArgs),
    /// What the room is doing: hearing, recording state, lamp, schedule.
    Status {
        /// Print the agent's answer as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args, Debug)]
struct ClerkArgs {
    /// Hearing id (ids made from case numbers may start with '-').
    #[arg(long, allow_hyphen_values = true)]
    hearing: Option<String>,
    /// Who does it (recorded in the audit trail).
    #[arg(long, env = "USER")]
    by: String,
    /// Why (recorded in the audit trail).
    #[arg(long)]
    why: Option<String>,
    /// Print the agent's answer as JSON.
    #[arg(long)]
    json: bool,
}

/// The configuration file (or the defaults), then the environment, then the options that
/// say which device this is and where its data lives: what every subcommand needs.
fn local_config(args: &Args) -> anyhow::Result<AgentConfig> {
    let mut c = match &args.config {
        Some(file) => AgentConfig::from_file(file)?,
        None => AgentConfig::default(),
    };
    c.apply_env(std::env::vars())?;
    if let Some(v) = &args.data_dir {
        c.data_dir = v.clone();
    }
    if let Some(v) = &args.device_id {
        c.device_id = v.clone();
    }
    if let Some(v) = &args.profile {
        c.profile = v.clone();
    }
    if let Some(v) = &args.profiles_dir {
        c.profiles_dir = v.clone();
    }
    Ok(c)
}

/// The whole configuration of the running agent: [`local_config`] and every other option.
fn config(args: &Args) -> anyhow::Result<AgentConfig> {
    let mut c = local_config(args)?;
    if let Some(v) = &args.broker {
        let tls = c.broker.tls.take();
        c.broker = gavel_agent::config::parse_host_port(v)
            .with_context(|| format!("--broker {v:?}: expected HOST:PORT"))?;
        c.broker.tls = tls;
    }
    if let (Some(court), Some(room)) = (&args.court, &args.room) {
        c.placement = Some(gavel_protocol::Placement {
            court: court.clone(),
            room: room.clone(),
        });
    }
    c.tags.extend(args.tags.iter().cloned());
    if args.health_interval.is_some() {
        c.health_interval_s = args.health_interval;
    }
    if args.simulate_hardware {
        c.simulate_hardware = true;
    }
    if args.keepalive.is_some() {
        c.keepalive_s = args.keepalive;
    }
    if !args.ota_key.is_empty() {
        c.ota
            .get_or_insert_with(Default::default)
            .trusted_keys
            .extend(args.ota_key.iter().cloned());
    }
    if let Some(ota) = c.ota.as_mut() {
        if let Some(d) = &args.ota_dir {
            ota.slots_dir = Some(d.clone());
        }
        if let Some(s) = args.ota_health_deadline {
            ota.health_deadline_s = s;
        }
        if let Some(s) = args.ota_guard {
            ota.guard_s = s;
        }
    } else if args.ota_dir.is_some() {
        anyhow::bail!("--ota-dir needs --ota-key (or an [ota] section in the config)");
    }
    c.validate()?;
    Ok(c)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("GAVEL_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        // Logs on stderr: stdout is for what a subcommand answers (`clerk status --json`).
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if let Some(Sub::Clerk(c)) = &args.command {
        return clerk(&args, c).await;
    }
    if let Some(Sub::Cameras(c)) = &args.command {
        return cameras(&args, c).await;
    }
    if let Some(Sub::Printer { port, baud, action }) = &args.command {
        return printer(&args, port.as_deref(), *baud, action).await;
    }
    if let Some(Sub::Enroll {
        controller,
        token,
        identity_dir,
        broker_host,
    }) = &args.command
    {
        let file = args
            .config
            .clone()
            .context("enroll writes the device's configuration: give --config FILE")?;
        let mut c = if file.exists() {
            AgentConfig::from_file(&file)?
        } else {
            AgentConfig::default()
        };
        c.apply_env(std::env::vars())?;
        if let Some(v) = &args.data_dir {
            c.data_dir = v.clone();
        }
        let dir = identity_dir
            .clone()
            .unwrap_or_else(|| c.data_dir.join("identity"));
        let done =
            gavel_agent::enroll::enroll(controller, token, &file, &dir, broker_host.as_deref())
                .await?;
        println!(
            "enrolled as {} (certificate valid until {}); key and certificates in {}",
            done.device_id,
            done.not_after,
            done.identity_dir.display()
        );
        match done.broker {
            Some((host, port)) => println!(
                "broker: {host}:{port} over mutual TLS; configuration written to {}",
                file.display()
            ),
            None => println!(
                "the controller runs no TLS gate: configure the broker by hand; configuration written to {}",
                file.display()
            ),
        }
        return Ok(());
    }
    let config = config(&args)?;
    let profile = gavel_profile::load_named(&config.profiles_dir, &config.profile)?;
    let options = gavel_agent::RunOptions {
        probe_rate: args.probe_rate,
        resend_after: Some(std::time::Duration::from_secs(args.resend_after.max(1))),
    };
    let reboot = config.ota.as_ref().and_then(|o| o.reboot());
    tokio::spawn(systemd_watchdog());
    let exit = gavel_agent::run(config, profile, options, shutdown_signal()).await?;
    match exit {
        Exit::Restart => restart()?,
        // Design: the process ends; the boot supervisor (`gavel-simdevice`) or, with a
        // reboot command (RAUC on an image-based device: `systemctl reboot`), the real
        // bootloader starts whichever slot its boot state chooses.
        Exit::Reboot => match reboot {
            Some(cmd) => reboot_device(&cmd)?,
            None => tracing::info!("reboot: the boot supervisor starts the chosen slot"),
        },
        Exit::Shutdown => {}
    }
    // Design: everything that matters has stopped (recorder sealed, outbox flushed, link
    // closed). Leaving `main` would make the runtime wait for blocking helpers that may be
    // parked on a device read (a capture or serial thread), so the process ends here.
    std::process::exit(0)
}

/// Under systemd (`Type=notify`, `WatchdogSec=`, as on the device image): says the agent
/// is up, then pings the watchdog at half its interval. Design: the pings come from a task
/// of the agent's runtime, so a runtime that stops scheduling (every worker stuck) stops
/// them and systemd restarts the agent; a stuck subsystem inside a live runtime is the
/// health reports' business, not the watchdog's. Without `NOTIFY_SOCKET` this does nothing.
async fn systemd_watchdog() {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "could not tell systemd the agent is ready");
    }
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    let mut tick = tokio::time::interval(interval / 2);
    loop {
        tick.tick().await;
        if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]) {
            tracing::warn!(error = %e, "could not ping the systemd watchdog");
        }
    }
}

/// Runs the configured reboot command (`[ota] reboot_command`).
fn reboot_device(cmd: &[String]) -> anyhow::Result<()> {
    let (program, args) = cmd.split_first().context("ota.reboot_command is empty")?;
    tracing::info!(command = %cmd.join(" "), "rebooting the device");
    let status = std::process::Command::new(program)
        .args(args)
        .status()
        .with_context(|| format!("running the reboot command {}", cmd.join(" ")))?;
    anyhow::ensure!(
        status.success(),
        "the reboot command {} failed: {status}",
        cmd.join(" ")
    );
    Ok(())
}

/// The cameras' credentials (password from the environment) and the agent config.
fn camera_access(
    args: &Args,
    user: &str,
    password_env: &str,
) -> anyhow::Result<(gavel_devices::onvif::Credentials, AgentConfig)> {
    let password = std::env::var(password_env).with_context(|| {
        format!("set the cameras' password in the environment variable {password_env}")
    })?;
    let c = local_config(args)?;
    Ok((
        gavel_devices::onvif::Credentials {
            user: user.to_owned(),
            password,
        },
        c,
    ))
}

/// `gavel-agent cameras ...`.
async fn cameras(args: &Args, command: &Cameras) -> anyhow::Result<()> {
    use gavel_devices::onvif;
    match command {
        Cameras::Discover { probes, wait } => {
            let found = onvif::discover(
                probes,
                probes.is_empty(),
                std::time::Duration::from_secs(*wait),
            )
            .await?;
            if found.is_empty() {
                println!("no ONVIF camera answered within {wait} s");
            }
            for d in &found {
                println!(
                    "{}  {}  {}",
                    d.endpoint,
                    d.name().unwrap_or_else(|| "-".into()),
                    d.xaddrs.join(" ")
                );
            }
            Ok(())
        }
        Cameras::Preset {
            source,
            user,
            password_env,
            action,
        } => {
            let (creds, c) = camera_access(args, user, password_env)?;
            let config = gavel_agent::cameras::load(&c.data_dir, source)?;
            let profile = config
                .profiles
                .iter()
                .find(|p| p.ptz)
                .or(config.profiles.first())
                .with_context(|| format!("camera {} has no media profile", config.device_url))?;
            let camera = onvif::Camera::new(&config, &creds, &profile.token)?;
            match action {
                PresetAction::Ls => {
                    for (token, name) in camera.presets().await? {
                        println!("{token}\t{name}");
                    }
                }
                PresetAction::Set { name, token } => {
                    let token = camera.set_preset(name, token.as_deref()).await?;
                    println!("{source}: preset {name:?} saved as {token}");
                }
                PresetAction::Goto { token } => {
                    camera.goto_preset(token).await?;
                    println!("{source}: moved to preset {token}");
                }
            }
            Ok(())
        }
        Cameras::Configure {
            cameras,
            user,
            password_env,
            clock_tolerance,
            dry_run,
        } => {
            let (creds, c) = camera_access(args, user, password_env)?;
            let now = time::OffsetDateTime::now_utc();
            let tolerance = std::time::Duration::from_secs(*clock_tolerance);
            let mut configured = Vec::new();
            let mut media = Vec::new();
            for (source, url) in cameras {
                let camera = onvif::configure(url, &creds, now, tolerance).await?;
                let stream = gavel_agent::cameras::record_url(&camera, &creds)?;
                println!(
                    "{source}: {} {} (serial {}), {} profile(s), main stream {}, PTZ {}, clock {}",
                    camera.manufacturer,
                    camera.model,
                    camera.serial,
                    camera.profiles.len(),
                    camera.profiles.first().map_or("-", |p| p.uri.as_str()),
                    if camera.ptz_url.is_some() {
                        "yes"
                    } else {
                        "no"
                    },
                    if camera.clock.in_tolerance {
                        format!("ok ({:+} s)", camera.clock.offset_s)
                    } else {
                        format!(
                            "OFF by {:+} s: set the camera's NTP server (recordings are timed by ours)",
                            camera.clock.offset_s
                        )
                    }
                );
                media.push((source.clone(), stream));
                configured.push((source.clone(), camera));
            }
            if *dry_run {
                return Ok(());
            }
            let Some(file) = &args.config else {
                anyhow::bail!(
                    "name the agent config to write with --config (or GAVEL_AGENT_CONFIG)"
                );
            };
            gavel_agent::cameras::write_media(file, &media)?;
            gavel_agent::cameras::write_details(&c.data_dir, &configured)?;
            println!(
                "wrote [media] for {} source(s) into {} and camera details into {}",
                media.len(),
                file.display(),
                c.data_dir
                    .join(gavel_agent::cameras::CAMERAS_FILE)
                    .display()
            );
            Ok(())
        }
    }
}

/// `gavel-agent printer ...`: checks the receipt printer.
async fn printer(
    args: &Args,
    port: Option<&str>,
    baud: Option<u32>,
    action: &PrinterAction,
) -> anyhow::Result<()> {
    use gavel_agent::printer;
    let c = local_config(args)?;
    // Without a readable profile a port given on the command line still works.
    let profile = gavel_profile::load_named(&c.profiles_dir, &c.profile);
    let target = match (&profile, port) {
        (Err(e), None) => {
            return Err(anyhow::anyhow!("{e}")
                .context("reading the device profile for its printer (or give --port)"));
        }
        _ => printer::target(profile.as_ref().ok(), port, baud)?,
    };
    let device = c.device_id.clone();
    let is_test = matches!(action, PrinterAction::Test);
    let (target, result) = tokio::task::spawn_blocking(move || {
        let r = if is_test {
            printer::test_page(&target, &device)
        } else {
            printer::status(&target)
        };
        (target, r)
    })
    .await
    .context("printer task")?;
    let status = result?;
    if is_test {
        println!(
            "printed a test page; {}",
            printer::describe(&target, &status)
        );
    } else {
        println!("{}", printer::describe(&target, &status));
    }
    Ok(())
}

/// `gavel-agent clerk ...`: one request to the running agent.
async fn clerk(args: &Args, command: &Clerk) -> anyhow::Result<()> {
    use gavel_agent::clerk::{ClerkRequest, call, socket_path};
    let c = local_config(args)?;
    let (request, json) = match command {
        Clerk::Start(a) => (
            ClerkRequest::Start {
                hearing: a.hearing.clone(),
                by: a.by.clone(),
                why: a.why.clone(),
            },
            a.json,
        ),
        Clerk::Stop(a) => (
            ClerkRequest::Stop {
                hearing: a.hearing.clone(),
                by: a.by.clone(),
                why: a.why.clone(),
            },
            a.json,
        ),
        Clerk::Status { json } => (ClerkRequest::Status, *json),
    };
    let answer = call(&socket_path(&c.data_dir), &request).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else if let Some(s) = &answer.status {
        let lamp = match s.lamp {
            Some(true) => "on",
            Some(false) => "off",
            None => "none",
        };
        println!(
            "hearing: {}\nrecording: {:?}\nlamp: {lamp}\nschedule: {} ({} hearings; due now: {})",
            s.hearing.as_deref().unwrap_or("-"),
            s.state,
            s.schedule_version
                .map_or("none".to_owned(), |v| format!("version {v}")),
            s.scheduled_hearings,
            s.due.as_deref().unwrap_or("-"),
        );
    }
    match answer.error {
        Some(e) if !answer.ok => anyhow::bail!("{e}"),
        _ => Ok(()),
    }
}

/// Replaces this process with a fresh agent with the same arguments and environment.
fn restart() -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("finding the agent executable")?;
    let err = std::process::Command::new(&exe)
        .args(std::env::args_os().skip(1))
        .exec();
    Err(err).with_context(|| format!("re-executing {}", exe.display()))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
