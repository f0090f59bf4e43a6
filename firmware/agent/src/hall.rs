//! The service hall on a device: the kiosk's page and tickets (`gavel-kiosk`), and the
//! speaker that announces called numbers.

use std::path::PathBuf;
use std::sync::Arc;

use gavel_devices::serial::PortSettings;
use gavel_kiosk::limit::{Limits, Rule};
use gavel_kiosk::tickets::{BookSettings, MAX_PER_DAY};
use gavel_kiosk::{KioskParts, KioskSettings, PrinterPort};
use gavel_link::Outbox;
use gavel_profile::Profile;
use gavel_protocol::{Capability, CapabilityState};
use gavel_store::Store;
use tracing::{info, warn};

use crate::AgentConfig;

fn capability(state: CapabilityState, detail: Option<String>) -> Capability {
    Capability {
        name: "kiosk".into(),
        state,
        detail,
    }
}

/// Binds the kiosk's address and serves its page until `shutdown`; the capability as the
/// birth reports it.
pub async fn start_kiosk(
    config: &AgentConfig,
    profile: &Profile,
    kiosk: &gavel_profile::KioskSettings,
    store: Arc<Store>,
    outbox: Arc<Outbox>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> (Option<tokio::task::JoinHandle<()>>, Capability) {
    let k = &config.kiosk;
    let offset = match time::UtcOffset::from_whole_seconds(k.utc_offset_minutes * 60) {
        Ok(o) => o,
        Err(e) => {
            return (
                None,
                capability(CapabilityState::Failed, Some(e.to_string())),
            );
        }
    };
    let court = config
        .placement
        .as_ref()
        .map(|p| p.court.clone())
        .unwrap_or_else(|| "court".into());
    let port = k.printer_port.clone().or_else(|| {
        profile
            .capabilities
            .printer
            .as_ref()
            .map(|p| p.port.clone())
    });
    let printer = match port {
        Some(port) if k.printer_port.is_some() || !config.simulate_hardware => {
            let baud = profile
                .capabilities
                .printer
                .as_ref()
                .map(|p| p.baud)
                .unwrap_or(19200);
            PrinterPort::Serial(PortSettings::new(port, baud))
        }
        _ => PrinterPort::Simulated,
    };
    let settings = KioskSettings {
        controller: k.controller.clone(),
        court_name: k.court_name.clone().unwrap_or_else(|| court.clone()),
        court,
        languages: kiosk.languages.clone(),
        book: BookSettings {
            kiosk_digit: k.number,
            services: kiosk.services.clone(),
            offset,
            max_per_day: MAX_PER_DAY,
        },
        ticket_limits: Limits {
            per_client: Rule {
                per_minute: k.tickets_per_minute,
                burst: k.tickets_burst,
            },
            // Design: one screen is the usual client; the overall bucket guards the
            // printer against anything else on the kiosk's network.
            overall: Rule {
                per_minute: k.tickets_per_minute.saturating_mul(2),
                burst: k.tickets_burst.saturating_mul(2),
            },
        },
        lookup_limits: Limits {
            per_client: Rule {
                per_minute: k.lookups_per_minute,
                burst: k.lookups_burst,
            },
            overall: Rule {
                per_minute: k.lookups_overall_per_minute,
                burst: k.lookups_overall_per_minute.min(10),
            },
        },
        controller_timeout: std::time::Duration::from_millis(800),
        printer_encoding: profile
            .capabilities
            .printer
            .as_ref()
            .map(gavel_devices::escpos::Encoding::from)
            .unwrap_or_default(),
    };
    let listener = match tokio::net::TcpListener::bind(k.listen).await {
        Ok(l) => l,
        Err(e) => {
            warn!(listen = %k.listen, error = %e, "the kiosk page cannot listen");
            return (
                None,
                capability(
                    CapabilityState::Failed,
                    Some(format!("cannot listen on {}: {e}", k.listen)),
                ),
            );
        }
    };
    let addr = listener.local_addr().ok();
    let parts = KioskParts {
        settings,
        store,
        outbox,
        printer,
    };
    let task = tokio::spawn(async move {
        if let Err(e) = gavel_kiosk::serve(listener, parts, shutdown).await {
            warn!(error = %e, "the kiosk page stopped");
        }
    });
    (
        Some(task),
        capability(
            CapabilityState::Running,
            addr.map(|a| format!("page on http://{a}/")),
        ),
    )
}

/// Speaks called numbers one after the other (a task owning the speaker).
pub struct Announcer {
    tx: tokio::sync::mpsc::Sender<(String, String)>,
}

impl Announcer {
    /// Starts the speaker for `languages`, writing WAV files to `out_dir` when given.
    pub fn spawn(languages: Vec<String>, out_dir: Option<PathBuf>) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(String, String)>(32);
        tokio::spawn(async move {
            let mut n: u64 = 0;
            while let Some((number, window)) = rx.recv().await {
                n += 1;
                let utterances = gavel_kiosk::speech::announcement(&number, &window, &languages);
                let out_dir = out_dir.clone();
                if let Some(d) = &out_dir
                    && let Err(e) = std::fs::create_dir_all(d)
                {
                    warn!(dir = %d.display(), error = %e, "cannot create the announcement folder");
                }
                let stem = format!("announce-{n:04}-{number}-w{window}");
                let spoken = tokio::task::spawn_blocking(move || {
                    utterances
                        .iter()
                        .map(|u| {
                            let r = gavel_kiosk::speech::speak(u, out_dir.as_deref(), &stem);
                            (u.text.clone(), r)
                        })
                        .collect::<Vec<_>>()
                })
                .await;
                for (text, r) in spoken.unwrap_or_default() {
                    match r {
                        Ok(Some(file)) => {
                            info!(%text, file = %file.display(), "announced")
                        }
                        Ok(None) => info!(%text, "announced"),
                        Err(e) => warn!(%text, error = %e, "announcement failed"),
                    }
                }
            }
        });
        Self { tx }
    }

    /// Queues an announcement (dropped with a warning when 32 are already waiting).
    pub fn announce(&self, number: &str, window: &str) {
        if self
            .tx
            .try_send((number.to_owned(), window.to_owned()))
            .is_err()
        {
            warn!(%number, %window, "announcement queue full; dropped");
        }
    }
}
