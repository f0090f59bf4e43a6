//! Alarm latency at scale (issue 5): simulated rooms through a real Mosquitto into one
//! controller node on PostgreSQL. Baseline: the same scenario with 1,000 rooms and 500
//! hearings in the same run. Figures: p50/p99/max latency from the moment a condition
//! holds (simulator clock) to the stored alarm's raise time, the controller's CPU (from
//! /proc, over the scenario) and memory (RSS now and peak).
//!
//! `GAVEL_BENCH_ROOMS` (default 50000) sets the full run's rooms; hearings are half.
//! Needs release binaries (`cargo xtask bench` builds them).

use std::time::{Duration, Instant};

use gavel_hil::fleet_sim::{Scenario, quantile, run};
use gavel_hil::usage::proc_usage;
use gavel_hil::{Controller, Mosquitto, PgDatabase};

struct Figures {
    rooms: usize,
    hearings: usize,
    p50: f64,
    p99: f64,
    max: f64,
    cpu_share: f64,
    rss_mib: f64,
    peak_mib: f64,
    wall_s: f64,
    published: u64,
}

async fn scenario(broker: &Mosquitto, rooms: usize) -> Figures {
    let dir = tempfile::tempdir().expect("tmp");
    let db = PgDatabase::create().expect("postgres");
    let controller = Controller::start_with_env(
        dir.path(),
        &broker.broker(),
        Some(&db.url()),
        &[("GAVEL_ALARM_GRACE_S", "5"), ("GAVEL_LOG", "warn")],
    )
    .expect("controller");
    let pid = controller.proc.pid();
    let s = Scenario {
        rooms,
        hearings: rooms / 2,
        connections: (rooms / 1000).clamp(4, 50),
        grace_s: 5,
        lead: Duration::from_secs(if rooms > 10_000 { 40 } else { 10 }),
        window: Duration::from_secs(60),
        health_every: Duration::from_secs(60),
    };
    let before = proc_usage(pid).expect("proc");
    let start = Instant::now();
    let out = run(&controller, &s).await.expect("scenario");
    let wall = start.elapsed().as_secs_f64();
    let after = proc_usage(pid).expect("proc");
    assert!(
        out.missing.is_empty(),
        "{} of {} alarms missing, e.g. {:?}",
        out.missing.len(),
        out.expected,
        &out.missing[..out.missing.len().min(5)]
    );
    let all = out.all_latencies();
    for (kind, v) in &out.latency_ms {
        println!(
            "  {rooms} rooms, {kind}: n={} p50={:.0} ms p99={:.0} ms max={:.0} ms",
            v.len(),
            quantile(v, 0.5),
            quantile(v, 0.99),
            quantile(v, 1.0)
        );
    }
    if !out.other.is_empty() {
        println!("  other alarms: {:?}", out.other);
    }
    println!("  duplicates: {}", out.duplicates);
    Figures {
        rooms,
        hearings: s.hearings,
        p50: quantile(&all, 0.5),
        p99: quantile(&all, 0.99),
        max: quantile(&all, 1.0),
        cpu_share: (after.cpu_s() - before.cpu_s()) / wall,
        rss_mib: after.rss_kib as f64 / 1024.0,
        peak_mib: after.peak_rss_kib as f64 / 1024.0,
        wall_s: wall,
        published: out.published,
    }
}

fn print(f: &Figures) {
    println!(
        "{:>6} rooms {:>6} hearings: alarm latency p50 {:>6.0} ms  p99 {:>6.0} ms  max {:>6.0} ms | controller CPU {:>5.1}% of one core over {:.0} s, RSS {:.0} MiB (peak {:.0} MiB) | {} device messages",
        f.rooms,
        f.hearings,
        f.p50,
        f.p99,
        f.max,
        f.cpu_share * 100.0,
        f.wall_s,
        f.rss_mib,
        f.peak_mib,
        f.published
    );
}

fn main() {
    let rooms: usize = std::env::var("GAVEL_BENCH_ROOMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let broker = Mosquitto::private().expect("mosquitto");
        println!("baseline: 1,000 rooms");
        let base = scenario(&broker, 1_000).await;
        print(&base);
        println!("full: {rooms} rooms");
        let full = scenario(&broker, rooms).await;
        print(&full);
        println!("--- summary (goal: p99 under 5 s) ---");
        print(&base);
        print(&full);
        println!(
            "p99 ratio full/baseline: {:.2}; CPU ratio {:.2}; peak RSS ratio {:.2}",
            full.p99 / base.p99,
            full.cpu_share / base.cpu_share,
            full.peak_mib / base.peak_mib
        );
    });
}
