//! JPEG snapshots of frames: a finding's picture and the inspectors' console tiles.

use gavel_protocol::Snapshot;
use jpeg_encoder::{ColorType, Encoder};

use crate::frame::Frame;

/// Why a snapshot could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("frame of {0}x{1} is too large for a JPEG")]
    TooLarge(usize, usize),
    #[error("JPEG encoding: {0}")]
    Encode(#[from] jpeg_encoder::EncodingError),
}

/// Encodes a frame as JPEG (colour when it has RGB, else grey) at `quality` (1-100).
pub fn jpeg(frame: &Frame, quality: u8) -> Result<Vec<u8>, SnapshotError> {
    let (w, h) = (
        u16::try_from(frame.width)
            .map_err(|_| SnapshotError::TooLarge(frame.width, frame.height))?,
        u16::try_from(frame.height)
            .map_err(|_| SnapshotError::TooLarge(frame.width, frame.height))?,
    );
    let mut out = Vec::new();
    let encoder = Encoder::new(&mut out, quality.clamp(1, 100));
    match &frame.rgb {
        Some(rgb) => encoder.encode(rgb, w, h, ColorType::Rgb)?,
        None => encoder.encode(&frame.luma, w, h, ColorType::Luma)?,
    }
    Ok(out)
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An inline snapshot of `frame` that fits a finding event: quality is lowered until the
/// base64 fits [`gavel_protocol::finding::MAX_SNAPSHOT_B64`].
pub fn inline(frame: &Frame) -> Result<Snapshot, SnapshotError> {
    let mut quality = 70;
    loop {
        let b64 = base64(&jpeg(frame, quality)?);
        if b64.len() <= gavel_protocol::finding::MAX_SNAPSHOT_B64 || quality <= 10 {
            return Ok(Snapshot {
                jpeg_base64: Some(b64),
                reference: None,
                width: frame.width as u32,
                height: frame.height as u32,
            });
        }
        quality -= 20;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_with_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn a_synthetic_frame_becomes_a_small_inline_jpeg() {
        let mut scene = crate::synth::Scene::room(3, crate::synth::WIDTH, crate::synth::HEIGHT);
        let s = inline(&scene.render(1.0)).expect("jpeg");
        let b64 = s.jpeg_base64.expect("inline");
        assert!(b64.starts_with("/9j/"), "a JPEG");
        assert!(b64.len() <= gavel_protocol::finding::MAX_SNAPSHOT_B64);
        assert_eq!((s.width, s.height), (320, 180));
    }
}
