//! A hearing's transcript as people read it (pure, no I/O): the lines as the controller
//! holds them, the sign-off digest, and the exports: SRT, WebVTT, the formatted transcript
//! document as HTML and as DOCX.
//!
//! Design: every export is made from the same ordered list of lines ([`ordered`]), on the
//! hearing's recording timeline (offsets from the device's `transcript` events), with the
//! current text (the clerk's correction where there is one, else the machine's).

use std::fmt::Write as _;

use gavel_fleet::hearings::Hearing;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::{OffsetDateTime, UtcOffset};

/// One transcript line as stored: the device's recognition (machine text, kept forever)
/// and the text in force (the latest correction, or the machine text).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Line {
    /// The event id every version of the line shares (`tr-<hearing>-<seat>-<line>`).
    pub id: String,
    pub hearing_id: String,
    /// The device that heard it.
    pub device: String,
    pub seat: String,
    pub source: String,
    /// Line number within the hearing and seat.
    pub line: u64,
    /// Start on the hearing's recording timeline, nanoseconds.
    pub offset_ns: u64,
    pub duration_ns: u64,
    /// What the recogniser said (the final version once final); never changed by edits.
    pub machine_text: String,
    /// The text in force: the latest correction, else the machine text.
    pub text: String,
    /// How many corrections the line has had.
    pub corrections: u64,
    pub language: String,
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocabulary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    /// False while the line is partial (its text may still change).
    #[serde(rename = "final")]
    pub is_final: bool,
    /// Where a browser plays this line's audio (see [`audio_url`]).
    pub audio_url: String,
}

impl Line {
    /// Whether the text in force differs from the machine's.
    pub fn corrected(&self) -> bool {
        self.corrections > 0 && self.text != self.machine_text
    }

    pub fn end_ns(&self) -> u64 {
        self.offset_ns.saturating_add(self.duration_ns)
    }
}

/// Who signed a hearing's transcript off, when, and over what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SignOff {
    pub hearing_id: String,
    pub by: String,
    pub role: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
    /// [`digest`] of the final lines as signed.
    pub sha256: String,
    /// How many final lines were signed.
    pub lines: u64,
}

/// One correction of a line (the audit of the transcript's text).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Correction {
    pub line_id: String,
    pub hearing_id: String,
    /// The text before this correction.
    pub previous: String,
    pub text: String,
    pub by: String,
    pub role: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
}

/// Where the browser fetches the audio of `source` between two offsets of a hearing's
/// recording. The one place that names the archive's audio route.
pub fn audio_url(hearing_id: &str, source: &str, from_ns: u64, to_ns: u64) -> String {
    format!(
        "/api/v1/archive/hearings/{}/audio?source={}&from_ms={}&to_ms={}",
        percent(hearing_id),
        percent(source),
        from_ns / 1_000_000,
        to_ns.div_ceil(1_000_000)
    )
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn percent(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The lines in reading order: by start on the timeline, then seat and line number.
pub fn ordered(lines: &[Line]) -> Vec<&Line> {
    let mut v: Vec<&Line> = lines.iter().collect();
    v.sort_by(|a, b| {
        (a.offset_ns, &a.seat, a.line, &a.id).cmp(&(b.offset_ns, &b.seat, b.line, &b.id))
    });
    v
}

/// SHA-256 (hex) over the final lines of a hearing in reading order: what a sign-off
/// covers. Each line contributes its id, seat, start, duration and text in force, so any
/// later change of a signed line's text or timing, or a final line added or removed,
/// changes the digest. Partial lines are not part of a transcript and are left out.
pub fn digest(hearing_id: &str, lines: &[Line]) -> (String, u64) {
    let mut h = Sha256::new();
    h.update(b"gavel-transcript/1\n");
    h.update(hearing_id.as_bytes());
    h.update(b"\n");
    let mut n = 0;
    for l in ordered(lines).into_iter().filter(|l| l.is_final) {
        n += 1;
        // Lengths first, so no text can be made to look like a field boundary.
        h.update(format!(
            "{}:{}|{}:{}|{}|{}|{}:",
            l.id.len(),
            l.id,
            l.seat.len(),
            l.seat,
            l.offset_ns,
            l.duration_ns,
            l.text.len()
        ));
        h.update(l.text.as_bytes());
        h.update(b"\n");
    }
    (hex::encode(h.finalize()), n)
}

/// `HH:MM:SS<sep>mmm` for an offset in nanoseconds.
fn clock(ns: u64, sep: char) -> String {
    let ms = ns / 1_000_000;
    format!(
        "{:02}:{:02}:{:02}{sep}{:03}",
        ms / 3_600_000,
        (ms / 60_000) % 60,
        (ms / 1000) % 60,
        ms % 1000
    )
}

/// `HH:MM:SS` for an offset, as the document prints it.
pub fn hms(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

/// A cue's end: never before its start plus 1 ms (players drop empty cues).
fn cue_end(l: &Line) -> u64 {
    l.end_ns().max(l.offset_ns + 1_000_000)
}

/// The final lines as SubRip (SRT), the seat as the speaker (`judge: text`).
pub fn srt(lines: &[Line]) -> String {
    let mut out = String::new();
    for (i, l) in ordered(lines)
        .into_iter()
        .filter(|l| l.is_final)
        .enumerate()
    {
        let _ = write!(
            out,
            "{}\r\n{} --> {}\r\n{}: {}\r\n\r\n",
            i + 1,
            clock(l.offset_ns, ','),
            clock(cue_end(l), ','),
            l.seat,
            one_line(&l.text)
        );
    }
    out
}

/// The final lines as WebVTT, the seat as the voice (`<v judge>text`).
pub fn vtt(lines: &[Line]) -> String {
    let mut out = String::from("WEBVTT\n\n");
    for l in ordered(lines).into_iter().filter(|l| l.is_final) {
        let _ = write!(
            out,
            "{}\n{} --> {}\n<v {}>{}\n\n",
            vtt_id(&l.id),
            clock(l.offset_ns, '.'),
            clock(cue_end(l), '.'),
            vtt_escape(&l.seat).replace('>', ""),
            vtt_escape(&one_line(&l.text))
        );
    }
    out
}

/// A cue identifier may not contain `-->` or a line break.
fn vtt_id(id: &str) -> String {
    one_line(id).replace("-->", "- ->")
}

/// A cue's text on one line (a blank line would end the cue).
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn vtt_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// HTML text escaping.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// What a formatted transcript document shows.
pub struct Document<'a> {
    pub hearing: &'a Hearing,
    pub lines: &'a [Line],
    pub signoff: Option<&'a SignOff>,
    /// The courts' local offset, for dates and times.
    pub utc_offset: UtcOffset,
    /// When the document was made.
    pub made_at: OffsetDateTime,
}

impl Document<'_> {
    fn local(&self, t: OffsetDateTime) -> String {
        let t = t.to_offset(self.utc_offset);
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        )
    }

    /// The header's rows: (label, value).
    pub fn header(&self) -> Vec<(&'static str, String)> {
        let h = self.hearing;
        let parties = if h.parties.is_empty() {
            "—".to_owned()
        } else {
            h.parties
                .iter()
                .map(|p| format!("{} {}", p.role, p.name))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let times = format!(
            "{} – {} (UTC{})",
            self.local(h.opened_at.unwrap_or(h.scheduled_start)),
            self.local(h.closed_at.unwrap_or(h.scheduled_end)),
            offset_label(self.utc_offset)
        );
        vec![
            ("Case number 案号", h.case_number.clone()),
            ("Court 法院", h.court.clone()),
            ("Room 法庭", h.room.clone()),
            ("Judge 审判员", h.judge.clone()),
            ("Parties 当事人", parties),
            ("Hearing 开庭时间", times),
        ]
    }

    /// The sign-off line: who and when, whether the text is still as signed.
    pub fn status(&self) -> String {
        match self.signoff {
            None => "Not signed off (draft) 未签署（草稿）".to_owned(),
            Some(s) => {
                let (now, _) = digest(&self.hearing.id, self.lines);
                let state = if now == s.sha256 {
                    "text as signed"
                } else {
                    "CHANGED SINCE SIGN-OFF"
                };
                format!(
                    "Signed off by {} on {} 已签署 — {} lines, SHA-256 {} ({state})",
                    s.by,
                    self.local(s.at),
                    s.lines,
                    s.sha256
                )
            }
        }
    }

    /// The final lines in reading order.
    pub fn final_lines(&self) -> Vec<&Line> {
        ordered(self.lines)
            .into_iter()
            .filter(|l| l.is_final)
            .collect()
    }
}

fn offset_label(o: UtcOffset) -> String {
    let (h, m, _) = o.as_hms();
    if m == 0 {
        format!("{h:+}")
    } else {
        format!("{h:+}:{:02}", m.unsigned_abs())
    }
}

/// The formatted transcript document as one HTML page (print-ready).
pub fn html(doc: &Document) -> String {
    let h = doc.hearing;
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"zh\"><head><meta charset=\"utf-8\">\
         <title>Transcript {case} 庭审笔录</title><style>\
         body{{font-family:'Noto Serif CJK SC','SimSun',serif;max-width:50em;margin:2em auto;color:#111}}\
         h1{{text-align:center;font-size:1.5em}} table.h td{{padding:.15em .8em .15em 0;vertical-align:top}}\
         table.l{{border-collapse:collapse;width:100%;margin-top:1em}} table.l td,table.l th{{border-bottom:1px solid #ccc;padding:.3em;vertical-align:top;text-align:left}}\
         .t{{white-space:nowrap;font-family:monospace}} .s{{white-space:nowrap;font-weight:bold}} .c{{color:#555;font-size:.8em}}\
         .status{{margin-top:1em;padding:.5em;border:1px solid #999}}</style></head><body>\n\
         <h1>庭审笔录 Hearing transcript</h1>\n<table class=\"h\">\n",
        case = esc(&h.case_number)
    );
    for (k, v) in doc.header() {
        let _ = writeln!(out, "<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(&v));
    }
    let _ = writeln!(out, "</table>");
    let _ = writeln!(
        out,
        "<p class=\"status\" id=\"signoff\">{}</p>",
        esc(&doc.status())
    );
    let _ = writeln!(
        out,
        "<table class=\"l\"><thead><tr><th>Time 时间</th><th>Seat 席位</th><th>Text 内容</th></tr></thead><tbody>"
    );
    for l in doc.final_lines() {
        let note = if l.corrected() {
            format!(
                "<div class=\"c\">corrected 已校对; machine text 机器识别: {}</div>",
                esc(&l.machine_text)
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "<tr data-line=\"{}\"><td class=\"t\">{}</td><td class=\"s\">{}</td><td>{}{}</td></tr>",
            esc(&l.id),
            hms(l.offset_ns),
            esc(&l.seat),
            esc(&l.text),
            note
        );
    }
    let _ = write!(
        out,
        "</tbody></table>\n<p class=\"c\">Hearing {} · made {} · times are on the hearing's recording timeline</p>\n</body></html>\n",
        esc(&h.id),
        esc(&doc.local(doc.made_at))
    );
    out
}

/// The formatted transcript document as DOCX (Office Open XML), made with `docx-rs`.
pub fn docx(doc: &Document) -> Result<Vec<u8>, String> {
    use docx_rs::{
        AlignmentType, Docx, Paragraph, Run, RunFonts, Table, TableCell, TableRow, WidthType,
    };
    let fonts = || RunFonts::new().east_asia("SimSun").ascii("Times New Roman");
    let run = |text: &str| Run::new().add_text(text).fonts(fonts());
    let cell = |text: &str, bold: bool| {
        let mut r = run(text);
        if bold {
            r = r.bold();
        }
        TableCell::new().add_paragraph(Paragraph::new().add_run(r))
    };
    let mut d = Docx::new().add_paragraph(
        Paragraph::new()
            .align(AlignmentType::Center)
            .add_run(run("庭审笔录 Hearing transcript").bold().size(32)),
    );
    for (k, v) in doc.header() {
        d = d.add_paragraph(
            Paragraph::new()
                .add_run(run(&format!("{k}: ")).bold())
                .add_run(run(&v)),
        );
    }
    d = d.add_paragraph(Paragraph::new().add_run(run(&doc.status()).italic()));
    let mut rows = vec![TableRow::new(vec![
        cell("Time 时间", true),
        cell("Seat 席位", true),
        cell("Text 内容", true),
    ])];
    for l in doc.final_lines() {
        let mut text = TableCell::new().add_paragraph(Paragraph::new().add_run(run(&l.text)));
        if l.corrected() {
            text = text.add_paragraph(
                Paragraph::new().add_run(
                    run(&format!(
                        "corrected 已校对; machine text 机器识别: {}",
                        l.machine_text
                    ))
                    .size(16)
                    .italic(),
                ),
            );
        }
        rows.push(TableRow::new(vec![
            cell(&hms(l.offset_ns), false),
            cell(&l.seat, false),
            text,
        ]));
    }
    d = d.add_table(
        Table::new(rows)
            .set_grid(vec![1400, 1600, 6000])
            .width(9000, WidthType::Dxa),
    );
    d = d.add_paragraph(
        Paragraph::new().add_run(
            run(&format!(
                "Hearing {} · made {} · times are on the hearing's recording timeline",
                doc.hearing.id,
                doc.local(doc.made_at)
            ))
            .size(16),
        ),
    );
    let mut buf = std::io::Cursor::new(Vec::new());
    d.build()
        .pack(&mut buf)
        .map_err(|e| format!("writing the DOCX: {e}"))?;
    Ok(buf.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn line(id: &str, seat: &str, offset_s: f64, text: &str, fin: bool) -> Line {
        Line {
            id: id.into(),
            hearing_id: "h1".into(),
            device: "d1".into(),
            seat: seat.into(),
            source: "mics:0".into(),
            line: 0,
            offset_ns: (offset_s * 1e9) as u64,
            duration_ns: 2_500_000_000,
            machine_text: text.into(),
            text: text.into(),
            corrections: 0,
            language: "zh".into(),
            model: "base".into(),
            vocabulary: None,
            confidence: Some(0.9),
            is_final: fin,
            audio_url: String::new(),
        }
    }

    #[test]
    fn srt_numbers_final_cues_in_timeline_order_with_comma_milliseconds() {
        let lines = vec![
            line("b", "plaintiff", 3723.5, "原告陈述", true),
            line("a", "judge", 1.25, "现在开庭", true),
            line("c", "clerk", 2.0, "partial", false),
        ];
        assert_eq!(
            srt(&lines),
            "1\r\n00:00:01,250 --> 00:00:03,750\r\njudge: 现在开庭\r\n\r\n\
             2\r\n01:02:03,500 --> 01:02:06,000\r\nplaintiff: 原告陈述\r\n\r\n"
        );
    }

    #[test]
    fn vtt_names_the_seat_as_the_voice_and_escapes_markup() {
        let lines = vec![line("a", "judge", 0.0, "a < b & c", true)];
        assert_eq!(
            vtt(&lines),
            "WEBVTT\n\na\n00:00:00.000 --> 00:00:02.500\n<v judge>a &lt; b &amp; c\n\n"
        );
    }

    #[test]
    fn the_digest_changes_with_any_final_text_but_not_with_partials() {
        let mut lines = vec![
            line("a", "judge", 0.0, "现在开庭", true),
            line("b", "clerk", 1.0, "partial", false),
        ];
        let (d0, n) = digest("h1", &lines);
        assert_eq!(n, 1);
        lines[1].text = "other partial".into();
        assert_eq!(digest("h1", &lines).0, d0, "partials are not signed");
        lines[0].text = "现在开庭。".into();
        assert_ne!(digest("h1", &lines).0, d0);
        assert_ne!(digest("h2", &lines).0, digest("h1", &lines).0);
    }

    #[test]
    fn the_audio_url_is_encoded_and_covers_the_line() {
        assert_eq!(
            audio_url("H2026-1", "mics:0", 1_500_000_000, 2_000_000_001),
            "/api/v1/archive/hearings/H2026-1/audio?source=mics%3A0&from_ms=1500&to_ms=2001"
        );
    }
}
