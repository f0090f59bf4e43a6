//! The kiosk's ticket book: which number the next ticket of a service gets (sans-I/O).
//!
//! Design: a kiosk numbers tickets by itself, the same way whether or not the controller
//! is reachable: the service's letter (`A` for the first service of the profile, `B` for
//! the second...), the kiosk's own digit (1-9, unique per court, set at provisioning) and
//! a per-day sequence (`A1007`). Numbers from two kiosks can never collide, no lease has
//! to be fetched first (a kiosk that boots during an outage still issues), and a number
//! is spent (stored, fsync) before its ticket is printed, so a power cut can skip a
//! number but never repeat one. The controller orders the queue by issue time and keeps
//! each number once (ADR `kiosk-ticket-numbers`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::{OffsetDateTime, UtcOffset};

/// Highest sequence of a service per day and kiosk (three digits).
pub const MAX_PER_DAY: u32 = 999;

/// What the book is set up with.
#[derive(Debug, Clone, PartialEq)]
pub struct BookSettings {
    /// The kiosk's digit in every number (1-9).
    pub kiosk_digit: u8,
    /// Services in the profile's order (their letters follow it).
    pub services: Vec<String>,
    /// The court's offset from UTC (when the day, and the numbering, starts again).
    pub offset: UtcOffset,
    /// Sequence limit per service and day.
    pub max_per_day: u32,
}

/// The state kept in the device store: the day and the last number spent per service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// `YYYY-MM-DD` in the court's offset.
    pub day: String,
    /// Last sequence spent per service.
    pub spent: BTreeMap<String, u32>,
}

/// The queue of a service as last seen at the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    waiting: u32,
    estimate_s: u32,
    /// Tickets this kiosk issued for the service since.
    issued_since: u32,
}

/// What the kiosk asks the book.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// Someone takes a ticket for `service`.
    Take { service: String },
    /// The controller's queue for `service` (read when it is reachable).
    QueueSeen {
        service: String,
        waiting: u32,
        estimate_s: u32,
    },
}

/// A ticket to print and send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issued {
    pub number: String,
    pub service: String,
    /// The court's day, `YYYY-MM-DD`.
    pub day: String,
    #[serde(with = "time::serde::rfc3339")]
    pub issued: OffsetDateTime,
    /// People ahead: the controller's queue when last seen plus what this kiosk issued
    /// since (only this kiosk's tickets when it never saw the controller today).
    pub waiting_ahead: u32,
    /// Estimated wait in seconds, when the controller's estimate is known.
    pub estimate_s: Option<u32>,
}

/// Why no ticket was issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no service {0:?} at this kiosk")]
    UnknownService(String),
    #[error("every number of {service} for today has been issued ({max})")]
    NumbersUsedUp { service: String, max: u32 },
}

/// What the shell does, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Store these counters (durably) before anything else.
    Persist(Counters),
    /// Print this ticket and send it as a `ticket` event.
    Issue(Issued),
    /// Tell the person why not.
    Refuse(Refusal),
}

/// The ticket book.
#[derive(Debug, Clone)]
pub struct TicketBook {
    settings: BookSettings,
    counters: Counters,
    seen: BTreeMap<String, Seen>,
}

fn day_text(now: OffsetDateTime, offset: UtcOffset) -> String {
    let d = now.to_offset(offset).date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

impl TicketBook {
    /// A book continuing from stored counters (`None` on a first start).
    pub fn new(settings: BookSettings, stored: Option<Counters>) -> Self {
        Self {
            settings,
            counters: stored.unwrap_or_default(),
            seen: BTreeMap::new(),
        }
    }

    /// The letter of a service (`A` for the first).
    pub fn letter(&self, service: &str) -> Option<char> {
        let i = self.settings.services.iter().position(|s| s == service)?;
        char::from_u32(u32::from(b'A') + u32::try_from(i).ok()?)
    }

    /// Services in order.
    pub fn services(&self) -> &[String] {
        &self.settings.services
    }

    /// Tickets issued today for `service` by this kiosk.
    pub fn spent(&self, service: &str) -> u32 {
        self.counters.spent.get(service).copied().unwrap_or(0)
    }

    /// Applies one input.
    pub fn handle(&mut self, now: OffsetDateTime, input: Input) -> Vec<Output> {
        let today = day_text(now, self.settings.offset);
        if self.counters.day != today {
            // Design: a new day starts every service at 1 again, and what was seen of
            // yesterday's queue no longer counts.
            self.counters = Counters {
                day: today.clone(),
                spent: BTreeMap::new(),
            };
            self.seen.clear();
        }
        match input {
            Input::QueueSeen {
                service,
                waiting,
                estimate_s,
            } => {
                self.seen.insert(
                    service,
                    Seen {
                        waiting,
                        estimate_s,
                        issued_since: 0,
                    },
                );
                Vec::new()
            }
            Input::Take { service } => {
                let Some(letter) = self.letter(&service) else {
                    return vec![Output::Refuse(Refusal::UnknownService(service))];
                };
                let spent = self.spent(&service);
                let max = self.settings.max_per_day.min(MAX_PER_DAY);
                if spent >= max {
                    return vec![Output::Refuse(Refusal::NumbersUsedUp { service, max })];
                }
                let seq = spent + 1;
                self.counters.spent.insert(service.clone(), seq);
                let (waiting_ahead, estimate_s) = match self.seen.get_mut(&service) {
                    Some(s) => {
                        let ahead = s.waiting + s.issued_since;
                        // Scale the controller's estimate by the people ahead now.
                        let per = s.estimate_s.checked_div(s.waiting.max(1)).unwrap_or(0);
                        let est = if s.waiting == 0 {
                            s.estimate_s
                        } else {
                            per * ahead
                        };
                        s.issued_since += 1;
                        (ahead, Some(est))
                    }
                    None => (seq - 1, None),
                };
                let number = format!("{letter}{}{seq:03}", self.settings.kiosk_digit);
                vec![
                    Output::Persist(self.counters.clone()),
                    Output::Issue(Issued {
                        number,
                        service,
                        day: today,
                        issued: now,
                        waiting_ahead,
                        estimate_s,
                    }),
                ]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{datetime, offset};

    fn book(stored: Option<Counters>) -> TicketBook {
        TicketBook::new(
            BookSettings {
                kiosk_digit: 2,
                services: vec![
                    "filing".into(),
                    "consultation".into(),
                    "payment".into(),
                    "mediation".into(),
                ],
                offset: offset!(+8),
                max_per_day: MAX_PER_DAY,
            },
            stored,
        )
    }

    fn take(b: &mut TicketBook, now: OffsetDateTime, service: &str) -> Vec<Output> {
        b.handle(
            now,
            Input::Take {
                service: service.into(),
            },
        )
    }

    fn number(out: &[Output]) -> String {
        out.iter()
            .find_map(|o| match o {
                Output::Issue(t) => Some(t.number.clone()),
                _ => None,
            })
            .expect("issued")
    }

    const NOW: OffsetDateTime = datetime!(2026-11-27 09:00 +8);

    #[test]
    fn numbers_carry_the_service_letter_the_kiosk_digit_and_a_daily_sequence() {
        let mut b = book(None);
        assert_eq!(number(&take(&mut b, NOW, "filing")), "A2001");
        assert_eq!(number(&take(&mut b, NOW, "filing")), "A2002");
        assert_eq!(number(&take(&mut b, NOW, "mediation")), "D2001");
    }

    #[test]
    fn the_counters_are_persisted_before_the_ticket_is_issued() {
        let mut b = book(None);
        let out = take(&mut b, NOW, "payment");
        assert!(matches!(&out[0], Output::Persist(c) if c.spent["payment"] == 1));
        assert!(matches!(&out[1], Output::Issue(t) if t.number == "C2001"));
    }

    #[test]
    fn a_book_restarted_from_its_stored_counters_never_repeats_a_number() {
        let mut b = book(None);
        let mut stored = None;
        for _ in 0..5 {
            for o in take(&mut b, NOW, "filing") {
                if let Output::Persist(c) = o {
                    stored = Some(c);
                }
            }
        }
        let mut again = book(stored);
        assert_eq!(number(&take(&mut again, NOW, "filing")), "A2006");
    }

    #[test]
    fn a_new_day_starts_every_service_at_one() {
        let mut b = book(None);
        take(&mut b, NOW, "filing");
        take(&mut b, NOW, "filing");
        // 23:59 and 00:01 in the court's offset, though both are the same UTC day.
        let late = datetime!(2026-11-27 23:59 +8);
        assert_eq!(number(&take(&mut b, late, "filing")), "A2003");
        let next = datetime!(2026-11-28 00:01 +8);
        let out = take(&mut b, next, "filing");
        assert_eq!(number(&out), "A2001");
        assert!(matches!(&out[1], Output::Issue(t) if t.day == "2026-11-28"));
    }

    #[test]
    fn an_unknown_service_or_a_used_up_day_is_refused_without_spending_a_number() {
        let mut b = book(None);
        assert_eq!(
            take(&mut b, NOW, "divorce"),
            [Output::Refuse(Refusal::UnknownService("divorce".into()))]
        );
        b.settings.max_per_day = 2;
        take(&mut b, NOW, "filing");
        take(&mut b, NOW, "filing");
        let out = take(&mut b, NOW, "filing");
        assert!(matches!(
            &out[0],
            Output::Refuse(Refusal::NumbersUsedUp { max: 2, .. })
        ));
        assert_eq!(b.spent("filing"), 2);
    }

    #[test]
    fn people_ahead_count_the_controllers_queue_and_what_was_issued_since() {
        let mut b = book(None);
        // Never saw the controller: only its own tickets are known.
        take(&mut b, NOW, "filing");
        let out = take(&mut b, NOW, "filing");
        assert!(
            matches!(&out[1], Output::Issue(t) if t.waiting_ahead == 1 && t.estimate_s.is_none())
        );
        b.handle(
            NOW,
            Input::QueueSeen {
                service: "filing".into(),
                waiting: 4,
                estimate_s: 400,
            },
        );
        let out = take(&mut b, NOW, "filing");
        assert!(
            matches!(&out[1], Output::Issue(t) if t.waiting_ahead == 4 && t.estimate_s == Some(400))
        );
        // The controller is unreachable now: the next one counts the one just issued.
        let out = take(&mut b, NOW, "filing");
        assert!(
            matches!(&out[1], Output::Issue(t) if t.waiting_ahead == 5 && t.estimate_s == Some(500))
        );
    }

    #[test]
    fn many_tickets_across_services_are_all_distinct() {
        let mut b = book(None);
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..800 {
            let s = ["filing", "consultation", "payment", "mediation"][i % 4];
            assert!(seen.insert(number(&take(&mut b, NOW, s))));
        }
        assert_eq!(seen.len(), 800);
    }
}
