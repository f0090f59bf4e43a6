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
pub mod archive;
pub mod auth;
pub mod broker;
pub mod campaigns;
pub mod compliance;
pub mod config;
pub mod election;
pub mod enforcer;
pub mod fleet_actor;
pub mod gate;
pub mod hall;
pub mod hearings_api;
pub mod identity_api;
pub mod ingest;
pub mod live;
pub mod metrics;
pub mod ota;
pub mod patrol;
pub mod pki;
pub mod recording;
pub mod schedules;
pub mod store;
pub mod transcripts;
pub mod walls;

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
    /// Where devices reach the MQTT TLS gate, when it is on.
    pub mqtt_tls: Option<SocketAddr>,
    /// The device CA's folder (`ca.pem` is what devices trust).
    pub pki_dir: std::path::PathBuf,
    /// Revoked certificates, as the gate sees them.
    pub revocations: gate::Revocations,
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

    let gate_on = settings.mqtt_tls.listen.is_some();
    let mqtt = match &settings.broker {
        BrokerSettings::Embedded {
            listen,
            max_payload_bytes,
        } => {
            let (mut listen, max) = (*listen, *max_payload_bytes);
            if gate_on && !listen.ip().is_loopback() {
                // Devices come through the gate; the broker itself stays on loopback.
                listen.set_ip(std::net::IpAddr::from([127, 0, 0, 1]));
                info!(%listen, "TLS gate on: the embedded broker listens on loopback only");
            }
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
    let client_tls = match &settings.mqtt_client_tls_dir {
        Some(dir) => Some(ingest::ClientTls::load(dir)?),
        None => None,
    };
    let (client, eventloop) = ingest::client(&mqtt.0, mqtt.1, client_tls.as_ref());
    let (schedules, schedule_inbox) = schedules::channel();
    let (hall, hall_inbox) = hall::channel();
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
            cluster_tls: client_tls.clone(),
            schedules: schedules.clone(),
        },
        shutdown.child_token(),
    );
    let (compliance_trigger, compliance_rx) = compliance::channel();
    let (renewal_tx, renewal_rx) = tokio::sync::mpsc::unbounded_channel();
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
            hall: Some(hall.clone()),
            clustered,
            renewals: Some(renewal_tx),
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
    let hall_secret = if settings.hall.lookup_secret.is_empty() {
        tracing::warn!(
            "no hall lookup_secret set (GAVEL_HALL_SECRET): case check codes change with every start"
        );
        uuid::Uuid::new_v4().as_bytes().to_vec()
    } else {
        settings.hall.lookup_secret.as_bytes().to_vec()
    };
    let hall_task = hall::spawn(
        hall::HallParts {
            settings: settings.hall.clone(),
            offset: settings.enforcement.offset(),
            store: store.clone(),
            fleet: fleet.clone(),
            mqtt: client.clone(),
        },
        hall_inbox,
        shutdown.child_token(),
    );
    let hall_routes = hall::routes(hall::HallState {
        hall,
        enforcer: enforcer.clone(),
        secret: hall_secret,
        offset: settings.enforcement.offset(),
        failures: Default::default(),
    });
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
    let (walls, walls_task) = walls::spawn(
        store.clone(),
        client.clone(),
        &push,
        enforcer.clone(),
        shutdown.child_token(),
    );
    let state = api::AppState {
        fleet,
        store: store.clone(),
        push,
        acks,
        mqtt: client.clone(),
        metrics,
        rejects,
        command_timeout: Duration::from_millis(settings.command_timeout_ms),
        enforcer: enforcer.clone(),
        schedules,
        pre_roll: time::Duration::seconds(i64::from(settings.schedule.pre_roll_s)),
        utc_offset: settings.enforcement.offset(),
        compliance: compliance_sources,
        compliance_trigger,
        live: live::LiveProxy::from_env(),
    };
    let archive = archive::Archive::open(&settings.archive, &settings.data_dir)
        .context("opening the hearing archive")?;
    info!(location = %archive.location, "hearing archive");
    let archive_routes = archive::routes(archive::ArchiveState {
        archive,
        store: store.clone(),
        metrics: state.metrics.clone(),
    });
    let pki_dir = settings.data_dir.join("pki");
    let pki = Arc::new(pki::Pki::open(&pki_dir)?);
    let revocations = gate::Revocations::new(
        store
            .revoked_certs()
            .await
            .context("loading revoked certificates")?
            .into_iter()
            .map(|(serial, _)| serial),
    );
    let mut mqtt_tls = None;
    if let Some(listen) = settings.mqtt_tls.listen {
        let max_packet_bytes = match &settings.broker {
            BrokerSettings::Embedded {
                max_payload_bytes, ..
            } => *max_payload_bytes + 64 * 1024,
            BrokerSettings::External { .. } => 1024 * 1024,
        };
        let server = pki.server_cert(&settings.mqtt_tls.names)?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding the MQTT TLS gate on {listen}"))?;
        mqtt_tls = Some(listener.local_addr()?);
        let upstream: SocketAddr = format!("{}:{}", mqtt.0, mqtt.1)
            .parse()
            .context("the embedded broker's address")?;
        let config = gate::GateConfig {
            ca_pem: pki.ca().cert_pem().to_string(),
            cert_pem: server.issued.cert_pem,
            key_pem: server.key_pem,
            upstream,
            max_packet_bytes,
            revocations: revocations.clone(),
        };
        let token = shutdown.child_token();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = gate::run(listener, config, token).await {
                tracing::error!(error = %format!("{e:#}"), "MQTT TLS gate stopped");
            }
        }));
    }
    let identity = identity_api::IdentityState {
        store: store.clone(),
        pki: pki.clone(),
        revocations: revocations.clone(),
        mqtt_tls,
        device_cert_validity: time::Duration::seconds(i64::from(settings.device_cert_validity_s)),
        device_broker: settings.device_broker.as_ref().and_then(|b| {
            let (h, p) = b.rsplit_once(':')?;
            Some((h.to_string(), p.parse().ok()?))
        }),
    };
    if let Some(admin) = &settings.auth.bootstrap_admin
        && store.user_count().await.context("counting users")? == 0
    {
        let (name, password) = admin.split_once(':').unwrap_or((admin.as_str(), ""));
        auth::create_user(
            &store,
            auth::NewUser {
                name: name.to_string(),
                role: "administrator".into(),
                court: None,
                password: password.to_string(),
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("GAVEL_BOOTSTRAP_ADMIN: {}", e.1))?;
        info!(user = name, "made the first administrator");
    }
    if !settings.auth.enabled {
        tracing::warn!("API sign-in is OFF (GAVEL_AUTH=off): loopback only, development use");
    }
    let access = auth::AuthState {
        store: store.clone(),
        enforcer: enforcer.clone(),
        limiter: Default::default(),
        enabled: settings.auth.enabled,
    };
    tasks.push(identity_api::spawn_renewals(
        identity.clone(),
        renewal_rx,
        client.clone(),
        shutdown.child_token(),
    ));
    let http_shutdown = shutdown.clone();
    let http_task = tokio::spawn(async move {
        let server = axum::serve(
            listener,
            api::router(state)
                .merge(ota::routes(bundles))
                .merge(campaigns::routes(campaigns))
                .merge(hall_routes)
                .merge(walls::routes(walls))
                .merge(archive_routes)
                .merge(identity_api::routes(identity))
                .merge(auth::routes(access.clone()))
                .layer(axum::middleware::from_fn_with_state(access, auth::require))
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { http_shutdown.cancelled().await });
        if let Err(e) = server.await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    info!(%http_addr, mqtt = %format!("{}:{}", mqtt.0, mqtt.1), mqtt_tls = ?mqtt_tls, "controller started");
    Ok(Running {
        http_addr,
        mqtt,
        mqtt_tls,
        pki_dir,
        revocations,
        shutdown,
        // Order matters: HTTP first, then campaigns (persist), ingest, the fleet flush,
        // enforcement, and last the election (its connection holds the scheduler lock).
        tasks: [
            http_task,
            campaign_task,
            rooms_task,
            hall_task,
            walls_task,
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
