//! The command-centre video wall's configuration, pushed retained by the controller on the
//! wall device's `wall` channel.
//!
//! Design: the whole configuration travels in one retained message (layout, the sources in
//! tile order, the focus), so a wall that (re)connects gets everything at once and a
//! controller restart loses nothing the wall shows. `version` only grows; a wall ignores a
//! configuration that is not newer than the one it shows.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::message::{Invalid, MAX_TEXT, Message};
use crate::topic::Channel;

/// Most sources one wall configuration carries (a 3x3 wall shows 9; the rest wait for a
/// focus).
pub const MAX_WALL_TILES: usize = 16;

/// How the wall's output is divided into tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum WallLayout {
    /// One tile: the whole output.
    #[serde(rename = "1")]
    Single,
    /// Four equal tiles.
    #[serde(rename = "2x2")]
    Grid2,
    /// Nine equal tiles.
    #[serde(rename = "3x3")]
    Grid3,
    /// One big focus tile (two thirds of each side) and five small ones around it.
    #[serde(rename = "1+5")]
    FocusPlus5,
}

impl WallLayout {
    /// Every layout, in the order operators know them.
    pub const ALL: [WallLayout; 4] = [
        WallLayout::Single,
        WallLayout::Grid2,
        WallLayout::Grid3,
        WallLayout::FocusPlus5,
    ];

    /// The layout's name on the wire and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            WallLayout::Single => "1",
            WallLayout::Grid2 => "2x2",
            WallLayout::Grid3 => "3x3",
            WallLayout::FocusPlus5 => "1+5",
        }
    }

    /// How many tiles the layout shows.
    pub fn tiles(self) -> usize {
        match self {
            WallLayout::Single => 1,
            WallLayout::Grid2 => 4,
            WallLayout::Grid3 => 9,
            WallLayout::FocusPlus5 => 6,
        }
    }

    /// Parses a layout name (`1`, `2x2`, `3x3`, `1+5`).
    pub fn parse(s: &str) -> Option<WallLayout> {
        WallLayout::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

impl std::fmt::Display for WallLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One source of the wall: a room's camera stream and the label its tile shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WallSource {
    pub court: String,
    pub room: String,
    /// Case number of the hearing in the room, shown in the label when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_number: Option<String>,
    /// The camera's main stream (`rtsp://` or `rtsps://`; `test:PATTERN` is a simulated
    /// source for demos).
    pub url: String,
    /// The camera's sub-stream; the wall uses it instead of `url` where given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_url: Option<String>,
}

impl WallSource {
    /// The stream the wall pulls: the sub-stream where there is one.
    pub fn stream_url(&self) -> &str {
        self.sub_url.as_deref().unwrap_or(&self.url)
    }

    /// The tile's label: court, room and case.
    pub fn label(&self) -> String {
        match &self.case_number {
            Some(case) => format!("{} · {} · {}", self.court, self.room, case),
            None => format!("{} · {}", self.court, self.room),
        }
    }
}

/// Which room the focus tile (the first tile) shows, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WallFocus {
    pub court: String,
    pub room: String,
    /// Why: the alarm's kind and message, or `operator`.
    pub reason: String,
    /// The alarm that moved the room into focus, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarm: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// A wall's configuration (channel `wall`, retained, controller -> wall device).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wall {
    pub v: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub ts: OffsetDateTime,
    /// Grows with every change of the wall's configuration.
    pub version: u64,
    pub layout: WallLayout,
    /// The sources in tile order; the layout shows the first ones (the focus room first).
    pub sources: Vec<WallSource>,
    /// The room in the focus tile; absent: tiles in the order of `sources`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub focus: Option<WallFocus>,
}

fn check_url(field: &str, url: &str) -> Result<(), Invalid> {
    let ok = ((url.starts_with("rtsp://") || url.starts_with("rtsps://"))
        && url.len() > "rtsps://".len())
        || url.strip_prefix("test:").is_some_and(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    if !ok || url.len() > MAX_TEXT || url.chars().any(char::is_whitespace) {
        return Err(Invalid::new(
            field,
            "not an rtsp://, rtsps:// or test:PATTERN address (no spaces, at most 256 bytes)",
        ));
    }
    Ok(())
}

fn check_text(field: &str, value: &str) -> Result<(), Invalid> {
    if value.is_empty() || value.len() > MAX_TEXT {
        return Err(Invalid::new(field, "empty or longer than 256 bytes"));
    }
    Ok(())
}

impl Message for Wall {
    const CHANNEL: Channel = Channel::Wall;
    fn validate(&self) -> Result<(), Invalid> {
        if self.sources.len() > MAX_WALL_TILES {
            return Err(Invalid::new(
                "sources",
                format!("{} sources; at most {MAX_WALL_TILES}", self.sources.len()),
            ));
        }
        for (i, s) in self.sources.iter().enumerate() {
            check_text(&format!("sources[{i}].court"), &s.court)?;
            check_text(&format!("sources[{i}].room"), &s.room)?;
            if let Some(case) = &s.case_number {
                check_text(&format!("sources[{i}].case_number"), case)?;
            }
            check_url(&format!("sources[{i}].url"), &s.url)?;
            if let Some(sub) = &s.sub_url {
                check_url(&format!("sources[{i}].sub_url"), sub)?;
            }
            if self.sources[..i]
                .iter()
                .any(|o| o.court == s.court && o.room == s.room)
            {
                return Err(Invalid::new(
                    format!("sources[{i}].room"),
                    "the room is on the wall twice",
                ));
            }
        }
        if let Some(f) = &self.focus {
            check_text("focus.court", &f.court)?;
            check_text("focus.room", &f.room)?;
            if f.reason.len() > MAX_TEXT {
                return Err(Invalid::new("focus.reason", "longer than 256 bytes"));
            }
            if !self
                .sources
                .iter()
                .any(|s| s.court == f.court && s.room == f.room)
            {
                return Err(Invalid::new("focus.room", "not one of the wall's sources"));
            }
        }
        Ok(())
    }
}
