//! iCalendar (RFC 5545) import: each `VEVENT` of a `VCALENDAR` is one hearing.
//!
//! Same contract as the CSV import: every bad event is reported by line and field (the
//! field is the iCalendar property, e.g. `DTSTART`), and if any is bad nothing is imported.
//! Content lines are unfolded here (so that each property keeps the line it starts on) and
//! split into name, parameters and value by the `ical` crate.
//!
//! What is read from an event:
//!
//! | hearing | properties, first one found wins |
//! |---|---|
//! | id | `UID` as is when it is already an id (`a-z0-9-_.`, at most 64), else `ics-` + a readable part + a hash of the UID; a `RECURRENCE-ID` adds its Unix time |
//! | case number | `X-GAVEL-CASE`, `SUMMARY` |
//! | court, room | `X-GAVEL-COURT` and `X-GAVEL-ROOM`; `LOCATION` as `court/room` (or just the room when `X-GAVEL-COURT` is given) |
//! | start, end | `DTSTART`, and `DTEND` or `DURATION` |
//! | judge | `X-GAVEL-JUDGE`, `ORGANIZER`'s `CN`, `ORGANIZER`'s address |
//! | parties | each `X-GAVEL-PARTY:role:name`; each `ATTENDEE` (name from `CN` or the address; role from `X-GAVEL-ROLE`, else `ROLE`: `CHAIR` → chair, `REQ-`/`OPT-PARTICIPANT` → participant, `NON-PARTICIPANT` → observer, anything else lower-cased); an attendee who is the organizer is skipped |
//! | status | `STATUS:CANCELLED` (or `METHOD:CANCEL` on the calendar) → cancelled, else scheduled |
//!
//! Times: `...Z` is UTC. A `TZID` is resolved in this order: a zone without daylight saving
//! that this module knows (UTC/GMT, `Asia/Shanghai`, `Asia/Hong_Kong`, `Asia/Macau`,
//! `Asia/Taipei`, `PRC`, Windows' `China Standard Time`, `Asia/Urumqi` at +6, ...; also as
//! the tail of a path such as `/mozilla.org/.../Asia/Shanghai`); a `VTIMEZONE` of the file
//! with one fixed offset (`STANDARD` only); otherwise the courts' configured offset, like
//! floating times (no `Z`, no `TZID`). A `VTIMEZONE` with `DAYLIGHT` rules is refused
//! rather than guessed. All-day events (`VALUE=DATE`) and recurring events (`RRULE`,
//! `RDATE`) are refused: export each hearing as its own event.

use std::collections::BTreeMap;

use time::macros::format_description;
use time::{Duration, OffsetDateTime, PrimitiveDateTime, UtcOffset};

use super::{
    Hearing, HearingStatus, Party, RowError, id_problem, overlap_errors, parse_parties,
    span_problem, valid_id,
};

/// One unfolded content line, split by the `ical` crate.
#[derive(Debug, Clone)]
struct Prop {
    /// Line of the file it starts on (1-based).
    line: u64,
    /// Upper case.
    name: String,
    /// Parameter names upper case; values as written (quotes removed).
    params: Vec<(String, Vec<String>)>,
    value: String,
}

impl Prop {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.first())
            .map(String::as_str)
    }
}

/// A component being read: its name, the line of its `BEGIN`, its own properties.
struct Open {
    name: String,
    line: u64,
    props: Vec<Prop>,
    /// Names of the sub-components seen (for `VTIMEZONE`: `STANDARD`, `DAYLIGHT`).
    subs: Vec<(String, Vec<Prop>)>,
}

/// Whether `text` looks like iCalendar (its first content line is `BEGIN:VCALENDAR`).
pub fn looks_like_ics(text: &str) -> bool {
    text.trim_start_matches('\u{feff}')
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .is_some_and(|l| l.eq_ignore_ascii_case("BEGIN:VCALENDAR"))
}

/// Parses an iCalendar file. `local` is the courts' UTC offset for floating times and
/// unknown time zones. Returns every hearing, or every error (nothing is to be imported).
pub fn import_ics(text: &str, local: UtcOffset) -> Result<Vec<Hearing>, Vec<RowError>> {
    parse_ics(text, local).map(|list| list.into_iter().map(|(_, h)| h).collect())
}

/// Like [`import_ics`], with the line of each hearing's `BEGIN:VEVENT`.
pub fn parse_ics(text: &str, local: UtcOffset) -> Result<Vec<(u64, Hearing)>, Vec<RowError>> {
    let mut errors = Vec::new();
    let props = content_lines(text, &mut errors);
    if !props
        .first()
        .is_some_and(|p| p.name == "BEGIN" && p.value.eq_ignore_ascii_case("VCALENDAR"))
    {
        let line = props.first().map_or(1, |p| p.line);
        errors.push(RowError::new(
            line,
            "BEGIN",
            "not an iCalendar file: it must start with BEGIN:VCALENDAR",
        ));
        errors.sort_by(|a, b| (a.line, &a.field).cmp(&(b.line, &b.field)));
        return Err(errors);
    }
    let (events, zones, method) = components(props, &mut errors);
    let cancel_all = method.eq_ignore_ascii_case("CANCEL");
    let mut hearings: Vec<(u64, Hearing)> = Vec::new();
    let mut ids: BTreeMap<String, u64> = BTreeMap::new();
    for event in &events {
        if let Some(h) = event_hearing(event, &zones, local, cancel_all, &mut errors) {
            if let Some(first) = ids.get(&h.id) {
                errors.push(RowError::new(
                    event.line,
                    "UID",
                    format!("the same event (id {}) is already on line {first}", h.id),
                ));
                continue;
            }
            ids.insert(h.id.clone(), event.line);
            hearings.push((event.line, h));
        }
    }
    errors.extend(overlap_errors(&hearings, "DTSTART"));
    if errors.is_empty() {
        Ok(hearings)
    } else {
        errors.sort_by(|a, b| (a.line, &a.field).cmp(&(b.line, &b.field)));
        Err(errors)
    }
}

/// Unfolds (RFC 5545 3.1: a line break followed by one space or tab is removed) and
/// splits every content line; bad lines become errors.
fn content_lines(text: &str, errors: &mut Vec<RowError>) -> Vec<Prop> {
    let mut logical: Vec<(u64, String)> = Vec::new();
    for (i, raw) in text.trim_start_matches('\u{feff}').split('\n').enumerate() {
        let line = i as u64 + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if let Some(rest) = raw.strip_prefix([' ', '\t']) {
            match logical.last_mut() {
                Some((_, l)) => l.push_str(rest),
                None => errors.push(RowError::new(
                    line,
                    "line",
                    "a folded continuation line with no line before it",
                )),
            }
        } else if !raw.trim().is_empty() {
            logical.push((line, raw.to_owned()));
        }
    }
    let mut props = Vec::with_capacity(logical.len());
    for (line, text) in logical {
        match ical::PropertyParser::from_reader(text.as_bytes()).next() {
            Some(Ok(p)) => props.push(Prop {
                line,
                name: p.name.trim().to_uppercase(),
                params: p
                    .params
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(n, v)| (n.trim().to_uppercase(), v))
                    .collect(),
                value: p.value.unwrap_or_default().trim().to_owned(),
            }),
            Some(Err(e)) => errors.push(RowError::new(
                line,
                "line",
                format!(
                    "not an iCalendar content line ({}): {:?}",
                    // The crate's message starts with its own (1-based within one line) number.
                    e.to_string()
                        .split_once(": ")
                        .map_or(e.to_string(), |(_, m)| m.to_owned()),
                    shorten(&text)
                ),
            )),
            None => {}
        }
    }
    props
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 60 {
        format!("{}...", s.chars().take(60).collect::<String>())
    } else {
        s.to_owned()
    }
}

/// A `VTIMEZONE` of the file: its fixed offset, or why it has none.
type Zones = BTreeMap<String, Result<UtcOffset, String>>;

/// Walks `BEGIN`/`END`: returns the events, the file's time zones and the calendar's
/// `METHOD`.
fn components(props: Vec<Prop>, errors: &mut Vec<RowError>) -> (Vec<Open>, Zones, String) {
    let mut stack: Vec<Open> = Vec::new();
    let mut events = Vec::new();
    let mut zones = Zones::new();
    let mut method = String::new();
    for p in props {
        match p.name.as_str() {
            "BEGIN" => stack.push(Open {
                name: p.value.to_uppercase(),
                line: p.line,
                props: Vec::new(),
                subs: Vec::new(),
            }),
            "END" => {
                let name = p.value.to_uppercase();
                match stack.pop() {
                    Some(open) if open.name == name => match name.as_str() {
                        "VEVENT" => events.push(open),
                        "VTIMEZONE" => {
                            if let Some(tzid) = open.props.iter().find(|q| q.name == "TZID") {
                                zones.insert(text(&tzid.value), zone_offset(&open));
                            }
                        }
                        _ => {
                            if let Some(parent) = stack.last_mut() {
                                parent.subs.push((open.name, open.props));
                            }
                        }
                    },
                    Some(open) => {
                        errors.push(RowError::new(
                            p.line,
                            "END",
                            format!(
                                "END:{name} does not close BEGIN:{} on line {}",
                                open.name, open.line
                            ),
                        ));
                        // Resynchronise: drop components up to the one this END closes.
                        if let Some(pos) = stack.iter().rposition(|o| o.name == name) {
                            stack.truncate(pos);
                        } else {
                            stack.push(open);
                        }
                    }
                    None => errors.push(RowError::new(
                        p.line,
                        "END",
                        format!("END:{name} after the calendar ended"),
                    )),
                }
            }
            _ => match stack.last_mut() {
                Some(open) if open.name == "VCALENDAR" && p.name == "METHOD" => {
                    method = p.value.clone();
                }
                Some(open) => open.props.push(p),
                None => errors.push(RowError::new(
                    p.line,
                    &p.name,
                    "outside BEGIN:VCALENDAR ... END:VCALENDAR",
                )),
            },
        }
    }
    for open in stack {
        errors.push(RowError::new(
            open.line,
            "END",
            format!("BEGIN:{} is never closed (END:{})", open.name, open.name),
        ));
    }
    (events, zones, method)
}

/// A `VTIMEZONE`'s one fixed offset.
fn zone_offset(zone: &Open) -> Result<UtcOffset, String> {
    let tzid = zone
        .props
        .iter()
        .find(|p| p.name == "TZID")
        .map_or("", |p| p.value.as_str());
    if zone.subs.iter().any(|(n, _)| n == "DAYLIGHT") {
        return Err(format!(
            "time zone {tzid:?} has daylight-saving rules, which this import does not apply; \
             give times in UTC (…Z) or a zone with one fixed offset"
        ));
    }
    let offsets: Vec<&str> = zone
        .subs
        .iter()
        .filter(|(n, _)| n == "STANDARD")
        .flat_map(|(_, props)| props.iter().filter(|p| p.name == "TZOFFSETTO"))
        .map(|p| p.value.as_str())
        .collect();
    match offsets.as_slice() {
        [first, rest @ ..] if rest.iter().all(|o| o == first) => parse_offset(first)
            .ok_or_else(|| format!("time zone {tzid:?} has a bad TZOFFSETTO {first:?}")),
        [] => Err(format!("time zone {tzid:?} has no STANDARD offset")),
        _ => Err(format!(
            "time zone {tzid:?} changes its offset over time, which this import does not apply; \
             give times in UTC (…Z)"
        )),
    }
}

/// `+0800`, `-0530`, `+080000`.
fn parse_offset(s: &str) -> Option<UtcOffset> {
    let (sign, digits) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    if !(digits.len() == 4 || digits.len() == 6) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: i8 = digits[0..2].parse().ok()?;
    let m: i8 = digits[2..4].parse().ok()?;
    let sec: i8 = digits.get(4..6).map_or(Some(0), |x| x.parse().ok())?;
    UtcOffset::from_hms(sign * h, sign * m, sign * sec).ok()
}

/// Zones with one offset and no daylight saving (since 1991 at the latest).
const KNOWN_ZONES: [(&str, i8); 22] = [
    ("utc", 0),
    ("etc/utc", 0),
    ("gmt", 0),
    ("etc/gmt", 0),
    ("universal", 0),
    ("zulu", 0),
    ("z", 0),
    ("asia/shanghai", 8),
    ("asia/chongqing", 8),
    ("asia/chungking", 8),
    ("asia/harbin", 8),
    ("asia/hong_kong", 8),
    ("hongkong", 8),
    ("asia/macau", 8),
    ("asia/macao", 8),
    ("asia/taipei", 8),
    ("prc", 8),
    ("china standard time", 8),
    ("taipei standard time", 8),
    ("etc/gmt-8", 8),
    ("asia/urumqi", 6),
    ("asia/kashgar", 6),
];

fn known_zone(tzid: &str) -> Option<UtcOffset> {
    let t = tzid.trim().trim_matches('"').to_lowercase();
    KNOWN_ZONES
        .iter()
        .find(|(name, _)| t == *name || t.ends_with(&format!("/{name}")))
        .and_then(|(_, h)| UtcOffset::from_hms(*h, 0, 0).ok())
}

/// A `DTSTART`/`DTEND`/`RECURRENCE-ID` value as an instant.
fn date_time(p: &Prop, zones: &Zones, local: UtcOffset) -> Result<OffsetDateTime, String> {
    let v = p.value.as_str();
    if p.param("VALUE")
        .is_some_and(|x| x.eq_ignore_ascii_case("DATE"))
        || (v.len() == 8 && v.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!(
            "{v:?} is a date (an all-day event); a hearing needs a date and time"
        ));
    }
    let fmt = format_description!("[year][month][day]T[hour][minute][second]");
    let (text, utc) = match v.strip_suffix(['Z', 'z']) {
        Some(t) => (t, true),
        None => (v, false),
    };
    let naive = PrimitiveDateTime::parse(text, &fmt).map_err(|_| {
        format!("{v:?} is not a date-time like 20261127T090000 or 20261127T010000Z")
    })?;
    if utc {
        return Ok(naive.assume_utc());
    }
    let offset = match p.param("TZID") {
        None => local,
        Some(tzid) => match known_zone(tzid) {
            Some(o) => o,
            None => match zones.get(tzid) {
                Some(Ok(o)) => *o,
                Some(Err(why)) => return Err(why.clone()),
                None => local,
            },
        },
    };
    Ok(naive.assume_offset(offset))
}

/// `PT1H30M`, `P1DT2H`, `PT90M`, `P1W` (no sign or a `+`).
fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.strip_prefix('+').unwrap_or(s);
    let rest = s.strip_prefix('P')?;
    let mut total = Duration::ZERO;
    let mut in_time = false;
    let mut number = String::new();
    let mut any = false;
    for c in rest.chars() {
        match c {
            '0'..='9' => number.push(c),
            'T' if !in_time && number.is_empty() => in_time = true,
            _ => {
                let n: i64 = number.parse().ok()?;
                number.clear();
                any = true;
                total += match (c, in_time) {
                    ('W', false) => Duration::weeks(n),
                    ('D', false) => Duration::days(n),
                    ('H', true) => Duration::hours(n),
                    ('M', true) => Duration::minutes(n),
                    ('S', true) => Duration::seconds(n),
                    _ => return None,
                };
            }
        }
    }
    (any && number.is_empty()).then_some(total)
}

/// RFC 5545 TEXT unescaping: `\\`, `\;`, `\,`, `\n`.
fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n' | 'N') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out.trim().to_owned()
}

/// A calendar address without its `mailto:`.
fn address(s: &str) -> &str {
    s.get(..7)
        .filter(|p| p.eq_ignore_ascii_case("mailto:"))
        .map_or(s, |_| &s[7..])
        .trim()
}

/// 64-bit FNV-1a, for stable ids from long UIDs.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The hearing id of a UID (see the module documentation).
pub fn id_from_uid(uid: &str) -> String {
    let lower = uid.trim().to_lowercase();
    if valid_id(&lower) {
        return lower;
    }
    let readable: String = lower
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    format!(
        "ics-{}-{:016x}",
        readable.trim_matches('-'),
        fnv1a(uid.trim())
    )
}

fn role(p: &Prop) -> String {
    if let Some(r) = p.param("X-GAVEL-ROLE").filter(|r| !r.trim().is_empty()) {
        return r.trim().to_lowercase();
    }
    match p.param("ROLE").map(|r| r.trim().to_uppercase()).as_deref() {
        None | Some("REQ-PARTICIPANT" | "OPT-PARTICIPANT" | "") => "participant".into(),
        Some("CHAIR") => "chair".into(),
        Some("NON-PARTICIPANT") => "observer".into(),
        Some(other) => other.to_lowercase(),
    }
}

/// One event as a hearing; its problems go to `errors`.
fn event_hearing(
    event: &Open,
    zones: &Zones,
    local: UtcOffset,
    cancel_all: bool,
    errors: &mut Vec<RowError>,
) -> Option<Hearing> {
    let before = errors.len();
    let get = |name: &str| event.props.iter().find(|p| p.name == name);
    let mut bad = |line: u64, field: &str, message: String| {
        errors.push(RowError::new(line, field, message));
    };
    let begin = event.line;

    for name in ["RRULE", "RDATE"] {
        if let Some(p) = get(name) {
            bad(
                p.line,
                name,
                "recurring events are not supported: export each hearing as its own event".into(),
            );
        }
    }

    let id = match get("UID").map(|p| (p, p.value.trim())) {
        Some((_, uid)) if !uid.is_empty() => {
            let mut id = id_from_uid(uid);
            if let Some(r) = get("RECURRENCE-ID") {
                match date_time(r, zones, local) {
                    Ok(t) => id = format!("{}-{}", &id[..id.len().min(52)], t.unix_timestamp()),
                    Err(m) => bad(r.line, "RECURRENCE-ID", m),
                }
            }
            Some(id)
        }
        Some((p, _)) => {
            bad(p.line, "UID", "empty".into());
            None
        }
        None => {
            bad(begin, "UID", "missing: every event needs a UID".into());
            None
        }
    };

    let case_number = match get("X-GAVEL-CASE").or_else(|| get("SUMMARY")) {
        Some(p) if !text(&p.value).is_empty() => Some(text(&p.value)),
        Some(p) => {
            bad(p.line, &p.name, "empty: the case number".into());
            None
        }
        None => {
            bad(
                begin,
                "SUMMARY",
                "missing: give the case number as SUMMARY or X-GAVEL-CASE".into(),
            );
            None
        }
    };

    // Court and room.
    let x_court = get("X-GAVEL-COURT");
    let x_room = get("X-GAVEL-ROOM");
    let location = get("LOCATION");
    let mut place: Vec<(&str, u64, &str, String)> = Vec::new(); // (what, line, field, value)
    match (x_court, x_room, location) {
        (Some(c), Some(r), _) => {
            place.push(("court", c.line, "X-GAVEL-COURT", text(&c.value)));
            place.push(("room", r.line, "X-GAVEL-ROOM", text(&r.value)));
        }
        (c, r, Some(l)) => {
            let loc = text(&l.value);
            match (loc.split_once('/'), c, r) {
                (Some((court, room)), None, None) => {
                    place.push(("court", l.line, "LOCATION", court.trim().to_owned()));
                    place.push(("room", l.line, "LOCATION", room.trim().to_owned()));
                }
                (None, Some(c), None) => {
                    place.push(("court", c.line, "X-GAVEL-COURT", text(&c.value)));
                    place.push(("room", l.line, "LOCATION", loc));
                }
                (None, None, Some(r)) => {
                    place.push(("court", l.line, "LOCATION", loc));
                    place.push(("room", r.line, "X-GAVEL-ROOM", text(&r.value)));
                }
                _ => bad(
                    l.line,
                    "LOCATION",
                    format!(
                        "{loc:?} is not court/room (e.g. hz-intermediate/room-101); \
                         or give X-GAVEL-COURT and X-GAVEL-ROOM"
                    ),
                ),
            }
        }
        (_, _, None) => bad(
            begin,
            "LOCATION",
            "missing: give LOCATION:court/room or X-GAVEL-COURT and X-GAVEL-ROOM".into(),
        ),
    }
    for (what, line, field, value) in &place {
        if !valid_id(value) {
            bad(*line, field, format!("{what}: {}", id_problem(value)));
        }
    }
    let court = place.iter().find(|p| p.0 == "court").map(|p| p.3.clone());
    let room = place.iter().find(|p| p.0 == "room").map(|p| p.3.clone());

    // Times.
    let start = match get("DTSTART") {
        Some(p) => date_time(p, zones, local)
            .map_err(|m| bad(p.line, "DTSTART", m))
            .ok(),
        None => {
            bad(begin, "DTSTART", "missing".into());
            None
        }
    };
    let end = match (get("DTEND"), get("DURATION")) {
        (Some(p), _) => date_time(p, zones, local)
            .map_err(|m| bad(p.line, "DTEND", m))
            .ok()
            .map(|t| (t, p.line, "DTEND")),
        (None, Some(p)) => match (parse_duration(&p.value), start) {
            (Some(d), Some(s)) => Some((s + d, p.line, "DURATION")),
            (None, _) => {
                bad(
                    p.line,
                    "DURATION",
                    format!("{:?} is not a duration like PT1H30M", p.value),
                );
                None
            }
            (Some(_), None) => None,
        },
        (None, None) => {
            bad(begin, "DTEND", "missing: give DTEND or DURATION".into());
            None
        }
    };
    if let (Some(s), Some((e, line, field))) = (start, end)
        && let Some(problem) = span_problem(s, e)
    {
        bad(line, field, problem);
    }

    // Judge.
    let organizer = get("ORGANIZER");
    let judge = match get("X-GAVEL-JUDGE") {
        Some(p) => Some((p, text(&p.value))),
        None => organizer.map(|p| {
            let name = p
                .param("CN")
                .map(|cn| cn.trim().to_owned())
                .filter(|cn| !cn.is_empty())
                .unwrap_or_else(|| address(&p.value).to_owned());
            (p, name)
        }),
    };
    let judge = match judge {
        Some((_, name)) if !name.is_empty() => Some(name),
        Some((p, _)) => {
            bad(p.line, &p.name, "empty: the judge".into());
            None
        }
        None => {
            bad(
                begin,
                "ORGANIZER",
                "missing judge: give ORGANIZER;CN=name or X-GAVEL-JUDGE".into(),
            );
            None
        }
    };

    // Parties.
    let organizer_address = organizer.map(|p| address(&p.value).to_lowercase());
    let mut parties = Vec::new();
    for p in event.props.iter() {
        match p.name.as_str() {
            "X-GAVEL-PARTY" => match parse_parties(&text(&p.value)) {
                Ok(list) if !list.is_empty() => parties.extend(list),
                Ok(_) => bad(p.line, "X-GAVEL-PARTY", "empty; expected role:name".into()),
                Err(m) => bad(p.line, "X-GAVEL-PARTY", m),
            },
            "ATTENDEE" => {
                let addr = address(&p.value);
                if organizer_address.as_deref() == Some(&addr.to_lowercase()) && !addr.is_empty() {
                    continue;
                }
                let name = p
                    .param("CN")
                    .map(|cn| cn.trim().to_owned())
                    .filter(|cn| !cn.is_empty())
                    .unwrap_or_else(|| addr.to_owned());
                if name.is_empty() {
                    bad(p.line, "ATTENDEE", "no CN and no address".into());
                } else {
                    parties.push(Party {
                        role: role(p),
                        name,
                    });
                }
            }
            _ => {}
        }
    }

    let cancelled =
        cancel_all || get("STATUS").is_some_and(|p| p.value.eq_ignore_ascii_case("CANCELLED"));
    if errors.len() > before {
        return None;
    }
    Some(Hearing {
        id: id?,
        case_number: case_number?,
        court: court?,
        room: room?,
        scheduled_start: start?,
        scheduled_end: end?.0,
        judge: judge?,
        parties,
        status: if cancelled {
            HearingStatus::Cancelled
        } else {
            HearingStatus::Scheduled
        },
        history: Vec::new(),
        opened_at: None,
        closed_at: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{datetime, offset};

    const CST: UtcOffset = offset!(+8);

    fn fields(errors: &[RowError]) -> Vec<(u64, &str)> {
        errors.iter().map(|e| (e.line, e.field.as_str())).collect()
    }

    /// Shaped like an Outlook export: CRLF, an Outlook-named VTIMEZONE, folded
    /// lines (one folded inside a word, one right after a space), attendees with roles.
    const OUTLOOK: &str = "BEGIN:VCALENDAR\r\n\
PRODID:-//Microsoft Corporation//Outlook 16.0 MIMEDIR//EN\r\n\
VERSION:2.0\r\n\
METHOD:PUBLISH\r\n\
BEGIN:VTIMEZONE\r\n\
TZID:(UTC+08:00) Beijing, Chongqing, Hong Kong, Urumqi\r\n\
BEGIN:STANDARD\r\n\
DTSTART:16010101T000000\r\n\
TZOFFSETFROM:+0800\r\n\
TZOFFSETTO:+0800\r\n\
END:STANDARD\r\n\
END:VTIMEZONE\r\n\
BEGIN:VEVENT\r\n\
UID:040000008200E00074C5B7101A82E0080000000010B0B6F3A1\r\n\
\x205DDB01000000000000000010000000\r\n\
SUMMARY:(2026)浙0106民初1234号\r\n\
DTSTART;TZID=\"(UTC+08:00) Beijing, Chongqing, Hong Kong, Urumqi\":20261127T090000\r\n\
DTEND;TZID=\"(UTC+08:00) Beijing, Chongqing, Hong Kong, Urumqi\":20261127T103000\r\n\
LOCATION:hz-intermediate/room-1\r\n\
\x2001\r\n\
ORGANIZER;CN=王法官:mailto:wang@court.example\r\n\
ATTENDEE;CN=王法官;ROLE=CHAIR:mailto:wang@court.example\r\n\
ATTENDEE;CN=\"Zhang San, Esq.\";X-GAVEL-ROLE=plaintiff:mailto:zs@example.com\r\n\
ATTENDEE;CN=李四;ROLE=DEFENDANT:mailto:ls@example.com\r\n\
X-GAVEL-PARTY:witness:Chen \r\n\
\tWu\r\n\
BEGIN:VALARM\r\n\
ACTION:DISPLAY\r\n\
DESCRIPTION:Reminder\r\n\
TRIGGER:-PT15M\r\n\
END:VALARM\r\n\
END:VEVENT\r\n\
END:VCALENDAR\r\n";

    #[test]
    fn an_outlook_export_with_folded_lines_and_a_fixed_time_zone_imports() {
        let hs = import_ics(OUTLOOK, offset!(UTC)).expect("valid");
        assert_eq!(hs.len(), 1);
        let h = &hs[0];
        // The unfolded UID, hashed into an id.
        assert!(h.id.starts_with("ics-040000008200e00074c5b7101a82e00800000000"));
        assert!(valid_id(&h.id), "{}", h.id);
        assert_eq!(h.case_number, "(2026)浙0106民初1234号");
        assert_eq!(
            (h.court.as_str(), h.room.as_str()),
            ("hz-intermediate", "room-101")
        );
        // The file's VTIMEZONE (+08:00) wins over the courts' offset (UTC here).
        assert_eq!(h.scheduled_start, datetime!(2026-11-27 01:00 UTC));
        assert_eq!(h.scheduled_end, datetime!(2026-11-27 02:30 UTC));
        assert_eq!(h.judge, "王法官");
        let parties: Vec<(&str, &str)> = h
            .parties
            .iter()
            .map(|p| (p.role.as_str(), p.name.as_str()))
            .collect();
        // The organizer's own ATTENDEE line is not a party; the VALARM is ignored.
        assert_eq!(
            parties,
            [
                ("plaintiff", "Zhang San, Esq."),
                ("defendant", "李四"),
                ("witness", "Chen Wu")
            ]
        );
        assert_eq!(h.status, HearingStatus::Scheduled);
    }

    #[test]
    fn utc_known_zones_and_floating_times_resolve_as_documented() {
        let ics = "BEGIN:VCALENDAR\n\
BEGIN:VEVENT\nUID:utc-1\nSUMMARY:A1\nLOCATION:hz/room-1\nORGANIZER;CN=J:mailto:j@x\n\
DTSTART:20261127T010000Z\nDURATION:PT1H30M\nEND:VEVENT\n\
BEGIN:VEVENT\nUID:tz-1\nSUMMARY:A2\nLOCATION:hz/room-2\nX-GAVEL-JUDGE:J\n\
DTSTART;TZID=/mozilla.org/20070129_1/Asia/Shanghai:20261127T090000\n\
DTEND;TZID=/mozilla.org/20070129_1/Asia/Shanghai:20261127T100000\nEND:VEVENT\n\
BEGIN:VEVENT\nUID:float-1\nSUMMARY:A3\nLOCATION:hz/room-3\nX-GAVEL-JUDGE:J\n\
DTSTART:20261127T090000\nDTEND:20261127T100000\nEND:VEVENT\n\
BEGIN:VEVENT\nUID:unknown-tz-1\nSUMMARY:A4\nLOCATION:hz/room-4\nX-GAVEL-JUDGE:J\n\
DTSTART;TZID=Court Local:20261127T090000\nDTEND;TZID=Court Local:20261127T100000\nEND:VEVENT\n\
END:VCALENDAR\n";
        let hs = import_ics(ics, CST).expect("valid");
        let starts: Vec<(&str, OffsetDateTime)> = hs
            .iter()
            .map(|h| (h.id.as_str(), h.scheduled_start))
            .collect();
        assert_eq!(
            starts,
            [
                ("utc-1", datetime!(2026-11-27 01:00 UTC)),
                ("tz-1", datetime!(2026-11-27 01:00 UTC)),
                ("float-1", datetime!(2026-11-27 01:00 UTC)),
                ("unknown-tz-1", datetime!(2026-11-27 01:00 UTC)),
            ]
        );
        assert_eq!(hs[0].scheduled_end, datetime!(2026-11-27 02:30 UTC));
        // With another courts' offset only the floating and unknown-zone times move.
        let hs = import_ics(ics, offset!(UTC)).expect("valid");
        assert_eq!(hs[1].scheduled_start, datetime!(2026-11-27 01:00 UTC));
        assert_eq!(hs[2].scheduled_start, datetime!(2026-11-27 09:00 UTC));
        assert_eq!(hs[3].scheduled_start, datetime!(2026-11-27 09:00 UTC));
    }

    #[test]
    fn cancelled_events_import_as_cancelled_and_hold_no_room() {
        let ics = "BEGIN:VCALENDAR\n\
BEGIN:VEVENT\nUID:a\nSUMMARY:A1\nX-GAVEL-COURT:hz\nX-GAVEL-ROOM:room-1\nX-GAVEL-JUDGE:J\n\
DTSTART:20261127T010000Z\nDTEND:20261127T020000Z\nSTATUS:CANCELLED\nEND:VEVENT\n\
BEGIN:VEVENT\nUID:b\nSUMMARY:A2\nX-GAVEL-COURT:hz\nLOCATION:room-1\nX-GAVEL-JUDGE:J\n\
DTSTART:20261127T013000Z\nDTEND:20261127T023000Z\nSTATUS:CONFIRMED\nEND:VEVENT\n\
END:VCALENDAR\n";
        let hs = import_ics(ics, CST).expect("a cancelled hearing does not overlap");
        assert_eq!(hs[0].status, HearingStatus::Cancelled);
        assert_eq!(hs[1].status, HearingStatus::Scheduled);
        assert_eq!(hs[1].room, "room-1");
        // METHOD:CANCEL cancels every event of the calendar.
        let cancel = ics
            .replace("BEGIN:VCALENDAR\n", "BEGIN:VCALENDAR\nMETHOD:CANCEL\n")
            .replace("STATUS:CONFIRMED\n", "");
        let hs = import_ics(&cancel, CST).expect("valid");
        assert!(hs.iter().all(|h| h.status == HearingStatus::Cancelled));
    }

    #[test]
    fn every_bad_event_is_reported_by_line_and_property_and_nothing_is_imported() {
        let ics = "BEGIN:VCALENDAR\n\
BEGIN:VEVENT\n\
UID:good\nSUMMARY:A1\nLOCATION:hz/room-1\nX-GAVEL-JUDGE:J\n\
DTSTART:20261127T010000Z\nDTEND:20261127T020000Z\n\
END:VEVENT\n\
BEGIN:VEVENT\n\
SUMMARY:A2\n\
LOCATION:Courtroom One\n\
DTSTART;VALUE=DATE:20261127\n\
DTEND:20261127T020000Z\n\
END:VEVENT\n\
BEGIN:VEVENT\n\
UID:c\nSUMMARY:A3\nLOCATION:hz/room-3\nX-GAVEL-JUDGE:J\n\
DTSTART:20261127T030000Z\n\
DTEND:20261127T020000Z\n\
RRULE:FREQ=WEEKLY\n\
END:VEVENT\n\
this line is garbage\n\
BEGIN:VEVENT\n\
UID:d\nSUMMARY:A4\nLOCATION:hz/room-1\nX-GAVEL-JUDGE:J\n\
DTSTART:20261127T013000Z\n\
DTEND:2026-11-27 11:00\n\
END:VEVENT\n\
END:VCALENDAR\n";
        let errors = import_ics(ics, CST).expect_err("bad events");
        assert_eq!(
            fields(&errors),
            [
                (10, "ORGANIZER"),
                (10, "UID"),
                (12, "LOCATION"),
                (13, "DTSTART"),
                (22, "DTEND"),
                (23, "RRULE"),
                (25, "line"),
                (32, "DTEND"),
            ],
            "{errors:#?}"
        );
        assert!(errors[3].message.contains("all-day"), "{}", errors[3]);
        assert!(
            errors[2]
                .to_string()
                .starts_with("line 12, field `LOCATION`")
        );
    }

    #[test]
    fn overlapping_and_duplicate_events_are_refused() {
        let event = |uid: &str, start: &str, end: &str| {
            format!(
                "BEGIN:VEVENT\nUID:{uid}\nSUMMARY:{uid}\nLOCATION:hz/room-1\nX-GAVEL-JUDGE:J\n\
                 DTSTART:{start}\nDTEND:{end}\nEND:VEVENT\n"
            )
        };
        let ics = format!(
            "BEGIN:VCALENDAR\n{}{}{}END:VCALENDAR\n",
            event("a", "20261127T010000Z", "20261127T020000Z"),
            event("b", "20261127T013000Z", "20261127T023000Z"),
            event("a", "20261128T010000Z", "20261128T020000Z"),
        );
        let errors = import_ics(&ics, CST).expect_err("overlap");
        assert_eq!(
            fields(&errors),
            [(10, "DTSTART"), (18, "UID")],
            "{errors:#?}"
        );
        assert!(errors[0].message.contains("overlaps hearing a on line 2"));
        assert!(errors[1].message.contains("already on line 2"));
    }

    #[test]
    fn garbage_and_broken_structure_are_named() {
        let errors = import_ics("hello\nworld\n", CST).expect_err("garbage");
        assert_eq!(fields(&errors), [(1, "BEGIN"), (1, "line"), (2, "line")]);
        let errors = import_ics("BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:x\n", CST).expect_err("open");
        assert_eq!(fields(&errors), [(1, "END"), (2, "END")]);
        assert!(
            import_ics("BEGIN:VCALENDAR\nEND:VCALENDAR\n", CST)
                .expect("empty calendar")
                .is_empty()
        );
        assert!(looks_like_ics("\u{feff}\r\nBEGIN:VCALENDAR\r\n"));
        assert!(!looks_like_ics("case_number,court\n"));
    }

    #[test]
    fn a_time_zone_with_daylight_saving_is_refused_not_guessed() {
        let ics = "BEGIN:VCALENDAR\n\
BEGIN:VTIMEZONE\nTZID:Europe/Berlin\n\
BEGIN:DAYLIGHT\nTZOFFSETFROM:+0100\nTZOFFSETTO:+0200\nDTSTART:19700329T020000\nEND:DAYLIGHT\n\
BEGIN:STANDARD\nTZOFFSETFROM:+0200\nTZOFFSETTO:+0100\nDTSTART:19701025T030000\nEND:STANDARD\n\
END:VTIMEZONE\n\
BEGIN:VEVENT\nUID:a\nSUMMARY:A1\nLOCATION:hz/room-1\nX-GAVEL-JUDGE:J\n\
DTSTART;TZID=Europe/Berlin:20261127T090000\nDTEND:20261127T100000Z\nEND:VEVENT\n\
END:VCALENDAR\n";
        let errors = import_ics(ics, CST).expect_err("dst zone");
        assert_eq!(fields(&errors), [(20, "DTSTART")]);
        assert!(
            errors[0].message.contains("daylight-saving"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn ids_from_uids_are_stable_and_valid() {
        assert_eq!(id_from_uid("hearing-42"), "hearing-42");
        assert_eq!(id_from_uid("Hearing-42"), "hearing-42");
        let a = id_from_uid("7kukuqrfedlm2f9t1ks0pkb@google.com");
        assert_eq!(a, id_from_uid("7kukuqrfedlm2f9t1ks0pkb@google.com"));
        assert_ne!(a, id_from_uid("7kukuqrfedlm2f9t1ks0pkc@google.com"));
        assert!(valid_id(&a), "{a}");
        assert_eq!(parse_duration("PT1H30M"), Some(Duration::minutes(90)));
        assert_eq!(parse_duration("P1DT2H"), Some(Duration::hours(26)));
        assert_eq!(parse_duration("PT"), None);
        assert_eq!(parse_duration("1H"), None);
        assert_eq!(parse_offset("+0530"), UtcOffset::from_hms(5, 30, 0).ok());
        assert_eq!(parse_offset("-0800"), UtcOffset::from_hms(-8, 0, 0).ok());
    }
}
