//! `gavel-live`: the live RTSP re-serve as a process of its own (rigs and tests).
//!
//! `gavel-live --port 8554 --viewer alice:secret --source cam-1=rtsp://... [--sub cam-1=rtsp://...]
//! [--hls-dir DIR --http 127.0.0.1:8555]` serves `rtsp://HOST:8554/cam-1/main` and
//! `/cam-1/sub`, and with `--hls-dir` the sub-stream as HLS at
//! `http://HOST:8555/live/cam-1/index.m3u8`. Prints `READY` when serving.

use anyhow::{Context, bail};
use gavel_stream::{LiveSettings, LiveSource, Viewer};

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let mut settings = LiveSettings {
        address: "127.0.0.1".into(),
        port: 8554,
        viewers: vec![],
        sub_kbps: 800,
        hls: None,
    };
    let mut http: Option<std::net::SocketAddr> = None;
    let mut sources: Vec<LiveSource> = Vec::new();
    let mut subs = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--address" => settings.address = value,
            "--port" => settings.port = value.parse()?,
            "--sub-kbps" => settings.sub_kbps = value.parse()?,
            "--hls-dir" => settings.hls = Some(gavel_stream::hls::HlsSettings::in_dir(value)),
            "--http" => http = Some(value.parse().context("--http ADDR:PORT")?),
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
    let server = gavel_stream::start(&settings, &sources)?;
    match (http, &settings.hls, server.hls_demand()) {
        (Some(addr), Some(hls), Some(demand)) => {
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("listening on {addr}"))?;
                println!("READY");
                gavel_stream::hls::serve_http(
                    listener,
                    hls.dir.clone(),
                    settings.viewers.clone(),
                    demand,
                    std::future::pending(),
                )
                .await
                .context("serving HLS")
            })
        }
        (Some(_), _, _) => bail!("--http needs --hls-dir"),
        _ => {
            println!("READY");
            loop {
                std::thread::park();
            }
        }
    }
}
