//! Decoded low-resolution frames and the measurements every video analyzer reads.
//!
//! Design: one pass computes everything the analyzers need (grey-level histogram, the
//! Laplacian, a grid of block means and deviations), so six analyzers cost one walk over
//! the pixels per frame.

/// Columns of the block grid.
pub const GRID_W: usize = 16;
/// Rows of the block grid.
pub const GRID_H: usize = 9;

/// A decoded frame: 8-bit grey (luma), optionally with its RGB picture (presence needs
/// colour; the other analyzers read luma only).
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub width: usize,
    pub height: usize,
    /// `width * height` grey levels, row by row.
    pub luma: Vec<u8>,
    /// `width * height * 3` bytes of RGB, when decoded in colour.
    pub rgb: Option<Vec<u8>>,
}

impl Frame {
    /// A grey frame. `luma` must hold `width * height` bytes.
    pub fn grey(width: usize, height: usize, luma: Vec<u8>) -> Self {
        debug_assert_eq!(luma.len(), width * height);
        Self {
            width,
            height,
            luma,
            rgb: None,
        }
    }

    /// A colour frame from RGB bytes; luma is computed (BT.601).
    pub fn from_rgb(width: usize, height: usize, rgb: Vec<u8>) -> Self {
        let luma = rgb
            .chunks_exact(3)
            .map(|p| {
                ((77 * u32::from(p[0]) + 150 * u32::from(p[1]) + 29 * u32::from(p[2])) >> 8) as u8
            })
            .collect();
        Self {
            width,
            height,
            luma,
            rgb: Some(rgb),
        }
    }
}

/// The block grid of a frame: mean and standard deviation of each block.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    pub means: [f32; GRID_W * GRID_H],
    pub stds: [f32; GRID_W * GRID_H],
}

impl Grid {
    /// Pearson correlation of the block means with `other`'s (1: same layout, whatever the
    /// brightness and contrast; 0: unrelated). Two flat grids correlate 1.
    pub fn correlation(&self, other: &Grid) -> f64 {
        let n = self.means.len() as f64;
        let ma = self.means.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let mb = other.means.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
        for (a, b) in self.means.iter().zip(other.means.iter()) {
            let (da, db) = (f64::from(*a) - ma, f64::from(*b) - mb);
            cov += da * db;
            va += da * da;
            vb += db * db;
        }
        if va < 1e-6 && vb < 1e-6 {
            return 1.0;
        }
        if va < 1e-6 || vb < 1e-6 {
            return 0.0;
        }
        cov / (va * vb).sqrt()
    }

    /// Share of blocks whose mean moved by more than `levels` grey levels from `other`.
    pub fn moved_share(&self, other: &Grid, levels: f32) -> f64 {
        let moved = self
            .means
            .iter()
            .zip(other.means.iter())
            .filter(|(a, b)| (**a - **b).abs() > levels)
            .count();
        moved as f64 / self.means.len() as f64
    }
}

/// What the video analyzers read from one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    /// Mean grey level.
    pub mean: f64,
    /// Standard deviation of grey levels after trimming the 5% of pixels farthest from
    /// the median (a logo on a "no signal" screen does not make it textured).
    pub trimmed_std: f64,
    /// Variance of the Laplacian over the variance of the picture: contrast-independent
    /// sharpness (a dark picture is not a blurred one).
    pub sharpness: f64,
    /// Share of the picture covered by one uniform patch (blocks without texture whose
    /// means lie within a narrow band).
    pub patch_share: f64,
    pub grid: Grid,
}

/// Block standard deviation below which a block has no texture (sensor noise only).
const UNIFORM_BLOCK_STD: f32 = 5.0;
/// Width of the grey-level band that one uniform patch spans.
const PATCH_BAND: f32 = 24.0;

/// Measures a frame.
pub fn measure(frame: &Frame) -> Stats {
    let (w, h) = (frame.width, frame.height);
    let px = &frame.luma;
    let n = (w * h).max(1) as f64;
    let mut hist = [0u64; 256];
    let mut sum = 0u64;
    let mut sum2 = 0u64;
    for &v in px {
        hist[v as usize] += 1;
        sum += u64::from(v);
        sum2 += u64::from(v) * u64::from(v);
    }
    let mean = sum as f64 / n;
    let var = (sum2 as f64 / n - mean * mean).max(0.0);

    // Laplacian variance over the interior.
    let (mut ls, mut ls2, mut ln) = (0i64, 0i64, 0i64);
    for y in 1..h.saturating_sub(1) {
        let row = y * w;
        for x in 1..w.saturating_sub(1) {
            let c = i64::from(px[row + x]);
            let l = 4 * c
                - i64::from(px[row + x - 1])
                - i64::from(px[row + x + 1])
                - i64::from(px[row - w + x])
                - i64::from(px[row + w + x]);
            ls += l;
            ls2 += l * l;
            ln += 1;
        }
    }
    let lap_var = if ln > 0 {
        let m = ls as f64 / ln as f64;
        (ls2 as f64 / ln as f64 - m * m).max(0.0)
    } else {
        0.0
    };
    let sharpness = lap_var / var.max(1.0);

    // Grid.
    let mut means = [0f32; GRID_W * GRID_H];
    let mut stds = [0f32; GRID_W * GRID_H];
    for gy in 0..GRID_H {
        let (y0, y1) = (gy * h / GRID_H, (gy + 1) * h / GRID_H);
        for gx in 0..GRID_W {
            let (x0, x1) = (gx * w / GRID_W, (gx + 1) * w / GRID_W);
            let (mut s, mut s2, mut c) = (0u64, 0u64, 0u64);
            for y in y0..y1 {
                for &v in &px[y * w + x0..y * w + x1] {
                    s += u64::from(v);
                    s2 += u64::from(v) * u64::from(v);
                }
                c += (x1 - x0) as u64;
            }
            let c = c.max(1) as f64;
            let m = s as f64 / c;
            let i = gy * GRID_W + gx;
            means[i] = m as f32;
            stds[i] = (s2 as f64 / c - m * m).max(0.0).sqrt() as f32;
        }
    }
    let grid = Grid { means, stds };

    Stats {
        mean,
        trimmed_std: trimmed_std(&hist, w * h),
        sharpness,
        patch_share: patch_share(&grid),
        grid,
    }
}

/// Standard deviation of the 95% of pixels nearest the median.
fn trimmed_std(hist: &[u64; 256], count: usize) -> f64 {
    if count == 0 {
        return 0.0;
    }
    let half = count as u64 / 2;
    let mut acc = 0;
    let mut median = 0usize;
    for (v, &c) in hist.iter().enumerate() {
        acc += c;
        if acc > half {
            median = v;
            break;
        }
    }
    // Grow a band around the median until it holds 95% of the pixels.
    let keep = (count as f64 * 0.95).ceil() as u64;
    let (mut lo, mut hi) = (median, median);
    let mut inside = hist[median];
    while inside < keep && (lo > 0 || hi < 255) {
        let left = if lo > 0 { hist[lo - 1] } else { 0 };
        let right = if hi < 255 { hist[hi + 1] } else { 0 };
        if (left >= right && lo > 0) || hi == 255 {
            lo -= 1;
            inside += left;
        } else {
            hi += 1;
            inside += right;
        }
    }
    let (mut s, mut s2, mut c) = (0f64, 0f64, 0f64);
    for (v, &n) in hist.iter().enumerate().take(hi + 1).skip(lo) {
        let (v, n) = (v as f64, n as f64);
        s += v * n;
        s2 += v * v * n;
        c += n;
    }
    if c == 0.0 {
        return 0.0;
    }
    let m = s / c;
    (s2 / c - m * m).max(0.0).sqrt()
}

/// Share of blocks in the largest uniform patch: untextured blocks whose means fall in one
/// band of [`PATCH_BAND`] grey levels.
fn patch_share(grid: &Grid) -> f64 {
    let mut uniform: Vec<f32> = grid
        .means
        .iter()
        .zip(grid.stds.iter())
        .filter(|(_, s)| **s < UNIFORM_BLOCK_STD)
        .map(|(m, _)| *m)
        .collect();
    if uniform.is_empty() {
        return 0.0;
    }
    uniform.sort_by(f32::total_cmp);
    let mut best = 0;
    let mut start = 0;
    for end in 0..uniform.len() {
        while uniform[end] - uniform[start] > PATCH_BAND {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best as f64 / grid.means.len() as f64
}

/// Mean absolute difference between two frames of the same size (every 4th pixel).
pub fn mean_abs_diff(a: &Frame, b: &Frame) -> f64 {
    if a.luma.len() != b.luma.len() || a.luma.is_empty() {
        return f64::INFINITY;
    }
    let (mut s, mut c) = (0u64, 0u64);
    for (x, y) in a.luma.iter().step_by(4).zip(b.luma.iter().step_by(4)) {
        s += u64::from(x.abs_diff(*y));
        c += 1;
    }
    s as f64 / c as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(v: u8) -> Frame {
        Frame::grey(64, 36, vec![v; 64 * 36])
    }

    #[test]
    fn a_flat_frame_has_no_texture_and_is_one_patch() {
        let s = measure(&flat(16));
        assert_eq!(s.trimmed_std, 0.0);
        assert_eq!(s.patch_share, 1.0);
        assert!((s.mean - 16.0).abs() < 1e-9);
    }

    #[test]
    fn a_small_logo_on_a_flat_screen_is_trimmed_away() {
        let mut f = flat(40);
        for y in 10..13 {
            for x in 20..30 {
                f.luma[y * 64 + x] = 250;
            }
        }
        let s = measure(&f);
        assert!(s.trimmed_std < 1.0, "{}", s.trimmed_std);
    }

    #[test]
    fn a_checkerboard_is_sharp_and_correlates_with_itself() {
        let luma = (0..64 * 36)
            .map(|i| {
                if (i % 64 / 2 + i / 64 / 2) % 2 == 0 {
                    40
                } else {
                    200
                }
            })
            .collect();
        let f = Frame::grey(64, 36, luma);
        let s = measure(&f);
        assert!(s.sharpness > 1.0, "{}", s.sharpness);
        assert!((s.grid.correlation(&s.grid) - 1.0).abs() < 1e-9);
        assert_eq!(mean_abs_diff(&f, &f), 0.0);
    }
}
