//! `gavel-controller`: the central server.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use gavel_controller::{BrokerSettings, Settings};
use tracing_subscriber::EnvFilter;

/// Gavel's central controller: MQTT broker, fleet registry, REST API and live dashboard.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Configuration file (TOML); see controller.example.toml.
    #[arg(short, long, env = "GAVEL_CONFIG")]
    config: Option<PathBuf>,
    /// HTTP API and dashboard address, e.g. 127.0.0.1:8700 (port 0: any free port).
    #[arg(long)]
    http: Option<SocketAddr>,
    /// Run the embedded MQTT broker on this address, e.g. 0.0.0.0:1884.
    #[arg(long, conflicts_with = "mqtt_external")]
    mqtt_listen: Option<SocketAddr>,
    /// Use an external MQTT broker (Mosquitto, EMQX) at HOST:PORT instead.
    #[arg(long)]
    mqtt_external: Option<String>,
    /// Database URL: sqlite://PATH or postgres://USER@HOST/DB (default: SQLite in the data folder).
    #[arg(long)]
    database_url: Option<String>,
    /// Folder for the embedded database.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Write "http=ADDR mqtt=HOST:PORT [mqtt_tls=ADDR]" to this file once ready (for scripts and tests).
    #[arg(long)]
    ready_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(clap::Subcommand, Debug)]
enum Cmd {
    /// The device PKI (the CA in <data_dir>/pki).
    #[command(subcommand)]
    Pki(Pki),
}

#[derive(clap::Subcommand, Debug)]
enum Pki {
    /// Write a Mosquitto configuration that enforces device identity and the per-device
    /// ACL (TLS listener, CA, server certificate, CRL of revoked devices, ACL file) and the
    /// controller's own client certificate; then run mosquitto -c DIR/mosquitto.conf and
    /// the controller with GAVEL_MQTT_EXTERNAL=HOST:PORT GAVEL_MQTT_TLS_DIR=DIR. Run it again
    /// after revoking a device, then send SIGHUP to mosquitto (or restart it).
    Mosquitto {
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// TLS port of the listener.
        #[arg(long, default_value_t = 8883)]
        port: u16,
        /// DNS names or IP addresses of the broker for its certificate (repeatable).
        #[arg(long = "name", default_values_t = ["localhost".to_string()])]
        names: Vec<String>,
    },
}

async fn pki(settings: &Settings, command: &Pki) -> anyhow::Result<()> {
    let Pki::Mosquitto { out, port, names } = command;
    let pki = gavel_controller::pki::Pki::open(&settings.data_dir.join("pki"))?;
    let url = settings.effective_database_url();
    let store = gavel_controller::store::Store::open(&url)
        .await
        .context("opening the database for the revoked certificates")?;
    let revoked = gavel_controller::identity_api::revoked(&store).await?;
    let number = u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(1);
    let conf = pki.write_mosquitto(out, *port, names, &revoked, number)?;
    store.close().await;
    println!(
        "wrote {} ({} revoked certificate(s) in the CRL)\n  broker:     mosquitto -c {}\n  controller: GAVEL_MQTT_EXTERNAL=HOST:{port} GAVEL_MQTT_TLS_DIR={} gavel-controller",
        conf.display(),
        revoked.len(),
        conf.display(),
        out.display()
    );
    Ok(())
}

fn settings(args: &Args) -> anyhow::Result<Settings> {
    let mut s = match &args.config {
        Some(file) => Settings::from_file(file)?,
        None => Settings::default(),
    };
    s.apply_env(std::env::vars())?;
    if let Some(http) = args.http {
        s.http_listen = http;
    }
    if let Some(listen) = args.mqtt_listen {
        s.broker = BrokerSettings::Embedded {
            listen,
            max_payload_bytes: 1024 * 1024,
        };
    }
    if let Some(ext) = &args.mqtt_external {
        let (host, port) = ext
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_owned(), p.parse().ok()?)))
            .with_context(|| format!("--mqtt-external {ext:?}: expected HOST:PORT"))?;
        s.broker = BrokerSettings::External { host, port };
    }
    if let Some(url) = &args.database_url {
        s.database_url = url.clone();
    }
    if let Some(dir) = &args.data_dir {
        s.data_dir = dir.clone();
    }
    s.validate()?;
    Ok(s)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("GAVEL_LOG")
                .unwrap_or_else(|_| EnvFilter::new("info,rumqttd=off,sqlx=warn")),
        )
        .init();
    let args = Args::parse();
    let settings = settings(&args)?;
    if let Some(Cmd::Pki(p)) = &args.command {
        return pki(&settings, p).await;
    }
    let running = gavel_controller::start(settings).await?;
    let tls = running
        .mqtt_tls
        .map(|a| format!(" mqtt_tls={a}"))
        .unwrap_or_default();
    let ready = format!(
        "http={} mqtt={}:{}{tls}\n",
        running.http_addr, running.mqtt.0, running.mqtt.1
    );
    if let Some(file) = &args.ready_file {
        std::fs::write(file, &ready).with_context(|| format!("writing {}", file.display()))?;
    }
    println!(
        "gavel-controller ready: dashboard http://{}/  mqtt {}:{}",
        running.http_addr, running.mqtt.0, running.mqtt.1
    );
    shutdown_signal().await;
    tracing::info!("shutting down");
    running.stop().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
