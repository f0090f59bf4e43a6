//! The long tiers: `soak`, `bench` and `fuzz`. Their figures go into `docs/`.

use std::process::Command;

use crate::{cargo, root, run, setup};

/// `cargo test --locked -p PACKAGE --test TEST [FILTER] -- --nocapture --test-threads=1`
/// with the setup's environment (`env`) and the run's own variables (`vars`).
fn hil_test(
    package: &str,
    test: &str,
    filter: Option<&str>,
    env: &[(String, String)],
    vars: &[(&str, &str)],
) -> Command {
    let mut args = vec!["test", "--locked", "-p", package, "--test", test];
    args.extend(filter);
    args.extend(["--", "--nocapture", "--test-threads=1"]);
    let mut cmd = cargo(&args);
    cmd.envs(env.iter().map(|(k, v)| (k, v)))
        .envs(vars.iter().copied());
    cmd
}

/// `cargo bench --locked [--profile dev] -p PACKAGE --bench BENCH`.
fn bench_cmd(package: &str, bench: &str, dev_profile: bool) -> Command {
    let mut args = vec!["bench", "--locked"];
    if dev_profile {
        args.extend(["--profile", "dev"]);
    }
    args.extend(["-p", package, "--bench", bench]);
    cargo(&args)
}

/// Full-length torture and outage runs (the default suite runs short versions).
pub fn soak() -> Result<(), String> {
    let env = setup::ensure(setup::Need::Test)?;
    run(
        cargo(&["build", "--workspace", "--bins", "--locked"]),
        "build binaries",
    )?;
    let mut torture = hil_test(
        "gavel-store",
        "torture",
        None,
        &[],
        &[("GAVEL_TORTURE_KILLS", "500")],
    );
    // The torture test is ignored in the default suite at this length.
    torture.arg("--include-ignored");
    run(
        torture,
        "store torture: 500 SIGKILLs each for redb and sled",
    )?;
    run(
        hil_test(
            "gavel-hil",
            "store_and_forward",
            None,
            &env,
            &[("GAVEL_SOAK_KILLS", "500"), ("GAVEL_SOAK_OUTAGE_S", "600")],
        ),
        "agent: 500 SIGKILLs while producing events, and a 10-minute broker outage",
    )?;
    run(
        hil_test(
            "gavel-hil",
            "kiosk",
            Some("a_kiosk_offline"),
            &env,
            &[("GAVEL_TEST_KIOSK_OUTAGE_S", "300")],
        ),
        "kiosk: 5 minutes without broker and controller, tickets numbered without duplicates",
    )?;
    run(
        hil_test(
            "gavel-hil",
            "recording",
            None,
            &env,
            &[
                ("GAVEL_TEST_HEARING_S", "120"),
                ("GAVEL_TEST_KILLS", "50"),
                ("GAVEL_TEST_UNPLUG_S", "20"),
            ],
        ),
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
        bench_cmd("gavel-store", "append", false),
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
            "-p",
            "gavel-record",
            "-p",
            "gavel-stream",
        ]),
        "release binaries (controller, agent, recorder, live server)",
    )?;
    run(
        bench_cmd("gavel-hil", "e2e", false),
        "end-to-end events/s vs broker ceiling",
    )?;
    run(
        bench_cmd("gavel-hil", "hearings", false),
        "alarm latency, 50,000 rooms and 25,000 hearings vs 1,000 rooms",
    )?;
    run(
        bench_cmd("gavel-hil", "patrol", true),
        "patrol analyzers' CPU per room vs decoding alone",
    )?;
    run(
        cargo(&["build", "--locked", "--workspace", "--bins"]),
        "the camera simulator",
    )?;
    let release = crate::target_dir().join("release");
    let mut recording = bench_cmd("gavel-hil", "recording", true);
    recording.env("GAVEL_BENCH_RECORDER", release.join("gavel-recorder"));
    run(
        recording,
        "recorder CPU and memory for 1/4/8 streams at 1080p and 2160p vs gst-launch splitmuxsink",
    )?;
    let mut live = bench_cmd("gavel-hil", "live", true);
    live.env("GAVEL_BENCH_LIVE", release.join("gavel-live"));
    run(
        live,
        "live re-serve: relay and sub-stream transcode CPU vs gst-launch doing the same transcode",
    )?;
    run(
        bench_cmd("gavel-transcribe", "transcribe", false),
        "transcription: WER/CER per model, RTF vs whisper-cli, live latency",
    )?;
    run(
        bench_cmd("gavel-controller", "transcript_search", true),
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
