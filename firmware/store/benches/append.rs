//! Durable appends per second, one fsync'd commit per event: redb (the store we ship)
//! against sled (the alternative), in the same run, on the same file system.
//!
//! `cargo bench -p gavel-store --bench append` (or `cargo xtask bench`). Set
//! `GAVEL_BENCH_APPENDS` to change the number of appends per engine (default 2000).

use std::time::Instant;

use gavel_store::{OutboxEntry, Store};

fn payload(i: u64) -> Vec<u8> {
    // About the size of an encoded event.
    format!(r#"{{"v":1,"ts":"2026-11-27T09:00:00Z","boot_id":"0b7e5f4c-3c4a-4c0e-9a53-2f1f3c9d2a10","seq":{i},"id":"probe-{i}","phase":"end","historical":false,"type":"probe","n":{i}}}"#).into_bytes()
}

fn main() {
    let n: u64 = std::env::var("GAVEL_BENCH_APPENDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    // Not /tmp: it may be tmpfs, where fsync costs nothing.
    let base = std::env::var("CARGO_TARGET_TMPDIR").unwrap_or_else(|_| "/var/tmp".into());
    let dir = tempfile::tempdir_in(base).expect("temp dir");

    let store = Store::open(&dir.path().join("bench.redb")).expect("redb");
    let start = Instant::now();
    for i in 0..n {
        store
            .append(&OutboxEntry {
                boot_id: "bench".into(),
                seq: i,
                appended_ms: 0,
                payload: payload(i),
            })
            .expect("append");
    }
    let redb = n as f64 / start.elapsed().as_secs_f64();

    let db = sled::open(dir.path().join("bench.sled")).expect("sled");
    let start = Instant::now();
    for i in 0..n {
        db.insert(i.to_be_bytes(), payload(i)).expect("insert");
        db.flush().expect("flush");
    }
    let sled = n as f64 / start.elapsed().as_secs_f64();

    println!("durable appends, {n} events each, one commit per event:");
    println!("  redb (shipped, fdatasync per commit):   {redb:>9.0} appends/s");
    println!("  sled (baseline, flush = sync_file_range): {sled:>9.0} appends/s");
    println!("  ratio redb / sled: {:.2}", redb / sled);
}
