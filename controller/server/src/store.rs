//! Persistence: the fleet registry and the device event log, in SQLite (embedded default)
//! or PostgreSQL (scale-out), through sqlx's `Any` driver with the same SQL for both.
//!
//! Design: a device row keeps the whole [`DeviceRecord`] as JSON plus the columns that
//! queries filter on. The fleet actor writes behind: dirty records are flushed in one
//! transaction per second, so telemetry from thousands of devices costs one commit.

use gavel_fleet::DeviceRecord;
use gavel_fleet::compliance::Compliance;
use gavel_fleet::enforcement::Alarm;
use gavel_fleet::hearings::Hearing;
use gavel_fleet::sequence::Cursor;
use gavel_protocol::{DeviceId, Event, EventBody};
use serde::Serialize;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Row};
use time::OffsetDateTime;

/// Which database engine the URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("stored record for device {device} is unreadable: {message}")]
    Corrupt { device: String, message: String },
}

/// `users` columns: name, role, court, password hash, disabled at.
type UserTuple = (String, String, Option<String>, String, Option<i64>);
/// `audit_log` columns: at, actor, role, source, action, target, outcome, detail.
type AuditRow = (
    i64,
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    String,
    Option<String>,
);

/// A user as stored.
#[derive(Debug, Clone)]
pub struct UserRow {
    pub name: String,
    pub role: String,
    pub court: Option<String>,
    /// Argon2id PHC string (empty when listing).
    pub password_hash: String,
    pub disabled: bool,
}

/// One audit record: who did what to what, from where, and how it ended.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub at_ms: i64,
    pub actor: String,
    pub role: Option<String>,
    /// Client address.
    pub source: Option<String>,
    /// `METHOD /path` and the access action.
    pub action: String,
    pub target: String,
    /// `ok`, `failed` (the action ran and failed) or `denied` (refused before it ran).
    pub outcome: String,
    pub detail: Option<String>,
}

/// The controller's database.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// One stored device event.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StoredEvent {
    pub device: String,
    /// When the controller received it (RFC 3339).
    pub received: String,
    /// Boot of the agent that produced it.
    pub boot_id: String,
    pub seq: i64,
    pub event_id: String,
    pub phase: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// The whole event as the device sent it.
    #[schema(value_type = Object)]
    pub event: serde_json::Value,
}

/// A stored patrol finding event with its device's place.
#[derive(Debug, Clone)]
pub struct FindingRow {
    pub device: String,
    pub court: Option<String>,
    pub room: Option<String>,
    pub event: Event,
}

/// Exactly-once events: (device, boot, seq) is unique; per-stream positions.
const EXACTLY_ONCE: &str = "ALTER TABLE device_events ADD COLUMN boot_id TEXT NOT NULL DEFAULT '';
        CREATE UNIQUE INDEX IF NOT EXISTS device_events_once ON device_events (device_id, boot_id, seq);
        CREATE TABLE IF NOT EXISTS event_streams (
            device_id TEXT NOT NULL,
            boot_id TEXT NOT NULL,
            next_seq BIGINT NOT NULL,
            updated_ms BIGINT NOT NULL,
            PRIMARY KEY (device_id, boot_id)
        )";

/// Hearings and alarms (same SQL for both engines).
const HEARINGS_AND_ALARMS: &str = "CREATE TABLE IF NOT EXISTS hearings (
            id TEXT PRIMARY KEY,
            court TEXT NOT NULL,
            room TEXT NOT NULL,
            start_ms BIGINT NOT NULL,
            end_ms BIGINT NOT NULL,
            record TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS hearings_by_room ON hearings (court, room, start_ms);
        CREATE TABLE IF NOT EXISTS alarms (
            id TEXT PRIMARY KEY,
            open BIGINT NOT NULL,
            raised_ms BIGINT NOT NULL,
            record TEXT NOT NULL
        )";

/// One open alarm per condition across every controller instance: the key names the
/// condition (kind and subject); a second raise of a condition already open is refused.
const ONE_OPEN_ALARM: &str = "ALTER TABLE alarms ADD COLUMN alarm_key TEXT;
        CREATE UNIQUE INDEX IF NOT EXISTS alarms_one_open ON alarms (alarm_key) WHERE open = 1";

/// (version, SQLite, PostgreSQL).
/// Users, sessions and the audit log (migration 9): the same for both engines but the
/// audit log's id column (SQLite: the rowid).
macro_rules! users_sql {
    ($audit_id:literal) => {
        concat!(
            "CREATE TABLE IF NOT EXISTS users (
            name TEXT PRIMARY KEY,
            role TEXT NOT NULL,
            court TEXT,
            password_hash TEXT NOT NULL,
            created_ms BIGINT NOT NULL,
            disabled_ms BIGINT
        );
        CREATE TABLE IF NOT EXISTS sessions (
            token_sha256 TEXT PRIMARY KEY,
            user_name TEXT NOT NULL,
            created_ms BIGINT NOT NULL,
            expires_ms BIGINT NOT NULL
        );
        CREATE TABLE IF NOT EXISTS audit_log (
            ",
            $audit_id,
            ",
            at_ms BIGINT NOT NULL,
            actor TEXT NOT NULL,
            role TEXT,
            source TEXT,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            outcome TEXT NOT NULL,
            detail TEXT
        )"
        )
    };
}

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        // SQLite
        "CREATE TABLE IF NOT EXISTS devices (
        id TEXT PRIMARY KEY,
        court TEXT,
        room TEXT,
        online BIGINT NOT NULL,
        last_seen_ms BIGINT NOT NULL,
        record TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS device_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        device_id TEXT NOT NULL,
        received_ms BIGINT NOT NULL,
        seq BIGINT NOT NULL,
        event_id TEXT NOT NULL,
        phase TEXT NOT NULL,
        kind TEXT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS device_events_by_device ON device_events (device_id, id);",
        // PostgreSQL
        "CREATE TABLE IF NOT EXISTS devices (
        id TEXT PRIMARY KEY,
        court TEXT,
        room TEXT,
        online BIGINT NOT NULL,
        last_seen_ms BIGINT NOT NULL,
        record TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS device_events (
        id BIGSERIAL PRIMARY KEY,
        device_id TEXT NOT NULL,
        received_ms BIGINT NOT NULL,
        seq BIGINT NOT NULL,
        event_id TEXT NOT NULL,
        phase TEXT NOT NULL,
        kind TEXT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS device_events_by_device ON device_events (device_id, id);",
    ),
    (2, EXACTLY_ONCE, EXACTLY_ONCE),
    (3, HEARINGS_AND_ALARMS, HEARINGS_AND_ALARMS),
    (
        4,
        // OTA campaigns: the rollout core's state as JSON, one row per campaign.
        "CREATE TABLE IF NOT EXISTS ota_campaigns (
            id TEXT PRIMARY KEY,
            updated_ms BIGINT NOT NULL,
            campaign TEXT NOT NULL
        )",
        "CREATE TABLE IF NOT EXISTS ota_campaigns (
            id TEXT PRIMARY KEY,
            updated_ms BIGINT NOT NULL,
            campaign TEXT NOT NULL
        )",
    ),
    (5, COMPLIANCE, COMPLIANCE),
    (6, ONE_OPEN_ALARM, ONE_OPEN_ALARM),
    (7, HALL_TICKETS, HALL_TICKETS),
    (8, IDENTITY, IDENTITY),
    (
        9,
        users_sql!("id INTEGER PRIMARY KEY AUTOINCREMENT"),
        users_sql!("id BIGSERIAL PRIMARY KEY"),
    ),
    (10, WALLS, WALLS),
    (11, ARCHIVE, ARCHIVE),
    (
        12,
        crate::transcripts::db::MIGRATION_SQLITE,
        crate::transcripts::db::MIGRATION_POSTGRES,
    ),
];

/// Archived segments: one row per segment file the archive holds, written after its
/// SHA-256 was verified on arrival (same SQL for both engines). The object's key in the
/// archive is `<device_id>/<hearing_id>/<file>`.
const ARCHIVE: &str = "CREATE TABLE IF NOT EXISTS archive_segments (
            device_id TEXT NOT NULL,
            hearing_id TEXT NOT NULL,
            file TEXT NOT NULL,
            source TEXT NOT NULL,
            idx BIGINT NOT NULL,
            sha256 TEXT NOT NULL,
            bytes BIGINT NOT NULL,
            offset_ns BIGINT NOT NULL,
            duration_ns BIGINT NOT NULL,
            stored_ms BIGINT NOT NULL,
            PRIMARY KEY (device_id, hearing_id, file)
        );
        CREATE INDEX IF NOT EXISTS archive_by_hearing ON archive_segments (hearing_id)";

/// A segment the archive holds (verified on arrival).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ArchivedSegment {
    pub device_id: String,
    pub hearing_id: String,
    /// `<source>/NNNNN.ts`, as the device's segment event names it.
    pub file: String,
    pub source: String,
    /// Position in the device's hash chain of the hearing.
    pub index: u64,
    pub sha256: String,
    pub bytes: u64,
    /// Start on the hearing's timeline, nanoseconds.
    pub offset_ns: u64,
    pub duration_ns: u64,
    /// When it was stored, ms since the epoch.
    pub stored_ms: i64,
}

type ArchiveRow = (
    String,
    String,
    String,
    String,
    i64,
    String,
    i64,
    i64,
    i64,
    i64,
);

fn archived(r: ArchiveRow) -> ArchivedSegment {
    ArchivedSegment {
        device_id: r.0,
        hearing_id: r.1,
        file: r.2,
        source: r.3,
        index: r.4.max(0) as u64,
        sha256: r.5,
        bytes: r.6.max(0) as u64,
        offset_ns: r.7.max(0) as u64,
        duration_ns: r.8.max(0) as u64,
        stored_ms: r.9,
    }
}

const ARCHIVE_COLUMNS: &str =
    "device_id, hearing_id, file, source, idx, sha256, bytes, offset_ns, duration_ns, stored_ms";

/// The service hall's queue tickets, one row per court, day and number (same SQL for
/// both engines).
const HALL_TICKETS: &str = "CREATE TABLE IF NOT EXISTS hall_tickets (
            court TEXT NOT NULL,
            day TEXT NOT NULL,
            number TEXT NOT NULL,
            updated_ms BIGINT NOT NULL,
            record TEXT NOT NULL,
            PRIMARY KEY (court, day, number)
        )";

/// Device identity (issue 9): one-time enrollment tokens (only their SHA-256 is kept) and
/// every certificate issued, with its revocation.
const IDENTITY: &str = "CREATE TABLE IF NOT EXISTS enrollment_tokens (
            token_sha256 TEXT PRIMARY KEY,
            device_id TEXT NOT NULL,
            assignment TEXT NOT NULL,
            created_ms BIGINT NOT NULL,
            expires_ms BIGINT NOT NULL,
            used_ms BIGINT
        );
        CREATE TABLE IF NOT EXISTS device_certs (
            serial TEXT PRIMARY KEY,
            device_id TEXT NOT NULL,
            issued_ms BIGINT NOT NULL,
            not_after_ms BIGINT NOT NULL,
            revoked_ms BIGINT
        );
        CREATE INDEX IF NOT EXISTS device_certs_by_device ON device_certs (device_id)";

/// Video walls: each wall device's configuration (a `Wall` message) as JSON.
const WALLS: &str = "CREATE TABLE IF NOT EXISTS walls (
            device_id TEXT PRIMARY KEY,
            updated_ms BIGINT NOT NULL,
            wall TEXT NOT NULL
        )";

/// Hearing-scoped events (recording, segment, source lost, seal), compliance records and
/// the devices' pinned evidence keys (same SQL for both engines).
const COMPLIANCE: &str = "ALTER TABLE device_events ADD COLUMN hearing_id TEXT;
        CREATE INDEX IF NOT EXISTS device_events_by_hearing ON device_events (hearing_id);
        CREATE TABLE IF NOT EXISTS compliance (
            hearing_id TEXT PRIMARY KEY,
            court TEXT NOT NULL,
            start_ms BIGINT NOT NULL,
            verdict TEXT NOT NULL,
            computed_ms BIGINT NOT NULL,
            record TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS compliance_by_day ON compliance (court, start_ms);
        CREATE TABLE IF NOT EXISTS evidence_keys (
            device_id TEXT PRIMARY KEY,
            public_key TEXT NOT NULL,
            first_seen_ms BIGINT NOT NULL
        )";

/// The condition an alarm is about, as stored in `alarms.alarm_key`.
pub fn alarm_key(a: &Alarm) -> String {
    let subject = serde_json::to_string(&a.subject).unwrap_or_default();
    let kind = serde_json::to_string(&a.kind).unwrap_or_default();
    format!("{kind}:{subject}")
}

fn millis(ts: OffsetDateTime) -> i64 {
    (ts.unix_timestamp_nanos() / 1_000_000) as i64
}

impl Store {
    /// Connects and brings the schema up to date.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let mut options =
            AnyPoolOptions::new().max_connections(if backend == Backend::Sqlite { 1 } else { 8 });
        if backend == Backend::Sqlite {
            options = options.after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query("PRAGMA journal_mode=WAL")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA synchronous=NORMAL")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA busy_timeout=5000")
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            });
        }
        let pool = options.connect(url).await?;
        let store = Self { pool, backend };
        store.migrate().await?;
        crate::transcripts::db::ensure_search_index(&store).await;
        Ok(store)
    }

    /// The engine in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The connection pool, for the modules that keep their own tables (transcripts).
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY)")
            .execute(&self.pool)
            .await?;
        for (version, sqlite, postgres) in MIGRATIONS {
            let done: Option<i64> =
                sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
                    .bind(*version)
                    .fetch_optional(&self.pool)
                    .await?;
            if done.is_some() {
                continue;
            }
            let sql = match self.backend {
                Backend::Sqlite => sqlite,
                Backend::Postgres => postgres,
            };
            let mut tx = self.pool.begin().await?;
            for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                sqlx::query(statement).execute(&mut *tx).await?;
            }
            sqlx::query("INSERT INTO schema_migrations (version) VALUES ($1)")
                .bind(*version)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// Inserts or replaces device records in one transaction.
    pub async fn save_devices(&self, records: &[DeviceRecord]) -> Result<(), StoreError> {
        self.save_batch(records, &[], &[]).await
    }

    /// Writes device records, events and stream cursors in one transaction, so a crash
    /// never leaves events stored without their cursor or the other way round. An event
    /// already stored (same device, boot and seq) is skipped: effects are exactly-once.
    pub async fn save_batch(
        &self,
        records: &[DeviceRecord],
        events: &[(DeviceId, Event, OffsetDateTime)],
        cursors: &[Cursor],
    ) -> Result<(), StoreError> {
        if records.is_empty() && events.is_empty() && cursors.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for r in records {
            let json = serde_json::to_string(r).map_err(|e| StoreError::Corrupt {
                device: r.id.to_string(),
                message: e.to_string(),
            })?;
            sqlx::query(
                "INSERT INTO devices (id, court, room, online, last_seen_ms, record)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (id) DO UPDATE SET court = excluded.court, room = excluded.room,
                   online = excluded.online, last_seen_ms = excluded.last_seen_ms,
                   record = excluded.record",
            )
            .bind(r.id.as_str())
            .bind(r.court.clone())
            .bind(r.room.clone())
            .bind(i64::from(r.online))
            .bind(millis(r.last_seen))
            .bind(json)
            .execute(&mut *tx)
            .await?;
        }
        for (device, event, received) in events {
            let body = String::from_utf8_lossy(&gavel_protocol::encode(event)).into_owned();
            let kind = serde_json::to_value(&event.body)
                .ok()
                .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned))
                .unwrap_or_default();
            let phase = serde_json::to_value(event.phase)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let stored = sqlx::query(
                "INSERT INTO device_events (device_id, boot_id, received_ms, seq, event_id, phase, kind, body, hearing_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (device_id, boot_id, seq) DO NOTHING",
            )
            .bind(device.as_str())
            .bind(event.boot_id.clone())
            .bind(millis(*received))
            .bind(i64::try_from(event.seq).unwrap_or(i64::MAX))
            .bind(event.id.clone())
            .bind(phase)
            .bind(kind)
            .bind(body)
            .bind(event.body.hearing_id().map(str::to_owned))
            .execute(&mut *tx)
            .await?;
            // A transcript line is kept in its own table too, in this transaction (a
            // duplicate event changes nothing).
            if stored.rows_affected() > 0 && matches!(event.body, EventBody::Transcript { .. }) {
                crate::transcripts::db::apply_event(
                    &mut tx,
                    self.backend,
                    device.as_str(),
                    event,
                    *received,
                )
                .await?;
            }
        }
        let now = millis(OffsetDateTime::now_utc());
        for c in cursors {
            sqlx::query(
                "INSERT INTO event_streams (device_id, boot_id, next_seq, updated_ms)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (device_id, boot_id) DO UPDATE SET next_seq = excluded.next_seq,
                   updated_ms = excluded.updated_ms",
            )
            .bind(c.device.as_str())
            .bind(c.boot_id.clone())
            .bind(i64::try_from(c.next).unwrap_or(i64::MAX))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Inserts or replaces hearings in one transaction.
    pub async fn save_hearings(&self, hearings: &[Hearing]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for h in hearings {
            let json = serde_json::to_string(h).map_err(|e| StoreError::Corrupt {
                device: h.id.clone(),
                message: e.to_string(),
            })?;
            sqlx::query(
                "INSERT INTO hearings (id, court, room, start_ms, end_ms, record) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (id) DO UPDATE SET court = excluded.court, room = excluded.room,
                   start_ms = excluded.start_ms, end_ms = excluded.end_ms, record = excluded.record",
            )
            .bind(h.id.clone())
            .bind(h.court.clone())
            .bind(h.room.clone())
            .bind(millis(h.scheduled_start))
            .bind(millis(h.scheduled_end))
            .bind(json)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every stored hearing.
    pub async fn load_hearings(&self) -> Result<Vec<Hearing>, StoreError> {
        self.load_records("SELECT id, record FROM hearings ORDER BY start_ms")
            .await
    }

    /// Runs `sql` (selecting `id` and a JSON `record`) and decodes every record.
    async fn load_records<T: serde::de::DeserializeOwned>(
        &self,
        sql: &str,
    ) -> Result<Vec<T>, StoreError> {
        let rows = sqlx::query(sql).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("id")?;
                let json: String = row.try_get("record")?;
                serde_json::from_str(&json).map_err(|e| StoreError::Corrupt {
                    device: id,
                    message: e.to_string(),
                })
            })
            .collect()
    }

    /// Stores alarm changes in one transaction: a `raised` alarm is inserted unless its
    /// condition already has an open alarm (raised by another leader); others are updated.
    /// Returns the raised alarms that were refused as duplicates.
    pub async fn save_alarms(&self, alarms: &[(bool, Alarm)]) -> Result<Vec<Alarm>, StoreError> {
        let mut refused = Vec::new();
        let mut tx = self.pool.begin().await?;
        for (raised, a) in alarms {
            let json = serde_json::to_string(a).map_err(|e| StoreError::Corrupt {
                device: a.id.clone(),
                message: e.to_string(),
            })?;
            if *raised {
                // Design: no conflict target, so both the id and the one-open-alarm index
                // refuse a duplicate raise silently; the caller adopts the stored alarm.
                let done = sqlx::query(
                    "INSERT INTO alarms (id, open, raised_ms, record, alarm_key) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT DO NOTHING",
                )
                .bind(a.id.clone())
                .bind(i64::from(a.resolved.is_none()))
                .bind(millis(a.raised_at))
                .bind(json)
                .bind(alarm_key(a))
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    refused.push(a.clone());
                }
            } else {
                sqlx::query("UPDATE alarms SET open = $1, record = $2 WHERE id = $3")
                    .bind(i64::from(a.resolved.is_none()))
                    .bind(json)
                    .bind(a.id.clone())
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(refused)
    }

    /// Every open alarm.
    pub async fn open_alarms(&self) -> Result<Vec<Alarm>, StoreError> {
        self.load_records("SELECT id, record FROM alarms WHERE open = 1 ORDER BY raised_ms")
            .await
    }

    /// The latest recording event of every device that has a room: (court, room, event),
    /// oldest first, for a new leader to learn what each room is doing.
    pub async fn latest_recording_events(
        &self,
    ) -> Result<Vec<(String, String, Event)>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.court AS court, d.room AS room, e.body AS body FROM device_events e
             JOIN devices d ON d.id = e.device_id
             WHERE e.id IN (SELECT MAX(id) FROM device_events WHERE kind = 'recording' GROUP BY device_id)
               AND d.court IS NOT NULL AND d.room IS NOT NULL
             ORDER BY e.id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let body: String = row.try_get("body")?;
            match gavel_protocol::decode::<Event>(body.as_bytes()) {
                Ok(event) => out.push((row.try_get("court")?, row.try_get("room")?, event)),
                Err(e) => tracing::warn!(error = %e, "stored recording event unreadable; skipped"),
            }
        }
        Ok(out)
    }

    /// The latest `limit` alarms, open and closed, newest first.
    pub async fn alarm_history(&self, limit: i64) -> Result<Vec<serde_json::Value>, StoreError> {
        let rows = sqlx::query("SELECT record FROM alarms ORDER BY raised_ms DESC LIMIT $1")
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| r.try_get::<String, _>("record").ok())
            .filter_map(|j| serde_json::from_str(&j).ok())
            .collect())
    }

    /// Every event stream's position.
    pub async fn load_cursors(&self) -> Result<Vec<Cursor>, StoreError> {
        let rows = sqlx::query("SELECT device_id, boot_id, next_seq FROM event_streams")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let device: String = row.try_get("device_id")?;
                let next: i64 = row.try_get("next_seq")?;
                Ok(Cursor {
                    device: DeviceId::new(device.clone()).map_err(|e| StoreError::Corrupt {
                        device,
                        message: e.to_string(),
                    })?,
                    boot_id: row.try_get("boot_id")?,
                    next: u64::try_from(next).unwrap_or(0),
                })
            })
            .collect()
    }

    /// Stores (inserts or replaces) a campaign.
    pub async fn save_campaign(&self, id: &str, json: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO ota_campaigns (id, updated_ms, campaign) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET updated_ms = excluded.updated_ms, campaign = excluded.campaign",
        )
        .bind(id)
        .bind(millis(OffsetDateTime::now_utc()))
        .bind(json)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Stores (inserts or replaces) a wall's configuration.
    pub async fn save_wall(&self, device: &str, json: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO walls (device_id, updated_ms, wall) VALUES ($1, $2, $3)
             ON CONFLICT (device_id) DO UPDATE SET updated_ms = excluded.updated_ms, wall = excluded.wall",
        )
        .bind(device)
        .bind(millis(OffsetDateTime::now_utc()))
        .bind(json)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every stored wall configuration: (device, JSON).
    pub async fn load_walls(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query("SELECT device_id, wall FROM walls ORDER BY device_id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("device_id")?, row.try_get("wall")?)))
            .collect()
    }

    /// Every stored campaign, as JSON.
    pub async fn load_campaigns(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT campaign FROM ota_campaigns ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| row.try_get("campaign").map_err(StoreError::from))
            .collect()
    }

    /// Stores (inserts or replaces) hall tickets of their courts, in one transaction.
    pub async fn save_hall_tickets(
        &self,
        tickets: &[(String, gavel_fleet::hall::Ticket)],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for (court, t) in tickets {
            let json = serde_json::to_string(t).unwrap_or_default();
            sqlx::query(
                "INSERT INTO hall_tickets (court, day, number, updated_ms, record) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (court, day, number) DO UPDATE SET updated_ms = excluded.updated_ms, record = excluded.record",
            )
            .bind(court)
            .bind(&t.day)
            .bind(&t.number)
            .bind(millis(OffsetDateTime::now_utc()))
            .bind(json)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Hall tickets of `day` and later, with their courts.
    pub async fn load_hall_tickets(
        &self,
        day: &str,
    ) -> Result<Vec<(String, gavel_fleet::hall::Ticket)>, StoreError> {
        let rows = sqlx::query("SELECT court, record FROM hall_tickets WHERE day >= $1")
            .bind(day)
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::new();
        for row in rows {
            let court: String = row.try_get("court")?;
            let json: String = row.try_get("record")?;
            if let Ok(t) = serde_json::from_str(&json) {
                out.push((court, t));
            }
        }
        Ok(out)
    }

    /// `ticket` events received since `since_ms`, as (device, event JSON), oldest first.
    pub async fn ticket_events_since(
        &self,
        since_ms: i64,
    ) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        let rows = sqlx::query(
            "SELECT device_id, body FROM device_events WHERE kind = 'ticket' AND received_ms >= $1 ORDER BY id",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for row in rows {
            let device: String = row.try_get("device_id")?;
            let body: String = row.try_get("body")?;
            if let Ok(v) = serde_json::from_str(&body) {
                out.push((device, v));
            }
        }
        Ok(out)
    }

    /// Every stored device record.
    pub async fn load_devices(&self) -> Result<Vec<DeviceRecord>, StoreError> {
        self.load_records("SELECT id, record FROM devices ORDER BY id")
            .await
    }

    /// One stored device record.
    pub async fn load_device(&self, id: &DeviceId) -> Result<Option<DeviceRecord>, StoreError> {
        let row = sqlx::query("SELECT record FROM devices WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let json: String = row.try_get("record")?;
        serde_json::from_str(&json)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                device: id.to_string(),
                message: e.to_string(),
            })
    }

    /// Appends events to the event log (duplicates skipped).
    pub async fn append_events(
        &self,
        events: &[(DeviceId, Event, OffsetDateTime)],
    ) -> Result<(), StoreError> {
        self.save_batch(&[], events, &[]).await
    }

    /// The latest `limit` events of a device, newest first.
    pub async fn events(
        &self,
        device: &DeviceId,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT received_ms, boot_id, seq, event_id, phase, kind, body FROM device_events
             WHERE device_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(device.as_str())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let received_ms: i64 = row.try_get("received_ms")?;
                let body: String = row.try_get("body")?;
                let received =
                    OffsetDateTime::from_unix_timestamp_nanos(i128::from(received_ms) * 1_000_000)
                        .map(gavel_protocol::rfc3339)
                        .unwrap_or_default();
                Ok(StoredEvent {
                    device: device.to_string(),
                    received,
                    boot_id: row.try_get("boot_id")?,
                    seq: row.try_get("seq")?,
                    event_id: row.try_get("event_id")?,
                    phase: row.try_get("phase")?,
                    kind: row.try_get("kind")?,
                    event: serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)),
                })
            })
            .collect()
    }

    /// Every hearing-scoped event of a hearing (all devices), in arrival order, with the
    /// device and the time it was stored.
    pub async fn hearing_events(
        &self,
        hearing_id: &str,
    ) -> Result<Vec<(String, OffsetDateTime, Event)>, StoreError> {
        let rows = sqlx::query(
            "SELECT device_id, received_ms, body FROM device_events
             WHERE hearing_id = $1 ORDER BY id",
        )
        .bind(hearing_id)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let device: String = row.try_get("device_id")?;
            let received_ms: i64 = row.try_get("received_ms")?;
            let body: String = row.try_get("body")?;
            let event = gavel_protocol::decode::<Event>(body.as_bytes()).map_err(|e| {
                StoreError::Corrupt {
                    device: device.clone(),
                    message: format!("stored event of hearing {hearing_id}: {e}"),
                }
            })?;
            let received =
                OffsetDateTime::from_unix_timestamp_nanos(i128::from(received_ms) * 1_000_000)
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH);
            out.push((device, received, event));
        }
        Ok(out)
    }

    /// Stores (replaces) a hearing's compliance record.
    pub async fn save_compliance(&self, c: &Compliance) -> Result<(), StoreError> {
        let json = serde_json::to_string(c).map_err(|e| StoreError::Corrupt {
            device: c.hearing_id.clone(),
            message: e.to_string(),
        })?;
        let verdict = serde_json::to_value(c.verdict)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        sqlx::query(
            "INSERT INTO compliance (hearing_id, court, start_ms, verdict, computed_ms, record)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (hearing_id) DO UPDATE SET court = excluded.court,
               start_ms = excluded.start_ms, verdict = excluded.verdict,
               computed_ms = excluded.computed_ms, record = excluded.record",
        )
        .bind(c.hearing_id.clone())
        .bind(c.court.clone())
        .bind(millis(c.scheduled_start))
        .bind(verdict)
        .bind(millis(c.computed_at))
        .bind(json)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A hearing's stored compliance record.
    pub async fn compliance(&self, hearing_id: &str) -> Result<Option<Compliance>, StoreError> {
        let row: Option<String> =
            sqlx::query_scalar("SELECT record FROM compliance WHERE hearing_id = $1")
                .bind(hearing_id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| {
            serde_json::from_str(&r).map_err(|e| StoreError::Corrupt {
                device: hearing_id.to_owned(),
                message: format!("compliance record: {e}"),
            })
        })
        .transpose()
    }

    /// Compliance records of hearings scheduled to start in `[from, to)`, optionally of
    /// one court.
    pub async fn compliance_between(
        &self,
        court: Option<&str>,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<Compliance>, StoreError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT hearing_id, record FROM compliance
             WHERE start_ms >= $1 AND start_ms < $2 AND ($3 = '' OR court = $3)",
        )
        .bind(millis(from))
        .bind(millis(to))
        .bind(court.unwrap_or("").to_owned())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, r)| {
                serde_json::from_str(&r).map_err(|e| StoreError::Corrupt {
                    device: id,
                    message: format!("compliance record: {e}"),
                })
            })
            .collect()
    }

    /// Records an archived segment (after its hash was verified); an existing row is kept.
    pub async fn save_archived(&self, a: &ArchivedSegment) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO archive_segments ({ARCHIVE_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (device_id, hearing_id, file) DO NOTHING"
        ))
        .bind(a.device_id.clone())
        .bind(a.hearing_id.clone())
        .bind(a.file.clone())
        .bind(a.source.clone())
        .bind(a.index as i64)
        .bind(a.sha256.clone())
        .bind(a.bytes as i64)
        .bind(a.offset_ns as i64)
        .bind(a.duration_ns as i64)
        .bind(a.stored_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The archived segment `file` of `device`'s recording of `hearing`.
    pub async fn archived_segment(
        &self,
        device: &str,
        hearing: &str,
        file: &str,
    ) -> Result<Option<ArchivedSegment>, StoreError> {
        let row: Option<ArchiveRow> = sqlx::query_as(&format!(
            "SELECT {ARCHIVE_COLUMNS} FROM archive_segments
             WHERE device_id = $1 AND hearing_id = $2 AND file = $3"
        ))
        .bind(device.to_owned())
        .bind(hearing.to_owned())
        .bind(file.to_owned())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(archived))
    }

    /// Every archived segment of `hearing` (all devices), by device, source and offset.
    pub async fn archived_segments(
        &self,
        hearing: &str,
    ) -> Result<Vec<ArchivedSegment>, StoreError> {
        let rows: Vec<ArchiveRow> = sqlx::query_as(&format!(
            "SELECT {ARCHIVE_COLUMNS} FROM archive_segments WHERE hearing_id = $1
             ORDER BY device_id, source, offset_ns, idx"
        ))
        .bind(hearing.to_owned())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(archived).collect())
    }

    /// The evidence key pinned for `device`, pinning `seen` when there is none yet
    /// (trust on first use until devices are provisioned with registered keys).
    pub async fn pin_evidence_key(&self, device: &str, seen: &str) -> Result<String, StoreError> {
        sqlx::query(
            "INSERT INTO evidence_keys (device_id, public_key, first_seen_ms) VALUES ($1, $2, $3)
             ON CONFLICT (device_id) DO NOTHING",
        )
        .bind(device.to_owned())
        .bind(seen.to_owned())
        .bind(millis(OffsetDateTime::now_utc()))
        .execute(&self.pool)
        .await?;
        let key: String =
            sqlx::query_scalar("SELECT public_key FROM evidence_keys WHERE device_id = $1")
                .bind(device.to_owned())
                .fetch_one(&self.pool)
                .await?;
        Ok(key)
    }

    /// Keeps a new enrollment token (its hash) for `device`.
    pub async fn create_enrollment(
        &self,
        token_sha256: &str,
        device: &str,
        assignment: &str,
        now: OffsetDateTime,
        expires: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO enrollment_tokens (token_sha256, device_id, assignment, created_ms, expires_ms)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_sha256.to_owned())
        .bind(device.to_owned())
        .bind(assignment.to_owned())
        .bind(millis(now))
        .bind(millis(expires))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Uses a token once: its device and assignment, or None when it is unknown, used or
    /// expired. Atomic: two devices racing with one token cannot both win.
    pub async fn redeem_enrollment(
        &self,
        token_sha256: &str,
        now: OffsetDateTime,
    ) -> Result<Option<(String, String)>, StoreError> {
        let row: Option<(String, String)> = sqlx::query_as(
            "UPDATE enrollment_tokens SET used_ms = $1
             WHERE token_sha256 = $2 AND used_ms IS NULL AND expires_ms > $1
             RETURNING device_id, assignment",
        )
        .bind(millis(now))
        .bind(token_sha256.to_owned())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row)
    }

    /// Records an issued certificate.
    pub async fn record_cert(
        &self,
        serial: &str,
        device: &str,
        issued: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO device_certs (serial, device_id, issued_ms, not_after_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(serial.to_owned())
        .bind(device.to_owned())
        .bind(millis(issued))
        .bind(millis(not_after))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Revokes every certificate of `device` not yet revoked; returns their serials.
    pub async fn revoke_device(
        &self,
        device: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<String>, StoreError> {
        let serials: Vec<String> = sqlx::query_scalar(
            "UPDATE device_certs SET revoked_ms = $1 WHERE device_id = $2 AND revoked_ms IS NULL
             RETURNING serial",
        )
        .bind(millis(now))
        .bind(device.to_owned())
        .fetch_all(&self.pool)
        .await?;
        Ok(serials)
    }

    /// How many live (not revoked, not expired) certificates `device` has.
    pub async fn live_certs(&self, device: &str, now: OffsetDateTime) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM device_certs WHERE device_id = $1 AND revoked_ms IS NULL AND not_after_ms > $2",
        )
        .bind(device.to_owned())
        .bind(millis(now))
        .fetch_one(&self.pool)
        .await?)
    }

    /// The certificates of `device`: (serial, issued ms, not after ms, revoked ms).
    pub async fn device_certs(
        &self,
        device: &str,
    ) -> Result<Vec<(String, i64, i64, Option<i64>)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT serial, issued_ms, not_after_ms, revoked_ms FROM device_certs WHERE device_id = $1 ORDER BY issued_ms",
        )
        .bind(device.to_owned())
        .fetch_all(&self.pool)
        .await?)
    }

    /// Every revoked certificate: (serial, revoked at, ms).
    pub async fn revoked_certs(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT serial, revoked_ms FROM device_certs WHERE revoked_ms IS NOT NULL ORDER BY revoked_ms",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Adds a user (fails when the name is taken).
    pub async fn add_user(&self, u: &UserRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO users (name, role, court, password_hash, created_ms) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(u.name.clone())
        .bind(u.role.clone())
        .bind(u.court.clone())
        .bind(u.password_hash.clone())
        .bind(millis(OffsetDateTime::now_utc()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A user by name (disabled users included, flagged).
    pub async fn user(&self, name: &str) -> Result<Option<UserRow>, StoreError> {
        let row: Option<UserTuple> = sqlx::query_as(
            "SELECT name, role, court, password_hash, disabled_ms FROM users WHERE name = $1",
        )
        .bind(name.to_owned())
        .fetch_optional(&self.pool)
        .await?;
        Ok(
            row.map(|(name, role, court, password_hash, disabled)| UserRow {
                name,
                role,
                court,
                password_hash,
                disabled: disabled.is_some(),
            }),
        )
    }

    /// Every user (without password hashes).
    pub async fn users(&self) -> Result<Vec<UserRow>, StoreError> {
        let rows: Vec<(String, String, Option<String>, Option<i64>)> =
            sqlx::query_as("SELECT name, role, court, disabled_ms FROM users ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(name, role, court, disabled)| UserRow {
                name,
                role,
                court,
                password_hash: String::new(),
                disabled: disabled.is_some(),
            })
            .collect())
    }

    /// How many users exist.
    pub async fn user_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Disables a user and ends their sessions; false when there is no such user.
    pub async fn disable_user(&self, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE users SET disabled_ms = $1 WHERE name = $2")
            .bind(millis(OffsetDateTime::now_utc()))
            .bind(name.to_owned())
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM sessions WHERE user_name = $1")
            .bind(name.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Keeps a session token (its hash).
    pub async fn add_session(
        &self,
        token_sha256: &str,
        user: &str,
        expires: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (token_sha256, user_name, created_ms, expires_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(token_sha256.to_owned())
        .bind(user.to_owned())
        .bind(millis(OffsetDateTime::now_utc()))
        .bind(millis(expires))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The user of a live session token (not expired, user not disabled).
    pub async fn session_user(
        &self,
        token_sha256: &str,
        now: OffsetDateTime,
    ) -> Result<Option<UserRow>, StoreError> {
        let name: Option<String> = sqlx::query_scalar(
            "SELECT user_name FROM sessions WHERE token_sha256 = $1 AND expires_ms > $2",
        )
        .bind(token_sha256.to_owned())
        .bind(millis(now))
        .fetch_optional(&self.pool)
        .await?;
        match name {
            Some(n) => Ok(self.user(&n).await?.filter(|u| !u.disabled)),
            None => Ok(None),
        }
    }

    /// Ends a session.
    pub async fn end_session(&self, token_sha256: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE token_sha256 = $1")
            .bind(token_sha256.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Appends to the audit log. There is no update or delete of audit rows anywhere.
    pub async fn audit(&self, e: &AuditEntry) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_log (at_ms, actor, role, source, action, target, outcome, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(e.at_ms)
        .bind(e.actor.clone())
        .bind(e.role.clone())
        .bind(e.source.clone())
        .bind(e.action.clone())
        .bind(e.target.clone())
        .bind(e.outcome.clone())
        .bind(e.detail.clone())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The audit log, newest first, at most `limit` rows, optionally only one outcome.
    pub async fn audit_log(
        &self,
        limit: i64,
        outcome: Option<&str>,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT at_ms, actor, role, source, action, target, outcome, detail FROM audit_log
                 WHERE ($1 = '' OR outcome = $1) ORDER BY id DESC LIMIT $2",
        )
        .bind(outcome.unwrap_or("").to_owned())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(at_ms, actor, role, source, action, target, outcome, detail)| AuditEntry {
                    at_ms,
                    actor,
                    role,
                    source,
                    action,
                    target,
                    outcome,
                    detail,
                },
            )
            .collect())
    }

    /// Patrol finding events (start and end) received between `from` and `to`, oldest
    /// first, with the device and its court and room.
    pub async fn finding_events(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<FindingRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT e.device_id AS device_id, d.court AS court, d.room AS room, e.body AS body
             FROM device_events e LEFT JOIN devices d ON d.id = e.device_id
             WHERE e.kind = 'finding' AND e.received_ms >= $1 AND e.received_ms < $2
             ORDER BY e.id",
        )
        .bind(millis(from))
        .bind(millis(to))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let body: String = row.try_get("body")?;
            match gavel_protocol::decode::<Event>(body.as_bytes()) {
                Ok(event) => out.push(FindingRow {
                    device: row.try_get("device_id")?,
                    court: row.try_get("court")?,
                    room: row.try_get("room")?,
                    event,
                }),
                Err(e) => tracing::warn!(error = %e, "stored finding unreadable; skipped"),
            }
        }
        Ok(out)
    }

    /// The events (start, end) of one finding of a device.
    pub async fn finding_event(
        &self,
        device: &str,
        event_id: &str,
    ) -> Result<Vec<Event>, StoreError> {
        let rows = sqlx::query(
            "SELECT body FROM device_events
             WHERE device_id = $1 AND event_id = $2 AND kind = 'finding' ORDER BY id",
        )
        .bind(device.to_owned())
        .bind(event_id.to_owned())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .filter_map(|r| r.try_get::<String, _>("body").ok())
            .filter_map(|b| gavel_protocol::decode::<Event>(b.as_bytes()).ok())
            .collect())
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gavel_fleet::{Fleet, Input};
    use gavel_protocol::DeviceMessage;

    #[tokio::test]
    async fn sqlite_store_round_trips_records_and_events() {
        let dir = tempfile::tempdir().expect("tmp");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let store = Store::open(&url).await.expect("open");
        let birth: gavel_protocol::Birth =
            gavel_protocol::decode(include_bytes!("../../../protocol/fixtures/birth.json"))
                .expect("fixture");
        let dev = DeviceId::new("hz-101-terminal").expect("id");
        let mut fleet = Fleet::new();
        fleet.handle(
            OffsetDateTime::now_utc(),
            Input::Message {
                device: dev.clone(),
                message: DeviceMessage::Birth(birth),
            },
        );
        let records: Vec<_> = fleet.devices().cloned().collect();
        store.save_devices(&records).await.expect("save");
        store
            .save_devices(&records)
            .await
            .expect("save again (upsert)");
        // Reopening runs migrations again without harm.
        store.close().await;
        let store = Store::open(&url).await.expect("reopen");
        assert_eq!(store.load_devices().await.expect("load"), records);
        let event: Event = gavel_protocol::decode(include_bytes!(
            "../../../protocol/fixtures/event-agent-start.json"
        ))
        .expect("fixture");
        store
            .append_events(&[(dev.clone(), event.clone(), OffsetDateTime::now_utc())])
            .await
            .expect("append");
        store
            .append_events(&[(dev.clone(), event.clone(), OffsetDateTime::now_utc())])
            .await
            .expect("a duplicate is skipped, not an error");
        let events = store.events(&dev, 10).await.expect("events");
        assert_eq!(events.len(), 1);
        store
            .save_batch(
                &[],
                &[],
                &[Cursor {
                    device: dev.clone(),
                    boot_id: event.boot_id.clone(),
                    next: 1,
                }],
            )
            .await
            .expect("cursor");
        assert_eq!(store.load_cursors().await.expect("cursors")[0].next, 1);
        assert_eq!(events[0].kind, "agent");
        assert_eq!(events[0].phase, "start");
    }
}
