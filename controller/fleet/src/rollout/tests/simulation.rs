//! Campaign over a simulated province: 10,000 devices in 2,500 rooms, each downloading
//! at an 8 Mbit/s cap, with hearings in progress and scheduled. Pure and in simulated
//! time; prints the simulated time to complete and the controller's load.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use super::*;

const DEVICES_PER_ROOM: usize = 4;
const ROOMS: usize = 2_500;
const CAP_BITS_PER_S: u64 = 8_000_000;
const BUNDLE_BYTES: u64 = 60 * 1024 * 1024;
/// Write, reboot and health gate after the download.
const AFTER_DOWNLOAD_S: i64 = 120;
const TICK_S: i64 = 10;

struct Report {
    sim_seconds: i64,
    inputs: u64,
    outputs: u64,
    peak_in_flight: usize,
    core_cpu: std::time::Duration,
    campaign: Campaign,
    wave_done_at: Vec<i64>,
}

/// Runs a campaign; `fails(device)` says whether that device's install rolls back.
fn simulate(fails: &dyn Fn(&str) -> bool) -> Report {
    let fleet = fleet(ROOMS, DEVICES_PER_ROOM);
    let mut s = spec();
    s.max_in_flight = 500;
    let download_s = (BUNDLE_BYTES * 8).div_ceil(CAP_BITS_PER_S) as i64;
    s.expected_install = Duration::seconds(download_s + AFTER_DOWNLOAD_S);
    s.guard = Duration::minutes(15);
    let mut c = Campaign::plan(s, &fleet);

    // Hearings: every 5th room is in session at the start for 0.5-3 h (ended by a
    // schedule update); every 7th has a hearing scheduled from +1 h to +2 h.
    let mut rng = fastrand::Rng::with_seed(8);
    let mut events: BinaryHeap<Reverse<(i64, u8, String)>> = BinaryHeap::new();
    let mut schedules: BTreeMap<String, RoomSchedule> = BTreeMap::new();
    let mut inputs = 0u64;
    let mut outputs = 0u64;
    let cpu = std::time::Instant::now();
    let mut core_cpu = std::time::Duration::ZERO;
    let at = |t: i64| T0 + Duration::seconds(t);
    let feed = |c: &mut Campaign, t: i64, i: Input, core_cpu: &mut std::time::Duration| {
        let s = std::time::Instant::now();
        let out = c.handle(at(t), i);
        *core_cpu += s.elapsed();
        out
    };
    for r in 0..ROOMS {
        let room = format!("room-{r:05}");
        let court = format!("court-{}", r % 93);
        let mut sched = RoomSchedule::default();
        if r % 5 == 0 {
            sched.in_session = true;
            let end = rng.i64(1800..10_800);
            events.push(Reverse((end, 0, format!("{court}|{room}"))));
        }
        if r % 7 == 0 {
            sched.busy.push((at(3600), at(7200)));
        }
        if sched != RoomSchedule::default() {
            schedules.insert(room.clone(), sched.clone());
            inputs += 1;
            feed(
                &mut c,
                0,
                Input::Schedule {
                    court,
                    room,
                    schedule: sched,
                },
                &mut core_cpu,
            );
        }
    }
    let mut now = 0i64;
    let mut in_flight = 0usize;
    let mut peak = 0usize;
    let mut wave_done_at = Vec::new();
    let mut last_wave = 0;
    let room_of = |d: &str| format!("room-{}", &d[1..6]);
    loop {
        // Everything due up to now.
        while let Some(Reverse((t, kind, who))) = events.peek().cloned() {
            if t > now {
                break;
            }
            events.pop();
            inputs += 1;
            if kind == 0 {
                let (court, room) = who.split_once('|').unwrap();
                let mut sched = schedules.get(room).cloned().unwrap_or_default();
                sched.in_session = false;
                schedules.insert(room.to_string(), sched.clone());
                feed(
                    &mut c,
                    t,
                    Input::Schedule {
                        court: court.into(),
                        room: room.into(),
                        schedule: sched,
                    },
                    &mut core_cpu,
                );
            } else {
                in_flight -= 1;
                let outcome = if fails(&who) {
                    Err("rolled back: health check failed".into())
                } else {
                    Ok(())
                };
                outputs += feed(
                    &mut c,
                    t,
                    Input::Result {
                        device: who,
                        outcome,
                    },
                    &mut core_cpu,
                )
                .len() as u64;
            }
        }
        inputs += 1;
        let out = feed(&mut c, now, Input::Tick, &mut core_cpu);
        outputs += out.len() as u64;
        if c.wave != last_wave {
            wave_done_at.push(now);
            last_wave = c.wave;
        }
        for o in out {
            if let Output::Install { device } = o {
                // The core only starts a device whose room is free for the whole install.
                let sched = schedules
                    .get(&room_of(&device))
                    .cloned()
                    .unwrap_or_default();
                let end = now + download_s + AFTER_DOWNLOAD_S;
                assert!(
                    sched.free(at(now), at(end)),
                    "{device} started while its room is busy"
                );
                // Never ahead of its wave.
                let w = c.waves.iter().position(|w| w.contains(&device)).unwrap();
                assert_eq!(w, c.wave, "{device} started outside its wave");
                in_flight += 1;
                peak = peak.max(in_flight);
                events.push(Reverse((end, 1, device)));
            }
        }
        if !matches!(c.state, CampaignState::Running) && in_flight == 0 {
            break;
        }
        now += TICK_S;
        assert!(
            now < 7 * 24 * 3600,
            "campaign did not finish in a simulated week"
        );
    }
    let _ = cpu;
    Report {
        sim_seconds: now,
        inputs,
        outputs,
        peak_in_flight: peak,
        core_cpu,
        campaign: c,
        wave_done_at,
    }
}

#[test]
fn campaign_over_10000_simulated_devices_completes_in_waves_around_hearings() {
    let r = simulate(&|_| false);
    let p = r.campaign.progress();
    println!(
        "simulated {} devices at 8 Mbit/s, {} MiB bundle: completed in {} simulated s ({:.1} h); \
         waves finished at {:?} s; peak {} installs in flight; controller core: {} inputs, {} outputs, \
         {:.0} ms CPU ({:.1} us/input)",
        p.total,
        BUNDLE_BYTES >> 20,
        r.sim_seconds,
        r.sim_seconds as f64 / 3600.0,
        r.wave_done_at,
        r.peak_in_flight,
        r.inputs,
        r.outputs,
        r.core_cpu.as_secs_f64() * 1e3,
        r.core_cpu.as_secs_f64() * 1e6 / r.inputs as f64,
    );
    assert_eq!(r.campaign.state, CampaignState::Completed);
    assert_eq!(p.total, ROOMS * DEVICES_PER_ROOM);
    assert_eq!(p.succeeded, p.total);
    assert_eq!(r.campaign.waves.len(), 3);
    assert_eq!(r.campaign.waves[0].len(), DEVICES_PER_ROOM);
    assert!(r.peak_in_flight <= 500);
}

#[test]
fn campaign_with_a_bad_bundle_halts_in_the_wave_where_failures_pass_the_threshold() {
    // The canary room happens to survive; a quarter of the rooms' devices roll back.
    let r = simulate(&|d| !d.starts_with("r00000") && d.ends_with("-d1"));
    let p = r.campaign.progress();
    println!(
        "bad bundle: {:?} after {} simulated s, progress {p:?}",
        r.campaign.state, r.sim_seconds
    );
    assert!(
        matches!(&r.campaign.state, CampaignState::Halted { reason } if reason.starts_with("wave 1"))
    );
    assert_eq!(r.campaign.wave, 1);
    // The third wave never started.
    assert!(
        r.campaign.waves[2]
            .iter()
            .all(|d| r.campaign.devices[d] == DeviceState::Pending)
    );
}
