//! Scheduler election for a controller cluster (ADR 0007): the instance that holds a
//! PostgreSQL session advisory lock runs the enforcement engine and the OTA campaigns.
//!
//! Design: the lock is held on one dedicated connection, outside the pool. PostgreSQL
//! releases a session lock when its connection ends, so a killed leader (SIGKILL closes its
//! sockets) frees the lock at once; a leader that cannot reach the database any more learns
//! it within one check interval and steps down. Followers try again every interval.

use std::time::Duration;

use sqlx::{Connection, PgConnection};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How often followers try the lock and the leader checks its connection.
const INTERVAL: Duration = Duration::from_millis(500);
/// A check that takes longer than this counts as a lost connection.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether this instance leads, as a watch (`true` while it holds the lock).
pub type Leadership = watch::Receiver<bool>;

/// A leadership that never changes (single-node mode: this instance always leads).
pub fn always() -> Leadership {
    let (tx, rx) = watch::channel(true);
    // Design: keep the sender alive for the process lifetime so `changed()` never errors.
    std::mem::forget(tx);
    rx
}

/// Starts the election loop on `database_url` with lock `key`.
pub fn spawn(
    database_url: String,
    key: i64,
    shutdown: CancellationToken,
) -> (Leadership, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                () = campaign(&database_url, key, &tx) => {}
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(INTERVAL) => {}
            }
        }
        let _ = tx.send(false);
    });
    (rx, task)
}

/// One connection's life: try the lock until it is ours, then hold it until the connection
/// fails. Returns when the connection is gone (leadership, if held, is lost).
async fn campaign(url: &str, key: i64, leader: &watch::Sender<bool>) {
    let mut conn = match PgConnection::connect(url).await {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "election: cannot connect to PostgreSQL; retrying");
            return;
        }
    };
    loop {
        let got = tokio::time::timeout(
            CHECK_TIMEOUT,
            sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
                .bind(key)
                .fetch_one(&mut conn),
        )
        .await;
        match got {
            Ok(Ok(true)) => break,
            Ok(Ok(false)) => tokio::time::sleep(INTERVAL).await,
            Ok(Err(e)) => {
                warn!(error = %e, "election: lock attempt failed; reconnecting");
                return;
            }
            Err(_) => {
                warn!("election: lock attempt timed out; reconnecting");
                return;
            }
        }
    }
    info!("elected scheduler: this instance runs enforcement and campaigns");
    let _ = leader.send(true);
    loop {
        tokio::time::sleep(INTERVAL).await;
        let alive = tokio::time::timeout(
            CHECK_TIMEOUT,
            sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&mut conn),
        )
        .await;
        if !matches!(alive, Ok(Ok(1))) {
            break;
        }
    }
    // Design: step down before anything else: another instance may hold the lock already.
    let _ = leader.send(false);
    warn!("election: lost the database connection that held the lock; stepping down");
}
