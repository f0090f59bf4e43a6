//! Face detection for presence (feature `faces`): MTCNN's proposal network (PNet) over an
//! image pyramid of a seat's zone, then its output network (ONet) on the best candidates,
//! through ONNX Runtime loaded at run time (`ort` with `load-dynamic`). The models and the
//! runtime come from the fetch step (`models/manifest-patrol.json`, `cargo xtask setup`).
//!
//! Design: presence asks "is there a face in this zone", not "where exactly is every
//! face": the refinement network (RNet), box regression and landmark outputs of the full
//! MTCNN cascade are left out; ONet's face probability is the verdict.

use std::path::Path;

use ort::session::Session;
use ort::value::Tensor;

use crate::presence::Face;

/// Why the detector is not available or failed.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("loading ONNX Runtime from {path}: {message}")]
    Runtime { path: String, message: String },
    #[error("loading model {path}: {message}")]
    Model { path: String, message: String },
    #[error("inference: {0}")]
    Inference(String),
}

/// PNet cells at or above this probability are candidates.
const PNET_MIN: f32 = 0.6;
/// At most this many candidates go to ONet per zone.
const MAX_CANDIDATES: usize = 24;
/// Smallest face searched for, pixels of the zone.
const MIN_FACE: f64 = 20.0;
const SCALE_FACTOR: f64 = 0.709;

/// An RGB picture (8 bits per channel, row by row).
#[derive(Debug, Clone)]
pub struct Rgb<'a> {
    pub width: usize,
    pub height: usize,
    pub data: &'a [u8],
}

/// MTCNN through ONNX Runtime.
pub struct FaceDetector {
    pnet: Session,
    onet: Session,
}

fn ort_err(e: impl std::fmt::Display) -> DetectError {
    DetectError::Inference(e.to_string())
}

impl FaceDetector {
    /// Loads ONNX Runtime from `runtime` (`libonnxruntime.so.*`) and the models `pnet.onnx`
    /// and `onet.onnx` from `models`.
    pub fn load(runtime: &Path, models: &Path) -> Result<Self, DetectError> {
        let env = ort::init_from(runtime)
            .map_err(|e| DetectError::Runtime {
                path: runtime.display().to_string(),
                message: e.to_string(),
            })?
            .build()
            .map_err(|e| DetectError::Runtime {
                path: runtime.display().to_string(),
                message: e.to_string(),
            })?;
        let load = |name: &str| {
            let path = models.join(name);
            Session::builder(&env)
                .and_then(|mut b| b.commit_from_file(&path))
                .map_err(|e| DetectError::Model {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })
        };
        Ok(Self {
            pnet: load("pnet.onnx")?,
            onet: load("onet.onnx")?,
        })
    }

    /// Faces in `zone` (x, y, width, height as fractions) of `image`, as fractions of the
    /// whole image, each with ONet's face probability.
    pub fn faces_in(&mut self, image: &Rgb<'_>, zone: [f64; 4]) -> Result<Vec<Face>, DetectError> {
        let (zx, zy) = (
            (zone[0] * image.width as f64) as usize,
            (zone[1] * image.height as f64) as usize,
        );
        let zw = ((zone[2] * image.width as f64) as usize).min(image.width - zx);
        let zh = ((zone[3] * image.height as f64) as usize).min(image.height - zy);
        if zw < 12 || zh < 12 {
            return Ok(Vec::new());
        }
        // Candidates: (x, y, size) in image pixels, with PNet's probability.
        let mut candidates: Vec<(f64, f64, f64, f32)> = Vec::new();
        let mut scale = 12.0 / MIN_FACE;
        while (zw.min(zh) as f64) * scale >= 12.0 {
            let (w, h) = (
                ((zw as f64) * scale).ceil() as usize,
                ((zh as f64) * scale).ceil() as usize,
            );
            let input = crop_resize(image, zx, zy, zw, zh, w, h);
            // Keras-converted MTCNN takes (N, width, height, channels).
            let tensor = Tensor::from_array(([1usize, w, h, 3], transpose_wh(&input, w, h)))
                .map_err(ort_err)?;
            let outputs = self.pnet.run(ort::inputs![tensor]).map_err(ort_err)?;
            for (_, value) in outputs.iter() {
                let (shape, data) = value.try_extract_tensor::<f32>().map_err(ort_err)?;
                // The probability map is the output with 2 channels: (1, W', H', 2).
                if shape.len() != 4 || shape[3] != 2 {
                    continue;
                }
                let (mw, mh) = (shape[1] as usize, shape[2] as usize);
                for i in 0..mw {
                    for j in 0..mh {
                        let p = data[(i * mh + j) * 2 + 1];
                        if p >= PNET_MIN {
                            let x = zx as f64 + (2.0 * i as f64) / scale;
                            let y = zy as f64 + (2.0 * j as f64) / scale;
                            candidates.push((x, y, 12.0 / scale, p));
                        }
                    }
                }
            }
            scale *= SCALE_FACTOR;
        }
        candidates.sort_by(|a, b| b.3.total_cmp(&a.3));
        let mut kept: Vec<(f64, f64, f64, f32)> = Vec::new();
        for c in candidates {
            // Drop a candidate mostly inside one kept already (cheap non-maximum suppression).
            let overlaps = kept.iter().any(|k| iou(k, &c) > 0.5);
            if !overlaps {
                kept.push(c);
            }
            if kept.len() == MAX_CANDIDATES {
                break;
            }
        }
        if kept.is_empty() {
            return Ok(Vec::new());
        }
        let n = kept.len();
        let mut batch = Vec::with_capacity(n * 48 * 48 * 3);
        for (x, y, s, _) in &kept {
            let (x0, y0) = (x.max(0.0) as usize, y.max(0.0) as usize);
            let side = (*s as usize).max(2);
            let cw = side.min(image.width.saturating_sub(x0)).max(1);
            let ch = side.min(image.height.saturating_sub(y0)).max(1);
            let crop = crop_resize(image, x0, y0, cw, ch, 48, 48);
            batch.extend(transpose_wh(&crop, 48, 48));
        }
        let tensor = Tensor::from_array(([n, 48usize, 48, 3], batch)).map_err(ort_err)?;
        let outputs = self.onet.run(ort::inputs![tensor]).map_err(ort_err)?;
        let mut faces = Vec::new();
        for (_, value) in outputs.iter() {
            let (shape, data) = value.try_extract_tensor::<f32>().map_err(ort_err)?;
            if shape.len() != 2 || shape[1] != 2 {
                continue;
            }
            for (k, (x, y, s, _)) in kept.iter().enumerate() {
                let p = data[k * 2 + 1];
                faces.push(Face {
                    x: x / image.width as f64,
                    y: y / image.height as f64,
                    w: s / image.width as f64,
                    h: s / image.height as f64,
                    score: f64::from(p),
                });
            }
        }
        faces.sort_by(|a, b| b.score.total_cmp(&a.score));
        Ok(faces)
    }
}

fn iou(a: &(f64, f64, f64, f32), b: &(f64, f64, f64, f32)) -> f64 {
    let x1 = a.0.max(b.0);
    let y1 = a.1.max(b.1);
    let x2 = (a.0 + a.2).min(b.0 + b.2);
    let y2 = (a.1 + a.2).min(b.1 + b.2);
    let inter = (x2 - x1).max(0.0) * (y2 - y1).max(0.0);
    inter / (a.2 * a.2 + b.2 * b.2 - inter).max(1e-9)
}

/// Bilinear crop-and-resize to `w`x`h`, normalised to MTCNN's (v - 127.5) / 128, laid out
/// (y, x, channel).
fn crop_resize(
    image: &Rgb<'_>,
    x0: usize,
    y0: usize,
    cw: usize,
    ch: usize,
    w: usize,
    h: usize,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(w * h * 3);
    let px = |x: usize, y: usize, c: usize| -> f32 {
        let x = (x0 + x).min(image.width - 1);
        let y = (y0 + y).min(image.height - 1);
        f32::from(image.data[(y * image.width + x) * 3 + c])
    };
    for j in 0..h {
        let sy = ((j as f32 + 0.5) * ch as f32 / h as f32 - 0.5).max(0.0);
        let (y_0, fy) = (sy.floor() as usize, sy.fract());
        let y_1 = (y_0 + 1).min(ch - 1);
        for i in 0..w {
            let sx = ((i as f32 + 0.5) * cw as f32 / w as f32 - 0.5).max(0.0);
            let (x_0, fx) = (sx.floor() as usize, sx.fract());
            let x_1 = (x_0 + 1).min(cw - 1);
            for c in 0..3 {
                let v = px(x_0, y_0, c) * (1.0 - fx) * (1.0 - fy)
                    + px(x_1, y_0, c) * fx * (1.0 - fy)
                    + px(x_0, y_1, c) * (1.0 - fx) * fy
                    + px(x_1, y_1, c) * fx * fy;
                out.push((v - 127.5) * 0.0078125);
            }
        }
    }
    out
}

/// (y, x, c) to (x, y, c).
fn transpose_wh(input: &[f32], w: usize, h: usize) -> Vec<f32> {
    let mut out = vec![0f32; input.len()];
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                out[(x * h + y) * 3 + c] = input[(y * w + x) * 3 + c];
            }
        }
    }
    out
}
