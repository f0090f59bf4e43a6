//! Layout geometry: which rectangle of the output each tile of a layout covers.
//!
//! Pure: a layout and the output size give the tiles' rectangles, the focus tile first.
//! Integer edges are computed as `i * size / n`, so tiles meet exactly and cover the whole
//! output whatever its size.

use gavel_protocol::WallLayout;
use serde::Serialize;

/// A rectangle of the output, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

impl Rect {
    /// Whether the point lies inside.
    pub fn contains(&self, x: u32, y: u32) -> bool {
        x >= self.x && x < self.x + self.w && y >= self.y && y < self.y + self.h
    }
}

/// Cell `(col, row)` spanning `span` cells of an `n` x `n` grid over `width` x `height`.
fn cell(n: u32, col: u32, row: u32, span: u32, width: u32, height: u32) -> Rect {
    let x0 = col * width / n;
    let x1 = (col + span) * width / n;
    let y0 = row * height / n;
    let y1 = (row + span) * height / n;
    Rect {
        x: x0,
        y: y0,
        w: x1 - x0,
        h: y1 - y0,
    }
}

/// The tiles of `layout` over a `width` x `height` output, the focus tile first.
///
/// Grids run left to right, top to bottom. In `1+5` the focus tile covers the top-left two
/// thirds of each side; the five small tiles follow down the right column, then along the
/// bottom row from the left.
pub fn rects(layout: WallLayout, width: u32, height: u32) -> Vec<Rect> {
    match layout {
        WallLayout::Single => vec![cell(1, 0, 0, 1, width, height)],
        WallLayout::Grid2 | WallLayout::Grid3 => {
            let n = if layout == WallLayout::Grid2 { 2 } else { 3 };
            (0..n * n)
                .map(|i| cell(n, i % n, i / n, 1, width, height))
                .collect()
        }
        WallLayout::FocusPlus5 => {
            let mut out = vec![cell(3, 0, 0, 2, width, height)];
            for (col, row) in [(2, 0), (2, 1), (0, 2), (1, 2), (2, 2)] {
                out.push(cell(3, col, row, 1, width, height));
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn area(r: &[Rect]) -> u64 {
        r.iter().map(|r| u64::from(r.w) * u64::from(r.h)).sum()
    }

    fn overlap(a: &Rect, b: &Rect) -> bool {
        a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h
    }

    #[test]
    fn every_layout_covers_the_whole_output_without_overlap_at_odd_sizes() {
        for (w, h) in [(1920, 1080), (3840, 2160), (640, 360), (1001, 777)] {
            for layout in WallLayout::ALL {
                let r = rects(layout, w, h);
                assert_eq!(r.len(), layout.tiles(), "{layout}");
                assert_eq!(area(&r), u64::from(w) * u64::from(h), "{layout} {w}x{h}");
                for (i, a) in r.iter().enumerate() {
                    assert!(a.x + a.w <= w && a.y + a.h <= h, "{layout} {a:?}");
                    for b in &r[i + 1..] {
                        assert!(!overlap(a, b), "{layout}: {a:?} overlaps {b:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_2x2_wall_of_640x360_has_four_320x180_tiles_left_to_right_top_to_bottom() {
        let r = rects(WallLayout::Grid2, 640, 360);
        let at: Vec<(u32, u32, u32, u32)> = r.iter().map(|r| (r.x, r.y, r.w, r.h)).collect();
        assert_eq!(
            at,
            [
                (0, 0, 320, 180),
                (320, 0, 320, 180),
                (0, 180, 320, 180),
                (320, 180, 320, 180)
            ]
        );
    }

    #[test]
    fn the_focus_tile_of_1_plus_5_is_two_thirds_of_each_side_with_five_small_tiles_around_it() {
        let r = rects(WallLayout::FocusPlus5, 960, 540);
        assert_eq!((r[0].x, r[0].y, r[0].w, r[0].h), (0, 0, 640, 360));
        let small: Vec<(u32, u32)> = r[1..].iter().map(|r| (r.x, r.y)).collect();
        assert_eq!(
            small,
            [(640, 0), (640, 180), (0, 360), (320, 360), (640, 360)]
        );
        assert!(r[1..].iter().all(|t| (t.w, t.h) == (320, 180)));
    }

    #[test]
    fn a_single_tile_is_the_whole_output() {
        assert_eq!(
            rects(WallLayout::Single, 3840, 2160),
            [Rect {
                x: 0,
                y: 0,
                w: 3840,
                h: 2160
            }]
        );
    }
}
