//! The device's update flow, sans-I/O: when to download, install and reboot, given the
//! room's schedule. The agent runs the steps it is told to ([`Action::Begin`]) and feeds
//! back their results; it never reads the clock here (`now` is Unix seconds).
//!
//! ```text
//!  Idle ─start─► WaitDownload ─free─► Downloading ─done─► WaitInstall ─free─► Installing
//!                   │ in session          (paused when        │ hearing in session or
//!                   ▼                      a hearing starts)  ▼ within the guard window
//!                Deferred                                  Deferred
//!  Installing ─done─► WaitReboot ─free─► Rebooting (the health gate then commits or rolls back)
//! ```

use crate::window::RoomSchedule;

/// A step the agent carries out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Download (resume) the bundle at the device's cap.
    Download,
    /// Verify and write the inactive slot.
    Install,
    /// Reboot into the new slot.
    Reboot,
}

/// What the agent tells the updater.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// An install was requested.
    Start,
    /// An install was written and made the boot target before the agent restarted: only
    /// the reboot is left (it waits for the room like any reboot).
    Installed,
    /// The room's schedule changed.
    Schedule(RoomSchedule),
    /// The running step finished.
    Done(Step),
    /// The running step failed (the reason is reported, the update ends).
    Failed(Step, String),
    /// Time passed.
    Tick,
}

/// What the updater asks of the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start this step now.
    Begin(Step),
    /// Stop the running download (a hearing started); it resumes later.
    PauseDownload,
    /// Report that this step waits, and why (once per reason).
    Deferred(Step, String),
    /// The update ended with an error before the reboot.
    Failed(Step, String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Waiting(Step),
    Running(Step),
    Done,
}

/// The update flow of one device.
#[derive(Debug, Clone)]
pub struct Updater {
    guard_s: i64,
    schedule: RoomSchedule,
    phase: Phase,
    last_deferral: Option<String>,
}

impl Updater {
    /// A flow that keeps installs and reboots `guard_s` seconds clear of hearings.
    pub fn new(guard_s: i64) -> Self {
        Self {
            guard_s,
            schedule: RoomSchedule::default(),
            phase: Phase::Idle,
            last_deferral: None,
        }
    }

    /// Whether the flow has handed over to the reboot (or ended).
    pub fn finished(&self) -> bool {
        matches!(self.phase, Phase::Done | Phase::Running(Step::Reboot))
    }

    fn allowed(&self, step: Step, now: i64) -> Result<(), String> {
        let r = match step {
            Step::Download => self.schedule.may_download(now),
            Step::Install | Step::Reboot => self.schedule.may_disturb(now, self.guard_s),
        };
        r.map_err(|e| e.to_string())
    }

    /// Applies one input at `now` (Unix seconds).
    pub fn handle(&mut self, now: i64, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Start => {
                if matches!(self.phase, Phase::Idle | Phase::Done) {
                    self.phase = Phase::Waiting(Step::Download);
                    self.last_deferral = None;
                }
            }
            Input::Installed => {
                if matches!(self.phase, Phase::Idle | Phase::Done) {
                    self.phase = Phase::Waiting(Step::Reboot);
                    self.last_deferral = None;
                }
            }
            Input::Schedule(s) => self.schedule = s,
            Input::Tick => {}
            Input::Done(step) => {
                if self.phase == Phase::Running(step) {
                    self.last_deferral = None;
                    self.phase = match step {
                        Step::Download => Phase::Waiting(Step::Install),
                        Step::Install => Phase::Waiting(Step::Reboot),
                        Step::Reboot => Phase::Done,
                    };
                }
            }
            Input::Failed(step, why) => {
                if self.phase == Phase::Running(step) {
                    self.phase = Phase::Done;
                    out.push(Action::Failed(step, why));
                    return out;
                }
            }
        }
        match self.phase {
            Phase::Waiting(step) => match self.allowed(step, now) {
                Ok(()) => {
                    self.phase = Phase::Running(step);
                    out.push(Action::Begin(step));
                }
                Err(why) => {
                    if self.last_deferral.as_deref() != Some(why.as_str()) {
                        self.last_deferral = Some(why.clone());
                        out.push(Action::Deferred(step, why));
                    }
                }
            },
            Phase::Running(Step::Download) => {
                if let Err(why) = self.allowed(Step::Download, now) {
                    self.phase = Phase::Waiting(Step::Download);
                    self.last_deferral = Some(why.clone());
                    out.push(Action::PauseDownload);
                    out.push(Action::Deferred(Step::Download, why));
                }
            }
            _ => {}
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_session(on: bool) -> Input {
        Input::Schedule(RoomSchedule {
            in_session: on,
            busy: vec![],
        })
    }

    #[test]
    fn room_in_session_is_not_updated_until_the_hearing_ends() {
        let mut u = Updater::new(1800);
        u.handle(0, in_session(true));
        assert_eq!(
            u.handle(0, Input::Start),
            vec![Action::Deferred(
                Step::Download,
                "a hearing is in progress".into()
            )]
        );
        assert!(
            u.handle(60, Input::Tick).is_empty(),
            "deferral reported once"
        );
        // The hearing ends: download, then install and reboot.
        assert_eq!(
            u.handle(3600, in_session(false)),
            vec![Action::Begin(Step::Download)]
        );
        assert_eq!(
            u.handle(3700, Input::Done(Step::Download)),
            vec![Action::Begin(Step::Install)]
        );
        assert_eq!(
            u.handle(3800, Input::Done(Step::Install)),
            vec![Action::Begin(Step::Reboot)]
        );
        assert!(u.finished());
    }

    #[test]
    fn download_pauses_when_a_hearing_starts_and_resumes_after() {
        let mut u = Updater::new(1800);
        assert_eq!(
            u.handle(0, Input::Start),
            vec![Action::Begin(Step::Download)]
        );
        let out = u.handle(10, in_session(true));
        assert_eq!(out[0], Action::PauseDownload);
        assert_eq!(
            u.handle(20, in_session(false)),
            vec![Action::Begin(Step::Download)]
        );
    }

    #[test]
    fn install_and_reboot_wait_for_the_guard_window_before_a_scheduled_hearing() {
        let mut u = Updater::new(1800);
        u.handle(
            0,
            Input::Schedule(RoomSchedule {
                in_session: false,
                busy: vec![(1000, 5000)],
            }),
        );
        assert_eq!(
            u.handle(0, Input::Start),
            vec![Action::Begin(Step::Download)]
        );
        // Downloaded at 100 s; the hearing at 1000 s is within the 30-minute guard.
        let out = u.handle(100, Input::Done(Step::Download));
        assert!(
            matches!(&out[..], [Action::Deferred(Step::Install, _)]),
            "{out:?}"
        );
        assert!(
            u.handle(2000, Input::Tick).is_empty(),
            "still busy during the hearing"
        );
        assert_eq!(
            u.handle(5000, Input::Tick),
            vec![Action::Begin(Step::Install)]
        );
    }

    #[test]
    fn update_installed_before_a_restart_resumes_at_the_reboot_and_waits_for_the_room() {
        let mut u = Updater::new(1800);
        u.handle(0, in_session(true));
        assert_eq!(
            u.handle(0, Input::Installed),
            vec![Action::Deferred(
                Step::Reboot,
                "a hearing is in progress".into()
            )],
            "no download or install again, and no reboot in session"
        );
        assert!(u.handle(30, Input::Tick).is_empty());
        assert_eq!(
            u.handle(600, in_session(false)),
            vec![Action::Begin(Step::Reboot)]
        );
        assert!(u.finished());
        // With the room free it reboots at once.
        let mut u = Updater::new(1800);
        assert_eq!(
            u.handle(0, Input::Installed),
            vec![Action::Begin(Step::Reboot)]
        );
    }

    #[test]
    fn failed_step_ends_the_update_with_the_reason() {
        let mut u = Updater::new(0);
        u.handle(0, Input::Start);
        u.handle(1, Input::Done(Step::Download));
        let out = u.handle(2, Input::Failed(Step::Install, "signature invalid".into()));
        assert_eq!(
            out,
            vec![Action::Failed(Step::Install, "signature invalid".into())]
        );
        assert!(u.finished());
    }
}
