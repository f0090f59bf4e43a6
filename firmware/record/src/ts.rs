//! Just enough MPEG-TS reading to measure a segment: the span of presentation timestamps
//! in a (possibly truncated) file. Used by crash recovery, which must chain a segment the
//! recorder never closed.

use std::collections::BTreeMap;

const PACKET: usize = 188;

/// First and last PTS (90 kHz) per PID of the PES packets that start in `data`.
pub fn pts_by_pid(data: &[u8]) -> BTreeMap<u16, (u64, u64)> {
    let mut out: BTreeMap<u16, (u64, u64)> = BTreeMap::new();
    for p in data.chunks_exact(PACKET) {
        if p[0] != 0x47 || p[1] & 0x40 == 0 {
            continue;
        }
        let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
        let afc = (p[3] >> 4) & 3;
        let mut at = 4;
        if afc & 2 != 0 {
            at += 1 + usize::from(p[4]);
        }
        if afc & 1 == 0 || at + 14 > PACKET {
            continue;
        }
        let pes = &p[at..];
        if pes[0..3] != [0, 0, 1] || pes[7] & 0x80 == 0 {
            continue;
        }
        let pts = (u64::from(pes[9] >> 1) & 7) << 30
            | u64::from(pes[10]) << 22
            | u64::from(pes[11] >> 1) << 15
            | u64::from(pes[12]) << 7
            | u64::from(pes[13] >> 1);
        let e = out.entry(pid).or_insert((pts, pts));
        e.0 = e.0.min(pts);
        e.1 = e.1.max(pts);
    }
    out
}

/// Duration covered by the file's timestamps, nanoseconds: the longest PTS span of any
/// elementary stream. `None` when the file holds no timestamp.
pub fn duration_ns(data: &[u8]) -> Option<u64> {
    pts_by_pid(data)
        .values()
        .map(|(first, last)| (last - first) * 100_000 / 9)
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pes_packet(pid: u16, pts: u64) -> Vec<u8> {
        let mut p = vec![0xffu8; PACKET];
        p[0] = 0x47;
        p[1] = 0x40 | (pid >> 8) as u8;
        p[2] = pid as u8;
        p[3] = 0x10;
        let pes = [
            0,
            0,
            1,
            0xe0,
            0,
            0,
            0x80,
            0x80,
            5,
            (0x21 | ((pts >> 29) & 0x0e)) as u8,
            (pts >> 22) as u8,
            (((pts >> 14) & 0xfe) | 1) as u8,
            (pts >> 7) as u8,
            (((pts << 1) & 0xfe) | 1) as u8,
        ];
        p[4..4 + pes.len()].copy_from_slice(&pes);
        p
    }

    #[test]
    fn the_pts_span_of_a_truncated_file_is_measured() {
        let mut data = Vec::new();
        for i in 0..11u64 {
            data.extend(pes_packet(0x41, 90_000 + i * 9_000));
        }
        data.extend(&pes_packet(0x41, 10_000_000)[..100]);
        assert_eq!(duration_ns(&data), Some(1_000_000_000));
        assert_eq!(duration_ns(&[0u8; 10]), None);
    }
}
