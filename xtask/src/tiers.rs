//! The long tiers: `soak`, `bench` and `fuzz`. Their figures go into `docs/`.

use crate::{cargo, root, run, setup};

/// Full-length torture and outage runs (the default suite runs short versions).
pub fn soak() -> Result<(), String> {
    let env = setup::ensure(setup::Need::Test)?;
    run(
        cargo(&["build", "--workspace", "--bins", "--locked"]),
        "build binaries",
    )?;
    let mut torture = cargo(&[
        "test",
        "--locked",
        "-p",
        "gavel-store",
        "--test",
        "torture",
        "--",
        "--include-ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    torture.env("GAVEL_TORTURE_KILLS", "500");
    run(
        torture,
        "store torture: 500 SIGKILLs each for redb and sled",
    )?;
    let mut link = cargo(&[
        "test",
        "--locked",
        "-p",
        "gavel-hil",
        "--test",
        "store_and_forward",
        "--",
        "--nocapture",
        "--test-threads=1",
    ]);
    link.env("GAVEL_SOAK_KILLS", "500")
        .env("GAVEL_SOAK_OUTAGE_S", "600");
    for (k, v) in &env {
        link.env(k, v);
    }
    run(
        link,
        "agent: 500 SIGKILLs while producing events, and a 10-minute broker outage",
    )?;
    let mut kiosk = cargo(&[
        "test",
        "--locked",
        "-p",
        "gavel-hil",
        "--test",
        "kiosk",
        "a_kiosk_offline",
        "--",
        "--nocapture",
        "--test-threads=1",
    ]);
    kiosk.env("GAVEL_TEST_KIOSK_OUTAGE_S", "300");
    for (k, v) in &env {
        kiosk.env(k, v);
    }
    run(
        kiosk,
        "kiosk: 5 minutes without broker and controller, tickets numbered without duplicates",
    )?;
    let mut recording = cargo(&[
        "test",
        "--locked",
        "-p",
        "gavel-hil",
        "--test",
        "recording",
        "--",
        "--nocapture",
        "--test-threads=1",
    ]);
    recording
        .env("GAVEL_TEST_HEARING_S", "120")
        .env("GAVEL_TEST_KILLS", "50")
        .env("GAVEL_TEST_UNPLUG_S", "20");
    for (k, v) in &env {
        recording.env(k, v);
    }
    run(
        recording,
        "recording: a 2-minute hearing of 3 cameras + 4 microphones, 50 recorder SIGKILLs, a camera unplugged 20 s",
    )?;
    run(
        cargo(&[
            "test",
            "--locked",
            "--release",
            "-p",
            "gavel-transcribe",
            "--test",
            "soak",
            "--",
            "--ignored",
            "--nocapture",
        ]),
        "transcription: a 30-minute hearing, memory flat, no audio lost while lagging",
    )?;
    crate::image::full_test()
}

/// Benchmarks, each printing its ratio against the named baseline measured in the same run.
pub fn bench() -> Result<(), String> {
    setup::ensure(setup::Need::Test)?;
    run(
        cargo(&[
            "bench",
            "--locked",
            "-p",
            "gavel-store",
            "--bench",
            "append",
        ]),
        "durable appends: redb vs sled",
    )?;
    run(
        cargo(&[
            "build",
            "--release",
            "--locked",
            "-p",
            "gavel-controller",
            "-p",
            "gavel-agent",
        ]),
        "release binaries for the end-to-end benchmark",
    )?;
    run(
        cargo(&["bench", "--locked", "-p", "gavel-hil", "--bench", "e2e"]),
        "end-to-end events/s vs broker ceiling",
    )?;
    run(
        cargo(&[
            "bench",
            "--locked",
            "-p",
            "gavel-hil",
            "--bench",
            "hearings",
        ]),
        "alarm latency, 50,000 rooms and 25,000 hearings vs 1,000 rooms",
    )?;
    run(
        cargo(&[
            "bench",
            "--locked",
            "--profile",
            "dev",
            "-p",
            "gavel-hil",
            "--bench",
            "patrol",
        ]),
        "patrol analyzers' CPU per room vs decoding alone",
    )?;
    run(
        cargo(&[
            "build",
            "--release",
            "--locked",
            "-p",
            "gavel-record",
            "--bin",
            "gavel-recorder",
        ]),
        "the release recorder for the recording benchmark",
    )?;
    run(
        cargo(&["build", "--locked", "--workspace", "--bins"]),
        "the camera simulator",
    )?;
    let mut recording = cargo(&[
        "bench",
        "--locked",
        "--profile",
        "dev",
        "-p",
        "gavel-hil",
        "--bench",
        "recording",
    ]);
    recording.env(
        "GAVEL_BENCH_RECORDER",
        crate::target_dir().join("release").join("gavel-recorder"),
    );
    run(
        recording,
        "recorder CPU and memory for 1/4/8 streams at 1080p and 2160p vs gst-launch splitmuxsink",
    )?;
    run(
        cargo(&[
            "bench",
            "--locked",
            "-p",
            "gavel-transcribe",
            "--bench",
            "transcribe",
        ]),
        "transcription: WER/CER per model, RTF vs whisper-cli, live latency",
    )?;
    run(
        cargo(&[
            "bench",
            "--locked",
            "--profile",
            "dev",
            "-p",
            "gavel-controller",
            "--bench",
            "transcript_search",
        ]),
        "transcript search: FTS5 trigram and pg_trgm vs a scan, 200,000 lines",
    )
}

/// Runs every protocol fuzz target for `seconds` each (needs `cargo install cargo-fuzz`).
pub fn fuzz(args: &[String]) -> Result<(), String> {
    let seconds = match args {
        [flag, s] if flag == "--seconds" => {
            s.parse::<u64>().map_err(|_| format!("--seconds {s:?}"))?
        }
        [] => 600,
        _ => return Err("usage: cargo xtask fuzz [--seconds N]".into()),
    };
    let dir = root().join("protocol").join("fuzz");
    let targets = [
        "birth", "status", "health", "event", "ack", "command", "receipt", "schedule", "wall",
    ];
    for t in targets {
        let mut cmd =
            std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.current_dir(&dir)
            // cargo-fuzz passes nightly-only sanitizer flags; the stable toolchain accepts
            // them with RUSTC_BOOTSTRAP.
            .env("RUSTC_BOOTSTRAP", "1")
            .args([
                "fuzz",
                "run",
                &format!("decode_{t}"),
                "--",
                &format!("-max_total_time={seconds}"),
                "-print_final_stats=1",
            ]);
        run(cmd, &format!("fuzz decode_{t} for {seconds} s"))?;
    }
    Ok(())
}
