//! # gavel-agent
//!
//! Wires a device together: configuration and profile, the MQTT link, health telemetry
//! and command handling. Each capability lives in its own crate; this crate only connects
//! them.

pub mod commands;
pub mod config;
pub mod hardware;

use std::time::{Duration, Instant};

use anyhow::Context as _;
use gavel_link::{Link, LinkEvent, LinkSettings};
use gavel_profile::Profile;
use gavel_protocol::{
    Birth, Capability, CapabilityState, Event, EventBody, OfflineReason, PROTOCOL_VERSION, Phase,
};
use time::OffsetDateTime;
use tracing::{debug, info, warn};

pub use config::AgentConfig;

/// Capabilities this firmware build runs. Others named by a profile are reported as
/// `unavailable`.
pub const IMPLEMENTED: &[&str] = &["health"];

/// How the agent run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Stopped on a signal.
    Shutdown,
    /// The controller asked for a restart: the caller re-executes the agent.
    Restart,
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

/// Runs the agent until `shutdown` resolves or a restart is commanded.
pub async fn run(
    config: AgentConfig,
    profile: Profile,
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
    // Held for the whole run: a GPIO lamp keeps its line claimed.
    let mut _lamp = None;
    if let Some(settings) = profile.capabilities.lamp.clone() {
        let (lamp, cap) = tokio::task::spawn_blocking(move || hardware::open_lamp(&settings))
            .await
            .context("lamp task")?;
        _lamp = lamp;
        if let Some(c) = caps.iter_mut().find(|c| c.name == "lamp") {
            *c = cap;
        }
    }

    let birth = {
        let boot_id = boot_id.clone();
        let profile_name = profile.name.clone();
        let placement = config.placement.clone();
        move |bd_seq: u64| Birth {
            v: PROTOCOL_VERSION,
            ts: OffsetDateTime::now_utc(),
            boot_id: boot_id.clone(),
            bd_seq,
            seq_base: 0,
            profile: profile_name.clone(),
            firmware_version: env!("CARGO_PKG_VERSION").into(),
            hostname: hostname.clone(),
            placement: placement.clone(),
            capabilities: caps.clone(),
            keepalive_s,
            health_interval_s: interval_s,
        }
    };
    let settings = LinkSettings {
        device: device.clone(),
        host: config.broker.host.clone(),
        port: config.broker.port,
        keepalive: Duration::from_secs(u64::from(keepalive_s)),
        backoff_min: Duration::from_millis(250),
        backoff_max: Duration::from_secs(30),
    };
    let (link, mut events, link_task) = Link::spawn(settings, &boot_id, birth);
    info!(%device, profile = %profile.name, %boot_id, broker = %format!("{}:{}", config.broker.host, config.broker.port), "agent started");

    let mut sampler = Some((
        gavel_health::Sampler::new(profile.health.volumes.clone()),
        hardware::Environment::new(&profile.health.sensors),
    ));
    let mut health_tick = tokio::time::interval(Duration::from_secs(u64::from(interval_s)));
    health_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq: u64 = 0;
    let mut announced = false;
    let mut dropped_health: u64 = 0;
    let agent_event_id = format!("agent-{boot_id}");
    tokio::pin!(shutdown);

    let exit = loop {
        tokio::select! {
            _ = &mut shutdown => break Exit::Shutdown,
            _ = health_tick.tick() => {
                let Some((mut s, mut env)) = sampler.take() else { continue };
                let (s, health) = tokio::task::spawn_blocking(move || {
                    let mut h = s.sample(OffsetDateTime::now_utc());
                    env.read_into(&mut h);
                    ((s, env), h)
                })
                .await
                .context("health sampler task")?;
                sampler = Some(s);
                match link.publish(&health) {
                    Ok(()) => {}
                    // Design: telemetry is not queued while offline (events will be, via the
                    // outbox); stale health is worthless and would crowd the link.
                    Err(e) => {
                        dropped_health += 1;
                        debug!(error = %e, dropped_health, "health sample dropped");
                    }
                }
            }
            event = events.recv() => match event {
                Some(LinkEvent::Connected { bd_seq }) => {
                    if !announced {
                        let started_event = Event {
                            v: PROTOCOL_VERSION,
                            ts: OffsetDateTime::now_utc(),
                            seq,
                            id: agent_event_id.clone(),
                            phase: Phase::Start,
                            historical: false,
                            body: EventBody::Agent { detail: Some(format!("gavel-agent {} started", env!("CARGO_PKG_VERSION"))) },
                        };
                        if link.publish(&started_event).is_ok() {
                            seq += 1;
                            announced = true;
                        }
                    }
                    debug!(bd_seq, "link up");
                    health_tick.reset_immediately();
                }
                Some(LinkEvent::Disconnected { error, retry_in }) => {
                    debug!(%error, ?retry_in, "link down");
                }
                Some(LinkEvent::Command(cmd)) => {
                    info!(command = cmd.body.name(), id = %cmd.id, "command received");
                    let ctx = commands::Context {
                        boot_id: &boot_id,
                        agent_uptime_s: started.elapsed().as_secs(),
                        config: &config_json,
                    };
                    let (ack, action) = commands::answer(&cmd, OffsetDateTime::now_utc(), &ctx);
                    if let Err(e) = link.publish(&ack) {
                        warn!(error = %e, id = %cmd.id, "could not send ack");
                    }
                    if let commands::Action::Restart { after_ms } = action {
                        tokio::time::sleep(Duration::from_millis(after_ms)).await;
                        break Exit::Restart;
                    }
                }
                Some(LinkEvent::BadCommand(e)) => warn!(error = %e, "malformed command refused"),
                None => anyhow::bail!("the MQTT link task ended unexpectedly"),
            }
        }
    };

    let ending = Event {
        v: PROTOCOL_VERSION,
        ts: OffsetDateTime::now_utc(),
        seq,
        id: agent_event_id,
        phase: Phase::End,
        historical: false,
        body: EventBody::Agent {
            detail: Some(match exit {
                Exit::Shutdown => "stopping".into(),
                Exit::Restart => "restarting on command".into(),
            }),
        },
    };
    let _ = link.publish(&ending);
    let reason = match exit {
        Exit::Shutdown => OfflineReason::Shutdown,
        Exit::Restart => OfflineReason::Restart,
    };
    link.close(reason).await;
    let _ = tokio::time::timeout(Duration::from_secs(3), link_task).await;
    info!(?exit, "agent stopped");
    Ok(exit)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().chars().take(64).collect())
        .unwrap_or_else(|_| "unknown".into())
}
