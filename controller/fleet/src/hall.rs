//! The service hall's queue (诉讼服务大厅 排队叫号) of one court: tickets the kiosks issued,
//! the windows that call them, and waiting-time estimates.
//!
//! [`Hall::handle`] takes the time and one [`Input`] and returns [`Output`]s for the shell
//! (persist a ticket, announce a call, count a duplicate). It never reads the clock.
//!
//! A ticket's life: `waiting` (the kiosk's event arrived) → `called` (a window called it;
//! recalls keep it there) → `served` (the same window called the next one). Tickets are
//! per court and day: a ticket arriving for another day than the court's today (a kiosk
//! that was offline over midnight) is refused as expired, and the queue starts empty every
//! day.
//!
//! Design: the kiosks number tickets without asking the controller (service letter, the
//! kiosk's digit, a per-day sequence in the kiosk's store; ADR `kiosk-ticket-numbers`), so
//! a ticket can arrive minutes after it was issued. The queue is ordered by issue time, not
//! by arrival, and a ticket that arrives again (the outbox resends until receipted, the
//! controller reloads events after a restart) is recognised by its number and ignored.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime, UtcOffset};

/// How the hall estimates and keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct HallSettings {
    /// The court's offset from UTC (which day it is).
    pub offset: UtcOffset,
    /// Service time assumed for a service before any was measured, in seconds.
    pub default_service_s: u32,
    /// How many recent service times per service the estimate averages.
    pub recent: usize,
    /// A window that has not called for this long is not counted as serving.
    pub window_idle_s: i64,
}

impl Default for HallSettings {
    fn default() -> Self {
        Self {
            offset: UtcOffset::UTC,
            default_service_s: 300,
            recent: 10,
            window_idle_s: 1800,
        }
    }
}

/// Where a ticket stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TicketState {
    Waiting,
    Called,
    Served,
}

/// A queue ticket as the controller keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Ticket {
    pub number: String,
    pub service: String,
    /// The court's day, `YYYY-MM-DD`.
    pub day: String,
    /// When the kiosk issued it.
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub issued: OffsetDateTime,
    /// The kiosk (device id) that issued it.
    pub kiosk: String,
    pub state: TicketState,
    /// The window it was called to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// First call.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub called_at: Option<OffsetDateTime>,
    /// Latest call (a recall moves it).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub last_call: Option<OffsetDateTime>,
    /// Times called (1 + recalls).
    #[serde(default)]
    pub calls: u32,
}

/// What happens in the hall.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A kiosk's `ticket` event.
    Issued {
        kiosk: String,
        number: String,
        service: String,
        day: String,
        issued: OffsetDateTime,
    },
    /// A window calls the next waiting ticket of `services` (empty: any service).
    CallNext {
        window: String,
        services: Vec<String>,
    },
    /// A window calls its current ticket again.
    Recall { window: String },
}

/// A number called to a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Call {
    pub number: String,
    pub service: String,
    pub window: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: OffsetDateTime,
    /// A recall of a number already called.
    pub recall: bool,
}

/// What the shell carries out.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Store this ticket (new or changed).
    Save(Ticket),
    /// Announce and show this call.
    Called(Call),
    /// The ticket was already held: nothing changed.
    Duplicate { number: String },
    /// Another kiosk already issued this number today (two kiosks share a digit): the
    /// first is kept; the shell logs and counts it.
    Conflict {
        number: String,
        kiosk: String,
        held_by: String,
    },
    /// The ticket is for another day than the court's today; not queued.
    Expired { number: String, day: String },
    /// Nothing to call or recall.
    Nothing { window: String, reason: String },
}

/// One service's queue as shown to kiosks and the hall display.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceView {
    pub service: String,
    /// Tickets waiting.
    pub waiting: u32,
    /// Estimated wait for a ticket taken now, in seconds.
    pub estimate_s: u32,
    /// Average of the recent service times (or the default), in seconds.
    pub service_s: u32,
    /// Windows that called this service recently.
    pub windows: u32,
}

/// A window and whom it is serving.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WindowView {
    pub window: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// The hall of one court: what the API, the kiosks and the display read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HallView {
    pub day: String,
    pub services: Vec<ServiceView>,
    pub windows: Vec<WindowView>,
    /// Latest calls first (at most 10).
    pub calls: Vec<Call>,
    /// Tickets held today.
    pub tickets: u32,
}

#[derive(Debug, Clone, PartialEq)]
struct Window {
    current: Option<String>,
    last_call: OffsetDateTime,
    /// Services it called for last (empty: any).
    services: Vec<String>,
}

/// One court's hall queue.
#[derive(Debug, Clone)]
pub struct Hall {
    settings: HallSettings,
    /// The day the tickets belong to.
    day: Option<Date>,
    /// Today's tickets by number.
    tickets: BTreeMap<String, Ticket>,
    windows: BTreeMap<String, Window>,
    /// Recent service times per service, seconds, newest last.
    recent: BTreeMap<String, VecDeque<i64>>,
}

fn day_text(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

impl Hall {
    /// An empty hall.
    pub fn new(settings: HallSettings) -> Self {
        Self {
            settings,
            day: None,
            tickets: BTreeMap::new(),
            windows: BTreeMap::new(),
            recent: BTreeMap::new(),
        }
    }

    /// A hall holding stored tickets (those of other days than `now`'s are dropped); the
    /// windows' current tickets and recent service times are rebuilt from them.
    pub fn restore(settings: HallSettings, tickets: Vec<Ticket>, now: OffsetDateTime) -> Self {
        let mut hall = Self::new(settings);
        hall.roll_day(now);
        let today = hall.today(now);
        let mut tickets: Vec<Ticket> = tickets.into_iter().filter(|t| t.day == today).collect();
        tickets.sort_by_key(|t| t.called_at);
        for t in tickets {
            if let (Some(w), Some(at)) = (&t.window, t.last_call) {
                let window = hall.windows.entry(w.clone()).or_insert(Window {
                    current: None,
                    last_call: at,
                    services: Vec::new(),
                });
                window.last_call = window.last_call.max(at);
                if t.state == TicketState::Called {
                    window.current = Some(t.number.clone());
                }
            }
            hall.tickets.insert(t.number.clone(), t);
        }
        // Service times: between consecutive first calls at the same window.
        let mut by_window: BTreeMap<&str, Vec<&Ticket>> = BTreeMap::new();
        for t in hall.tickets.values() {
            if let Some(w) = &t.window {
                by_window.entry(w).or_default().push(t);
            }
        }
        let mut times = Vec::new();
        for list in by_window.values_mut() {
            list.sort_by_key(|t| t.called_at);
            for pair in list.windows(2) {
                if let (Some(a), Some(b)) = (pair[0].called_at, pair[1].called_at) {
                    times.push((pair[0].service.clone(), (b - a).whole_seconds()));
                }
            }
        }
        for (service, s) in times {
            hall.note_service_time(&service, s);
        }
        hall
    }

    fn today(&self, now: OffsetDateTime) -> String {
        day_text(now.to_offset(self.settings.offset).date())
    }

    /// Starts a new, empty day when the court's date changed.
    fn roll_day(&mut self, now: OffsetDateTime) {
        let date = now.to_offset(self.settings.offset).date();
        if self.day != Some(date) {
            self.day = Some(date);
            self.tickets.clear();
            self.windows.clear();
        }
    }

    fn note_service_time(&mut self, service: &str, seconds: i64) {
        let list = self.recent.entry(service.to_owned()).or_default();
        list.push_back(seconds.max(0));
        while list.len() > self.settings.recent.max(1) {
            list.pop_front();
        }
    }

    /// Applies one input.
    pub fn handle(&mut self, now: OffsetDateTime, input: Input) -> Vec<Output> {
        self.roll_day(now);
        match input {
            Input::Issued {
                kiosk,
                number,
                service,
                day,
                issued,
            } => {
                if day != self.today(now) {
                    return vec![Output::Expired { number, day }];
                }
                if let Some(held) = self.tickets.get(&number) {
                    if held.kiosk == kiosk {
                        return vec![Output::Duplicate { number }];
                    }
                    return vec![Output::Conflict {
                        number,
                        kiosk,
                        held_by: held.kiosk.clone(),
                    }];
                }
                let ticket = Ticket {
                    number: number.clone(),
                    service,
                    day,
                    issued,
                    kiosk,
                    state: TicketState::Waiting,
                    window: None,
                    called_at: None,
                    last_call: None,
                    calls: 0,
                };
                self.tickets.insert(number, ticket.clone());
                vec![Output::Save(ticket)]
            }
            Input::CallNext { window, services } => self.call_next(now, window, services),
            Input::Recall { window } => {
                let current = self.windows.get(&window).and_then(|w| w.current.clone());
                let Some(t) = current.and_then(|n| self.tickets.get_mut(&n)) else {
                    return vec![Output::Nothing {
                        window,
                        reason: "no number called at this window".into(),
                    }];
                };
                t.calls += 1;
                t.last_call = Some(now);
                let call = Call {
                    number: t.number.clone(),
                    service: t.service.clone(),
                    window: window.clone(),
                    at: now,
                    recall: true,
                };
                let saved = t.clone();
                if let Some(w) = self.windows.get_mut(&window) {
                    w.last_call = now;
                }
                vec![Output::Save(saved), Output::Called(call)]
            }
        }
    }

    fn call_next(
        &mut self,
        now: OffsetDateTime,
        window: String,
        services: Vec<String>,
    ) -> Vec<Output> {
        let mut out = Vec::new();
        // The window's current ticket is served now.
        let current = self.windows.get(&window).and_then(|w| w.current.clone());
        if let Some(n) = current
            && let Some(t) = self.tickets.get_mut(&n)
            && t.state == TicketState::Called
        {
            t.state = TicketState::Served;
            let took = t.called_at.map(|c| (now - c).whole_seconds());
            let (service, saved) = (t.service.clone(), t.clone());
            out.push(Output::Save(saved));
            if let Some(s) = took {
                self.note_service_time(&service, s);
            }
        }
        let next = self
            .tickets
            .values()
            .filter(|t| t.state == TicketState::Waiting)
            .filter(|t| services.is_empty() || services.contains(&t.service))
            .min_by(|a, b| (a.issued, &a.number).cmp(&(b.issued, &b.number)))
            .map(|t| t.number.clone());
        let entry = self.windows.entry(window.clone()).or_insert(Window {
            current: None,
            last_call: now,
            services: services.clone(),
        });
        entry.current = None;
        entry.last_call = now;
        entry.services = services;
        let Some(t) = next.and_then(|n| self.tickets.get_mut(&n)) else {
            out.push(Output::Nothing {
                window,
                reason: "nobody is waiting".into(),
            });
            return out;
        };
        t.state = TicketState::Called;
        t.window = Some(window.clone());
        t.called_at = Some(now);
        t.last_call = Some(now);
        t.calls = 1;
        entry.current = Some(t.number.clone());
        out.push(Output::Save(t.clone()));
        out.push(Output::Called(Call {
            number: t.number.clone(),
            service: t.service.clone(),
            window,
            at: now,
            recall: false,
        }));
        out
    }

    /// Average recent service time of `service`, seconds.
    fn service_s(&self, service: &str) -> u32 {
        match self.recent.get(service) {
            Some(list) if !list.is_empty() => {
                let sum: i64 = list.iter().sum();
                u32::try_from(sum / list.len() as i64).unwrap_or(u32::MAX)
            }
            _ => self.settings.default_service_s,
        }
    }

    /// Windows that called `service` (or any service) within the idle limit.
    fn serving(&self, now: OffsetDateTime, service: &str) -> u32 {
        let n = self
            .windows
            .values()
            .filter(|w| (now - w.last_call).whole_seconds() <= self.settings.window_idle_s)
            .filter(|w| w.services.is_empty() || w.services.iter().any(|s| s == service))
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// The estimated wait of a ticket taken now for `service`: the people ahead times
    /// the recent average service time, shared among the windows serving it (at least
    /// one).
    pub fn estimate_s(&self, now: OffsetDateTime, service: &str) -> u32 {
        let ahead = self.waiting(service);
        let windows = self.serving(now, service).max(1);
        let per = u64::from(self.service_s(service));
        u32::try_from(u64::from(ahead) * per / u64::from(windows)).unwrap_or(u32::MAX)
    }

    /// Tickets of `service` waiting.
    pub fn waiting(&self, service: &str) -> u32 {
        let n = self
            .tickets
            .values()
            .filter(|t| t.state == TicketState::Waiting && t.service == service)
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Today's tickets (for tests and exports).
    pub fn tickets(&self) -> impl Iterator<Item = &Ticket> {
        self.tickets.values()
    }

    /// The hall as shown: `services` are listed even when nobody waits for them.
    pub fn view(&mut self, now: OffsetDateTime, services: &[String]) -> HallView {
        self.roll_day(now);
        let mut names: Vec<String> = services.to_vec();
        for t in self.tickets.values() {
            if !names.contains(&t.service) {
                names.push(t.service.clone());
            }
        }
        let services = names
            .iter()
            .map(|s| ServiceView {
                service: s.clone(),
                waiting: self.waiting(s),
                estimate_s: self.estimate_s(now, s),
                service_s: self.service_s(s),
                windows: self.serving(now, s),
            })
            .collect();
        let windows = self
            .windows
            .iter()
            .map(|(name, w)| WindowView {
                window: name.clone(),
                current: w.current.clone(),
                service: w
                    .current
                    .as_ref()
                    .and_then(|n| self.tickets.get(n))
                    .map(|t| t.service.clone()),
            })
            .collect();
        let mut calls: Vec<Call> = self
            .tickets
            .values()
            .filter_map(|t| {
                Some(Call {
                    number: t.number.clone(),
                    service: t.service.clone(),
                    window: t.window.clone()?,
                    at: t.last_call?,
                    recall: t.calls > 1,
                })
            })
            .collect();
        calls.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| b.number.cmp(&a.number)));
        calls.truncate(10);
        HallView {
            day: self.today(now),
            services,
            windows,
            calls,
            tickets: u32::try_from(self.tickets.len()).unwrap_or(u32::MAX),
        }
    }
}

/// What a kiosk may show of a case: its state and next hearing, nothing about people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublicCase {
    pub case_number: String,
    /// `scheduled`, `in_progress`, `closed`, `cancelled` or `no_hearing`.
    pub status: String,
    #[serde(default)]
    pub next_hearing: Option<PublicHearing>,
}

/// A hearing as a kiosk may show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublicHearing {
    /// `YYYY-MM-DD` in the court's offset.
    pub date: String,
    /// `HH:MM` in the court's offset.
    pub time: String,
    pub room: String,
}

/// The public view of `case_number` among `hearings` at `now` (`None`: no hearing of that
/// case). The next hearing is the one in progress, else the earliest scheduled one not
/// yet over; parties, judge and ids are never part of it.
pub fn public_case(
    hearings: &[crate::hearings::Hearing],
    case_number: &str,
    now: OffsetDateTime,
    offset: UtcOffset,
) -> Option<PublicCase> {
    use crate::hearings::HearingStatus as S;
    let mine: Vec<_> = hearings
        .iter()
        .filter(|h| h.case_number == case_number)
        .collect();
    if mine.is_empty() {
        return None;
    }
    let shown = |h: &crate::hearings::Hearing| {
        let t = h.scheduled_start.to_offset(offset);
        PublicHearing {
            date: day_text(t.date()),
            time: format!("{:02}:{:02}", t.hour(), t.minute()),
            room: h.room.clone(),
        }
    };
    if let Some(h) = mine.iter().find(|h| h.status == S::InProgress) {
        return Some(PublicCase {
            case_number: case_number.to_owned(),
            status: "in_progress".into(),
            next_hearing: Some(shown(h)),
        });
    }
    let next = mine
        .iter()
        .filter(|h| h.status == S::Scheduled && h.scheduled_end > now)
        .min_by_key(|h| h.scheduled_start);
    let status = match next {
        Some(_) => "scheduled",
        None if mine.iter().any(|h| h.status == S::Closed) => "closed",
        None if mine.iter().all(|h| h.status == S::Cancelled) => "cancelled",
        None => "no_hearing",
    };
    Some(PublicCase {
        case_number: case_number.to_owned(),
        status: status.into(),
        next_hearing: next.map(|h| shown(h)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-27 09:00 +8);

    fn issued(hall: &mut Hall, kiosk: &str, number: &str, service: &str, at: i64) -> Vec<Output> {
        hall.handle(
            NOW + time::Duration::seconds(at),
            Input::Issued {
                kiosk: kiosk.into(),
                number: number.into(),
                service: service.into(),
                day: "2026-11-27".into(),
                issued: NOW + time::Duration::seconds(at),
            },
        )
    }

    fn hall() -> Hall {
        Hall::new(HallSettings {
            offset: time::macros::offset!(+8),
            ..HallSettings::default()
        })
    }

    fn called(out: &[Output]) -> Option<&Call> {
        out.iter().find_map(|o| match o {
            Output::Called(c) => Some(c),
            _ => None,
        })
    }

    fn hearing(
        case: &str,
        start: OffsetDateTime,
        status: crate::hearings::HearingStatus,
    ) -> crate::hearings::Hearing {
        crate::hearings::Hearing {
            id: format!("{case}-{}", start.unix_timestamp()),
            case_number: case.into(),
            court: "xihu".into(),
            room: "room-101".into(),
            scheduled_start: start,
            scheduled_end: start + time::Duration::hours(1),
            judge: "Judge Li".into(),
            parties: vec![crate::hearings::Party {
                role: "plaintiff".into(),
                name: "Zhang San".into(),
            }],
            status,
            opened_at: None,
            closed_at: None,
            history: Vec::new(),
        }
    }

    #[test]
    fn a_public_case_shows_the_next_hearing_and_nothing_about_people() {
        use crate::hearings::HearingStatus as S;
        let hs = vec![
            hearing(
                "(2026)浙0106民初1",
                NOW - time::Duration::days(3),
                S::Closed,
            ),
            hearing(
                "(2026)浙0106民初1",
                NOW + time::Duration::days(2),
                S::Scheduled,
            ),
            hearing(
                "(2026)浙0106民初1",
                NOW + time::Duration::days(9),
                S::Scheduled,
            ),
            hearing("(2026)浙0106民初2", NOW, S::Cancelled),
        ];
        let off = time::macros::offset!(+8);
        let c = public_case(&hs, "(2026)浙0106民初1", NOW, off).expect("case");
        assert_eq!(c.status, "scheduled");
        let next = c.next_hearing.as_ref().expect("next");
        assert_eq!(
            (next.date.as_str(), next.time.as_str()),
            ("2026-11-29", "09:00")
        );
        let json = serde_json::to_string(&c).expect("json");
        assert!(!json.contains("Zhang") && !json.contains("Judge"), "{json}");
        let c2 = public_case(&hs, "(2026)浙0106民初2", NOW, off).expect("case");
        assert_eq!((c2.status.as_str(), c2.next_hearing), ("cancelled", None));
        assert_eq!(public_case(&hs, "nope", NOW, off), None);
    }

    #[test]
    fn a_ticket_that_arrives_again_is_held_once() {
        let mut h = hall();
        assert!(matches!(
            issued(&mut h, "k1", "A1001", "filing", 0)[0],
            Output::Save(_)
        ));
        assert_eq!(
            issued(&mut h, "k1", "A1001", "filing", 5),
            [Output::Duplicate {
                number: "A1001".into()
            }]
        );
        assert_eq!(h.tickets().count(), 1);
        assert_eq!(h.waiting("filing"), 1);
    }

    #[test]
    fn the_same_number_from_another_kiosk_is_a_conflict_and_the_first_is_kept() {
        let mut h = hall();
        issued(&mut h, "k1", "A1001", "filing", 0);
        let out = issued(&mut h, "k2", "A1001", "filing", 1);
        assert!(matches!(&out[0], Output::Conflict { held_by, .. } if held_by == "k1"));
        assert_eq!(h.tickets().next().map(|t| t.kiosk.as_str()), Some("k1"));
    }

    #[test]
    fn tickets_are_called_by_issue_time_not_by_arrival() {
        let mut h = hall();
        // Kiosk 2 was offline: its earlier ticket arrives after kiosk 1's later one.
        issued(&mut h, "k1", "A1001", "filing", 60);
        issued(&mut h, "k2", "A2001", "filing", 10);
        let out = h.handle(
            NOW + time::Duration::seconds(120),
            Input::CallNext {
                window: "3".into(),
                services: vec![],
            },
        );
        assert_eq!(called(&out).map(|c| c.number.as_str()), Some("A2001"));
    }

    #[test]
    fn a_window_calls_only_the_services_it_names() {
        let mut h = hall();
        issued(&mut h, "k1", "B1001", "consultation", 0);
        issued(&mut h, "k1", "A1001", "filing", 5);
        let out = h.handle(
            NOW,
            Input::CallNext {
                window: "1".into(),
                services: vec!["filing".into()],
            },
        );
        let c = called(&out).expect("called");
        assert_eq!((c.number.as_str(), c.window.as_str()), ("A1001", "1"));
    }

    #[test]
    fn calling_next_serves_the_current_ticket_and_recall_calls_it_again() {
        let mut h = hall();
        issued(&mut h, "k1", "A1001", "filing", 0);
        issued(&mut h, "k1", "A1002", "filing", 1);
        let call = |h: &mut Hall, at| {
            h.handle(
                NOW + time::Duration::seconds(at),
                Input::CallNext {
                    window: "2".into(),
                    services: vec![],
                },
            )
        };
        call(&mut h, 10);
        let out = h.handle(NOW, Input::Recall { window: "2".into() });
        let c = called(&out).expect("recalled");
        assert!(c.recall && c.number == "A1001");
        let out = call(&mut h, 250);
        assert!(out.iter().any(
            |o| matches!(o, Output::Save(t) if t.number == "A1001" && t.state == TicketState::Served)
        ));
        assert_eq!(called(&out).map(|c| c.number.as_str()), Some("A1002"));
        // Nobody left: the window says so and serves its current one.
        let out = call(&mut h, 400);
        assert!(matches!(out.last(), Some(Output::Nothing { .. })));
    }

    #[test]
    fn a_recall_at_a_window_that_called_nobody_says_so() {
        let mut h = hall();
        let out = h.handle(NOW, Input::Recall { window: "9".into() });
        assert!(matches!(&out[0], Output::Nothing { window, .. } if window == "9"));
    }

    #[test]
    fn the_wait_estimate_follows_recent_service_times_and_open_windows() {
        let mut h = hall();
        for i in 0..6 {
            issued(&mut h, "k1", &format!("A10{i:02}"), "filing", i);
        }
        // Nothing measured yet: the default 300 s per person ahead.
        assert_eq!(h.estimate_s(NOW, "filing"), 6 * 300);
        let call = |h: &mut Hall, w: &str, at| {
            h.handle(
                NOW + time::Duration::seconds(at),
                Input::CallNext {
                    window: w.into(),
                    services: vec![],
                },
            )
        };
        call(&mut h, "1", 100);
        call(&mut h, "1", 160); // 60 s
        call(&mut h, "1", 280); // 120 s
        let now = NOW + time::Duration::seconds(280);
        assert_eq!(h.service_s("filing"), 90);
        assert_eq!(h.waiting("filing"), 3);
        assert_eq!(h.estimate_s(now, "filing"), 3 * 90);
        // A second window halves it.
        call(&mut h, "2", 280);
        assert_eq!(h.estimate_s(now, "filing"), 2 * 90 / 2);
        let view = h.view(now, &["filing".into(), "payment".into()]);
        assert_eq!(view.services.len(), 2);
        assert_eq!(view.services[1].waiting, 0);
        assert_eq!(view.calls[0].window, "2");
    }

    #[test]
    fn a_ticket_for_another_day_is_expired_and_the_queue_starts_empty_each_day() {
        let mut h = hall();
        issued(&mut h, "k1", "A1001", "filing", 0);
        let tomorrow = NOW + time::Duration::days(1);
        let out = h.handle(
            tomorrow,
            Input::Issued {
                kiosk: "k1".into(),
                number: "A1050".into(),
                service: "filing".into(),
                day: "2026-11-27".into(),
                issued: NOW,
            },
        );
        assert!(matches!(&out[0], Output::Expired { day, .. } if day == "2026-11-27"));
        assert_eq!(h.tickets().count(), 0);
    }

    #[test]
    fn a_restored_hall_knows_each_window_current_ticket_and_the_service_times() {
        let mut h = hall();
        for i in 0..3 {
            issued(&mut h, "k1", &format!("A100{i}"), "filing", i);
        }
        for at in [10, 70] {
            h.handle(
                NOW + time::Duration::seconds(at),
                Input::CallNext {
                    window: "4".into(),
                    services: vec![],
                },
            );
        }
        let saved: Vec<Ticket> = h.tickets().cloned().collect();
        let mut again = Hall::restore(h.settings.clone(), saved, NOW);
        assert_eq!(again.service_s("filing"), 60);
        let out = again.handle(NOW, Input::Recall { window: "4".into() });
        assert_eq!(called(&out).map(|c| c.number.as_str()), Some("A1001"));
        // A second arrival of a restored ticket is still a duplicate.
        assert!(matches!(
            issued(&mut again, "k1", "A1000", "filing", 0)[0],
            Output::Duplicate { .. }
        ));
    }
}
