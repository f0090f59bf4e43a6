//! The wall's decision core (sans-I/O): which source shows in which tile, and the
//! supervision of every source (live, connecting, lost with backoff).
//!
//! The shell feeds it the controller's configurations, each source's frame count on a
//! tick and pipeline failures, with the time; it answers with what to do: connect or
//! disconnect a source's pipeline, show its frames or a slate, and where each source's
//! tile is. It never touches GStreamer or the clock, so every rule is unit-tested.
//!
//! Design: a source belongs to a room (`court/room`). Tiles follow the configuration's
//! source order with the focus room moved to the first (focus) tile; sources beyond the
//! layout's tile count stay connected but hidden, so a focus switch only moves tiles and
//! never waits for a camera to connect.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use gavel_protocol::{Wall, WallLayout};
use serde::Serialize;

use crate::layout::{Rect, rects};

/// A room on the wall: `court/room`.
pub type RoomKey = String;

/// The key of a configured source.
pub fn room_key(court: &str, room: &str) -> RoomKey {
    format!("{court}/{room}")
}

/// Supervision settings (documented defaults).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Output size in pixels.
    pub width: u32,
    pub height: u32,
    /// A live source without a new frame for this long is lost.
    pub stall_after: Duration,
    /// A connecting source without a first frame for this long is lost.
    pub connect_timeout: Duration,
    /// First retry delay after a loss; doubles per failed attempt up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            width: 1920,
            height: 1080,
            stall_after: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(10),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(10),
        }
    }
}

/// What the shell tells the core.
#[derive(Debug, Clone)]
pub enum Input {
    /// A configuration from the controller.
    Config(Box<Wall>),
    /// Frames a source's pipeline has delivered since it started (read on every tick).
    Progress { source: RoomKey, frames: u64 },
    /// A source's pipeline failed (error, end of stream).
    Failed { source: RoomKey, reason: String },
    /// Time passes.
    Tick,
}

/// Which slate a source's tile shows while it has no picture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Slate {
    /// Waiting for the first frame.
    Connecting,
    /// The stream is lost; `reason` says how.
    Lost,
}

/// What the core asks the shell to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Add a source's input to the compositor with its tile label.
    Add { source: RoomKey, label: String },
    /// Remove a source's input from the compositor (after `Disconnect`).
    Remove { source: RoomKey },
    /// Change a source's tile label (a case number changed); its stream stays.
    Relabel { source: RoomKey, label: String },
    /// Start the source's pipeline pulling `url`.
    Connect { source: RoomKey, url: String },
    /// Stop the source's pipeline.
    Disconnect { source: RoomKey },
    /// Show the source's frames in its tile.
    ShowLive { source: RoomKey },
    /// Show a slate (with the label) in the source's tile.
    ShowSlate { source: RoomKey, slate: Slate },
    /// Put the source's tile at `rect`, or hide it (`None`).
    Place { source: RoomKey, rect: Option<Rect> },
}

/// Where a source stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Connecting,
    Live,
    Lost,
}

#[derive(Debug, Clone)]
struct Source {
    url: String,
    label: String,
    health: Health,
    /// When the current state began (connect, last progress, loss).
    since: Instant,
    /// Frame count last seen.
    frames: u64,
    /// Failed attempts since the source was last live.
    attempts: u32,
    retry_at: Option<Instant>,
    last_error: Option<String>,
    rect: Option<Rect>,
}

/// One tile as the wall shows it (for the state file and logs).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TileView {
    pub source: RoomKey,
    pub label: String,
    /// Tile index in the layout (0 is the focus tile); `None`: hidden.
    pub tile: Option<usize>,
    pub rect: Option<Rect>,
    pub health: Health,
    pub last_error: Option<String>,
}

/// The wall as it stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WallView {
    pub version: u64,
    pub layout: Option<WallLayout>,
    pub focus: Option<RoomKey>,
    pub width: u32,
    pub height: u32,
    /// Tiles in tile order, hidden sources last.
    pub tiles: Vec<TileView>,
}

/// Which tile each source of `wall` takes: the focus room first, then the configured
/// order; sources past the layout's tile count get `None` (hidden).
pub fn assign(wall: &Wall) -> Vec<(RoomKey, Option<usize>)> {
    let mut order: Vec<RoomKey> = wall
        .sources
        .iter()
        .map(|s| room_key(&s.court, &s.room))
        .collect();
    if let Some(f) = &wall.focus {
        let key = room_key(&f.court, &f.room);
        if let Some(at) = order.iter().position(|k| *k == key) {
            let focused = order.remove(at);
            order.insert(0, focused);
        }
    }
    let shown = wall.layout.tiles();
    order
        .into_iter()
        .enumerate()
        .map(|(i, k)| (k, (i < shown).then_some(i)))
        .collect()
}

/// The wall's decision core.
#[derive(Debug)]
pub struct WallCore {
    settings: Settings,
    config: Option<Wall>,
    sources: BTreeMap<RoomKey, Source>,
}

impl WallCore {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            config: None,
            sources: BTreeMap::new(),
        }
    }

    /// The configuration shown, if any.
    pub fn config(&self) -> Option<&Wall> {
        self.config.as_ref()
    }

    /// Feeds one input at `now`.
    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Config(wall) => self.configure(now, *wall, &mut out),
            Input::Progress { source, frames } => {
                if let Some(s) = self.sources.get_mut(&source)
                    && frames > s.frames
                {
                    s.frames = frames;
                    match s.health {
                        Health::Live => s.since = now,
                        Health::Connecting => {
                            s.health = Health::Live;
                            s.since = now;
                            s.attempts = 0;
                            s.last_error = None;
                            out.push(Output::ShowLive { source });
                        }
                        // Frames counted by a pipeline being torn down: not a recovery.
                        Health::Lost => {}
                    }
                }
            }
            Input::Failed { source, reason } => self.lose(now, &source, reason, &mut out),
            Input::Tick => {
                let mut lost = Vec::new();
                for (key, s) in &mut self.sources {
                    match s.health {
                        Health::Live
                            if now.duration_since(s.since) >= self.settings.stall_after =>
                        {
                            lost.push((
                                key.clone(),
                                format!(
                                    "no frame for {} s",
                                    self.settings.stall_after.as_secs_f32()
                                ),
                            ));
                        }
                        Health::Connecting
                            if now.duration_since(s.since) >= self.settings.connect_timeout =>
                        {
                            lost.push((
                                key.clone(),
                                format!(
                                    "no frame within {} s of connecting",
                                    self.settings.connect_timeout.as_secs_f32()
                                ),
                            ));
                        }
                        Health::Lost if s.retry_at.is_some_and(|t| now >= t) => {
                            s.health = Health::Connecting;
                            s.since = now;
                            s.retry_at = None;
                            s.frames = 0;
                            out.push(Output::Connect {
                                source: key.clone(),
                                url: s.url.clone(),
                            });
                            out.push(Output::ShowSlate {
                                source: key.clone(),
                                slate: Slate::Connecting,
                            });
                        }
                        _ => {}
                    }
                }
                for (key, reason) in lost {
                    self.lose(now, &key, reason, &mut out);
                }
            }
        }
        out
    }

    fn lose(&mut self, now: Instant, key: &str, reason: String, out: &mut Vec<Output>) {
        let Some(s) = self.sources.get_mut(key) else {
            return;
        };
        if s.health == Health::Lost {
            return;
        }
        let delay = self
            .settings
            .backoff_min
            .saturating_mul(2u32.saturating_pow(s.attempts.min(16)))
            .min(self.settings.backoff_max);
        s.health = Health::Lost;
        s.since = now;
        s.attempts = s.attempts.saturating_add(1);
        s.retry_at = Some(now + delay);
        s.last_error = Some(reason);
        // Design: the slate goes up first, so the tile never freezes on the last frame
        // while the pipeline is torn down.
        out.push(Output::ShowSlate {
            source: key.to_owned(),
            slate: Slate::Lost,
        });
        out.push(Output::Disconnect {
            source: key.to_owned(),
        });
    }

    fn configure(&mut self, now: Instant, wall: Wall, out: &mut Vec<Output>) {
        if self
            .config
            .as_ref()
            .is_some_and(|c| wall.version <= c.version)
        {
            return;
        }
        let wanted: BTreeMap<RoomKey, (String, String)> = wall
            .sources
            .iter()
            .map(|s| {
                (
                    room_key(&s.court, &s.room),
                    (s.stream_url().to_owned(), s.label()),
                )
            })
            .collect();
        // Gone, or pulling another stream: removed (a new stream is added back below).
        let stale: Vec<RoomKey> = self
            .sources
            .iter()
            .filter(|(k, s)| wanted.get(*k).is_none_or(|(url, _)| *url != s.url))
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            self.sources.remove(&key);
            out.push(Output::Disconnect {
                source: key.clone(),
            });
            out.push(Output::Remove { source: key });
        }
        for (key, (url, label)) in wanted {
            match self.sources.get_mut(&key) {
                Some(s) if s.label != label => {
                    s.label = label.clone();
                    out.push(Output::Relabel { source: key, label });
                }
                Some(_) => {}
                None => {
                    self.sources.insert(
                        key.clone(),
                        Source {
                            url: url.clone(),
                            label: label.clone(),
                            health: Health::Connecting,
                            since: now,
                            frames: 0,
                            attempts: 0,
                            retry_at: None,
                            last_error: None,
                            rect: None,
                        },
                    );
                    out.push(Output::Add {
                        source: key.clone(),
                        label,
                    });
                    out.push(Output::ShowSlate {
                        source: key.clone(),
                        slate: Slate::Connecting,
                    });
                    out.push(Output::Connect { source: key, url });
                }
            }
        }
        let all = rects(wall.layout, self.settings.width, self.settings.height);
        for (key, tile) in assign(&wall) {
            let rect = tile.and_then(|t| all.get(t).copied());
            if let Some(s) = self.sources.get_mut(&key)
                && s.rect != rect
            {
                s.rect = rect;
                out.push(Output::Place { source: key, rect });
            }
        }
        self.config = Some(wall);
    }

    /// The wall as it stands: tiles in tile order.
    pub fn view(&self) -> WallView {
        let mut tiles: Vec<TileView> = match &self.config {
            Some(wall) => assign(wall)
                .into_iter()
                .filter_map(|(key, tile)| {
                    let s = self.sources.get(&key)?;
                    Some(TileView {
                        source: key,
                        label: s.label.clone(),
                        tile,
                        rect: s.rect,
                        health: s.health,
                        last_error: s.last_error.clone(),
                    })
                })
                .collect(),
            None => Vec::new(),
        };
        tiles.sort_by_key(|t| t.tile.unwrap_or(usize::MAX));
        WallView {
            version: self.config.as_ref().map_or(0, |c| c.version),
            layout: self.config.as_ref().map(|c| c.layout),
            focus: self
                .config
                .as_ref()
                .and_then(|c| c.focus.as_ref())
                .map(|f| room_key(&f.court, &f.room)),
            width: self.settings.width,
            height: self.settings.height,
            tiles,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gavel_protocol::{PROTOCOL_VERSION, WallFocus, WallSource};

    fn source(room: &str) -> WallSource {
        WallSource {
            court: "hz".into(),
            room: room.into(),
            case_number: None,
            url: format!("rtsp://cam/{room}/main"),
            sub_url: None,
        }
    }

    fn wall(version: u64, layout: WallLayout, rooms: &[&str], focus: Option<&str>) -> Wall {
        let ts = time::OffsetDateTime::UNIX_EPOCH;
        Wall {
            v: PROTOCOL_VERSION,
            ts,
            version,
            layout,
            sources: rooms.iter().map(|r| source(r)).collect(),
            focus: focus.map(|r| WallFocus {
                court: "hz".into(),
                room: r.into(),
                reason: "test".into(),
                alarm: None,
                at: ts,
            }),
        }
    }

    fn settings() -> Settings {
        Settings {
            width: 960,
            height: 540,
            ..Settings::default()
        }
    }

    fn places(out: &[Output]) -> Vec<(String, Option<(u32, u32)>)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Place { source, rect } => Some((source.clone(), rect.map(|r| (r.x, r.y)))),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_focus_room_takes_the_first_tile_and_the_others_keep_their_order() {
        let w = wall(1, WallLayout::Grid2, &["a", "b", "c", "d", "e"], Some("c"));
        let a = assign(&w);
        assert_eq!(
            a,
            [
                ("hz/c".to_owned(), Some(0)),
                ("hz/a".to_owned(), Some(1)),
                ("hz/b".to_owned(), Some(2)),
                ("hz/d".to_owned(), Some(3)),
                ("hz/e".to_owned(), None),
            ]
        );
    }

    #[test]
    fn a_first_configuration_adds_connects_and_places_every_source_with_a_connecting_slate() {
        let mut core = WallCore::new(settings());
        let now = Instant::now();
        let out = core.handle(
            now,
            Input::Config(Box::new(wall(1, WallLayout::Grid2, &["a", "b"], None))),
        );
        assert!(out.contains(&Output::Add {
            source: "hz/a".into(),
            label: "hz · a".into()
        }));
        assert!(out.contains(&Output::Connect {
            source: "hz/b".into(),
            url: "rtsp://cam/b/main".into()
        }));
        assert!(out.contains(&Output::ShowSlate {
            source: "hz/a".into(),
            slate: Slate::Connecting
        }));
        assert_eq!(
            places(&out),
            [
                ("hz/a".to_owned(), Some((0, 0))),
                ("hz/b".to_owned(), Some((480, 0)))
            ]
        );
    }

    #[test]
    fn a_focus_switch_only_moves_tiles_and_reconnects_nothing() {
        let mut core = WallCore::new(settings());
        let now = Instant::now();
        let rooms = ["a", "b", "c", "d", "e", "f", "g"];
        core.handle(
            now,
            Input::Config(Box::new(wall(1, WallLayout::FocusPlus5, &rooms, None))),
        );
        let out = core.handle(
            now,
            Input::Config(Box::new(wall(2, WallLayout::FocusPlus5, &rooms, Some("g")))),
        );
        assert!(
            out.iter().all(|o| matches!(o, Output::Place { .. })),
            "{out:?}"
        );
        let p = places(&out);
        // g (hidden before) takes the focus tile; f drops off the wall; the rest shift.
        assert!(p.contains(&("hz/g".to_owned(), Some((0, 0)))), "{p:?}");
        assert!(p.contains(&("hz/f".to_owned(), None)), "{p:?}");
        assert!(p.contains(&("hz/a".to_owned(), Some((640, 0)))), "{p:?}");
        assert_eq!(core.view().focus.as_deref(), Some("hz/g"));
        assert_eq!(core.view().tiles[0].source, "hz/g");
    }

    #[test]
    fn an_older_or_equal_version_is_ignored() {
        let mut core = WallCore::new(settings());
        let now = Instant::now();
        core.handle(
            now,
            Input::Config(Box::new(wall(5, WallLayout::Grid2, &["a"], None))),
        );
        let out = core.handle(
            now,
            Input::Config(Box::new(wall(5, WallLayout::Single, &["x"], None))),
        );
        assert!(out.is_empty());
        assert_eq!(core.view().layout, Some(WallLayout::Grid2));
    }

    #[test]
    fn removed_sources_are_disconnected_and_removed_and_a_changed_url_reconnects() {
        let mut core = WallCore::new(settings());
        let now = Instant::now();
        core.handle(
            now,
            Input::Config(Box::new(wall(1, WallLayout::Grid2, &["a", "b"], None))),
        );
        let mut w = wall(2, WallLayout::Grid2, &["a"], None);
        w.sources[0].sub_url = Some("rtsp://cam/a/sub".into());
        let out = core.handle(now, Input::Config(Box::new(w)));
        for key in ["hz/a", "hz/b"] {
            assert!(out.contains(&Output::Disconnect { source: key.into() }));
            assert!(out.contains(&Output::Remove { source: key.into() }));
        }
        assert!(out.contains(&Output::Connect {
            source: "hz/a".into(),
            url: "rtsp://cam/a/sub".into()
        }));
    }

    #[test]
    fn a_new_case_number_relabels_the_tile_without_reconnecting() {
        let mut core = WallCore::new(settings());
        let now = Instant::now();
        core.handle(
            now,
            Input::Config(Box::new(wall(1, WallLayout::Single, &["a"], None))),
        );
        let mut w = wall(2, WallLayout::Single, &["a"], None);
        w.sources[0].case_number = Some("(2026)1号".into());
        let out = core.handle(now, Input::Config(Box::new(w)));
        assert_eq!(
            out,
            [Output::Relabel {
                source: "hz/a".into(),
                label: "hz · a · (2026)1号".into()
            }]
        );
    }

    #[test]
    fn the_first_frames_turn_the_slate_into_live_video() {
        let mut core = WallCore::new(settings());
        let t0 = Instant::now();
        core.handle(
            t0,
            Input::Config(Box::new(wall(1, WallLayout::Single, &["a"], None))),
        );
        let out = core.handle(
            t0 + Duration::from_millis(300),
            Input::Progress {
                source: "hz/a".into(),
                frames: 3,
            },
        );
        assert_eq!(
            out,
            [Output::ShowLive {
                source: "hz/a".into()
            }]
        );
        assert_eq!(core.view().tiles[0].health, Health::Live);
    }

    #[test]
    fn a_live_source_without_frames_for_2_s_is_lost_and_retried_with_growing_backoff() {
        let mut core = WallCore::new(settings());
        let t0 = Instant::now();
        let key = "hz/a".to_owned();
        core.handle(
            t0,
            Input::Config(Box::new(wall(1, WallLayout::Single, &["a"], None))),
        );
        core.handle(
            t0,
            Input::Progress {
                source: key.clone(),
                frames: 1,
            },
        );
        assert!(
            core.handle(t0 + Duration::from_millis(1900), Input::Tick)
                .is_empty()
        );
        let out = core.handle(t0 + Duration::from_secs(2), Input::Tick);
        assert_eq!(
            out,
            [
                Output::ShowSlate {
                    source: key.clone(),
                    slate: Slate::Lost
                },
                Output::Disconnect {
                    source: key.clone()
                }
            ]
        );
        // First retry after 0.5 s.
        let lost_at = t0 + Duration::from_secs(2);
        assert!(
            core.handle(lost_at + Duration::from_millis(400), Input::Tick)
                .is_empty()
        );
        let out = core.handle(lost_at + Duration::from_millis(500), Input::Tick);
        assert!(out.contains(&Output::Connect {
            source: key.clone(),
            url: "rtsp://cam/a/main".into()
        }));
        // The retry fails at once: the next waits 1 s, then 2 s.
        let t1 = lost_at + Duration::from_millis(600);
        core.handle(
            t1,
            Input::Failed {
                source: key.clone(),
                reason: "connection refused".into(),
            },
        );
        assert!(
            core.handle(t1 + Duration::from_millis(900), Input::Tick)
                .is_empty()
        );
        assert!(
            !core
                .handle(t1 + Duration::from_millis(1000), Input::Tick)
                .is_empty()
        );
        let t2 = t1 + Duration::from_millis(1100);
        core.handle(
            t2,
            Input::Failed {
                source: key.clone(),
                reason: "connection refused".into(),
            },
        );
        assert!(
            core.handle(t2 + Duration::from_millis(1900), Input::Tick)
                .is_empty()
        );
        assert!(
            !core
                .handle(t2 + Duration::from_millis(2000), Input::Tick)
                .is_empty()
        );
        assert_eq!(
            core.view().tiles[0].last_error.as_deref(),
            Some("connection refused")
        );
    }

    #[test]
    fn a_lost_source_never_disturbs_the_other_tiles() {
        let mut core = WallCore::new(settings());
        let t0 = Instant::now();
        core.handle(
            t0,
            Input::Config(Box::new(wall(1, WallLayout::Grid2, &["a", "b"], None))),
        );
        let out = core.handle(
            t0,
            Input::Failed {
                source: "hz/a".into(),
                reason: "eos".into(),
            },
        );
        assert!(
            out.iter().all(|o| match o {
                Output::ShowSlate { source, .. } | Output::Disconnect { source } =>
                    source == "hz/a",
                _ => false,
            }),
            "{out:?}"
        );
    }

    #[test]
    fn recovery_resets_the_backoff() {
        let mut core = WallCore::new(settings());
        let t0 = Instant::now();
        let key = "hz/a".to_owned();
        core.handle(
            t0,
            Input::Config(Box::new(wall(1, WallLayout::Single, &["a"], None))),
        );
        for i in 0..4u64 {
            let t = t0 + Duration::from_secs(20 * i);
            core.handle(
                t,
                Input::Failed {
                    source: key.clone(),
                    reason: "x".into(),
                },
            );
            core.handle(t + Duration::from_secs(15), Input::Tick);
        }
        let t = t0 + Duration::from_secs(100);
        core.handle(
            t,
            Input::Progress {
                source: key.clone(),
                frames: 1,
            },
        );
        core.handle(
            t,
            Input::Failed {
                source: key.clone(),
                reason: "x".into(),
            },
        );
        assert!(
            !core
                .handle(t + Duration::from_millis(500), Input::Tick)
                .is_empty(),
            "after a recovery the first retry is 0.5 s again"
        );
    }
}
