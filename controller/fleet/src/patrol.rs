//! Hearing patrol at the controller: findings folded from their start and end events,
//! and the patrol report of a court per day or week (hearings patrolled, findings by
//! type and by room, unresolved items). Pure: rendering to CSV and HTML included.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use gavel_protocol::{Event, EventBody, Phase};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::enforcement::{Alarm, AlarmKind};
use crate::hearings::{Hearing, HearingStatus};
use crate::report::esc;

/// One finding, its start and end merged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingRecord {
    pub device: String,
    pub court: Option<String>,
    pub room: Option<String>,
    /// The finding's event id (start and end share it).
    pub event_id: String,
    /// Finding type (`signal_lost`, `disturbance`...).
    #[serde(rename = "type")]
    pub kind: String,
    pub source: String,
    pub seat: Option<String>,
    /// `info`, `warning` or `urgent`.
    pub severity: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
    pub detail: Option<String>,
    /// The hearing recorded at the time and the offset on its timeline (ms).
    pub hearing_id: Option<String>,
    pub offset_ms: Option<u64>,
    /// A snapshot came with the finding.
    pub snapshot: bool,
}

/// Folds finding events (oldest first) of devices with their court and room into one
/// record per finding.
pub fn fold(
    events: impl IntoIterator<Item = (String, Option<String>, Option<String>, Event)>,
) -> Vec<FindingRecord> {
    let mut by_id: BTreeMap<(String, String), FindingRecord> = BTreeMap::new();
    for (device, court, room, e) in events {
        let EventBody::Finding {
            finding,
            source,
            seat,
            severity,
            started_at,
            ended_at,
            snapshot,
            recording,
            detail,
        } = e.body
        else {
            continue;
        };
        let key = (device.clone(), e.id.clone());
        let severity = serde_json::to_value(severity)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let r = by_id.entry(key).or_insert_with(|| FindingRecord {
            device,
            court,
            room,
            event_id: e.id.clone(),
            kind: finding.as_str().to_owned(),
            source,
            seat,
            severity,
            started_at,
            ended_at: None,
            detail: None,
            hearing_id: None,
            offset_ms: None,
            snapshot: false,
        });
        if e.phase == Phase::End {
            r.ended_at = ended_at.or(Some(e.ts));
        }
        if detail.is_some() && (e.phase == Phase::Start || r.detail.is_none()) {
            r.detail = detail;
        }
        if let Some(l) = recording {
            r.hearing_id.get_or_insert(l.hearing_id);
            r.offset_ms.get_or_insert(l.offset_ms);
        }
        r.snapshot |= snapshot.is_some();
    }
    let mut out: Vec<FindingRecord> = by_id.into_values().collect();
    out.sort_by_key(|f| std::cmp::Reverse(f.started_at));
    out
}

/// A patrol report's period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Day,
    Week,
}

impl Period {
    pub fn length(self) -> Duration {
        match self {
            Period::Day => Duration::days(1),
            Period::Week => Duration::weeks(1),
        }
    }
}

/// Something the management office still has to act on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unresolved {
    pub room: String,
    /// Finding type or alarm kind.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    pub what: String,
}

/// The patrol report of a court for a day or a week.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatrolReport {
    pub court: String,
    pub period: Period,
    #[serde(with = "time::serde::rfc3339")]
    pub from: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub to: OffsetDateTime,
    /// Hearings of the court held in the period (opened, in progress or closed).
    pub hearings_patrolled: usize,
    pub findings: usize,
    /// Findings per type.
    pub by_type: BTreeMap<String, usize>,
    /// Findings per room, then type.
    pub by_room: BTreeMap<String, BTreeMap<String, usize>>,
    /// Findings still open and patrol alarms nobody acknowledged or resolved.
    pub unresolved: Vec<Unresolved>,
}

/// Builds the report of `court` over `[from, from + period)` as of `now`.
pub fn report(
    court: &str,
    period: Period,
    from: OffsetDateTime,
    now: OffsetDateTime,
    hearings: &[Hearing],
    findings: &[FindingRecord],
    open_alarms: &[Alarm],
) -> PatrolReport {
    let to = from + period.length();
    let within = |t: OffsetDateTime| t >= from && t < to;
    let hearings_patrolled = hearings
        .iter()
        .filter(|h| h.court == court && within(h.scheduled_start))
        // Held or being held: opened, closed, or past its scheduled start (patrol watches
        // the room from then on whether or not the clerk opened it).
        .filter(|h| {
            h.status != HearingStatus::Cancelled
                && (matches!(h.status, HearingStatus::InProgress | HearingStatus::Closed)
                    || h.opened_at.is_some()
                    || h.scheduled_start <= now)
        })
        .count();
    let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_room: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut unresolved = Vec::new();
    let mut count = 0;
    for f in findings
        .iter()
        .filter(|f| f.court.as_deref() == Some(court) && within(f.started_at))
    {
        count += 1;
        let room = f.room.clone().unwrap_or_else(|| "-".into());
        *by_type.entry(f.kind.clone()).or_default() += 1;
        *by_room
            .entry(room.clone())
            .or_default()
            .entry(f.kind.clone())
            .or_default() += 1;
        if f.ended_at.is_none() {
            unresolved.push(Unresolved {
                room,
                kind: f.kind.clone(),
                since: f.started_at,
                what: format!(
                    "{} on {}{} still open",
                    f.kind,
                    f.source,
                    f.seat
                        .as_ref()
                        .map(|s| format!(" ({s})"))
                        .unwrap_or_default()
                ),
            });
        }
    }
    for a in open_alarms.iter().filter(|a| {
        a.kind == AlarmKind::Patrol
            && a.court.as_deref() == Some(court)
            && a.acknowledged.is_none()
            && a.resolved.is_none()
    }) {
        unresolved.push(Unresolved {
            room: a.room.clone().unwrap_or_else(|| "-".into()),
            kind: a
                .finding
                .as_ref()
                .map(|f| f.kind.clone())
                .unwrap_or_else(|| "patrol".into()),
            since: a.raised_at,
            what: format!("alarm not acknowledged (level {}): {}", a.level, a.message),
        });
    }
    unresolved.sort_by_key(|u| u.since);
    PatrolReport {
        court: court.to_owned(),
        period,
        from,
        to,
        hearings_patrolled,
        findings: count,
        by_type,
        by_room,
        unresolved,
    }
}

impl PatrolReport {
    /// CSV: one line per room and finding type, then one per unresolved item.
    pub fn to_csv(&self) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        let from = gavel_protocol::rfc3339(self.from);
        let _ = w.write_record([
            "section", "from", "court", "room", "type", "count", "since", "what",
        ]);
        let _ = w.write_record([
            "hearings_patrolled",
            &from,
            &self.court,
            "",
            "",
            &self.hearings_patrolled.to_string(),
            "",
            "",
        ]);
        for (room, kinds) in &self.by_room {
            for (kind, n) in kinds {
                let _ = w.write_record([
                    "findings",
                    &from,
                    &self.court,
                    room,
                    kind,
                    &n.to_string(),
                    "",
                    "",
                ]);
            }
        }
        for u in &self.unresolved {
            let _ = w.write_record([
                "unresolved",
                &from,
                &self.court,
                &u.room,
                &u.kind,
                "",
                &gavel_protocol::rfc3339(u.since),
                &u.what,
            ]);
        }
        w.into_inner()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// A standalone HTML page.
    pub fn to_html(&self) -> String {
        let period = match self.period {
            Period::Day => "day",
            Period::Week => "week",
        };
        let mut out = String::new();
        let _ = write!(
            out,
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>Patrol {court} {from}</title><style>\
             body{{font-family:system-ui,sans-serif;margin:2rem;color:#1b1f24}}\
             table{{border-collapse:collapse;margin-bottom:1.5rem}}th,td{{border-bottom:1px solid #d0d7de;padding:.4rem .6rem;text-align:left}}\
             .summary span{{display:inline-block;margin-right:1.5rem}}.open{{color:#cf222e}}</style></head><body>\
             <h1>Hearing patrol report (庭审巡查): {court}, {period} from {from}</h1>\
             <p class=\"summary\"><span id=\"patrolled\"><b>{patrolled}</b> hearings patrolled</span>\
             <span id=\"findings\"><b>{findings}</b> findings</span>\
             <span id=\"unresolved\"><b>{unresolved}</b> unresolved</span></p>",
            court = esc(&self.court),
            from = esc(&gavel_protocol::rfc3339(self.from)),
            patrolled = self.hearings_patrolled,
            findings = self.findings,
            unresolved = self.unresolved.len(),
        );
        out.push_str("<h2>Findings by type</h2><table><tr><th>type</th><th>count</th></tr>");
        for (k, n) in &self.by_type {
            let _ = write!(out, "<tr><td>{}</td><td>{n}</td></tr>", esc(k));
        }
        out.push_str("</table><h2>Findings by room</h2><table><tr><th>room</th><th>type</th><th>count</th></tr>");
        for (room, kinds) in &self.by_room {
            for (k, n) in kinds {
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td>{n}</td></tr>",
                    esc(room),
                    esc(k)
                );
            }
        }
        out.push_str("</table><h2>Unresolved</h2><table><tr><th>room</th><th>type</th><th>since</th><th>what</th></tr>");
        for u in &self.unresolved {
            let _ = write!(
                out,
                "<tr class=\"open\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&u.room),
                esc(&u.kind),
                esc(&gavel_protocol::rfc3339(u.since)),
                esc(&u.what)
            );
        }
        out.push_str("</table></body></html>");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gavel_protocol::{FindingKind, PROTOCOL_VERSION, RecordingLink, Severity};
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-27 09:00 UTC);

    fn event(id: &str, phase: Phase, kind: FindingKind, ended: Option<OffsetDateTime>) -> Event {
        Event {
            v: PROTOCOL_VERSION,
            ts: T0,
            boot_id: "b".into(),
            seq: 0,
            id: id.into(),
            phase,
            historical: false,
            body: EventBody::Finding {
                finding: kind,
                source: "cam-judge".into(),
                seat: None,
                severity: Severity::Warning,
                started_at: T0,
                ended_at: ended,
                snapshot: None,
                recording: Some(RecordingLink {
                    hearing_id: "h1".into(),
                    offset_ms: 5000,
                }),
                detail: Some("sharpness 0.03".into()),
            },
        }
    }

    fn row(e: Event, room: &str) -> (String, Option<String>, Option<String>, Event) {
        ("dev".into(), Some("hz".into()), Some(room.into()), e)
    }

    #[test]
    fn a_findings_start_and_end_fold_into_one_record_with_its_recording_link() {
        let end = T0 + Duration::minutes(2);
        let records = fold([
            row(event("f1", Phase::Start, FindingKind::Blurred, None), "r1"),
            row(
                event("f1", Phase::End, FindingKind::Blurred, Some(end)),
                "r1",
            ),
            row(event("f2", Phase::Start, FindingKind::Occluded, None), "r2"),
        ]);
        assert_eq!(records.len(), 2);
        let f1 = records.iter().find(|r| r.event_id == "f1").expect("f1");
        assert_eq!(f1.ended_at, Some(end));
        assert_eq!(f1.hearing_id.as_deref(), Some("h1"));
        assert_eq!(f1.offset_ms, Some(5000));
        assert_eq!(f1.kind, "blurred");
    }

    #[test]
    fn the_daily_report_counts_findings_by_type_and_room_and_lists_open_ones() {
        let records = fold([
            row(event("f1", Phase::Start, FindingKind::Blurred, None), "r1"),
            row(
                event(
                    "f1",
                    Phase::End,
                    FindingKind::Blurred,
                    Some(T0 + Duration::minutes(1)),
                ),
                "r1",
            ),
            row(event("f2", Phase::Start, FindingKind::Occluded, None), "r2"),
            row(event("f3", Phase::Start, FindingKind::Blurred, None), "r2"),
        ]);
        let r = report(
            "hz",
            Period::Day,
            T0 - Duration::hours(9),
            T0,
            &[],
            &records,
            &[],
        );
        assert_eq!(r.findings, 3);
        assert_eq!(r.by_type["blurred"], 2);
        assert_eq!(r.by_room["r2"]["occluded"], 1);
        assert_eq!(r.unresolved.len(), 2, "{:?}", r.unresolved);
        let csv = r.to_csv();
        assert!(csv.contains("findings,"), "{csv}");
        assert!(csv.contains("unresolved,"), "{csv}");
        let html = r.to_html();
        assert!(html.contains("<b>3</b> findings"), "{html}");
        let other = report(
            "sh",
            Period::Week,
            T0 - Duration::days(1),
            T0,
            &[],
            &records,
            &[],
        );
        assert_eq!(other.findings, 0);
    }
}
