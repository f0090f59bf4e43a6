//! Changing the schedule: imports, creation, moves and cancellations, checked against the
//! hearings already known. Pure: the shell hands in what it knows, the change and the
//! time, and stores (and enforces) the hearings that come back.
//!
//! Rules:
//! - Ids, durations and rooms are validated like the CSV import's.
//! - Two hearings that are scheduled or in progress may not hold one room at one time
//!   (cancelled and closed ones hold nothing).
//! - A closed hearing never changes. A hearing in progress keeps its start (its end and
//!   room may move) and cannot be cancelled: it is closed instead.
//! - An import replaces hearings with the same id; one that is in progress or closed may
//!   only be imported again unchanged (then it is left as it is).
//! - Moves and cancellations are kept in the hearing's `history` with who and why.

use std::collections::BTreeMap;

use time::OffsetDateTime;

use super::{
    ChangeAction, Hearing, HearingChange, HearingStatus, RowError, id_problem, span_problem,
    valid_id,
};

/// One change to the schedule.
#[derive(Debug, Clone)]
pub enum Change {
    /// Parsed hearings with their lines; all or nothing. `start_field` names the start
    /// in errors (`start` for CSV, `DTSTART` for iCalendar).
    Import {
        hearings: Vec<(u64, Hearing)>,
        start_field: &'static str,
    },
    /// One new hearing (from a case management system).
    Create(Hearing),
    /// New times and/or room. A new start alone keeps the duration.
    Move {
        id: String,
        start: Option<OffsetDateTime>,
        end: Option<OffsetDateTime>,
        room: Option<String>,
        by: String,
        why: String,
    },
    /// Called off before it started.
    Cancel { id: String, by: String, why: String },
}

/// Why a change was refused; nothing was changed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChangeError {
    /// Bad values, each by line (0 for the API) and field.
    #[error("{}", describe(.0))]
    Invalid(Vec<RowError>),
    #[error("no hearing {0}")]
    NotFound(String),
    /// The change contradicts the hearing's state or another hearing.
    #[error("{0}")]
    Conflict(String),
}

fn describe(errors: &[RowError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether the hearing holds its room (for overlap checks).
fn holds_room(h: &Hearing) -> bool {
    matches!(
        h.status,
        HearingStatus::Scheduled | HearingStatus::InProgress
    )
}

fn status_word(s: HearingStatus) -> &'static str {
    match s {
        HearingStatus::Scheduled => "scheduled",
        HearingStatus::InProgress => "in progress",
        HearingStatus::Closed => "closed",
        HearingStatus::Cancelled => "cancelled",
    }
}

/// The first known hearing (other than `h` itself and those in `except`) that holds
/// `h`'s room at `h`'s time.
fn clash<'a>(
    known: &'a BTreeMap<String, Hearing>,
    h: &Hearing,
    except: &dyn Fn(&str) -> bool,
) -> Option<&'a Hearing> {
    if !holds_room(h) {
        return None;
    }
    known
        .values()
        .find(|k| k.id != h.id && !except(&k.id) && holds_room(k) && k.overlaps(h))
}

fn clash_message(other: &Hearing) -> String {
    format!(
        "overlaps hearing {} ({}, {} to {}) in room {}",
        other.case_number,
        other.id,
        gavel_protocol::rfc3339(other.scheduled_start),
        gavel_protocol::rfc3339(other.scheduled_end),
        other.room
    )
}

/// Field problems of a hearing given whole (API create), by JSON field name.
pub fn problems(h: &Hearing) -> Vec<RowError> {
    let mut errors = Vec::new();
    let mut bad = |field: &str, message: String| errors.push(RowError::new(0, field, message));
    if !valid_id(&h.id) {
        bad("id", id_problem(&h.id));
    }
    if h.case_number.trim().is_empty() {
        bad("case_number", "empty".into());
    }
    if !valid_id(&h.court) {
        bad("court", id_problem(&h.court));
    }
    if !valid_id(&h.room) {
        bad("room", id_problem(&h.room));
    }
    if let Some(p) = span_problem(h.scheduled_start, h.scheduled_end) {
        bad("scheduled_end", p);
    }
    if h.judge.trim().is_empty() {
        bad("judge", "empty".into());
    }
    for (i, p) in h.parties.iter().enumerate() {
        if p.role.trim().is_empty() || p.name.trim().is_empty() {
            bad(
                &format!("parties[{i}]"),
                "role and name must not be empty".into(),
            );
        }
    }
    errors
}

fn span_text(h: &Hearing) -> String {
    format!(
        "{} to {} in {}",
        gavel_protocol::rfc3339(h.scheduled_start),
        gavel_protocol::rfc3339(h.scheduled_end),
        h.room
    )
}

/// Applies `change` to the `known` hearings at `now`. Returns the hearings to store and
/// enforce (new or changed; unchanged re-imports are left out), or why nothing changes.
pub fn apply(
    known: &BTreeMap<String, Hearing>,
    change: Change,
    now: OffsetDateTime,
) -> Result<Vec<Hearing>, ChangeError> {
    match change {
        Change::Import {
            hearings,
            start_field,
        } => import(known, hearings, start_field, now),
        Change::Create(h) => {
            let errors = problems(&h);
            if !errors.is_empty() {
                return Err(ChangeError::Invalid(errors));
            }
            if known.contains_key(&h.id) {
                return Err(ChangeError::Conflict(format!(
                    "hearing {} already exists; move or cancel it instead",
                    h.id
                )));
            }
            if let Some(other) = clash(known, &h, &|_| false) {
                return Err(ChangeError::Conflict(clash_message(other)));
            }
            Ok(vec![h])
        }
        Change::Move {
            id,
            start,
            end,
            room,
            by,
            why,
        } => {
            let old = known
                .get(&id)
                .ok_or_else(|| ChangeError::NotFound(id.clone()))?;
            let mut errors = Vec::new();
            if by.trim().is_empty() {
                errors.push(RowError::new(0, "by", "empty: who moves the hearing"));
            }
            if start.is_none() && end.is_none() && room.is_none() {
                errors.push(RowError::new(
                    0,
                    "scheduled_start",
                    "nothing to change: give scheduled_start, scheduled_end and/or room",
                ));
            }
            if let Some(r) = &room
                && !valid_id(r)
            {
                errors.push(RowError::new(0, "room", id_problem(r)));
            }
            let mut new = old.clone();
            if let Some(s) = start {
                new.scheduled_start = s;
                new.scheduled_end = end.unwrap_or(s + (old.scheduled_end - old.scheduled_start));
            } else if let Some(e) = end {
                new.scheduled_end = e;
            }
            if let Some(r) = room {
                new.room = r;
            }
            if let Some(p) = span_problem(new.scheduled_start, new.scheduled_end) {
                errors.push(RowError::new(0, "scheduled_end", p));
            }
            if !errors.is_empty() {
                return Err(ChangeError::Invalid(errors));
            }
            match old.status {
                HearingStatus::Closed | HearingStatus::Cancelled => {
                    return Err(ChangeError::Conflict(format!(
                        "hearing {id} is {}; it can no longer be moved",
                        status_word(old.status)
                    )));
                }
                HearingStatus::InProgress if new.scheduled_start != old.scheduled_start => {
                    return Err(ChangeError::Conflict(format!(
                        "hearing {id} is in progress: only its end and room can change"
                    )));
                }
                _ => {}
            }
            if let Some(other) = clash(known, &new, &|_| false) {
                return Err(ChangeError::Conflict(clash_message(other)));
            }
            new.history.push(HearingChange {
                action: ChangeAction::Moved,
                by: by.trim().to_owned(),
                why: why.trim().to_owned(),
                at: now,
                detail: format!("{} -> {}", span_text(old), span_text(&new)),
            });
            Ok(vec![new])
        }
        Change::Cancel { id, by, why } => {
            let old = known
                .get(&id)
                .ok_or_else(|| ChangeError::NotFound(id.clone()))?;
            let mut errors = Vec::new();
            if by.trim().is_empty() {
                errors.push(RowError::new(0, "by", "empty: who cancels the hearing"));
            }
            if why.trim().is_empty() {
                errors.push(RowError::new(
                    0,
                    "why",
                    "empty: why the hearing is cancelled",
                ));
            }
            if !errors.is_empty() {
                return Err(ChangeError::Invalid(errors));
            }
            match old.status {
                HearingStatus::Scheduled => {}
                HearingStatus::InProgress => {
                    return Err(ChangeError::Conflict(format!(
                        "hearing {id} is in progress; close it instead of cancelling it"
                    )));
                }
                s => {
                    return Err(ChangeError::Conflict(format!(
                        "hearing {id} is already {}",
                        status_word(s)
                    )));
                }
            }
            let mut new = old.clone();
            new.status = HearingStatus::Cancelled;
            new.history.push(HearingChange {
                action: ChangeAction::Cancelled,
                by: by.trim().to_owned(),
                why: why.trim().to_owned(),
                at: now,
                detail: span_text(old),
            });
            Ok(vec![new])
        }
    }
}

/// Who the audit names for changes that came with an import.
pub const IMPORT_ACTOR: &str = "import";

fn import(
    known: &BTreeMap<String, Hearing>,
    hearings: Vec<(u64, Hearing)>,
    start_field: &'static str,
    now: OffsetDateTime,
) -> Result<Vec<Hearing>, ChangeError> {
    let mut errors = Vec::new();
    let mut out = Vec::new();
    let ids: std::collections::BTreeSet<String> =
        hearings.iter().map(|(_, h)| h.id.clone()).collect();
    for (line, mut h) in hearings {
        if let Some(old) = known.get(&h.id) {
            let same = old.same_schedule(&h);
            let cancel = h.status == HearingStatus::Cancelled;
            match old.status {
                HearingStatus::InProgress | HearingStatus::Closed if !same || cancel => {
                    errors.push(RowError::new(
                        line,
                        "id",
                        format!(
                            "hearing {} is {}; it can no longer be changed",
                            h.id,
                            status_word(old.status)
                        ),
                    ));
                    continue;
                }
                _ if same && old.status == h.status => continue,
                HearingStatus::InProgress | HearingStatus::Closed => continue,
                _ => {}
            }
            h.history = old.history.clone();
            if !same && !cancel {
                h.history.push(HearingChange {
                    action: ChangeAction::Moved,
                    by: IMPORT_ACTOR.into(),
                    why: "changed in an imported schedule".into(),
                    at: now,
                    detail: format!("{} -> {}", span_text(old), span_text(&h)),
                });
            }
            if cancel && old.status != HearingStatus::Cancelled {
                h.history.push(HearingChange {
                    action: ChangeAction::Cancelled,
                    by: IMPORT_ACTOR.into(),
                    why: "cancelled in an imported schedule".into(),
                    at: now,
                    detail: span_text(&h),
                });
            }
        }
        // Hearings of this import were checked against each other by the parser.
        if let Some(other) = clash(known, &h, &|id| ids.contains(id)) {
            errors.push(RowError::new(line, start_field, clash_message(other)));
            continue;
        }
        out.push(h);
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ChangeError::Invalid(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hearings::Party;
    use time::Duration;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-27 01:00 UTC);

    fn hearing(id: &str, room: &str, start: OffsetDateTime) -> Hearing {
        Hearing {
            id: id.into(),
            case_number: format!("case {id}"),
            court: "hz".into(),
            room: room.into(),
            scheduled_start: start,
            scheduled_end: start + Duration::hours(1),
            judge: "王法官".into(),
            parties: vec![Party {
                role: "plaintiff".into(),
                name: "张三".into(),
            }],
            status: HearingStatus::Scheduled,
            history: Vec::new(),
            opened_at: None,
            closed_at: None,
        }
    }

    fn book(list: &[Hearing]) -> BTreeMap<String, Hearing> {
        list.iter().map(|h| (h.id.clone(), h.clone())).collect()
    }

    fn moved(id: &str, start: Option<OffsetDateTime>, room: Option<&str>) -> Change {
        Change::Move {
            id: id.into(),
            start,
            end: None,
            room: room.map(Into::into),
            by: "clerk-li".into(),
            why: "judge ill".into(),
        }
    }

    #[test]
    fn a_created_hearing_is_validated_by_field_and_may_not_clash() {
        let known = book(&[hearing("a", "room-1", T0)]);
        let mut bad = hearing("Bad Id", "Room 1", T0);
        bad.scheduled_end = T0 - Duration::minutes(1);
        bad.judge = " ".into();
        let Err(ChangeError::Invalid(errors)) = apply(&known, Change::Create(bad), T0) else {
            panic!("expected field errors");
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["id", "room", "scheduled_end", "judge"]);
        let clash = hearing("b", "room-1", T0 + Duration::minutes(30));
        assert!(matches!(
            apply(&known, Change::Create(clash), T0),
            Err(ChangeError::Conflict(m)) if m.contains("overlaps hearing case a (a,")
        ));
        assert!(matches!(
            apply(&known, Change::Create(hearing("a", "room-2", T0)), T0),
            Err(ChangeError::Conflict(m)) if m.contains("already exists")
        ));
        let ok = apply(&known, Change::Create(hearing("b", "room-2", T0)), T0).expect("ok");
        assert_eq!(ok[0].id, "b");
    }

    #[test]
    fn a_move_keeps_the_duration_records_who_and_why_and_is_refused_on_overlap() {
        let known = book(&[
            hearing("a", "room-1", T0),
            hearing("b", "room-1", T0 + Duration::hours(2)),
        ]);
        let later = T0 + Duration::hours(4);
        let out = apply(&known, moved("a", Some(later), Some("room-2")), T0).expect("moved");
        let h = &out[0];
        assert_eq!(h.scheduled_start, later);
        assert_eq!(h.scheduled_end, later + Duration::hours(1));
        assert_eq!(h.room, "room-2");
        assert_eq!(h.history.len(), 1);
        assert_eq!(h.history[0].action, ChangeAction::Moved);
        assert_eq!(
            (h.history[0].by.as_str(), h.history[0].why.as_str()),
            ("clerk-li", "judge ill")
        );
        assert!(
            h.history[0].detail.contains("room-1 -> "),
            "{}",
            h.history[0].detail
        );
        // Onto b's slot: conflict; nothing to change, unknown id, bad room: errors.
        let onto_b = moved("a", Some(T0 + Duration::minutes(150)), None);
        assert!(matches!(
            apply(&known, onto_b, T0),
            Err(ChangeError::Conflict(_))
        ));
        assert!(matches!(
            apply(&known, moved("a", None, None), T0),
            Err(ChangeError::Invalid(e)) if e[0].field == "scheduled_start"
        ));
        assert_eq!(
            apply(&known, moved("x", Some(later), None), T0),
            Err(ChangeError::NotFound("x".into()))
        );
        assert!(matches!(
            apply(&known, moved("a", None, Some("Room 2")), T0),
            Err(ChangeError::Invalid(e)) if e[0].field == "room"
        ));
    }

    #[test]
    fn closed_hearings_never_move_and_running_ones_keep_their_start() {
        let mut closed = hearing("a", "room-1", T0);
        closed.status = HearingStatus::Closed;
        let mut running = hearing("b", "room-2", T0);
        running.status = HearingStatus::InProgress;
        let known = book(&[closed, running]);
        let later = Some(T0 + Duration::hours(3));
        assert!(matches!(
            apply(&known, moved("a", later, None), T0),
            Err(ChangeError::Conflict(m)) if m.contains("closed")
        ));
        assert!(matches!(
            apply(&known, moved("b", later, None), T0),
            Err(ChangeError::Conflict(m)) if m.contains("in progress")
        ));
        let longer = Change::Move {
            id: "b".into(),
            start: None,
            end: Some(T0 + Duration::hours(2)),
            room: None,
            by: "clerk".into(),
            why: String::new(),
        };
        let out = apply(&known, longer, T0).expect("extend a running hearing");
        assert_eq!(out[0].status, HearingStatus::InProgress);
        assert_eq!(out[0].scheduled_end, T0 + Duration::hours(2));
    }

    #[test]
    fn cancel_needs_who_and_why_and_only_a_scheduled_hearing_can_be_cancelled() {
        let mut running = hearing("b", "room-2", T0);
        running.status = HearingStatus::InProgress;
        let known = book(&[hearing("a", "room-1", T0), running]);
        let cancel = |id: &str, by: &str, why: &str| Change::Cancel {
            id: id.into(),
            by: by.into(),
            why: why.into(),
        };
        let Err(ChangeError::Invalid(e)) = apply(&known, cancel("a", "", ""), T0) else {
            panic!("expected field errors")
        };
        assert_eq!(
            e.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(),
            ["by", "why"]
        );
        assert!(matches!(
            apply(&known, cancel("b", "clerk", "settled"), T0),
            Err(ChangeError::Conflict(m)) if m.contains("in progress")
        ));
        let out = apply(&known, cancel("a", "clerk", "settled"), T0).expect("cancelled");
        assert_eq!(out[0].status, HearingStatus::Cancelled);
        assert_eq!(out[0].history[0].why, "settled");
        let known = book(&out);
        assert!(matches!(
            apply(&known, cancel("a", "clerk", "again"), T0),
            Err(ChangeError::Conflict(m)) if m.contains("already cancelled")
        ));
        // A cancelled hearing frees its room.
        assert!(apply(&known, Change::Create(hearing("c", "room-1", T0)), T0).is_ok());
    }

    #[test]
    fn an_import_is_checked_against_stored_hearings_and_unchanged_rows_are_left_alone() {
        let mut closed = hearing("a", "room-1", T0);
        closed.status = HearingStatus::Closed;
        let known = book(&[closed.clone(), hearing("b", "room-2", T0)]);
        let import = |list: Vec<(u64, Hearing)>| Change::Import {
            hearings: list,
            start_field: "start",
        };
        // The closed hearing imported again unchanged: nothing to store.
        let mut same = closed.clone();
        same.status = HearingStatus::Scheduled;
        let out = apply(&known, import(vec![(2, same.clone())]), T0).expect("unchanged");
        assert!(out.is_empty());
        // Changed, or clashing with b: every row named, nothing stored.
        let mut changed = same;
        changed.scheduled_end += Duration::minutes(10);
        let clash = hearing("c", "room-2", T0 + Duration::minutes(30));
        let Err(ChangeError::Invalid(e)) =
            apply(&known, import(vec![(2, changed), (3, clash)]), T0)
        else {
            panic!("expected row errors")
        };
        assert_eq!(
            e.iter()
                .map(|e| (e.line, e.field.as_str()))
                .collect::<Vec<_>>(),
            [(2, "id"), (3, "start")]
        );
        // Moving b within the same import is fine, and is audited.
        let mut b = hearing("b", "room-2", T0 + Duration::hours(1));
        b.scheduled_end = b.scheduled_start + Duration::hours(1);
        let c = hearing("c", "room-2", T0);
        let out = apply(&known, import(vec![(2, b), (3, c)]), T0).expect("rescheduled");
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].history[0].by, IMPORT_ACTOR);
    }
}
