//! Who may do what: roles, the actions of the API, and the decision (sans I/O).
//!
//! | role | may |
//! |---|---|
//! | administrator | everything |
//! | technician | read; devices (commands, provisioning, revocation); OTA; acknowledge alarms |
//! | inspector | read; acknowledge alarms; read the audit log |
//! | clerk | read; hearings, recording, the service hall and transcripts (proofread, sign off) of their own court only |
//! | judge | read; transcripts of their own court (proofread, sign off) |
//! | kiosk | the kiosk endpoints only |
//!
//! Login attempts are limited by [`LoginLimiter`].

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

/// A user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Administrator,
    Technician,
    Inspector,
    Clerk,
    Kiosk,
    /// Presides over hearings; proofreads and signs off their court's transcripts.
    Judge,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Administrator,
        Role::Technician,
        Role::Inspector,
        Role::Clerk,
        Role::Kiosk,
        Role::Judge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Administrator => "administrator",
            Role::Technician => "technician",
            Role::Inspector => "inspector",
            Role::Clerk => "clerk",
            Role::Kiosk => "kiosk",
            Role::Judge => "judge",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub user: String,
    pub role: Role,
    /// The court a clerk works for (clerks act only on its rooms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub court: Option<String>,
}

/// What a request wants to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Read fleet, hearings, alarms, reports, live streams.
    Read,
    /// Acknowledge or resolve an alarm.
    AckAlarm,
    /// Send a command to a device (ping, restart...).
    DeviceCommand,
    /// Make enrollment tokens, revoke devices.
    Provision,
    /// Publish bundles, create and steer update campaigns.
    Ota,
    /// Create, move, cancel, open or close a hearing of `court` (None: unknown court).
    Schedule { court: Option<String> },
    /// Import a hearing file (any court).
    ImportHearings,
    /// Start or stop recording in a room of `court`.
    Record { court: Option<String> },
    /// Manage users.
    ManageUsers,
    /// Read or export the audit log.
    ReadAudit,
    /// Kiosk endpoints (case look-up, tickets).
    Kiosk,
    /// Call or recall a number at a window of `court`'s service hall, or issue a case's
    /// check code.
    Hall { court: Option<String> },
    /// Correct or sign off a transcript of a hearing of `court`.
    Proofread { court: Option<String> },
}

impl Action {
    /// A short name for the audit log.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::AckAlarm => "ack_alarm",
            Action::DeviceCommand => "device_command",
            Action::Provision => "provision",
            Action::Ota => "ota",
            Action::Schedule { .. } => "schedule",
            Action::ImportHearings => "import_hearings",
            Action::Record { .. } => "record",
            Action::ManageUsers => "manage_users",
            Action::ReadAudit => "read_audit",
            Action::Kiosk => "kiosk",
            Action::Hall { .. } => "hall",
            Action::Proofread { .. } => "proofread",
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("role {role} may not {action}")]
    Role { role: Role, action: &'static str },
    #[error("{user} works for court {own}, not {asked}")]
    OtherCourt {
        user: String,
        own: String,
        asked: String,
    },
    #[error("{user} has no court assigned; ask an administrator")]
    NoCourt { user: String },
    #[error("the court of this hearing or room is unknown")]
    UnknownCourt,
}

/// May `p` do `a`?
pub fn authorize(p: &Principal, a: &Action) -> Result<(), Denied> {
    use Action::*;
    let role_denied = || Denied::Role {
        role: p.role,
        action: a.name(),
    };
    match p.role {
        Role::Administrator => Ok(()),
        Role::Technician => match a {
            Read | AckAlarm | DeviceCommand | Provision | Ota => Ok(()),
            _ => Err(role_denied()),
        },
        Role::Inspector => match a {
            Read | AckAlarm | ReadAudit => Ok(()),
            _ => Err(role_denied()),
        },
        Role::Clerk => match a {
            Read => Ok(()),
            Schedule { court } | Record { court } | Hall { court } | Proofread { court } => {
                own_court(p, court)
            }
            _ => Err(role_denied()),
        },
        Role::Judge => match a {
            Read => Ok(()),
            Proofread { court } => own_court(p, court),
            _ => Err(role_denied()),
        },
        Role::Kiosk => match a {
            Kiosk => Ok(()),
            _ => Err(role_denied()),
        },
    }
}

/// A clerk or judge acts only on the hearings and rooms of their own court.
fn own_court(p: &Principal, court: &Option<String>) -> Result<(), Denied> {
    let own = p.court.as_ref().ok_or_else(|| Denied::NoCourt {
        user: p.user.clone(),
    })?;
    match court {
        Some(c) if c == own => Ok(()),
        Some(c) => Err(Denied::OtherCourt {
            user: p.user.clone(),
            own: own.clone(),
            asked: c.clone(),
        }),
        None => Err(Denied::UnknownCourt),
    }
}

/// Limits password guessing: after `max_failures` failed logins for one key (a user name,
/// or a client address) within `window`, that key is locked for `lockout`.
#[derive(Debug)]
pub struct LoginLimiter {
    max_failures: u32,
    window: Duration,
    lockout: Duration,
    keys: HashMap<String, KeyState>,
}

#[derive(Debug, Default)]
struct KeyState {
    failures: Vec<OffsetDateTime>,
    locked_until: Option<OffsetDateTime>,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        Self::new(5, Duration::minutes(5), Duration::minutes(5))
    }
}

impl LoginLimiter {
    pub fn new(max_failures: u32, window: Duration, lockout: Duration) -> Self {
        Self {
            max_failures,
            window,
            lockout,
            keys: HashMap::new(),
        }
    }

    /// When a key is locked: until when. Check every key of a login before trying it.
    pub fn locked(&self, now: OffsetDateTime, key: &str) -> Option<OffsetDateTime> {
        self.keys
            .get(key)
            .and_then(|k| k.locked_until)
            .filter(|until| *until > now)
    }

    /// Records a failed login for `key`.
    pub fn failed(&mut self, now: OffsetDateTime, key: &str) {
        let window = self.window;
        let state = self.keys.entry(key.to_string()).or_default();
        state.failures.retain(|t| now - *t < window);
        state.failures.push(now);
        if state.failures.len() >= self.max_failures as usize {
            state.locked_until = Some(now + self.lockout);
            state.failures.clear();
        }
        // Keep the table small: forget keys with nothing recent.
        if self.keys.len() > 10_000 {
            self.keys.retain(|_, k| {
                k.locked_until.is_some_and(|u| u > now)
                    || k.failures.iter().any(|t| now - *t < window)
            });
        }
    }

    /// A successful login clears the key's failures.
    pub fn succeeded(&mut self, key: &str) {
        self.keys.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(role: Role, court: Option<&str>) -> Principal {
        Principal {
            user: "u".into(),
            role,
            court: court.map(String::from),
        }
    }

    fn t(s: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + s).expect("time")
    }

    #[test]
    fn an_inspector_cannot_start_an_update_or_change_a_schedule() {
        let p = who(Role::Inspector, None);
        assert!(authorize(&p, &Action::Read).is_ok());
        assert!(authorize(&p, &Action::AckAlarm).is_ok());
        assert!(matches!(
            authorize(&p, &Action::Ota),
            Err(Denied::Role { .. })
        ));
        assert!(
            authorize(
                &p,
                &Action::Schedule {
                    court: Some("hz".into())
                }
            )
            .is_err()
        );
    }

    #[test]
    fn a_clerk_acts_only_on_their_own_court() {
        let p = who(Role::Clerk, Some("hz"));
        let own = Some("hz".to_string());
        let other = Some("nb".to_string());
        assert!(authorize(&p, &Action::Schedule { court: own.clone() }).is_ok());
        assert!(authorize(&p, &Action::Record { court: own }).is_ok());
        let err = authorize(&p, &Action::Record { court: other }).expect_err("other court");
        assert_eq!(err.to_string(), "u works for court hz, not nb");
        assert_eq!(
            authorize(&p, &Action::Schedule { court: None }),
            Err(Denied::UnknownCourt)
        );
        assert!(authorize(&p, &Action::ImportHearings).is_err());
        assert!(authorize(&p, &Action::Ota).is_err());
        let courtless = who(Role::Clerk, None);
        assert!(matches!(
            authorize(
                &courtless,
                &Action::Record {
                    court: Some("hz".into())
                }
            ),
            Err(Denied::NoCourt { .. })
        ));
    }

    #[test]
    fn each_role_gets_exactly_its_row_of_the_table() {
        let actions = [
            Action::Read,
            Action::AckAlarm,
            Action::DeviceCommand,
            Action::Provision,
            Action::Ota,
            Action::ImportHearings,
            Action::ManageUsers,
            Action::ReadAudit,
            Action::Kiosk,
        ];
        let allowed = |role| -> Vec<&'static str> {
            actions
                .iter()
                .filter(|a| authorize(&who(role, Some("hz")), a).is_ok())
                .map(Action::name)
                .collect()
        };
        assert_eq!(allowed(Role::Administrator).len(), actions.len());
        assert_eq!(
            allowed(Role::Technician),
            ["read", "ack_alarm", "device_command", "provision", "ota"]
        );
        assert_eq!(
            allowed(Role::Inspector),
            ["read", "ack_alarm", "read_audit"]
        );
        assert_eq!(allowed(Role::Clerk), ["read"]);
        assert_eq!(allowed(Role::Kiosk), ["kiosk"]);
        assert_eq!(allowed(Role::Judge), ["read"]);
    }

    #[test]
    fn clerks_and_judges_proofread_only_their_own_courts_transcripts() {
        for role in [Role::Clerk, Role::Judge] {
            let p = who(role, Some("hz"));
            let own = Action::Proofread {
                court: Some("hz".into()),
            };
            let other = Action::Proofread {
                court: Some("nb".into()),
            };
            assert!(authorize(&p, &own).is_ok(), "{role}");
            assert!(matches!(
                authorize(&p, &other),
                Err(Denied::OtherCourt { .. })
            ));
        }
        for role in [Role::Technician, Role::Inspector, Role::Kiosk] {
            let p = who(role, Some("hz"));
            let own = Action::Proofread {
                court: Some("hz".into()),
            };
            assert!(
                matches!(authorize(&p, &own), Err(Denied::Role { .. })),
                "{role}"
            );
        }
        assert!(
            authorize(
                &who(Role::Judge, Some("hz")),
                &Action::Schedule {
                    court: Some("hz".into())
                }
            )
            .is_err(),
            "a judge does not change schedules through the API"
        );
    }

    #[test]
    fn five_failures_lock_a_key_for_the_lockout_and_success_clears_it() {
        let mut l = LoginLimiter::default();
        for i in 0..4 {
            l.failed(t(i), "alice");
        }
        assert_eq!(l.locked(t(4), "alice"), None, "four failures are allowed");
        l.failed(t(5), "alice");
        assert_eq!(l.locked(t(6), "alice"), Some(t(5) + Duration::minutes(5)));
        assert_eq!(l.locked(t(6), "bob"), None, "other keys are not affected");
        assert_eq!(l.locked(t(5 + 301), "alice"), None, "the lock ends");
        l.failed(t(400), "bob");
        l.succeeded("bob");
        for i in 0..4 {
            l.failed(t(401 + i), "bob");
        }
        assert_eq!(l.locked(t(410), "bob"), None, "success reset the count");
    }

    #[test]
    fn failures_outside_the_window_do_not_count() {
        let mut l = LoginLimiter::default();
        for i in 0..4 {
            l.failed(t(i * 100), "alice"); // 0, 100, 200, 300
        }
        l.failed(t(400), "alice"); // the one at 0 is 400 s old: out of the 300 s window
        assert_eq!(l.locked(t(401), "alice"), None);
    }
}
