//! Delta size benchmark: our block-hash + zstd delta against `xdelta3` on the same files in
//! the same run, as a fraction of the full bundle.
//!
//! Inputs, in order of preference:
//! 1. `GAVEL_OTA_BENCH_BASE` and `GAVEL_OTA_BENCH_TARGET`: two images (e.g. the agent
//!    binary before and after a one-crate change, see `docs/ota.md`);
//! 2. otherwise a synthetic pair (8 MiB of compiled-code-like bytes with scattered edits).
//!
//! Run: `cargo bench -p gavel-ota --bench delta`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use gavel_ota::bundle::{self, BuildSpec};
use gavel_ota::delta;

fn synthetic(dir: &Path) -> (PathBuf, PathBuf, String) {
    // Base: a real binary when one is at hand (this bench's own executable), else noise.
    let me = std::env::current_exe()
        .ok()
        .and_then(|p| std::fs::read(p).ok());
    let base = me.unwrap_or_else(|| {
        let mut r = fastrand::Rng::with_seed(1);
        (0..8 << 20).map(|_| r.u8(..)).collect()
    });
    // Target: a "one-crate change": one 64 KiB region rewritten, 4 KiB inserted in it,
    // and 200 scattered 4-byte changes (relocated addresses).
    let mut t = base.clone();
    let mut r = fastrand::Rng::with_seed(2);
    let at = t.len() / 3;
    for b in &mut t[at..at + 65_536] {
        *b = r.u8(..);
    }
    let ins: Vec<u8> = (0..4096).map(|_| r.u8(..)).collect();
    t.splice(at..at, ins);
    for _ in 0..200 {
        let p = r.usize(..t.len() - 4);
        t[p..p + 4].copy_from_slice(&r.u32(..).to_le_bytes());
    }
    let (b, tt) = (dir.join("base.img"), dir.join("target.img"));
    std::fs::write(&b, &base).expect("write base");
    std::fs::write(&tt, &t).expect("write target");
    (
        b,
        tt,
        "synthetic: this bench binary with a 64 KiB region rewritten, 4 KiB inserted, 200 scattered 4-byte edits".into(),
    )
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (base, target, what) = match (
        std::env::var_os("GAVEL_OTA_BENCH_BASE"),
        std::env::var_os("GAVEL_OTA_BENCH_TARGET"),
    ) {
        (Some(b), Some(t)) => (
            PathBuf::from(b),
            PathBuf::from(t),
            "given files".to_string(),
        ),
        _ => synthetic(dir.path()),
    };
    let b = std::fs::read(&base).expect("read base");
    let t = std::fs::read(&target).expect("read target");
    println!("inputs: {what}");
    println!("  base   {} ({} bytes)", base.display(), b.len());
    println!("  target {} ({} bytes)", target.display(), t.len());

    // Full bundle.
    let full = dir.path().join("full.gota");
    let spec = BuildSpec {
        version: "2.0.0".parse().expect("version"),
        compatible: vec!["courtroom-terminal".into()],
        min_version: None,
        image: target.clone(),
        base: None,
        description: None,
    };
    bundle::build(&full, &spec, &mut |_| {}).expect("full bundle");
    let full_len = std::fs::metadata(&full).expect("full").len();
    let zstd_full = zstd::encode_all(&t[..], 19).expect("zstd").len() as u64;

    // Ours.
    let mut rows = Vec::new();
    for block in [16usize, 32, 64] {
        let s = Instant::now();
        let (d, stats) = delta::encode(&b, &t, block).expect("encode");
        let enc = s.elapsed();
        let s = Instant::now();
        let mut out = Vec::with_capacity(t.len());
        delta::apply(&b, &mut &d[..], &mut out).expect("apply");
        let dec = s.elapsed();
        assert_eq!(out, t, "delta must reproduce the target");
        rows.push((
            format!("gavel delta (block {block})"),
            stats.delta_size,
            enc,
            Some(dec),
        ));
    }

    // xdelta3 on the same files.
    for (label, args) in [("xdelta3 -9", vec!["-9"]), ("xdelta3 (default)", vec![])] {
        let out = dir.path().join("x.vcdiff");
        let s = Instant::now();
        let status = Command::new("xdelta3")
            .args(["-e", "-f"])
            .args(&args)
            .arg("-s")
            .arg(&base)
            .arg(&target)
            .arg(&out)
            .status();
        let enc = s.elapsed();
        match status {
            Ok(st) if st.success() => {
                let len = std::fs::metadata(&out).expect("xdelta out").len();
                rows.push((label.to_string(), len, enc, None));
            }
            _ => println!("  {label}: not available (apt-get install xdelta3)"),
        }
    }

    println!("full bundle: {full_len} bytes (zstd -19 of the image alone: {zstd_full} bytes)");
    println!(
        "{:<26} {:>12} {:>10} {:>10} {:>10}",
        "method", "bytes", "% of full", "encode", "decode"
    );
    for (label, len, enc, dec) in rows {
        println!(
            "{label:<26} {len:>12} {:>9.3}% {:>8.0}ms {:>10}",
            len as f64 / full_len as f64 * 100.0,
            enc.as_secs_f64() * 1e3,
            dec.map(|d| format!("{:.0}ms", d.as_secs_f64() * 1e3))
                .unwrap_or_else(|| "-".into())
        );
    }
}
