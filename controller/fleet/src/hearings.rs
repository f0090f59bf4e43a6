//! Hearings: the model, the CSV import ([`import_csv`]), the iCalendar import ([`ics`]) and
//! the rules for changing a schedule ([`book`]). Pure: parsing and validation only.
//!
//! An import is all or nothing: every bad row (or event) is reported by line and field, and
//! if any is bad nothing is imported. Both imports validate the same way: ids, a positive
//! duration of at most [`MAX_HEARING`], no two hearings overlapping in one room.

pub mod book;
pub mod ics;

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Duration, OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// Longest hearing accepted by an import.
pub const MAX_HEARING: Duration = Duration::hours(12);

/// Where a hearing stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum HearingStatus {
    Scheduled,
    /// Opened by the clerk (or started by its schedule).
    InProgress,
    Closed,
    Cancelled,
}

/// A party to a hearing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Party {
    /// Seat role: `plaintiff`, `defendant`, `witness`, `prosecutor`...
    pub role: String,
    pub name: String,
}

/// A scheduled hearing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Hearing {
    /// Stable id: the case management system's, or generated from case number and start.
    pub id: String,
    pub case_number: String,
    pub court: String,
    pub room: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub scheduled_start: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub scheduled_end: OffsetDateTime,
    pub judge: String,
    #[serde(default)]
    pub parties: Vec<Party>,
    pub status: HearingStatus,
    /// When the hearing was opened (by the clerk or its recording starting).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub opened_at: Option<OffsetDateTime>,
    /// When the hearing was closed.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub closed_at: Option<OffsetDateTime>,
    /// Who moved or cancelled it, when and why, oldest first (empty in records stored
    /// before this field existed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HearingChange>,
}

/// What was done to a hearing after it was scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ChangeAction {
    /// New times and/or room.
    Moved,
    Cancelled,
}

/// One audited change of a hearing: who, when, why and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HearingChange {
    pub action: ChangeAction,
    /// User (or system) that made the change.
    pub by: String,
    pub why: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: OffsetDateTime,
    /// What changed, for people: `09:00-10:00 room-1 -> 14:00-15:00 room-2`.
    #[serde(default)]
    pub detail: String,
}

impl Hearing {
    /// Whether two hearings hold the same room at the same time (cancelled ones hold nothing).
    pub fn overlaps(&self, other: &Hearing) -> bool {
        self.court == other.court
            && self.room == other.room
            && self.status != HearingStatus::Cancelled
            && other.status != HearingStatus::Cancelled
            && self.scheduled_start < other.scheduled_end
            && other.scheduled_start < self.scheduled_end
    }

    /// Whether the schedule (not the status or history) is the same.
    pub fn same_schedule(&self, other: &Hearing) -> bool {
        self.case_number == other.case_number
            && self.court == other.court
            && self.room == other.room
            && self.scheduled_start == other.scheduled_start
            && self.scheduled_end == other.scheduled_end
            && self.judge == other.judge
            && self.parties == other.parties
    }
}

/// One problem in an import, by line (1-based, header is line 1) and field. For changes
/// made through the API the line is 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RowError {
    pub line: u64,
    pub field: String,
    pub message: String,
}

impl RowError {
    pub fn new(line: u64, field: &str, message: impl Into<String>) -> Self {
        Self {
            line,
            field: field.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "field `{}`: {}", self.field, self.message)
        } else {
            write!(
                f,
                "line {}, field `{}`: {}",
                self.line, self.field, self.message
            )
        }
    }
}

/// The columns of a hearing CSV, in any order.
pub const CSV_COLUMNS: [&str; 7] = [
    "case_number",
    "court",
    "room",
    "start",
    "end",
    "judge",
    "parties",
];

/// Parses a time: RFC 3339, or `YYYY-MM-DD HH:MM` in the court's `local` offset.
pub fn parse_time(s: &str, local: UtcOffset) -> Option<OffsetDateTime> {
    let s = s.trim();
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t);
    }
    let fmt = format_description!("[year]-[month]-[day] [hour]:[minute]");
    PrimitiveDateTime::parse(s, &fmt)
        .ok()
        .map(|p| p.assume_offset(local))
}

/// Parses `role:name; role:name`.
fn parse_parties(s: &str) -> Result<Vec<Party>, String> {
    s.split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (role, name) = p
                .split_once(':')
                .ok_or_else(|| format!("{p:?} is not role:name"))?;
            let (role, name) = (role.trim(), name.trim());
            if role.is_empty() || name.is_empty() {
                return Err(format!("{p:?} has an empty role or name"));
            }
            Ok(Party {
                role: role.to_lowercase(),
                name: name.to_owned(),
            })
        })
        .collect()
}

/// Whether `s` is an id: 1-64 of `a-z`, `0-9`, `-`, `_`, `.`.
pub fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

/// The id of a hearing imported without one: the case number's ASCII letters and digits
/// (runs of anything else become one `-`, none at either end) and the start time, e.g.
/// `(2026)浙0106民初1234号` at 09:00 → `2026-0106-1234-1795741200`. Never starts with
/// `-`, so it is safe as a command-line argument.
pub fn generated_id(case_number: &str, start: OffsetDateTime) -> String {
    let mut id = String::new();
    for c in case_number.chars() {
        if c.is_ascii_alphanumeric() {
            id.push(c.to_ascii_lowercase());
        } else if !id.is_empty() && !id.ends_with('-') {
            id.push('-');
        }
    }
    let id = id.trim_end_matches('-');
    let id: String = id.chars().take(40).collect();
    if id.is_empty() {
        format!("h-{}", start.unix_timestamp())
    } else {
        format!("{}-{}", id.trim_end_matches('-'), start.unix_timestamp())
    }
}

/// Why `s` is not an id, for error messages.
pub fn id_problem(s: &str) -> String {
    format!("{s:?} is not an id (1-64 of a-z, 0-9, '-', '_', '.')")
}

/// Checks a hearing's duration: after its start and at most [`MAX_HEARING`].
pub fn span_problem(start: OffsetDateTime, end: OffsetDateTime) -> Option<String> {
    if end <= start {
        Some("not after start".into())
    } else if end - start > MAX_HEARING {
        Some(format!(
            "hearing longer than {} hours",
            MAX_HEARING.whole_hours()
        ))
    } else {
        None
    }
}

/// Every pair of hearings of `list` (with their lines) that hold one room at one time,
/// reported on the later line's `field`.
pub fn overlap_errors(list: &[(u64, Hearing)], field: &str) -> Vec<RowError> {
    let mut errors = Vec::new();
    for (i, (line_a, a)) in list.iter().enumerate() {
        for (line_b, b) in list.iter().skip(i + 1) {
            if a.overlaps(b) {
                errors.push(RowError::new(
                    *line_b,
                    field,
                    format!(
                        "overlaps hearing {} on line {line_a} in room {}",
                        a.case_number, a.room
                    ),
                ));
            }
        }
    }
    errors
}

/// Parses a hearing CSV. `local` is the courts' UTC offset for times without one.
/// Returns every hearing, or every error (and then nothing is to be imported).
pub fn import_csv(text: &str, local: UtcOffset) -> Result<Vec<Hearing>, Vec<RowError>> {
    parse_csv(text, local).map(|list| list.into_iter().map(|(_, h)| h).collect())
}

/// Like [`import_csv`], with each hearing's line (for checks against stored hearings).
pub fn parse_csv(text: &str, local: UtcOffset) -> Result<Vec<(u64, Hearing)>, Vec<RowError>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(text.as_bytes());
    let mut errors = Vec::new();
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            return Err(vec![RowError {
                line: 1,
                field: "header".into(),
                message: e.to_string(),
            }]);
        }
    };
    let column = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    for c in CSV_COLUMNS.iter().filter(|c| **c != "parties") {
        if column(c).is_none() {
            errors.push(RowError {
                line: 1,
                field: (*c).into(),
                message: format!("missing column; expected columns {}", CSV_COLUMNS.join(",")),
            });
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut hearings: Vec<(u64, Hearing)> = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                errors.push(RowError {
                    line,
                    field: "row".into(),
                    message: e.to_string(),
                });
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        let get = |name: &str| {
            column(name)
                .and_then(|i| record.get(i))
                .unwrap_or("")
                .to_owned()
        };
        let mut bad = |field: &str, message: String| {
            errors.push(RowError {
                line,
                field: field.into(),
                message,
            })
        };
        let case_number = get("case_number");
        if case_number.is_empty() {
            bad("case_number", "empty".into());
        }
        let (court, room) = (get("court"), get("room"));
        if !valid_id(&court) {
            bad("court", id_problem(&court));
        }
        if !valid_id(&room) {
            bad("room", id_problem(&room));
        }
        let start = parse_time(&get("start"), local);
        if start.is_none() {
            bad(
                "start",
                format!("{:?} is not RFC 3339 or YYYY-MM-DD HH:MM", get("start")),
            );
        }
        let end = parse_time(&get("end"), local);
        if end.is_none() {
            bad(
                "end",
                format!("{:?} is not RFC 3339 or YYYY-MM-DD HH:MM", get("end")),
            );
        }
        if let (Some(s), Some(e)) = (start, end)
            && let Some(problem) = span_problem(s, e)
        {
            bad("end", problem);
        }
        let judge = get("judge");
        if judge.is_empty() {
            bad("judge", "empty".into());
        }
        let parties = match parse_parties(&get("parties")) {
            Ok(p) => p,
            Err(m) => {
                bad("parties", m);
                Vec::new()
            }
        };
        if let (Some(s), Some(e)) = (start, end)
            && !case_number.is_empty()
        {
            let id = generated_id(&case_number, s);
            hearings.push((
                line,
                Hearing {
                    id,
                    case_number,
                    court,
                    room,
                    scheduled_start: s,
                    scheduled_end: e,
                    judge,
                    parties,
                    status: HearingStatus::Scheduled,
                    opened_at: None,
                    closed_at: None,
                    history: Vec::new(),
                },
            ));
        }
    }
    // Two hearings may not overlap in one room.
    errors.extend(overlap_errors(&hearings, "start"));
    if errors.is_empty() {
        Ok(hearings)
    } else {
        errors.sort_by(|a, b| (a.line, &a.field).cmp(&(b.line, &b.field)));
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{datetime, offset};

    const CST: UtcOffset = offset!(+8);

    #[test]
    fn generated_ids_are_safe_as_arguments_and_paths() {
        let t = OffsetDateTime::from_unix_timestamp(1_795_741_200).expect("t");
        assert_eq!(
            generated_id("(2026)浙0106民初1234号", t),
            "2026-0106-1234-1795741200"
        );
        assert_eq!(generated_id("刑初字", t), "h-1795741200");
        assert_eq!(generated_id("--A b--", t), "a-b-1795741200");
        assert!(valid_id(&generated_id("(2026)浙0106民初1234号", t)));
    }

    #[test]
    fn a_valid_csv_imports_every_hearing_with_local_times() {
        let csv = "case_number,court,room,start,end,judge,parties\n\
                   (2026)浙0106民初1234号,hz-intermediate,room-101,2026-11-27 09:00,2026-11-27 10:30,王法官,plaintiff:张三; defendant:李四\n\
                   (2026)浙0106刑初88号,hz-intermediate,room-102,2026-11-27T01:00:00Z,2026-11-27T02:00:00Z,李法官,\n";
        let hs = import_csv(csv, CST).expect("valid");
        assert_eq!(hs.len(), 2);
        assert_eq!(hs[0].scheduled_start, datetime!(2026-11-27 01:00 UTC));
        assert_eq!(
            hs[0].parties[1],
            Party {
                role: "defendant".into(),
                name: "李四".into()
            }
        );
        assert_eq!(hs[1].status, HearingStatus::Scheduled);
    }

    #[test]
    fn every_bad_row_is_reported_by_line_and_field_and_nothing_is_imported() {
        let csv = "case_number,court,room,start,end,judge,parties\n\
                   A1,hz,room-1,2026-11-27 09:00,2026-11-27 10:00,J,plaintiff:x\n\
                   A2,hz,Room 2,soon,2026-11-27 10:00,J,\n\
                   A3,hz,room-3,2026-11-27 11:00,2026-11-27 10:00,,badparty\n";
        let errors = import_csv(csv, CST).expect_err("bad rows");
        let found: Vec<(u64, &str)> = errors.iter().map(|e| (e.line, e.field.as_str())).collect();
        assert_eq!(
            found,
            [
                (3, "room"),
                (3, "start"),
                (4, "end"),
                (4, "judge"),
                (4, "parties")
            ]
        );
        assert!(errors[0].to_string().starts_with("line 3, field `room`"));
    }

    #[test]
    fn overlapping_hearings_in_one_room_are_refused() {
        let csv = "case_number,court,room,start,end,judge\n\
                   A1,hz,room-1,2026-11-27 09:00,2026-11-27 10:00,J\n\
                   A2,hz,room-1,2026-11-27 09:30,2026-11-27 11:00,J\n\
                   A3,hz,room-2,2026-11-27 09:30,2026-11-27 11:00,J\n";
        let errors = import_csv(csv, CST).expect_err("overlap");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, 3);
        assert!(errors[0].message.contains("overlaps hearing A1"));
    }

    #[test]
    fn a_record_stored_before_the_audit_history_existed_still_loads() {
        let old = r#"{"id":"a1-1795741200","case_number":"A1","court":"hz","room":"room-1",
            "scheduled_start":"2026-11-27T01:00:00Z","scheduled_end":"2026-11-27T02:00:00Z",
            "judge":"J","parties":[],"status":"scheduled"}"#;
        let h: Hearing = serde_json::from_str(old).expect("old record");
        assert!(h.history.is_empty());
        // And a record with history round-trips.
        let mut moved = h.clone();
        moved.history.push(HearingChange {
            action: ChangeAction::Moved,
            by: "cms".into(),
            why: "judge ill".into(),
            at: datetime!(2026-11-26 08:00 UTC),
            detail: "x -> y".into(),
        });
        let json = serde_json::to_string(&moved).expect("json");
        assert_eq!(serde_json::from_str::<Hearing>(&json).expect("back"), moved);
        assert!(!serde_json::to_string(&h).expect("json").contains("history"));
    }

    #[test]
    fn a_missing_column_is_named() {
        let errors = import_csv("case_number,court,start,end,judge\n", CST).expect_err("column");
        assert_eq!(errors[0].field, "room");
    }
}
