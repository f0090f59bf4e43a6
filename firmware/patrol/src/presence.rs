//! Presence: who sits in each seat's zone, from the faces a detector found (the shell
//! runs the model; this core only judges). Findings: the judge's seat empty during the
//! hearing, a party absent at its start, someone leaving mid-hearing, and a hearing not
//! opened on time.

use gavel_profile::{PatrolThresholds, SeatZone};
use gavel_protocol::FindingKind;
use time::OffsetDateTime;

use crate::Change;
use crate::debounce::{Debounce, Edge};

/// A detected face: its box as fractions of the picture, and the detector's confidence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Face {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
    pub score: f64,
}

impl Face {
    /// Whether the face's centre lies in `zone`.
    pub fn in_zone(&self, zone: &SeatZone) -> bool {
        let (cx, cy) = (self.x + self.w / 2.0, self.y + self.h / 2.0);
        let [x, y, w, h] = zone.rect;
        cx >= x && cx <= x + w && cy >= y && cy <= y + h
    }
}

/// The hearing context presence needs.
#[derive(Debug, Clone, PartialEq)]
pub struct HearingContext {
    /// Scheduled start of the current or next hearing of the room.
    pub scheduled_start: Option<OffsetDateTime>,
    /// Whether the hearing has been opened (the room records it).
    pub opened: bool,
}

#[derive(Debug)]
struct Zone {
    zone: SeatZone,
    /// The seat has been occupied since the hearing was opened.
    seen: bool,
    absent: Debounce,
    left: Debounce,
}

/// Source named on a not-opened-on-time finding (it concerns the schedule, not a camera).
pub const SCHEDULE_SOURCE: &str = "schedule";

/// The presence analyzer of a room.
#[derive(Debug)]
pub struct PresenceAnalyzer {
    t: PatrolThresholds,
    zones: Vec<Zone>,
    context: Option<HearingContext>,
    late: Debounce,
}

impl PresenceAnalyzer {
    pub fn new(t: &PatrolThresholds, zones: &[SeatZone]) -> Self {
        Self {
            t: t.clone(),
            zones: zones
                .iter()
                .map(|z| Zone {
                    zone: z.clone(),
                    seen: false,
                    absent: Debounce::new(t.absent_onset_s, t.clear_s),
                    left: Debounce::new(t.absent_onset_s, t.clear_s),
                })
                .collect(),
            context: None,
            late: Debounce::new(t.absent_onset_s, t.clear_s),
        }
    }

    /// Sources that have zones.
    pub fn sources(&self) -> impl Iterator<Item = &str> {
        self.zones.iter().map(|z| z.zone.source.as_str())
    }

    /// The room's hearing context changed.
    pub fn context(&mut self, context: Option<HearingContext>) {
        let opened = context.as_ref().is_some_and(|c| c.opened);
        if !opened {
            for z in &mut self.zones {
                z.seen = false;
            }
        }
        self.context = context;
    }

    /// Faces found in a frame of `source` at `now`: (source, change) pairs.
    pub fn faces(
        &mut self,
        now: OffsetDateTime,
        source: &str,
        faces: &[Face],
    ) -> Vec<(String, Change)> {
        let opened = self.context.as_ref().is_some_and(|c| c.opened);
        let min = self.t.face_score_min;
        let mut out = Vec::new();
        for z in self.zones.iter_mut().filter(|z| z.zone.source == source) {
            let occupied = faces.iter().any(|f| f.score >= min && f.in_zone(&z.zone));
            let seat = z.zone.seat.clone();
            let mut emit = |kind: FindingKind, edge: Option<Edge>, detail: String| {
                if let Some(edge) = edge {
                    out.push((
                        source.to_owned(),
                        Change {
                            kind,
                            seat: Some(seat.clone()),
                            edge,
                            detail: match edge {
                                Edge::Started { .. } => detail,
                                Edge::Ended { .. } => "seat occupied again".into(),
                            },
                        },
                    ));
                }
            };
            if z.zone.required_throughout {
                let e = z.absent.update(now, opened && !occupied);
                emit(
                    FindingKind::JudgeAbsent,
                    e,
                    format!(
                        "no face in the {} seat's zone during the hearing",
                        z.zone.seat
                    ),
                );
                continue;
            }
            if opened && occupied {
                z.seen = true;
            }
            let e = z.absent.update(now, opened && !z.seen);
            emit(
                FindingKind::PartyAbsent,
                e,
                format!(
                    "the {} seat has been empty since the hearing opened",
                    z.zone.seat
                ),
            );
            let e = z.left.update(now, opened && z.seen && !occupied);
            emit(
                FindingKind::LeftMidHearing,
                e,
                format!("the {} seat was occupied, then left", z.zone.seat),
            );
        }
        out
    }

    /// Checks the schedule at `now`: a hearing past its start that is not opened.
    pub fn tick(&mut self, now: OffsetDateTime) -> Vec<(String, Change)> {
        let late = self
            .context
            .as_ref()
            .is_some_and(|c| !c.opened && c.scheduled_start.is_some_and(|s| now >= s));
        match self.late.update(now, late) {
            Some(edge) => vec![(
                SCHEDULE_SOURCE.to_owned(),
                Change {
                    kind: FindingKind::NotOpenedOnTime,
                    seat: None,
                    edge,
                    detail: match edge {
                        Edge::Started { .. } => format!(
                            "not opened {:.0} s after its scheduled start",
                            self.t.absent_onset_s
                        ),
                        Edge::Ended { .. } => "opened".into(),
                    },
                },
            )],
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-27 09:00 UTC);

    fn zones() -> Vec<SeatZone> {
        vec![
            SeatZone {
                seat: "judge".into(),
                source: "cam-judge".into(),
                rect: [0.25, 0.0, 0.5, 0.8],
                required_throughout: true,
            },
            SeatZone {
                seat: "plaintiff".into(),
                source: "cam-overview".into(),
                rect: [0.0, 0.3, 0.4, 0.7],
                required_throughout: false,
            },
        ]
    }

    fn face(x: f64, y: f64) -> Face {
        Face {
            x,
            y,
            w: 0.1,
            h: 0.15,
            score: 0.95,
        }
    }

    fn analyzer() -> PresenceAnalyzer {
        let t = PatrolThresholds {
            absent_onset_s: 10.0,
            clear_s: 2.0,
            ..PatrolThresholds::default()
        };
        let mut p = PresenceAnalyzer::new(&t, &zones());
        p.context(Some(HearingContext {
            scheduled_start: Some(T0),
            opened: true,
        }));
        p
    }

    fn kinds(out: &[(String, Change)]) -> Vec<(FindingKind, bool)> {
        out.iter()
            .map(|(_, c)| (c.kind, matches!(c.edge, Edge::Started { .. })))
            .collect()
    }

    #[test]
    fn an_empty_judge_seat_during_the_hearing_is_a_finding_after_the_onset() {
        let mut p = analyzer();
        let mut all = Vec::new();
        for s in 0..=10 {
            all.extend(p.faces(T0 + Duration::seconds(s), "cam-judge", &[face(0.8, 0.1)]));
        }
        assert_eq!(kinds(&all), [(FindingKind::JudgeAbsent, true)]);
        let back = p.faces(T0 + Duration::seconds(11), "cam-judge", &[face(0.45, 0.3)]);
        assert!(back.is_empty(), "clear hold");
        let back = p.faces(T0 + Duration::seconds(13), "cam-judge", &[face(0.45, 0.3)]);
        assert_eq!(kinds(&back), [(FindingKind::JudgeAbsent, false)]);
    }

    #[test]
    fn a_party_absent_at_the_start_then_arriving_then_leaving_raises_both_findings() {
        let mut p = analyzer();
        let mut all = Vec::new();
        for s in 0..=10 {
            all.extend(p.faces(T0 + Duration::seconds(s), "cam-overview", &[]));
        }
        assert_eq!(kinds(&all), [(FindingKind::PartyAbsent, true)]);
        all.clear();
        for s in 11..=14 {
            all.extend(p.faces(T0 + Duration::seconds(s), "cam-overview", &[face(0.1, 0.5)]));
        }
        assert_eq!(kinds(&all), [(FindingKind::PartyAbsent, false)]);
        all.clear();
        for s in 15..=25 {
            all.extend(p.faces(T0 + Duration::seconds(s), "cam-overview", &[]));
        }
        assert_eq!(kinds(&all), [(FindingKind::LeftMidHearing, true)]);
    }

    #[test]
    fn a_hearing_not_opened_after_its_start_is_late_and_a_present_judge_raises_nothing() {
        let mut p = analyzer();
        for s in 0..30 {
            assert!(
                p.faces(T0 + Duration::seconds(s), "cam-judge", &[face(0.45, 0.3)])
                    .is_empty()
            );
        }
        p.context(Some(HearingContext {
            scheduled_start: Some(T0 + Duration::seconds(40)),
            opened: false,
        }));
        let mut all = Vec::new();
        for s in 30..=51 {
            all.extend(p.tick(T0 + Duration::seconds(s)));
        }
        assert_eq!(kinds(&all), [(FindingKind::NotOpenedOnTime, true)]);
    }
}
