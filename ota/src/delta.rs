//! Delta payloads: a block-hash (rsync-style) delta against a known base image, with the
//! instruction stream compressed by zstd.
//!
//! The encoder indexes the base in fixed blocks by a rolling weak checksum, slides a window
//! over the target byte by byte, and on a checksum hit confirms the match by comparing the
//! bytes (the base is at hand), then extends it as far as it goes. Unmatched bytes become
//! literals. The decoder streams: it needs the base and writes the target sequentially, so
//! it can write straight into a slot.
//!
//! Stream (before zstd): `"GDLT"`, u32 LE block size, u64 LE target length, then ops:
//! `0x01` copy (u64 base offset, u32 length) or `0x02` literal (u32 length, bytes), `0x00`
//! end.

use std::io::{self, Read, Write};

/// Why a delta could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    /// Reading the delta or writing the output failed.
    #[error("delta I/O: {0}")]
    Io(#[from] io::Error),
    /// The delta is malformed (bad magic, bad op, copy outside the base, wrong length).
    #[error("corrupt delta: {0}")]
    Corrupt(String),
}

/// Size figures of one encoded delta.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeltaStats {
    /// Base image bytes.
    pub base_size: u64,
    /// Target image bytes.
    pub target_size: u64,
    /// Encoded (compressed) delta bytes.
    pub delta_size: u64,
    /// Target bytes copied from the base.
    pub copied: u64,
    /// Target bytes carried as literals (before compression).
    pub literal: u64,
}

impl DeltaStats {
    /// Delta size as a fraction of the target image.
    pub fn ratio(&self) -> f64 {
        if self.target_size == 0 {
            return 0.0;
        }
        self.delta_size as f64 / self.target_size as f64
    }
}

/// Block size used when none is given.
pub const DEFAULT_BLOCK: usize = 32;
/// zstd level used for the instruction stream.
pub const ZSTD_LEVEL: i32 = 19;

const MAGIC: &[u8; 4] = b"GDLT";
const OP_END: u8 = 0;
const OP_COPY: u8 = 1;
const OP_LITERAL: u8 = 2;
const NO_BLOCK: u32 = u32::MAX;

/// rsync's weak checksum over a window: `a` = sum of bytes, `b` = weighted sum.
#[derive(Clone, Copy)]
struct Rolling {
    a: u32,
    b: u32,
    n: u32,
}

impl Rolling {
    fn new(window: &[u8]) -> Self {
        let n = window.len() as u32;
        let (mut a, mut b) = (0u32, 0u32);
        for (i, &x) in window.iter().enumerate() {
            a = a.wrapping_add(x as u32);
            b = b.wrapping_add((n - i as u32).wrapping_mul(x as u32));
        }
        Self { a, b, n }
    }
    fn roll(&mut self, out: u8, inp: u8) {
        self.a = self.a.wrapping_sub(out as u32).wrapping_add(inp as u32);
        self.b = self
            .b
            .wrapping_sub(self.n.wrapping_mul(out as u32))
            .wrapping_add(self.a);
    }
    fn digest(&self) -> u32 {
        (self.b << 16) ^ (self.a & 0xffff) ^ (self.b >> 16).wrapping_mul(0x9e37_79b9)
    }
}

/// Encodes `target` as a delta against `base`.
pub fn encode(base: &[u8], target: &[u8], block: usize) -> io::Result<(Vec<u8>, DeltaStats)> {
    let block = block.max(8);
    let mut ops = Vec::with_capacity(target.len() / 16 + 64);
    ops.extend_from_slice(MAGIC);
    ops.extend_from_slice(&(block as u32).to_le_bytes());
    ops.extend_from_slice(&(target.len() as u64).to_le_bytes());

    // Index: bucket -> first block, chained through `next`.
    let nblocks = base.len() / block;
    let bits = (usize::BITS - nblocks.max(1).leading_zeros()).clamp(10, 24);
    let mask = (1u32 << bits) - 1;
    let mut head = vec![NO_BLOCK; 1 << bits];
    let mut next = vec![NO_BLOCK; nblocks];
    let mut weak = vec![0u32; nblocks];
    for i in (0..nblocks).rev() {
        let d = Rolling::new(&base[i * block..(i + 1) * block]).digest();
        weak[i] = d;
        let slot = &mut head[(d & mask) as usize];
        next[i] = *slot;
        *slot = i as u32;
    }

    let (mut copied, mut literal) = (0u64, 0u64);
    let mut lit_start = 0usize;
    let mut i = 0usize;
    let mut roll = (target.len() >= block).then(|| Rolling::new(&target[..block]));
    let flush_literal = |ops: &mut Vec<u8>, from: usize, to: usize| {
        let mut s = from;
        while s < to {
            let e = (s + u32::MAX as usize).min(to);
            ops.push(OP_LITERAL);
            ops.extend_from_slice(&((e - s) as u32).to_le_bytes());
            ops.extend_from_slice(&target[s..e]);
            s = e;
        }
    };
    while let Some(r) = roll.as_mut() {
        let d = r.digest();
        let mut found = None;
        let mut cand = head[(d & mask) as usize];
        let mut tries = 0;
        while cand != NO_BLOCK && tries < 16 {
            let c = cand as usize;
            if weak[c] == d && base[c * block..(c + 1) * block] == target[i..i + block] {
                found = Some(c * block);
                break;
            }
            cand = next[c];
            tries += 1;
        }
        if let Some(off) = found {
            let mut len = block;
            while i + len < target.len()
                && off + len < base.len()
                && target[i + len] == base[off + len]
                && len < u32::MAX as usize
            {
                len += 1;
            }
            flush_literal(&mut ops, lit_start, i);
            literal += (i - lit_start) as u64;
            ops.push(OP_COPY);
            ops.extend_from_slice(&(off as u64).to_le_bytes());
            ops.extend_from_slice(&(len as u32).to_le_bytes());
            copied += len as u64;
            i += len;
            lit_start = i;
            roll = (i + block <= target.len()).then(|| Rolling::new(&target[i..i + block]));
        } else if i + block < target.len() {
            r.roll(target[i], target[i + block]);
            i += 1;
        } else {
            break;
        }
    }
    flush_literal(&mut ops, lit_start, target.len());
    literal += (target.len() - lit_start) as u64;
    ops.push(OP_END);
    let compressed = zstd::encode_all(&ops[..], ZSTD_LEVEL)?;
    let stats = DeltaStats {
        base_size: base.len() as u64,
        target_size: target.len() as u64,
        delta_size: compressed.len() as u64,
        copied,
        literal,
    };
    Ok((compressed, stats))
}

fn corrupt(what: impl Into<String>) -> DeltaError {
    DeltaError::Corrupt(what.into())
}

fn read_arr<const N: usize>(r: &mut dyn Read, what: &str) -> Result<[u8; N], DeltaError> {
    let mut b = [0u8; N];
    r.read_exact(&mut b).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => corrupt(format!("ends inside {what}")),
        _ => DeltaError::Io(e),
    })?;
    Ok(b)
}

/// Applies a delta to `base`, streaming the target into `out`. Returns the bytes written.
/// Checks every copy against the base and the total against the declared length.
pub fn apply(base: &[u8], delta: &mut dyn Read, out: &mut dyn Write) -> Result<u64, DeltaError> {
    let mut z = zstd::stream::read::Decoder::new(delta).map_err(DeltaError::Io)?;
    let r: &mut dyn Read = &mut z;
    let wrap = |e: DeltaError| match e {
        // zstd reports a damaged frame as an I/O error of kind Other.
        DeltaError::Io(io) if io.kind() != io::ErrorKind::BrokenPipe => {
            corrupt(format!("compressed stream: {io}"))
        }
        other => other,
    };
    let magic = read_arr::<4>(r, "header").map_err(wrap)?;
    if &magic != MAGIC {
        return Err(corrupt("bad magic"));
    }
    let _block = u32::from_le_bytes(read_arr::<4>(r, "header").map_err(wrap)?);
    let target_len = u64::from_le_bytes(read_arr::<8>(r, "header").map_err(wrap)?);
    let mut written = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let [op] = read_arr::<1>(r, "op").map_err(wrap)?;
        match op {
            OP_END => break,
            OP_COPY => {
                let off = u64::from_le_bytes(read_arr::<8>(r, "copy").map_err(wrap)?);
                let len = u32::from_le_bytes(read_arr::<4>(r, "copy").map_err(wrap)?) as u64;
                let end = off
                    .checked_add(len)
                    .filter(|&e| e <= base.len() as u64)
                    .ok_or_else(|| {
                        corrupt(format!(
                            "copy of {len} bytes at {off} is outside the {}-byte base",
                            base.len()
                        ))
                    })?;
                out.write_all(&base[off as usize..end as usize])?;
                written += len;
            }
            OP_LITERAL => {
                let mut left = u32::from_le_bytes(read_arr::<4>(r, "literal").map_err(wrap)?);
                while left > 0 {
                    let n = (left as usize).min(buf.len());
                    r.read_exact(&mut buf[..n])
                        .map_err(|e| wrap(DeltaError::Io(e)))
                        .map_err(|e| match e {
                            DeltaError::Io(_) => corrupt("ends inside a literal"),
                            other => other,
                        })?;
                    out.write_all(&buf[..n])?;
                    left -= n as u32;
                    written += n as u64;
                }
            }
            other => return Err(corrupt(format!("unknown op {other:#04x}"))),
        }
        if written > target_len {
            return Err(corrupt(format!(
                "produces more than the declared {target_len} bytes"
            )));
        }
    }
    if written != target_len {
        return Err(corrupt(format!(
            "produced {written} bytes, declared {target_len}"
        )));
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..n).map(|_| rng.u8(..)).collect()
    }

    #[test]
    fn delta_reproduces_the_target_after_insertions_deletions_and_edits() {
        let base = noise(200_000, 1);
        let mut target = base.clone();
        target.splice(1000..1000, noise(777, 2));
        target.drain(50_000..50_500);
        target[120_000..120_100].copy_from_slice(&noise(100, 3));
        target.extend_from_slice(&noise(3000, 4));
        let (d, stats) = encode(&base, &target, DEFAULT_BLOCK).unwrap();
        let mut out = Vec::new();
        assert_eq!(
            apply(&base, &mut &d[..], &mut out).unwrap(),
            target.len() as u64
        );
        assert_eq!(out, target);
        assert!(stats.ratio() < 0.05, "ratio {}", stats.ratio());
        assert_eq!(stats.copied + stats.literal, target.len() as u64);
    }

    #[test]
    fn delta_handles_empty_and_tiny_inputs() {
        for (b, t) in [
            (vec![], vec![]),
            (vec![1u8; 3], vec![2u8; 5]),
            (vec![], noise(100, 5)),
        ] {
            let (d, _) = encode(&b, &t, DEFAULT_BLOCK).unwrap();
            let mut out = Vec::new();
            apply(&b, &mut &d[..], &mut out).unwrap();
            assert_eq!(out, t);
        }
    }

    #[test]
    fn corrupt_delta_is_refused_not_misapplied() {
        let base = noise(50_000, 6);
        let mut target = base.clone();
        target[100..200].fill(7);
        let (d, _) = encode(&base, &target, DEFAULT_BLOCK).unwrap();
        // A delta applied to the wrong base is refused when its copies do not fit.
        let mut out = Vec::new();
        assert!(matches!(
            apply(&base[..1000], &mut &d[..], &mut out),
            Err(DeltaError::Corrupt(_))
        ));
        // Flipped bytes in the compressed stream.
        for pos in [0, d.len() / 2, d.len() - 1] {
            let mut bad = d.clone();
            bad[pos] ^= 0x55;
            let mut out = Vec::new();
            let r = apply(&base, &mut &bad[..], &mut out);
            assert!(r.is_err() || out != target, "flip at {pos} went unnoticed");
        }
        // Truncated.
        let mut out = Vec::new();
        assert!(apply(&base, &mut &d[..d.len() / 2], &mut out).is_err());
    }
}
