//! What an install journal means after a boot (sans-I/O), for every backend.
//!
//! After each boot the installer reads its journal and asks its bootloader about the
//! journalled target slot; [`judge`] turns those facts into the steps to take (journal
//! writes, marking the slot bad) and the [`BootOutcome`] to report. The file-slot
//! installer and the RAUC backend differ only in how they read the facts.

use crate::install::{BootOutcome, Journal, Stage};
use crate::slot::SlotName;

/// What the bootloader says about the journalled install's target slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootFacts {
    /// The slot that is running now.
    pub booted: SlotName,
    /// The target was completely written and activated: the install finished, even if
    /// the power went before the journal said so.
    pub written: bool,
    /// The bootloader will boot the target next (it is primary and has attempts left).
    pub next: bool,
    /// Whether the target has been marked good; `None` where the backend cannot tell a
    /// trial boot from a confirmed one (RAUC marks a slot good when it writes it).
    pub good: Option<bool>,
}

/// One thing to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Write this journal.
    Journal(Journal),
    /// Tell the bootloader never to boot this slot again.
    MarkBad(SlotName),
}

/// The steps to take, then the outcome to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    /// Done in order before the outcome holds.
    pub steps: Vec<Step>,
    /// What happened.
    pub outcome: BootOutcome,
}

/// Judges the journal `j` against the boot facts.
pub fn judge(j: Journal, facts: BootFacts) -> Judgement {
    let mut steps = Vec::new();
    // Power lost between activating the slot and journalling it: the install did finish.
    let j = if j.stage == Stage::Writing && facts.written {
        let j = Journal {
            stage: Stage::Activated,
            ..j
        };
        steps.push(Step::Journal(j.clone()));
        j
    } else {
        j
    };
    let outcome = match j.stage {
        Stage::Writing => {
            let j = Journal {
                stage: Stage::Interrupted,
                ..j
            };
            steps.push(Step::Journal(j.clone()));
            BootOutcome::Interrupted(j)
        }
        Stage::Activated if facts.booted == j.slot && facts.good == Some(true) => {
            // Committed, but the power went before the journal said so.
            let j = Journal {
                stage: Stage::Committed,
                ..j
            };
            steps.push(Step::Journal(j.clone()));
            BootOutcome::Settled(j)
        }
        Stage::Activated if facts.booted == j.slot => {
            BootOutcome::PendingCommit { version: j.version }
        }
        // Design: a bootloader tries the primary slot first while it has attempts and
        // gives it up when they run out. So a target that is still next was never booted:
        // the agent restarted without a reboot.
        Stage::Activated if facts.next => BootOutcome::PendingReboot {
            version: j.version,
            slot: j.slot,
        },
        Stage::Activated => {
            steps.push(Step::MarkBad(j.slot));
            let j = Journal {
                stage: Stage::RolledBack {
                    reason: format!(
                        "slot {} did not come up within its boot attempts; the bootloader fell back to {}",
                        j.slot, facts.booted
                    ),
                },
                ..j
            };
            steps.push(Step::Journal(j.clone()));
            BootOutcome::RolledBack(j)
        }
        _ => BootOutcome::Settled(j),
    };
    Judgement { steps, outcome }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Version;

    fn journal(stage: Stage) -> Journal {
        Journal {
            stage,
            version: "1.1.0".parse::<Version>().expect("version"),
            from: Some("1.0.0".parse().expect("version")),
            slot: SlotName::B,
        }
    }

    fn facts(booted: SlotName, written: bool, next: bool, good: Option<bool>) -> BootFacts {
        BootFacts {
            booted,
            written,
            next,
            good,
        }
    }

    fn stages(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .map(|s| match s {
                Step::Journal(j) => format!("journal {:?}", j.stage),
                Step::MarkBad(slot) => format!("mark bad {slot}"),
            })
            .collect()
    }

    #[test]
    fn a_cut_off_write_is_interrupted_and_the_old_slot_runs() {
        let j = judge(
            journal(Stage::Writing),
            facts(SlotName::A, false, false, Some(false)),
        );
        assert!(
            matches!(j.outcome, BootOutcome::Interrupted(ref j) if j.stage == Stage::Interrupted)
        );
        assert_eq!(stages(&j.steps), ["journal Interrupted"]);
    }

    #[test]
    fn a_finished_write_the_journal_missed_is_activated_then_waits_for_its_reboot() {
        let j = judge(
            journal(Stage::Writing),
            facts(SlotName::A, true, true, Some(false)),
        );
        assert_eq!(stages(&j.steps), ["journal Activated"]);
        assert!(matches!(
            j.outcome,
            BootOutcome::PendingReboot {
                slot: SlotName::B,
                ..
            }
        ));
    }

    #[test]
    fn the_target_booted_on_trial_waits_for_the_health_gate() {
        for good in [Some(false), None] {
            let j = judge(
                journal(Stage::Activated),
                facts(SlotName::B, true, true, good),
            );
            assert!(j.steps.is_empty(), "{good:?}");
            assert!(
                matches!(j.outcome, BootOutcome::PendingCommit { .. }),
                "{good:?}"
            );
        }
    }

    #[test]
    fn a_target_already_marked_good_settles_as_committed() {
        let j = judge(
            journal(Stage::Activated),
            facts(SlotName::B, true, false, Some(true)),
        );
        assert_eq!(stages(&j.steps), ["journal Committed"]);
        assert!(matches!(j.outcome, BootOutcome::Settled(ref j) if j.stage == Stage::Committed));
    }

    #[test]
    fn a_fallback_marks_the_target_bad_before_the_journal_says_rolled_back() {
        let j = judge(
            journal(Stage::Activated),
            facts(SlotName::A, false, false, Some(false)),
        );
        assert_eq!(j.steps.len(), 2);
        assert_eq!(j.steps[0], Step::MarkBad(SlotName::B));
        let BootOutcome::RolledBack(rolled) = &j.outcome else {
            panic!("{:?}", j.outcome)
        };
        assert_eq!(j.steps[1], Step::Journal(rolled.clone()));
        let Stage::RolledBack { reason } = &rolled.stage else {
            panic!("{rolled:?}")
        };
        assert!(
            reason.contains("slot B") && reason.contains("fell back to A"),
            "{reason}"
        );
    }

    #[test]
    fn final_stages_are_reported_as_they_are() {
        for stage in [
            Stage::Committed,
            Stage::Interrupted,
            Stage::RolledBack {
                reason: "earlier".into(),
            },
        ] {
            let j = judge(
                journal(stage.clone()),
                facts(SlotName::A, false, false, None),
            );
            assert!(j.steps.is_empty());
            assert!(matches!(j.outcome, BootOutcome::Settled(ref s) if s.stage == stage));
        }
    }
}
