//! # gavel-controller
//!
//! The central controller: an embedded MQTT broker (or an external one), MQTT ingest into
//! the sans-I/O fleet core, persistence in SQLite or PostgreSQL, the REST API with its
//! OpenAPI document, Prometheus metrics and the live dashboard.
//!
//! Actors and shutdown order: the HTTP server stops accepting, ingest disconnects from the
//! broker, then the fleet task flushes its dirty records to the store, then the store
//! closes. The embedded broker's threads end with the process.

pub mod api;
pub mod broker;
pub mod campaigns;
pub mod compliance;
pub mod config;
pub mod election;
pub mod enforcer;
pub mod fleet_actor;
pub mod hearings_api;
pub mod ingest;
pub mod metrics;
pub mod ota;
pub mod patrol;
pub mod recording;
pub mod schedules;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use gavel_fleet::Fleet;
use gavel_fleet::sequence::{Sequencer, SequencerSettings};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use config::{BrokerSettings, Settings};

/// A started controller.
pub struct Running {
    /// Where the API and dashboard listen.
    pub http_addr: SocketAddr,
    /// Where devices reach the MQTT broker (host, port).
    pub mqtt: (String, u16),
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    store: store::Store,
}

impl Running {
    /// Stops everything in order and waits for it.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        self.store.close().await;
        info!("controller stopped");
    }
}

/// Starts the controller.
pub async fn start(settings: Settings) -> anyhow::Result<Running> {
    settings.validate()?;
    let url = settings.effective_database_url();
    if url.starts_with("sqlite:") {
        std::fs::create_dir_all(&settings.data_dir)
            .with_context(|| format!("creating data folder {}", settings.data_dir.display()))?;
    }
    let store = store::Store::open(&url)
        .await
        .with_context(|| format!("opening database {}", redact(&url)))?;
    let restored = store
        .load_devices()
        .await
        .context("loading the fleet registry")?;
    let cursors = store
        .load_cursors()
        .await
        .context("loading event stream positions")?;
    info!(devices = restored.len(), backend = ?store.backend(), "fleet registry loaded");

    let mqtt = match &settings.broker {
        BrokerSettings::Embedded {
            listen,
            max_payload_bytes,
        } => {
            let (listen, max) = (*listen, *max_payload_bytes);
            let addr = tokio::task::spawn_blocking(move || broker::start(listen, max))
                .await
                .context("broker start task")??;
            (addr.ip().to_string(), addr.port())
        }
        BrokerSettings::External { host, port } => (host.clone(), *port),
    };

    let shutdown = CancellationToken::new();
    let metrics = Arc::new(metrics::Metrics::new());
    let (push, _) = broadcast::channel(1024);
    let acks = fleet_actor::PendingAcks::default();
    let rejects = ingest::RejectLog::default();
    let (client, eventloop) = ingest::client(&mqtt.0, mqtt.1);
    let (schedules, schedule_inbox) = schedules::channel();
    let clustered = settings.cluster.enabled;
    let mut tasks = Vec::new();
    let leadership = if clustered {
        let (leadership, task) = election::spawn(
            url.clone(),
            settings.cluster.lock_key,
            shutdown.child_token(),
        );
        tasks.push(task);
        info!(group = %settings.cluster.group, "cluster mode: shared subscriptions, scheduler by election");
        leadership
    } else {
        election::always()
    };
    let (enforcer, enforcer_task) = enforcer::spawn(
        enforcer::EnforcerParts {
            settings: settings.enforcement.engine(),
            store: store.clone(),
            push: push.clone(),
            metrics: metrics.clone(),
            leadership: leadership.clone(),
            cluster_broker: clustered.then(|| mqtt.clone()),
            schedules: schedules.clone(),
        },
        shutdown.child_token(),
    );
    let (compliance_trigger, compliance_rx) = compliance::channel();
    let (fleet, fleet_task) = fleet_actor::spawn(
        fleet_actor::FleetParts {
            fleet: Fleet::restore(restored),
            sequencer: Sequencer::new(SequencerSettings::default(), cursors),
            store: store.clone(),
            push: push.clone(),
            acks: acks.clone(),
            metrics: metrics.clone(),
            mqtt: client.clone(),
            enforcer: Some(enforcer.clone()),
            compliance: Some(compliance_trigger.clone()),
            schedules: Some(schedules.clone()),
            clustered,
        },
        shutdown.child_token(),
    );
    let compliance_sources = compliance::Sources {
        store: store.clone(),
        fleet: fleet.clone(),
        enforcer: enforcer.clone(),
    };
    let compliance_task = compliance::spawn(
        compliance_sources.clone(),
        compliance_rx,
        push.clone(),
        shutdown.child_token(),
    );
    let schedule_task = schedules::spawn(
        schedule_inbox,
        settings.schedule.fleet(),
        enforcer.clone(),
        fleet.clone(),
        client.clone(),
        shutdown.child_token(),
    );
    let ingest_task = tokio::spawn(ingest::run(
        client.clone(),
        eventloop,
        ingest::subscriptions(clustered.then_some(settings.cluster.group.as_str())),
        fleet.clone(),
        rejects.clone(),
        metrics.clone(),
        shutdown.child_token(),
    ));

    let bundles = ota::BundleRepo::open(&settings.data_dir.join("bundles")).with_context(|| {
        format!(
            "opening the bundle folder in {}",
            settings.data_dir.display()
        )
    })?;
    let listener = tokio::net::TcpListener::bind(settings.http_listen)
        .await
        .with_context(|| format!("binding the HTTP API on {}", settings.http_listen))?;
    let http_addr = listener.local_addr()?;
    let base_url = if settings.ota_base_url.is_empty() {
        format!("http://{http_addr}")
    } else {
        settings.ota_base_url.trim_end_matches('/').to_owned()
    };
    let (campaigns, campaign_task) = campaigns::CampaignTask::new(
        fleet.clone(),
        store.clone(),
        bundles.clone(),
        acks.clone(),
        client.clone(),
        push.clone(),
        base_url,
    )
    .with_hearings(
        enforcer.clone(),
        time::Duration::seconds(i64::from(settings.schedule.pre_roll_s)),
    )
    .spawn(leadership, shutdown.child_token());
    // The campaigns keep clear of rooms in session and of their coming hearings.
    let rooms_task = campaigns::follow_hearings(
        campaigns.clone(),
        enforcer.clone(),
        time::Duration::seconds(i64::from(settings.schedule.pre_roll_s)),
        shutdown.child_token(),
    );
    let state = api::AppState {
        fleet,
        store: store.clone(),
        push,
        acks,
        mqtt: client,
        metrics,
        rejects,
        command_timeout: Duration::from_millis(settings.command_timeout_ms),
        enforcer,
        schedules,
        pre_roll: time::Duration::seconds(i64::from(settings.schedule.pre_roll_s)),
        utc_offset: settings.enforcement.offset(),
        compliance: compliance_sources,
        compliance_trigger,
    };
    let http_shutdown = shutdown.clone();
    let http_task = tokio::spawn(async move {
        let server = axum::serve(
            listener,
            api::router(state)
                .merge(ota::routes(bundles))
                .merge(campaigns::routes(campaigns)),
        )
        .with_graceful_shutdown(async move { http_shutdown.cancelled().await });
        if let Err(e) = server.await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    info!(%http_addr, mqtt = %format!("{}:{}", mqtt.0, mqtt.1), "controller started");
    Ok(Running {
        http_addr,
        mqtt,
        shutdown,
        // Order matters: HTTP first, then campaigns (persist), ingest, the fleet flush,
        // enforcement, and last the election (its connection holds the scheduler lock).
        tasks: [
            http_task,
            campaign_task,
            rooms_task,
            schedule_task,
            ingest_task,
            fleet_task,
            enforcer_task,
            compliance_task,
        ]
        .into_iter()
        .chain(tasks)
        .collect(),
        store,
    })
}

/// Hides a password in a database URL for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_hidden_in_database_urls() {
        assert_eq!(
            super::redact("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(super::redact("sqlite:///x.db"), "sqlite:///x.db");
    }
}
