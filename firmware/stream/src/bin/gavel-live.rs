//! `gavel-live`: the live RTSP re-serve as a process of its own (rigs and tests).
//!
//! `gavel-live --port 8554 --viewer alice:secret --source cam-1=rtsp://... [--sub cam-1=rtsp://...]`
//! serves `rtsp://HOST:8554/cam-1/main` and `/cam-1/sub`. Prints `READY` when serving.

use anyhow::{Context, bail};
use gavel_stream::{LiveSettings, LiveSource, Viewer};

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let mut settings = LiveSettings {
        address: "127.0.0.1".into(),
        port: 8554,
        viewers: vec![],
        sub_kbps: 800,
    };
    let mut sources: Vec<LiveSource> = Vec::new();
    let mut subs = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--address" => settings.address = value,
            "--port" => settings.port = value.parse()?,
            "--sub-kbps" => settings.sub_kbps = value.parse()?,
            "--viewer" => {
                let (user, password) = value.split_once(':').context("--viewer USER:PASSWORD")?;
                settings.viewers.push(Viewer {
                    user: user.into(),
                    password: password.into(),
                });
            }
            "--source" | "--sub" => {
                let (id, url) = value.split_once('=').context("ID=URL")?;
                if flag == "--source" {
                    sources.push(LiveSource {
                        id: id.into(),
                        main_url: url.into(),
                        sub_url: None,
                    });
                } else {
                    subs.push((id.to_owned(), url.to_owned()));
                }
            }
            other => bail!("unknown argument {other}"),
        }
    }
    for (id, url) in subs {
        let s = sources
            .iter_mut()
            .find(|s| s.id == id)
            .with_context(|| format!("--sub {id}: no --source {id}"))?;
        s.sub_url = Some(url);
    }
    let _server = gavel_stream::start(&settings, &sources)?;
    println!("READY");
    loop {
        std::thread::park();
    }
}
