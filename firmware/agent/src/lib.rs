//! # gavel-agent
//!
//! Wires a device together: configuration and profile, the MQTT link, health telemetry
//! and command handling. Each capability lives in its own crate; this crate only connects
//! them.

pub mod archive;
pub mod cameras;
pub mod clerk;
pub mod commands;
pub mod config;
pub mod enroll;
pub mod follow;
pub mod hall;
pub mod hardware;
pub mod live;
pub mod ota;
pub mod patrol;
pub mod printer;
pub mod record;
pub mod renewal;
pub mod room;
pub mod schedule;
pub mod selftest;
pub mod session;
pub mod transcribe;
pub mod wall;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use gavel_link::{Link, LinkEvent, LinkSettings, Outbox};
use gavel_profile::Profile;
use gavel_protocol::{
    Birth, Capability, CapabilityState, EventBody, OfflineReason, PROTOCOL_VERSION, Phase,
    RecordingAction, RequestOrigin,
};
use time::OffsetDateTime;
use tracing::{debug, info, warn};

pub use config::AgentConfig;

/// Capabilities this firmware build runs. Others named by a profile are reported as
/// `unavailable`.
pub const IMPLEMENTED: &[&str] = &[
    "health",
    "record",
    "kiosk",
    "printer",
    "announce",
    "wall",
    "patrol",
    "stream",
    "transcribe",
];

/// How the agent run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Stopped on a signal.
    Shutdown,
    /// The controller asked for a restart: the caller re-executes the agent.
    Restart,
    /// An update was activated or rolled back: the device reboots (the process exits and
    /// the boot supervisor, or the real bootloader, starts the slot it chooses).
    Reboot,
}

/// The capability list reported in the birth.
pub fn capabilities(profile: &Profile) -> Vec<Capability> {
    profile
        .capabilities
        .names()
        .into_iter()
        .map(|name| {
            if IMPLEMENTED.contains(&name) {
                Capability {
                    name: name.into(),
                    state: CapabilityState::Running,
                    detail: None,
                }
            } else {
                Capability {
                    name: name.into(),
                    state: CapabilityState::Unavailable,
                    detail: Some("not in this firmware yet".into()),
                }
            }
        })
        .collect()
}

/// Agent options that are not configuration (test and soak switches).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Emit this many synthetic probe events per second (link self-test and soak runs).
    pub probe_rate: Option<f64>,
    /// Send unconfirmed events again after this long without a receipt (default 30 s).
    pub resend_after: Option<Duration>,
}

/// Runs the agent until `shutdown` resolves or a restart is commanded.
pub async fn run(
    config: AgentConfig,
    profile: Profile,
    options: RunOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Exit> {
    let device = config.validate()?;
    let boot_id = uuid::Uuid::new_v4().to_string();
    let started = Instant::now();
    let interval_s = config
        .health_interval_s
        .unwrap_or(profile.health.interval_s);
    let keepalive_s = config.keepalive_s.unwrap_or(profile.health.keepalive_s);
    let config_json = serde_json::to_value(&config).context("serialising the config")?;
    let hostname = hostname();
    let mut caps = capabilities(&profile);
    // Held for the whole run (by the room shell): a GPIO lamp keeps its line claimed.
    let mut lamp = None;
    if let Some(settings) = profile.capabilities.lamp.clone() {
        let simulated = config.simulate_hardware;
        let (opened, cap) =
            tokio::task::spawn_blocking(move || hardware::open_lamp(&settings, simulated))
                .await
                .context("lamp task")?;
        lamp = opened;
        if let Some(c) = caps.iter_mut().find(|c| c.name == "lamp") {
            *c = cap;
        }
    }

    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data folder {}", config.data_dir.display()))?;
    // With `[ota]`: the slot running now, provisioning slot A from this binary on a first
    // boot; the birth reports the running slot's version.
    let ota_settings = match &config.ota {
        Some(o) => Some(ota::OtaSettings {
            backend: o.backend,
            dir: o.slots_dir(&config.data_dir),
            keys: o.trusted_keys.clone(),
            rauc_conf: o.rauc_conf.clone(),
            rauc_class: o.rauc_class.clone(),
            version: env!("CARGO_PKG_VERSION")
                .parse()
                .context("the agent's own version")?,
            profile: profile.name.clone(),
            default_cap: o.max_bits_per_s,
            health_deadline: Duration::from_secs(o.health_deadline_s),
            guard_s: o.guard_s as i64,
            attempts: o.boot_attempts,
        }),
        None => None,
    };
    let ota_running = match &ota_settings {
        Some(s) => {
            let exe = std::env::current_exe().context("finding the agent executable")?;
            let s = s.clone();
            let running = tokio::task::spawn_blocking(move || ota::open(&s, &exe))
                .await
                .context("slots task")??;
            info!(slot = %running.slot, version = ?running.version.map(|v| v.to_string()), "running slot");
            Some(running)
        }
        None => None,
    };
    let firmware_version = ota_running
        .as_ref()
        .and_then(|r| r.version)
        .map(|v| v.to_string())
        .unwrap_or_else(|| env!("CARGO_PKG_VERSION").into());
    let store_path = config.data_dir.join("store.redb");
    let store = gavel_store::Store::open(&store_path)
        .with_context(|| format!("opening the device store {}", store_path.display()))?;
    let store = Arc::new(store);
    let outbox = Outbox::new(store.clone(), &boot_id);
    let (recorder_stop, recorder_stopped) = tokio::sync::oneshot::channel::<()>();
    // Speaker-follow listens to the recorder's meter on the seat microphones.
    let follow_plan = follow::plan(&profile);
    let (meter, mut follow_levels) = match &follow_plan {
        Some(Ok(plan)) => {
            let (m, rx) = follow::meter(plan);
            (Some(m), Some(rx))
        }
        _ => (None, None),
    };
    // Transcription takes the recorder's tap on the seat microphones; its model is loaded
    // once, off the runtime.
    let transcribe_plan = match transcribe::plan(&profile, &config) {
        Some(_) if !config.transcribe => {
            if let Some(c) = caps.iter_mut().find(|c| c.name == "transcribe") {
                c.state = CapabilityState::Disabled;
                c.detail = Some("turned off in the agent config (GAVEL_TRANSCRIBE=off)".into());
            }
            None
        }
        plan => plan,
    };
    let (transcribe_tap, transcribe_task) = match transcribe_plan {
        None => (None, None),
        Some(plan) => {
            let started = match plan {
                Ok(plan) => {
                    let outbox = outbox.clone();
                    let runtime = tokio::runtime::Handle::current();
                    tokio::task::spawn_blocking(move || transcribe::start(plan, outbox, runtime))
                        .await
                        .map_err(anyhow::Error::from)
                        .and_then(|r| r)
                }
                Err(e) => Err(e),
            };
            match started {
                Ok((tap, cap, task)) => {
                    if let Some(c) = caps.iter_mut().find(|c| c.name == "transcribe") {
                        *c = cap;
                    }
                    (Some(tap), Some(task))
                }
                Err(e) => {
                    warn!(error = %format!("{e:#}"), "transcription is not available");
                    if let Some(c) = caps.iter_mut().find(|c| c.name == "transcribe") {
                        c.state = CapabilityState::Failed;
                        c.detail = Some(format!("{e:#}").chars().take(200).collect());
                    }
                    (None, None)
                }
            }
        }
    };
    let recorder = match profile.capabilities.record.as_ref() {
        Some(settings) => {
            let started = record::start(
                &config,
                &profile,
                settings,
                store.clone(),
                outbox.clone(),
                meter,
                transcribe_tap,
                async move {
                    let _ = recorder_stopped.await;
                },
            );
            let (handle, cap) = match started {
                Ok((handle, task)) => (
                    Some((handle, task)),
                    Capability {
                        name: "record".into(),
                        state: CapabilityState::Running,
                        detail: None,
                    },
                ),
                Err(e) => {
                    warn!(error = %format!("{e:#}"), "recording is not available");
                    (
                        None,
                        Capability {
                            name: "record".into(),
                            state: CapabilityState::Failed,
                            detail: Some(format!("{e:#}").chars().take(200).collect()),
                        },
                    )
                }
            };
            if let Some(c) = caps.iter_mut().find(|c| c.name == "record") {
                *c = cap;
            }
            handle
        }
        None => None,
    };
    if recorder.is_none() {
        follow_levels = None;
    }
    // A simulated device records no seat microphones unless the config names where they
    // come from (`[media.<seats source>]`): then speaker-follow has nothing to follow.
    let simulated_without_mics = match (&follow_plan, &profile.capabilities.record) {
        (Some(Ok(plan)), Some(settings)) => {
            config.simulate_hardware
                && record::sources(&config, &profile, settings)
                    .is_ok_and(|s| !s.iter().any(|s| s.id == plan.source))
        }
        _ => false,
    };
    let follow_task = match follow_plan {
        Some(Ok(plan)) if simulated_without_mics => {
            if let Some(c) = caps.iter_mut().find(|c| c.name == "follow") {
                c.state = CapabilityState::Unavailable;
                c.detail = Some(format!(
                    "simulated hardware without seat microphones: set [media.{}] to follow speakers",
                    plan.source
                ));
            }
            None
        }
        Some(plan) => {
            let (cap, task) = follow::start(plan, follow_levels, &config).await;
            if let Some(c) = caps.iter_mut().find(|c| c.name == "follow") {
                *c = cap;
            }
            task
        }
        None => None,
    };
    let (wall_stop, wall_stopped) = tokio::sync::oneshot::channel::<()>();
    let wall = match wall::start(&config, &profile, async move {
        let _ = wall_stopped.await;
    }) {
        Ok(started) => started,
        Err(e) => {
            warn!(error = %format!("{e:#}"), "the video wall is not available");
            if let Some(c) = caps.iter_mut().find(|c| c.name == "wall") {
                *c = Capability {
                    name: "wall".into(),
                    state: CapabilityState::Failed,
                    detail: Some(format!("{e:#}").chars().take(200).collect()),
                };
            }
            None
        }
    };
    // Archive uploads and the storage policy run wherever a recorder writes segments.
    let (archive_stop, archive_stopped) = tokio::sync::oneshot::channel::<()>();
    let archive = match &recorder {
        Some(_) => match archive::spawn(
            &config.archive,
            device.as_str(),
            &config.data_dir,
            store.clone(),
            outbox.clone(),
            async move {
                let _ = archive_stopped.await;
            },
        ) {
            Ok(started) => Some(started),
            Err(e) => {
                warn!(error = %format!("{e:#}"), "the archive task did not start");
                None
            }
        },
        None => None,
    };
    // The room's schedule, the OTA flow's only view of hearings (see `session`): the
    // recorder says whether a hearing is in session, the cached schedule what is coming.
    let session_feed = session::ScheduleFeed::new();
    let schedule_task = recorder
        .as_ref()
        .map(|(h, _)| tokio::spawn(record::feed_schedule(h.clone(), session_feed.clone())));
    let patrol = match profile.capabilities.patrol.as_ref() {
        Some(settings) => {
            let started = gavel_record::pipeline::init()
                .map_err(anyhow::Error::from)
                .and_then(|()| {
                    patrol::start(
                        &config,
                        &profile,
                        settings,
                        patrol::PatrolParts {
                            outbox: outbox.clone(),
                            recorder: recorder.as_ref().map(|(h, _)| h.clone()),
                            schedule: session_feed.subscribe(),
                        },
                    )
                });
            let (handle, cap) = match started {
                Ok(running) => (Some(running), None),
                Err(e) => {
                    warn!(error = %format!("{e:#}"), "patrol is not available");
                    (
                        None,
                        Some(format!("{e:#}").chars().take(200).collect::<String>()),
                    )
                }
            };
            if let Some(c) = caps.iter_mut().find(|c| c.name == "patrol") {
                *c = match cap {
                    None => Capability {
                        name: "patrol".into(),
                        state: CapabilityState::Running,
                        detail: None,
                    },
                    Some(why) => Capability {
                        name: "patrol".into(),
                        state: CapabilityState::Failed,
                        detail: Some(why),
                    },
                };
            }
            handle
        }
        None => None,
    };

    // Live: the RTSP re-serve and HLS of the stream sources, announced in the birth.
    let live = match profile.capabilities.stream.as_ref() {
        Some(settings) => {
            let (live, cap) = live::start(&config, settings, &hostname).await;
            if let Some(c) = caps.iter_mut().find(|c| c.name == "stream") {
                *c = cap;
            }
            live
        }
        None => None,
    };
    let live_endpoints = live.as_ref().map(|l| l.endpoints.clone());

    let mut room = room::Room::open(
        schedule::Settings {
            overrun: time::Duration::seconds(i64::from(config.schedule_overrun_s)),
        },
        config.placement.clone(),
        store.clone(),
        outbox.clone(),
        recorder.as_ref().map(|(h, _)| h.clone()),
        lamp,
    )
    .await;
    let clerk_socket = clerk::socket_path(&config.data_dir);
    let (clerk_tx, mut clerk_rx) = tokio::sync::mpsc::channel::<clerk::Pending>(16);
    let clerk_task = match clerk::serve(&clerk_socket, clerk_tx) {
        Ok(task) => Some(task),
        Err(e) => {
            warn!(error = %format!("{e:#}"), "the clerk's local control is not available");
            None
        }
    };
    session_feed.set_busy(room.busy());
    // The service hall: the kiosk's page and tickets, and spoken announcements.
    let (kiosk_stop, kiosk_stopped) = tokio::sync::oneshot::channel::<()>();
    let kiosk_task = match profile.capabilities.kiosk.as_ref() {
        Some(k) => {
            let (task, cap) = hall::start_kiosk(
                &config,
                &profile,
                k,
                store.clone(),
                outbox.clone(),
                async move {
                    let _ = kiosk_stopped.await;
                },
            )
            .await;
            if let Some(c) = caps.iter_mut().find(|c| c.name == "kiosk") {
                *c = cap;
            }
            if config.simulate_hardware
                && config.kiosk.printer_port.is_none()
                && let Some(c) = caps.iter_mut().find(|c| c.name == "printer")
            {
                c.detail = Some("simulated".into());
            }
            task
        }
        None => None,
    };
    let announcer = profile
        .capabilities
        .announce
        .as_ref()
        .map(|a| hall::Announcer::spawn(a.languages.clone(), config.announce_dir.clone()));
    let mut room_tick = tokio::time::interval(Duration::from_secs(1));
    room_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let birth = {
        let boot_id = boot_id.clone();
        let profile_name = profile.name.clone();
        let placement = config.placement.clone();
        let tags = config.tags.clone();
        let outbox = outbox.clone();
        let caps = caps.clone();
        let firmware_version = firmware_version.clone();
        move |bd_seq: u64| Birth {
            v: PROTOCOL_VERSION,
            ts: OffsetDateTime::now_utc(),
            boot_id: boot_id.clone(),
            bd_seq,
            seq_base: outbox.next_seq(),
            profile: profile_name.clone(),
            firmware_version: firmware_version.clone(),
            hostname: hostname.clone(),
            placement: placement.clone(),
            capabilities: caps.clone(),
            keepalive_s,
            health_interval_s: interval_s,
            tags: tags.clone(),
            live: live_endpoints.clone(),
        }
    };
    let settings = LinkSettings {
        device: device.clone(),
        host: config.broker.host.clone(),
        port: config.broker.port,
        keepalive: Duration::from_secs(u64::from(keepalive_s)),
        backoff_min: Duration::from_millis(250),
        backoff_max: Duration::from_secs(30),
        resend_after: options.resend_after.unwrap_or(Duration::from_secs(30)),
        tls: match &config.broker.tls {
            Some(files) => Some(config::read_tls(files)?),
            None => None,
        },
    };
    let (link, mut events, link_task) =
        Link::spawn(settings, &boot_id, birth, Some(outbox.clone()));
    info!(%device, profile = %profile.name, %boot_id, broker = %format!("{}:{}", config.broker.host, config.broker.port), "agent started");

    let (reboot_tx, mut reboot_rx) = tokio::sync::mpsc::channel::<String>(1);
    let ota = match (&ota_settings, &ota_running) {
        (Some(settings), Some(_)) => {
            let parts = ota::OtaParts {
                settings: settings.clone(),
                outbox: outbox.clone(),
                link: link.clone(),
                // Design: the gate requires every capability this firmware implements;
                // ones the profile names but the build lacks, or the config turns off,
                // are not a regression.
                capabilities: caps
                    .iter()
                    .filter(|c| {
                        !matches!(
                            c.state,
                            CapabilityState::Unavailable | CapabilityState::Disabled
                        )
                    })
                    .map(|c| (c.name.clone(), c.state == CapabilityState::Running))
                    .collect(),
                schedule: session_feed.subscribe(),
                reboot: reboot_tx.clone(),
                booted_at: started,
            };
            Some(ota::spawn(parts))
        }
        _ => None,
    };

    let agent_event_id = format!("agent-{boot_id}");
    outbox
        .emit(
            agent_event_id.clone(),
            Phase::Start,
            EventBody::Agent {
                detail: Some(format!("gavel-agent {firmware_version} started")),
            },
        )
        .await
        .context("storing the agent start event")?;

    let mut sampler = Some((
        gavel_health::Sampler::new(profile.health.volumes.clone()),
        hardware::Environment::new(&profile.health.sensors, config.simulate_hardware),
    ));
    let mut health_tick = tokio::time::interval(Duration::from_secs(u64::from(interval_s)));
    health_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let probe_period = options
        .probe_rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(1.0 / r));
    let mut probe_tick = tokio::time::interval(probe_period.unwrap_or(Duration::from_secs(3600)));
    probe_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut probes: u64 = 0;
    // Certificate rotation: look every tenth of the certificate's life.
    let renew_files = config.broker.tls.clone();
    let renew_period = renew_files
        .as_ref()
        .and_then(|f| renewal::validity(&f.cert).ok())
        .map(|(from, to)| renewal::check_every(from, to));
    let mut renew_tick = tokio::time::interval(renew_period.unwrap_or(Duration::from_secs(3600)));
    renew_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut renewal_sent: Option<std::time::Instant> = None;
    tokio::pin!(shutdown);

    let exit = loop {
        tokio::select! {
            _ = &mut shutdown => break Exit::Shutdown,
            Some(why) = reboot_rx.recv() => {
                info!(%why, "rebooting");
                break Exit::Reboot;
            }
            _ = room_tick.tick() => room.tick().await,
            Some((request, reply)) = clerk_rx.recv() => {
                let _ = reply.send(clerk_answer(&mut room, request).await);
            }
            _ = probe_tick.tick(), if probe_period.is_some() => {
                let seq = outbox
                    .emit(format!("probe-{probes}"), Phase::End, EventBody::Probe { n: probes })
                    .await
                    .context("storing a probe event")?;
                // Tests parse this line: the event is durable from here on.
                info!("probe stored {boot_id}/{seq}");
                probes += 1;
            }
            _ = renew_tick.tick(), if renew_period.is_some() => {
                let Some(files) = &renew_files else { continue };
                let waited_enough = renewal_sent
                    .is_none_or(|t| t.elapsed() >= renew_period.unwrap_or_default() * 3);
                match renewal::validity(&files.cert) {
                    Ok((from, to)) if waited_enough && renewal::due(from, to, OffsetDateTime::now_utc()) => {
                        match renewal::request(files) {
                            Ok(csr) => {
                                let body = EventBody::CertRenewal { csr, current_not_after: to };
                                let id = format!("renewal-{}", to.unix_timestamp());
                                match outbox.emit(id, Phase::End, body).await {
                                    Ok(_) => {
                                        info!(not_after = %to, "certificate renewal requested");
                                        renewal_sent = Some(std::time::Instant::now());
                                    }
                                    Err(e) => warn!(error = %e, "could not store the renewal request"),
                                }
                            }
                            Err(e) => warn!(error = %format!("{e:#}"), "could not make a renewal request"),
                        }
                    }
                    Ok(_) => {}
                    Err(e) => warn!(error = %format!("{e:#}"), "cannot read the device certificate"),
                }
            }
            _ = health_tick.tick() => {
                let Some((mut s, mut env)) = sampler.take() else { continue };
                let (s, mut health) = tokio::task::spawn_blocking(move || {
                    let mut h = s.sample(OffsetDateTime::now_utc());
                    env.read_into(&mut h);
                    ((s, env), h)
                })
                .await
                .context("health sampler task")?;
                sampler = Some(s);
                match outbox.health().await {
                    Ok(o) => health.outbox = Some(o),
                    Err(e) => warn!(error = %e, "reading the outbox state failed"),
                }
                // Design: telemetry is not queued while offline (events are, in the
                // outbox); stale health is worthless and would crowd the link.
                if let Err(e) = link.publish(&health) {
                    outbox.telemetry_dropped();
                    debug!(error = %e, "health sample dropped");
                }
            }
            event = events.recv() => match event {
                Some(LinkEvent::Connected { bd_seq }) => {
                    debug!(bd_seq, "link up");
                    health_tick.reset_immediately();
                }
                Some(LinkEvent::Disconnected { error, retry_in }) => {
                    debug!(%error, ?retry_in, "link down");
                }
                Some(LinkEvent::Command(cmd)) => {
                    info!(command = cmd.body.name(), id = %cmd.id, "command received");
                    let depth = outbox.health().await.map(|o| o.depth).unwrap_or(0);
                    let ctx = commands::Context {
                        boot_id: &boot_id,
                        agent_uptime_s: started.elapsed().as_secs(),
                        config: &config_json,
                        outbox_depth: depth,
                        bd_seq: link.bd_seq(),
                        ota: ota.is_some(),
                    };
                    let (mut ack, action) = commands::answer(&cmd, OffsetDateTime::now_utc(), &ctx);
                    let recording = match &action {
                        commands::Action::StartRecording { hearing_id, reason, by } => {
                            Some((RecordingAction::Start, hearing_id, reason, by))
                        }
                        commands::Action::StopRecording { hearing_id, reason, by } => {
                            Some((RecordingAction::Stop, hearing_id, reason, by))
                        }
                        _ => None,
                    };
                    if let Some((action, hearing_id, reason, by)) = recording {
                        let result = room
                            .request(room::Request {
                                action,
                                hearing: Some(hearing_id.clone()),
                                by: by.clone().unwrap_or_else(|| "controller".into()),
                                reason: reason.clone(),
                                via: RequestOrigin::Controller,
                            })
                            .await;
                        // A started recording is a hearing in session from now on (the
                        // once-a-second feed then tracks it, and sees it end).
                        if result.is_ok() && action == RecordingAction::Start {
                            session_feed.set_in_session(true);
                        }
                        ack = commands::recording_ack(&cmd, OffsetDateTime::now_utc(), hearing_id, result);
                    }
                    if let commands::Action::Announce { number, window } = &action {
                        match &announcer {
                            Some(a) => a.announce(number, window),
                            None => ack = commands::announce_refused_ack(&cmd, OffsetDateTime::now_utc()),
                        }
                    }
                    if let (commands::Action::LegalHold { hearing_id, hold }, Some((a, _))) =
                        (&action, &archive)
                    {
                        let result = a.set_hold(hearing_id, *hold).await;
                        ack = commands::legal_hold_ack(&cmd, OffsetDateTime::now_utc(), hearing_id, *hold, result);
                    }
                    if let commands::Action::Snapshot { source } = &action
                        && let Some((p, _)) = &patrol
                    {
                        let result = p.snapshot(source.as_deref());
                        ack = commands::snapshot_ack(&cmd, OffsetDateTime::now_utc(), result);
                    }
                    if let (commands::Action::OtaInstall(req), Some((h, _))) = (&action, &ota)
                        && let Err(reason) = h.install(req.clone()).await
                    {
                        ack = commands::ota_refused_ack(&cmd, OffsetDateTime::now_utc(), reason);
                    }
                    if let commands::Action::InstallCertificate(pem) = &action {
                        let result = match &config.broker.tls {
                            Some(files) => renewal::install(files, device.as_str(), pem),
                            None => Err(anyhow::anyhow!("this device does not use TLS")),
                        };
                        let installed = result.is_ok();
                        let outcome = match result {
                            Ok((serial, not_after)) => {
                                info!(%serial, %not_after, "renewed certificate installed; reconnecting with it");
                                gavel_protocol::Outcome::Ok {
                                    reply: gavel_protocol::Reply::CertificateInstalled { serial, not_after },
                                }
                            }
                            Err(e) => {
                                warn!(error = %format!("{e:#}"), "renewed certificate refused");
                                gavel_protocol::Outcome::Failed { error: format!("{e:#}") }
                            }
                        };
                        ack.outcome = outcome;
                        if let Err(e) = link.publish(&ack) {
                            warn!(error = %e, id = %cmd.id, "could not send ack");
                        }
                        if installed {
                            // The link presents its certificate at connect: restart to use it.
                            tokio::time::sleep(Duration::from_millis(commands::RESTART_DELAY_MS)).await;
                            break Exit::Restart;
                        }
                        continue;
                    }
                    if matches!(action, commands::Action::SelfTest) {
                        // Probing cameras and microphones takes seconds: answer from a task.
                        let input = selftest::Input {
                            device: device.to_string(),
                            tls: config.broker.tls.is_some(),
                            controller_ts: cmd.ts,
                            received_at: OffsetDateTime::now_utc(),
                            sources: config
                                .media
                                .iter()
                                .map(|(id, s)| (id.clone(), s.clone()))
                                .collect(),
                            data_dir: config.data_dir.clone(),
                        };
                        let link = link.clone();
                        tokio::spawn(async move {
                            let checks = tokio::task::spawn_blocking(move || selftest::run(&input))
                                .await
                                .unwrap_or_default();
                            let ack = commands::self_test_ack(&cmd, OffsetDateTime::now_utc(), checks);
                            if let Err(e) = link.publish(&ack) {
                                warn!(error = %e, id = %cmd.id, "could not send the self-test ack");
                            }
                        });
                        continue;
                    }
                    if let Err(e) = link.publish(&ack) {
                        warn!(error = %e, id = %cmd.id, "could not send ack");
                    }
                    match action {
                        commands::Action::SelfTest | commands::Action::InstallCertificate(_) => {}
                        commands::Action::None
                        | commands::Action::StartRecording { .. }
                        | commands::Action::StopRecording { .. }
                        | commands::Action::OtaInstall(_)
                        | commands::Action::Announce { .. }
                        | commands::Action::LegalHold { .. }
                        | commands::Action::Snapshot { .. } => {}
                        commands::Action::Replay => outbox.resend_all(),
                        commands::Action::Rebirth => {
                            link.rebirth().await;
                        }
                        commands::Action::Restart { after_ms } => {
                            tokio::time::sleep(Duration::from_millis(after_ms)).await;
                            break Exit::Restart;
                        }
                    }
                }
                Some(LinkEvent::BadCommand(e)) => warn!(error = %e, "malformed command refused"),
                Some(LinkEvent::Schedule(s)) => {
                    room.schedule(s).await;
                    session_feed.set_busy(room.busy());
                }
                Some(LinkEvent::BadSchedule(e)) => {
                    warn!(error = %e, "malformed schedule refused; keeping the one held")
                }
                Some(LinkEvent::Wall(w)) => match &wall {
                    Some((handle, _)) => {
                        if let Err(e) = handle.apply(*w).await {
                            warn!(error = %e, "the wall did not take its configuration");
                        }
                    }
                    None => debug!("a wall configuration for a device without a wall; ignored"),
                },
                Some(LinkEvent::BadWall(e)) => {
                    warn!(error = %e, "malformed wall configuration refused; keeping the one shown")
                }
                None => anyhow::bail!("the MQTT link task ended unexpectedly"),
            }
        }
    };

    if let Some((_, task)) = ota {
        task.abort();
    }
    let _ = kiosk_stop.send(());
    if let Some(task) = kiosk_task
        && tokio::time::timeout(Duration::from_secs(3), task)
            .await
            .is_err()
    {
        warn!("the kiosk page did not stop within 3 s");
    }
    drop(announcer);
    if let Some(t) = schedule_task {
        t.abort();
    }
    if let Some(t) = follow_task {
        t.abort();
    }
    if let Some((_, task)) = patrol {
        task.abort();
    }
    if let Some(task) = transcribe_task {
        task.abort();
    }
    drop(reboot_tx);
    if let Some(task) = clerk_task {
        task.abort();
        let _ = std::fs::remove_file(&clerk_socket);
    }
    if let Some(l) = live {
        l.stop().await;
    }
    let _ = wall_stop.send(());
    if let Some((_, task)) = wall
        && tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .is_err()
    {
        warn!("the wall did not stop within 5 s");
    }
    let _ = archive_stop.send(());
    if let Some((_, task)) = archive
        && tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .is_err()
    {
        warn!("the archive task did not stop within 5 s");
    }
    // Close the open segments first; a hearing being recorded stays active and resumes
    // when the agent starts again.
    let _ = recorder_stop.send(());
    if let Some((_, task)) = recorder
        && tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .is_err()
    {
        warn!("the recorder did not stop within 10 s");
    }
    let detail = match exit {
        Exit::Shutdown => "stopping",
        Exit::Restart => "restarting on command",
        Exit::Reboot => "rebooting for an update",
    };
    // Design: shutdown is bounded (systemd and operators wait for it): each step has a
    // deadline and whatever is not confirmed stays in the outbox for the next start.
    let end = outbox.emit(
        agent_event_id,
        Phase::End,
        EventBody::Agent {
            detail: Some(detail.into()),
        },
    );
    match tokio::time::timeout(Duration::from_secs(2), end).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => warn!(error = %e, "could not store the agent end event"),
        Err(_) => warn!("storing the agent end event timed out"),
    }
    // While connected, give the controller up to 3 s to confirm what is queued, so a
    // clean stop leaves an empty outbox; whatever is left is sent after the next start.
    let drain_until = Instant::now() + Duration::from_secs(3);
    while link.is_connected() && Instant::now() < drain_until {
        if outbox.health().await.map(|o| o.depth).unwrap_or(0) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reason = match exit {
        Exit::Shutdown => OfflineReason::Shutdown,
        Exit::Restart | Exit::Reboot => OfflineReason::Restart,
    };
    if tokio::time::timeout(Duration::from_secs(2), link.close(reason))
        .await
        .is_err()
    {
        warn!("closing the MQTT link timed out");
    }
    let _ = tokio::time::timeout(Duration::from_secs(3), link_task).await;
    info!(?exit, "agent stopped");
    Ok(exit)
}

/// Carries out a request from the clerk's terminal.
async fn clerk_answer(room: &mut room::Room, request: clerk::ClerkRequest) -> clerk::ClerkAnswer {
    let (action, hearing, by, why) = match request {
        clerk::ClerkRequest::Status => {
            return clerk::ClerkAnswer {
                ok: true,
                error: None,
                status: Some(room.status()),
            };
        }
        clerk::ClerkRequest::Start { hearing, by, why } => {
            (RecordingAction::Start, hearing, by, why)
        }
        clerk::ClerkRequest::Stop { hearing, by, why } => (RecordingAction::Stop, hearing, by, why),
    };
    let by = by.trim().to_owned();
    if by.is_empty() || by.len() > gavel_protocol::MAX_TEXT {
        return clerk::ClerkAnswer {
            ok: false,
            error: Some("`by` must name who does it (1-256 bytes)".into()),
            status: Some(room.status()),
        };
    }
    let result = room
        .request(room::Request {
            action,
            hearing,
            by,
            reason: why,
            via: RequestOrigin::Terminal,
        })
        .await;
    clerk::ClerkAnswer {
        ok: result.is_ok(),
        error: result.err(),
        status: Some(room.status()),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().chars().take(64).collect())
        .unwrap_or_else(|_| "unknown".into())
}
