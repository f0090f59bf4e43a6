//! Answers to controller commands. Pure: given the command, the time and the agent's
//! context, it returns the ack and what the agent must do next.

use gavel_protocol::{
    Ack, Command, CommandBody, Outcome, PROTOCOL_VERSION, RecordingState, Reply, SelfCheck,
};
use time::OffsetDateTime;

/// What the agent knows when answering.
pub struct Context<'a> {
    pub boot_id: &'a str,
    pub agent_uptime_s: u64,
    /// The effective configuration, as JSON.
    pub config: &'a serde_json::Value,
    /// Events waiting in the outbox.
    pub outbox_depth: u64,
    /// The current MQTT session's birth/death sequence.
    pub bd_seq: u64,
    /// The agent runs the OTA installer (`[ota]` configured).
    pub ota: bool,
}

/// What the agent must do after sending the ack (recording commands: before, since the
/// ack carries the outcome; see [`recording_ack`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    None,
    /// Restart the agent process after this many milliseconds.
    Restart {
        after_ms: u64,
    },
    /// Send the outbox again.
    Replay,
    /// Publish the birth again.
    Rebirth,
    /// Start recording a hearing, then answer with [`recording_ack`].
    StartRecording {
        hearing_id: String,
        reason: Option<String>,
        by: Option<String>,
    },
    /// Stop recording a hearing, then answer with [`recording_ack`].
    StopRecording {
        hearing_id: String,
        reason: Option<String>,
        by: Option<String>,
    },
    /// Hand the install to the OTA task; a refusal there replaces the `ota_accepted` ack
    /// (see [`ota_refused_ack`]).
    OtaInstall(crate::ota::InstallRequest),
    /// Speak a called number (service-hall devices with `announce`).
    Announce {
        number: String,
        window: String,
    },
    /// Run the self-test, then answer with [`self_test_ack`].
    SelfTest,
    /// Install a renewed certificate (the shell answers), then reconnect with it.
    InstallCertificate(String),
    /// Answer with a JPEG of a source's latest patrol frame (see [`snapshot_ack`]); the
    /// ack returned with it is the refusal used when the device runs no patrol.
    Snapshot {
        source: Option<String>,
    },
    /// Set or lift a hearing's legal hold through the archive task, then answer with
    /// [`legal_hold_ack`]; the ack returned with it is the refusal used when the device
    /// does not record.
    LegalHold {
        hearing_id: String,
        hold: bool,
    },
}

/// The ack of a `legal_hold` once the archive task has stored it (or why not).
pub fn legal_hold_ack(
    command: &Command,
    now: OffsetDateTime,
    hearing_id: &str,
    hold: bool,
    result: Result<(), String>,
) -> Ack {
    Ack {
        v: PROTOCOL_VERSION,
        ts: now,
        id: command.id.clone(),
        outcome: match result {
            Ok(()) => Outcome::Ok {
                reply: Reply::LegalHold {
                    hearing_id: hearing_id.to_owned(),
                    hold,
                },
            },
            Err(error) => Outcome::Failed { error },
        },
    }
}

/// The ack of a self-test once its checks ran.
pub fn self_test_ack(command: &Command, now: OffsetDateTime, checks: Vec<SelfCheck>) -> Ack {
    Ack {
        v: PROTOCOL_VERSION,
        ts: now,
        id: command.id.clone(),
        outcome: Outcome::Ok {
            reply: Reply::SelfTest { checks },
        },
    }
}

/// The ack of a `snapshot` command: the frame, or why there is none.
pub fn snapshot_ack(
    command: &Command,
    now: OffsetDateTime,
    result: Result<(String, OffsetDateTime, gavel_protocol::Snapshot), String>,
) -> Ack {
    Ack {
        v: PROTOCOL_VERSION,
        ts: now,
        id: command.id.clone(),
        outcome: match result {
            Ok((source, taken_at, snapshot)) => Outcome::Ok {
                reply: Reply::Snapshot {
                    source,
                    taken_at,
                    snapshot,
                },
            },
            Err(error) => Outcome::Failed { error },
        },
    }
}

/// The ack of an `ota_install` the OTA task refused (another update runs).
pub fn ota_refused_ack(command: &Command, now: OffsetDateTime, reason: String) -> Ack {
    Ack {
        v: PROTOCOL_VERSION,
        ts: now,
        id: command.id.clone(),
        outcome: Outcome::Rejected { reason },
    }
}

/// The ack of a recording command once the recorder has answered.
pub fn recording_ack(
    command: &Command,
    now: OffsetDateTime,
    hearing_id: &str,
    result: Result<RecordingState, String>,
) -> Ack {
    Ack {
        v: PROTOCOL_VERSION,
        ts: now,
        id: command.id.clone(),
        outcome: match result {
            Ok(state) => Outcome::Ok {
                reply: Reply::Recording {
                    hearing_id: hearing_id.to_owned(),
                    state,
                },
            },
            Err(error) => Outcome::Failed { error },
        },
    }
}

/// Delay between acknowledging a restart and restarting, so the ack is delivered.
pub const RESTART_DELAY_MS: u64 = 300;

/// Answers `command` at `now`.
pub fn answer(command: &Command, now: OffsetDateTime, ctx: &Context<'_>) -> (Ack, Action) {
    let ack = |outcome| Ack {
        v: PROTOCOL_VERSION,
        ts: now,
        id: command.id.clone(),
        outcome,
    };
    if let Some(expires) = command.expires
        && now > expires
    {
        let reason = format!(
            "command expired at {}; received at {}",
            gavel_protocol::rfc3339(expires),
            gavel_protocol::rfc3339(now)
        );
        return (ack(Outcome::Rejected { reason }), Action::None);
    }
    match &command.body {
        CommandBody::Ping => (
            ack(Outcome::Ok {
                reply: Reply::Pong {
                    boot_id: ctx.boot_id.to_owned(),
                    agent_uptime_s: ctx.agent_uptime_s,
                },
            }),
            Action::None,
        ),
        CommandBody::GetConfig => (
            ack(Outcome::Ok {
                reply: Reply::Config {
                    config: ctx.config.clone(),
                },
            }),
            Action::None,
        ),
        CommandBody::Restart { .. } => (
            ack(Outcome::Ok {
                reply: Reply::Restarting {
                    after_ms: RESTART_DELAY_MS,
                },
            }),
            Action::Restart {
                after_ms: RESTART_DELAY_MS,
            },
        ),
        CommandBody::Replay { .. } => (
            ack(Outcome::Ok {
                reply: Reply::Replaying {
                    events: ctx.outbox_depth,
                },
            }),
            Action::Replay,
        ),
        CommandBody::Rebirth => (
            ack(Outcome::Ok {
                reply: Reply::Reborn { bd_seq: ctx.bd_seq },
            }),
            Action::Rebirth,
        ),
        // Design: an agent without `[ota]` refuses, which keeps the controller's campaign
        // honest (it counts a failure).
        CommandBody::OtaInstall { version, .. } if !ctx.ota => (
            ack(Outcome::Rejected {
                reason: format!(
                    "cannot install {version}: this agent has no OTA installer configured"
                ),
            }),
            Action::None,
        ),
        CommandBody::OtaInstall {
            campaign,
            version,
            url,
            size,
            sha256,
            max_bits_per_s,
            force,
        } => (
            ack(Outcome::Ok {
                reply: Reply::OtaAccepted {
                    version: version.clone(),
                },
            }),
            Action::OtaInstall(crate::ota::InstallRequest {
                campaign: campaign.clone(),
                version: version.clone(),
                url: url.clone(),
                size: *size,
                sha256: sha256.clone(),
                max_bits_per_s: *max_bits_per_s,
                force: *force,
            }),
        ),
        // Design: the ack waits for the recorder (see `recording_ack`); this one is only
        // a placeholder the agent replaces.
        CommandBody::StartRecording {
            hearing_id,
            reason,
            by,
        } => (
            ack(Outcome::Ok {
                reply: Reply::Recording {
                    hearing_id: hearing_id.clone(),
                    state: RecordingState::Starting,
                },
            }),
            Action::StartRecording {
                hearing_id: hearing_id.clone(),
                reason: reason.clone(),
                by: by.clone(),
            },
        ),
        // Design: the ack waits for the checks (see `self_test_ack`); this one is a placeholder.
        CommandBody::InstallCertificate { certificate } => (
            ack(Outcome::Failed {
                error: "not installed yet".into(),
            }),
            Action::InstallCertificate(certificate.clone()),
        ),
        CommandBody::SelfTest => (
            ack(Outcome::Ok {
                reply: Reply::SelfTest { checks: Vec::new() },
            }),
            Action::SelfTest,
        ),
        CommandBody::StopRecording {
            hearing_id,
            reason,
            by,
        } => (
            ack(Outcome::Ok {
                reply: Reply::Recording {
                    hearing_id: hearing_id.clone(),
                    state: RecordingState::Stopping,
                },
            }),
            Action::StopRecording {
                hearing_id: hearing_id.clone(),
                reason: reason.clone(),
                by: by.clone(),
            },
        ),
        CommandBody::Announce { number, window } => (
            ack(Outcome::Ok {
                reply: Reply::Announcing {
                    number: number.clone(),
                },
            }),
            Action::Announce {
                number: number.clone(),
                window: window.clone(),
            },
        ),
        CommandBody::Snapshot { source } => (
            ack(Outcome::Rejected {
                reason: "this device runs no patrol".into(),
            }),
            Action::Snapshot {
                source: source.clone(),
            },
        ),
        CommandBody::LegalHold {
            hearing_id, hold, ..
        } => (
            ack(Outcome::Rejected {
                reason: "this device does not record".into(),
            }),
            Action::LegalHold {
                hearing_id: hearing_id.clone(),
                hold: *hold,
            },
        ),
    }
}

/// The ack of an `announce` on a device that has no `announce` capability.
pub fn announce_refused_ack(command: &Command, now: OffsetDateTime) -> Ack {
    Ack {
        v: PROTOCOL_VERSION,
        ts: now,
        id: command.id.clone(),
        outcome: Outcome::Rejected {
            reason: "this device has no announce capability".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn ctx(config: &serde_json::Value) -> Context<'_> {
        Context {
            boot_id: "b1",
            agent_uptime_s: 42,
            config,
            outbox_depth: 7,
            bd_seq: 3,
            ota: false,
        }
    }

    fn cmd(body: CommandBody, expires: Option<OffsetDateTime>) -> Command {
        Command {
            v: PROTOCOL_VERSION,
            ts: datetime!(2026-11-27 09:00 UTC),
            id: "c1".into(),
            expires,
            body,
        }
    }

    #[test]
    fn an_announce_is_acked_as_announcing_and_handed_to_the_speaker() {
        let config = serde_json::json!({});
        let c = cmd(
            CommandBody::Announce {
                number: "A1007".into(),
                window: "3".into(),
            },
            None,
        );
        let (ack, action) = answer(&c, datetime!(2026-11-27 09:00 UTC), &ctx(&config));
        assert!(matches!(
            ack.outcome,
            Outcome::Ok { reply: Reply::Announcing { ref number } } if number == "A1007"
        ));
        assert_eq!(
            action,
            Action::Announce {
                number: "A1007".into(),
                window: "3".into()
            }
        );
        let refused = announce_refused_ack(&c, datetime!(2026-11-27 09:00 UTC));
        assert!(
            matches!(refused.outcome, Outcome::Rejected { ref reason } if reason.contains("announce"))
        );
    }

    #[test]
    fn ping_is_answered_with_boot_id_and_uptime_under_the_same_correlation_id() {
        let config = serde_json::json!({});
        let (ack, action) = answer(
            &cmd(CommandBody::Ping, None),
            datetime!(2026-11-27 09:00 UTC),
            &ctx(&config),
        );
        assert_eq!(ack.id, "c1");
        assert_eq!(
            ack.outcome,
            Outcome::Ok {
                reply: Reply::Pong {
                    boot_id: "b1".into(),
                    agent_uptime_s: 42
                }
            }
        );
        assert_eq!(action, Action::None);
    }

    #[test]
    fn an_expired_command_is_rejected_and_not_acted_on() {
        let config = serde_json::json!({});
        let c = cmd(
            CommandBody::Restart { reason: None },
            Some(datetime!(2026-11-27 09:00 UTC)),
        );
        let (ack, action) = answer(&c, datetime!(2026-11-27 09:00:01 UTC), &ctx(&config));
        assert!(matches!(ack.outcome, Outcome::Rejected { .. }));
        assert_eq!(action, Action::None);
    }

    #[test]
    fn restart_is_acknowledged_before_it_happens() {
        let config = serde_json::json!({});
        let (ack, action) = answer(
            &cmd(
                CommandBody::Restart {
                    reason: Some("test".into()),
                },
                None,
            ),
            datetime!(2026-11-27 09:00 UTC),
            &ctx(&config),
        );
        assert!(matches!(
            ack.outcome,
            Outcome::Ok {
                reply: Reply::Restarting { .. }
            }
        ));
        assert_eq!(
            action,
            Action::Restart {
                after_ms: RESTART_DELAY_MS
            }
        );
    }

    #[test]
    fn replay_reports_the_outbox_depth_and_asks_for_a_resend() {
        let config = serde_json::json!({});
        let c = cmd(
            CommandBody::Replay {
                boot_id: "b0".into(),
                from_seq: 4,
            },
            None,
        );
        let (ack, action) = answer(&c, datetime!(2026-11-27 09:00 UTC), &ctx(&config));
        assert_eq!(
            ack.outcome,
            Outcome::Ok {
                reply: Reply::Replaying { events: 7 }
            }
        );
        assert_eq!(action, Action::Replay);
    }

    #[test]
    fn a_recording_command_asks_the_agent_to_record_and_its_ack_carries_the_outcome() {
        let config = serde_json::json!({});
        let c = cmd(
            CommandBody::StartRecording {
                hearing_id: "H1".into(),
                reason: Some("manual".into()),
                by: Some("clerk".into()),
            },
            None,
        );
        let (_, action) = answer(&c, datetime!(2026-11-27 09:00 UTC), &ctx(&config));
        assert_eq!(
            action,
            Action::StartRecording {
                hearing_id: "H1".into(),
                reason: Some("manual".into()),
                by: Some("clerk".into())
            }
        );
        let ack = recording_ack(
            &c,
            datetime!(2026-11-27 09:00 UTC),
            "H1",
            Err("hearing H0 is being recorded".into()),
        );
        assert_eq!(ack.id, "c1");
        assert!(matches!(ack.outcome, Outcome::Failed { .. }));
    }

    #[test]
    fn ota_install_is_refused_without_an_installer_and_accepted_with_one() {
        let config = serde_json::json!({});
        let c = cmd(
            CommandBody::OtaInstall {
                campaign: Some("c1".into()),
                version: "2.0.0".into(),
                url: "http://controller/b.gota".into(),
                size: 10,
                sha256: "ab".into(),
                max_bits_per_s: None,
                force: false,
            },
            None,
        );
        let now = datetime!(2026-11-27 09:00 UTC);
        let (ack, action) = answer(&c, now, &ctx(&config));
        assert!(matches!(ack.outcome, Outcome::Rejected { .. }));
        assert_eq!(action, Action::None);
        let with_ota = Context {
            ota: true,
            ..ctx(&config)
        };
        let (ack, action) = answer(&c, now, &with_ota);
        assert_eq!(
            ack.outcome,
            Outcome::Ok {
                reply: Reply::OtaAccepted {
                    version: "2.0.0".into()
                }
            }
        );
        match action {
            Action::OtaInstall(r) => {
                assert_eq!(r.campaign.as_deref(), Some("c1"));
                assert_eq!(r.size, 10);
            }
            a => panic!("{a:?}"),
        }
    }

    #[test]
    fn get_config_returns_the_effective_config() {
        let config = serde_json::json!({"device_id": "x"});
        let (ack, _) = answer(
            &cmd(CommandBody::GetConfig, None),
            datetime!(2026-11-27 09:00 UTC),
            &ctx(&config),
        );
        assert_eq!(
            ack.outcome,
            Outcome::Ok {
                reply: Reply::Config { config }
            }
        );
    }
}
