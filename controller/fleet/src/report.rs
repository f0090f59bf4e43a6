//! The daily compliance report of a court: the share of its hearings that were fully
//! recorded, and every exception explained. Pure: rendering to CSV and HTML included.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime, UtcOffset};

use crate::compliance::{Compliance, Verdict};
use crate::hearings::{Hearing, HearingStatus};

/// One hearing in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub hearing_id: String,
    pub case_number: String,
    pub room: String,
    pub judge: String,
    #[serde(with = "time::serde::rfc3339")]
    pub scheduled_start: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub scheduled_end: OffsetDateTime,
    pub verdict: Verdict,
    /// Lowest coverage over the hearing's sources, 0..1 (absent when nothing is known).
    pub coverage: Option<f64>,
    /// Why it is not complete (empty when complete).
    pub explanation: Vec<String>,
}

/// A court's day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DailyReport {
    pub court: String,
    /// The court's local date.
    pub date: String,
    pub hearings: usize,
    /// Closed and assessed (cancelled and open ones are not counted).
    pub assessed: usize,
    pub complete: usize,
    pub incomplete: usize,
    pub not_recorded: usize,
    pub pending: usize,
    pub open: usize,
    pub cancelled: usize,
    /// `complete / assessed`, when any hearing was assessed.
    pub share_fully_recorded: Option<f64>,
    pub rows: Vec<Row>,
}

/// Builds the report of `court` for the local `date` (hearings that start that day).
pub fn daily(
    court: &str,
    date: Date,
    offset: UtcOffset,
    hearings: &[Hearing],
    compliance: &BTreeMap<String, Compliance>,
) -> DailyReport {
    let mut rows: Vec<Row> = hearings
        .iter()
        .filter(|h| h.court == court && h.scheduled_start.to_offset(offset).date() == date)
        .map(|h| row(h, compliance.get(&h.id)))
        .collect();
    rows.sort_by(|a, b| {
        a.scheduled_start
            .cmp(&b.scheduled_start)
            .then(a.room.cmp(&b.room))
    });
    let count = |v: Verdict| rows.iter().filter(|r| r.verdict == v).count();
    let complete = count(Verdict::Complete);
    let incomplete = count(Verdict::Incomplete);
    let not_recorded = count(Verdict::NotRecorded);
    let assessed = complete + incomplete + not_recorded;
    DailyReport {
        court: court.to_owned(),
        date: date.to_string(),
        hearings: rows.len(),
        assessed,
        complete,
        incomplete,
        not_recorded,
        pending: count(Verdict::Pending),
        open: count(Verdict::Open),
        cancelled: count(Verdict::Cancelled),
        share_fully_recorded: (assessed > 0).then(|| complete as f64 / assessed as f64),
        rows,
    }
}

fn row(h: &Hearing, c: Option<&Compliance>) -> Row {
    let (verdict, coverage, explanation) = match (h.status, c) {
        (HearingStatus::Cancelled, _) => (Verdict::Cancelled, None, vec![]),
        (HearingStatus::Scheduled | HearingStatus::InProgress, _) => (Verdict::Open, None, vec![]),
        (HearingStatus::Closed, None) => {
            (Verdict::Pending, None, vec!["not assessed yet".to_owned()])
        }
        (HearingStatus::Closed, Some(c)) => {
            let coverage = c
                .sources
                .iter()
                .map(|s| s.coverage)
                .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.min(v))));
            let mut why = c.exceptions.clone();
            if c.verdict == Verdict::Pending {
                why.extend(c.notes.iter().cloned());
            }
            (c.verdict, coverage, why)
        }
    };
    Row {
        hearing_id: h.id.clone(),
        case_number: h.case_number.clone(),
        room: h.room.clone(),
        judge: h.judge.clone(),
        scheduled_start: h.scheduled_start,
        scheduled_end: h.scheduled_end,
        verdict,
        coverage,
        explanation: if verdict == Verdict::Complete {
            vec![]
        } else {
            explanation
        },
    }
}

fn verdict_text(v: Verdict) -> &'static str {
    match v {
        Verdict::Complete => "complete",
        Verdict::Incomplete => "incomplete",
        Verdict::NotRecorded => "not recorded",
        Verdict::Pending => "pending",
        Verdict::Open => "open",
        Verdict::Cancelled => "cancelled",
    }
}

fn local_hm(t: OffsetDateTime, offset: UtcOffset) -> String {
    let t = t.to_offset(offset);
    format!("{:02}:{:02}", t.hour(), t.minute())
}

impl DailyReport {
    /// CSV, one line per hearing; times in the court's local offset.
    pub fn to_csv(&self, offset: UtcOffset) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        let _ = w.write_record([
            "date",
            "court",
            "room",
            "start",
            "end",
            "hearing_id",
            "case_number",
            "judge",
            "verdict",
            "coverage_percent",
            "explanation",
        ]);
        for r in &self.rows {
            let _ = w.write_record([
                self.date.as_str(),
                self.court.as_str(),
                r.room.as_str(),
                &local_hm(r.scheduled_start, offset),
                &local_hm(r.scheduled_end, offset),
                r.hearing_id.as_str(),
                r.case_number.as_str(),
                r.judge.as_str(),
                verdict_text(r.verdict),
                &r.coverage
                    .map(|c| format!("{:.1}", c * 100.0))
                    .unwrap_or_default(),
                &r.explanation.join("; "),
            ]);
        }
        w.into_inner()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// A standalone HTML page.
    pub fn to_html(&self, offset: UtcOffset) -> String {
        let share = self
            .share_fully_recorded
            .map(|s| format!("{:.1} %", s * 100.0))
            .unwrap_or_else(|| "–".into());
        let mut out = String::new();
        let _ = write!(
            out,
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>Compliance {court} {date}</title><style>\
             body{{font-family:system-ui,sans-serif;margin:2rem;color:#1b1f24}}\
             table{{border-collapse:collapse;width:100%}}th,td{{border-bottom:1px solid #d0d7de;padding:.4rem .6rem;text-align:left;vertical-align:top}}\
             .complete{{color:#1a7f37}}.incomplete,.not-recorded{{color:#cf222e;font-weight:600}}.pending{{color:#9a6700}}\
             .summary span{{display:inline-block;margin-right:1.5rem}}</style></head><body>\
             <h1>Record-every-hearing compliance: {court}, {date}</h1>\
             <p class=\"summary\"><span><b>{share}</b> of assessed hearings fully recorded</span>\
             <span>{hearings} hearings</span><span>{complete} complete</span><span>{incomplete} incomplete</span>\
             <span>{not_recorded} not recorded</span><span>{pending} pending</span><span>{open} open</span>\
             <span>{cancelled} cancelled</span></p>\
             <table><thead><tr><th>Time</th><th>Room</th><th>Case</th><th>Judge</th><th>Verdict</th>\
             <th>Coverage</th><th>Exceptions</th></tr></thead><tbody>",
            court = esc(&self.court),
            date = esc(&self.date),
            hearings = self.hearings,
            complete = self.complete,
            incomplete = self.incomplete,
            not_recorded = self.not_recorded,
            pending = self.pending,
            open = self.open,
            cancelled = self.cancelled,
        );
        for r in &self.rows {
            let class = verdict_text(r.verdict).replace(' ', "-");
            let _ = write!(
                out,
                "<tr><td>{}–{}</td><td>{}</td><td>{}<br><small>{}</small></td><td>{}</td>\
                 <td class=\"{class}\">{}</td><td>{}</td><td>{}</td></tr>",
                local_hm(r.scheduled_start, offset),
                local_hm(r.scheduled_end, offset),
                esc(&r.room),
                esc(&r.case_number),
                esc(&r.hearing_id),
                esc(&r.judge),
                verdict_text(r.verdict),
                r.coverage
                    .map(|c| format!("{:.1} %", c * 100.0))
                    .unwrap_or_default(),
                r.explanation
                    .iter()
                    .map(|e| esc(e))
                    .collect::<Vec<_>>()
                    .join("<br>"),
            );
        }
        out.push_str("</tbody></table></body></html>\n");
        out
    }
}

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
