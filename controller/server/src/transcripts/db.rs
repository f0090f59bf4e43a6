//! Transcripts in the controller's database (migration 12): one row per line keyed by
//! the line's event id, corrections kept apart, one sign-off per hearing, and the search
//! index (SQLite: an FTS5 table with the `trigram` tokenizer; PostgreSQL: a `pg_trgm` GIN
//! index on the text; ADR 0015).
//!
//! Design: a line's row is written in the same transaction as the `transcript` event that
//! carried it (`Store::save_batch`), so the line and the event log never disagree. A final
//! version replaces the partials and is then never replaced by anything the device sends
//! again: the machine text of a final line is kept forever. Corrections change only the
//! text in force; each one is a row of its own and an audit row, written in one
//! transaction with the change.

use gavel_protocol::{Event, EventBody, Phase};
use sqlx::{AnyConnection, Row};
use time::OffsetDateTime;

use super::export::{Correction, Line, SignOff, audio_url, digest};
use crate::store::{Backend, Store, StoreError};

/// Migration 12: the same tables for both engines but the id columns. SQLite adds its
/// FTS5 index, whose rows are keyed by `transcript_lines.id` (an alias of the rowid, so
/// `VACUUM` keeps them matched); PostgreSQL's trigram index is made after the
/// migrations, see [`ensure_search_index`].
macro_rules! transcripts_sql {
    ($id:literal, $extra:literal) => {
        concat!(
            "CREATE TABLE IF NOT EXISTS transcript_lines (
            ",
            $id,
            ",
            line_id TEXT NOT NULL UNIQUE,
            hearing_id TEXT NOT NULL,
            device_id TEXT NOT NULL,
            seat TEXT NOT NULL,
            source TEXT NOT NULL,
            line_no BIGINT NOT NULL,
            offset_ns BIGINT NOT NULL,
            duration_ns BIGINT NOT NULL,
            machine_text TEXT NOT NULL,
            text TEXT NOT NULL,
            language TEXT NOT NULL,
            model TEXT NOT NULL,
            vocabulary TEXT,
            confidence DOUBLE PRECISION,
            is_final BIGINT NOT NULL,
            corrections BIGINT NOT NULL DEFAULT 0,
            received_ms BIGINT NOT NULL,
            updated_ms BIGINT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS transcript_lines_by_hearing ON transcript_lines (hearing_id, offset_ns);
        CREATE TABLE IF NOT EXISTS transcript_corrections (
            ",
            $id,
            ",
            line_id TEXT NOT NULL,
            hearing_id TEXT NOT NULL,
            previous TEXT NOT NULL,
            text TEXT NOT NULL,
            by_user TEXT NOT NULL,
            role TEXT,
            at_ms BIGINT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS transcript_corrections_by_hearing ON transcript_corrections (hearing_id, id);
        CREATE TABLE IF NOT EXISTS transcript_signoffs (
            hearing_id TEXT PRIMARY KEY,
            by_user TEXT NOT NULL,
            role TEXT,
            at_ms BIGINT NOT NULL,
            sha256 TEXT NOT NULL,
            lines BIGINT NOT NULL
        )",
            $extra
        )
    };
}

/// Migration 12 for SQLite.
pub const MIGRATION_SQLITE: &str = transcripts_sql!(
    "id INTEGER PRIMARY KEY AUTOINCREMENT",
    ";
        CREATE VIRTUAL TABLE IF NOT EXISTS transcript_fts USING fts5(text, tokenize = 'trigram')"
);
/// Migration 12 for PostgreSQL.
pub const MIGRATION_POSTGRES: &str = transcripts_sql!("id BIGSERIAL PRIMARY KEY", "");

/// Why a transcript operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum TranscriptError {
    #[error("no line {line} in the transcript of hearing {hearing}")]
    NoLine { hearing: String, line: String },
    #[error("line {0} is still partial; correct it once it is final")]
    Partial(String),
    #[error(
        "the transcript of hearing {hearing} was signed off by {by} at {at}; it can no longer be edited"
    )]
    SignedOff {
        hearing: String,
        by: String,
        at: String,
    },
    #[error("hearing {0} has no final transcript line to sign off")]
    Empty(String),
    #[error("text: {0}")]
    BadText(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for TranscriptError {
    fn from(e: sqlx::Error) -> Self {
        TranscriptError::Store(StoreError::Db(e))
    }
}

/// Who edits or signs.
#[derive(Debug, Clone)]
pub struct Editor {
    pub user: String,
    pub role: Option<String>,
    /// Client address, for the audit log.
    pub source: Option<String>,
}

fn millis(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn from_millis(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Stores the line a `transcript` event carries, inside the event's transaction: inserts
/// it, or replaces a partial with a newer version; a final line is never replaced.
pub(crate) async fn apply_event(
    conn: &mut AnyConnection,
    backend: Backend,
    device: &str,
    event: &Event,
    received: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    let EventBody::Transcript {
        hearing_id,
        seat,
        source,
        line,
        offset_ns,
        duration_ns,
        text,
        language,
        model,
        vocabulary,
        confidence,
    } = &event.body
    else {
        return Ok(());
    };
    let is_final = i64::from(event.phase == Phase::End);
    let now = millis(received);
    let done = sqlx::query(
        "INSERT INTO transcript_lines (line_id, hearing_id, device_id, seat, source, line_no,
           offset_ns, duration_ns, machine_text, text, language, model, vocabulary, confidence,
           is_final, corrections, received_ms, updated_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $11, $12, $13, $14, 0, $15, $15)
         ON CONFLICT (line_id) DO UPDATE SET seat = excluded.seat, source = excluded.source,
           offset_ns = excluded.offset_ns, duration_ns = excluded.duration_ns,
           machine_text = excluded.machine_text, text = excluded.text,
           language = excluded.language, model = excluded.model,
           vocabulary = excluded.vocabulary, confidence = excluded.confidence,
           is_final = excluded.is_final, updated_ms = excluded.updated_ms
         WHERE transcript_lines.is_final = 0",
    )
    .bind(event.id.clone())
    .bind(hearing_id.clone())
    .bind(device.to_owned())
    .bind(seat.clone())
    .bind(source.clone())
    .bind(i(*line))
    .bind(i(*offset_ns))
    .bind(i(*duration_ns))
    .bind(text.clone())
    .bind(language.clone())
    .bind(model.clone())
    .bind(vocabulary.clone())
    .bind(confidence.map(f64::from))
    .bind(is_final)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() > 0 {
        index(conn, backend, &event.id).await?;
    }
    Ok(())
}

/// Brings the SQLite search index up to the line's text in force (PostgreSQL indexes the
/// column itself).
async fn index(
    conn: &mut AnyConnection,
    backend: Backend,
    line_id: &str,
) -> Result<(), sqlx::Error> {
    if backend != Backend::Sqlite {
        return Ok(());
    }
    let row = sqlx::query("SELECT id AS rid, text FROM transcript_lines WHERE line_id = $1")
        .bind(line_id.to_owned())
        .fetch_one(&mut *conn)
        .await?;
    let rid: i64 = row.try_get("rid")?;
    let text: String = row.try_get("text")?;
    sqlx::query("DELETE FROM transcript_fts WHERE rowid = $1")
        .bind(rid)
        .execute(&mut *conn)
        .await?;
    sqlx::query("INSERT INTO transcript_fts (rowid, text) VALUES ($1, $2)")
        .bind(rid)
        .bind(text)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// PostgreSQL: the trigram index that makes `ILIKE '%…%'` fast. Best effort: without the
/// `pg_trgm` extension (a database where it may not be created) search still answers,
/// by scanning.
pub(crate) async fn ensure_search_index(store: &Store) {
    if store.backend() != Backend::Postgres {
        return;
    }
    for sql in [
        "CREATE EXTENSION IF NOT EXISTS pg_trgm",
        "CREATE INDEX IF NOT EXISTS transcript_lines_text_trgm ON transcript_lines USING gin (text gin_trgm_ops)",
    ] {
        if let Err(e) = sqlx::query(sql).execute(store.pool()).await {
            tracing::warn!(error = %e, statement = sql, "transcript search index not made; search scans instead");
            return;
        }
    }
}

const LINE_COLUMNS: &str = "line_id, hearing_id, device_id, seat, source, line_no, offset_ns,
    duration_ns, machine_text, text, language, model, vocabulary, confidence, is_final, corrections";

fn line_from_row(row: &sqlx::any::AnyRow) -> Result<Line, sqlx::Error> {
    let hearing_id: String = row.try_get("hearing_id")?;
    let source: String = row.try_get("source")?;
    let offset: i64 = row.try_get("offset_ns")?;
    let duration: i64 = row.try_get("duration_ns")?;
    let offset_ns = u64::try_from(offset).unwrap_or(0);
    let duration_ns = u64::try_from(duration).unwrap_or(0);
    Ok(Line {
        id: row.try_get("line_id")?,
        audio_url: audio_url(&hearing_id, &source, offset_ns, offset_ns + duration_ns),
        hearing_id,
        device: row.try_get("device_id")?,
        seat: row.try_get("seat")?,
        source,
        line: u64::try_from(row.try_get::<i64, _>("line_no")?).unwrap_or(0),
        offset_ns,
        duration_ns,
        machine_text: row.try_get("machine_text")?,
        text: row.try_get("text")?,
        corrections: u64::try_from(row.try_get::<i64, _>("corrections")?).unwrap_or(0),
        language: row.try_get("language")?,
        model: row.try_get("model")?,
        vocabulary: row.try_get("vocabulary")?,
        confidence: row.try_get("confidence")?,
        is_final: row.try_get::<i64, _>("is_final")? != 0,
    })
}

/// Every line of a hearing in reading order.
pub async fn lines(store: &Store, hearing_id: &str) -> Result<Vec<Line>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {LINE_COLUMNS} FROM transcript_lines WHERE hearing_id = $1
         ORDER BY offset_ns, seat, line_no, line_id"
    ))
    .bind(hearing_id.to_owned())
    .fetch_all(store.pool())
    .await?;
    Ok(rows.iter().map(line_from_row).collect::<Result<_, _>>()?)
}

fn signoff_from(
    hearing_id: &str,
    (by, role, at_ms, sha256, lines): (String, Option<String>, i64, String, i64),
) -> SignOff {
    SignOff {
        hearing_id: hearing_id.to_owned(),
        by,
        role,
        at: from_millis(at_ms),
        sha256,
        lines: u64::try_from(lines).unwrap_or(0),
    }
}

type SignOffRow = (String, Option<String>, i64, String, i64);

async fn signoff_on(
    conn: &mut AnyConnection,
    hearing_id: &str,
) -> Result<Option<SignOff>, sqlx::Error> {
    let row: Option<SignOffRow> = sqlx::query_as(
        "SELECT by_user, role, at_ms, sha256, lines FROM transcript_signoffs WHERE hearing_id = $1",
    )
    .bind(hearing_id.to_owned())
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|r| signoff_from(hearing_id, r)))
}

/// A hearing's sign-off, if it was signed.
pub async fn signoff(store: &Store, hearing_id: &str) -> Result<Option<SignOff>, StoreError> {
    let mut conn = store.pool().acquire().await.map_err(StoreError::Db)?;
    Ok(signoff_on(&mut conn, hearing_id).await?)
}

/// Every correction of a hearing's lines, oldest first.
pub async fn corrections(store: &Store, hearing_id: &str) -> Result<Vec<Correction>, StoreError> {
    let rows: Vec<(String, String, String, String, Option<String>, i64)> = sqlx::query_as(
        "SELECT line_id, previous, text, by_user, role, at_ms FROM transcript_corrections
         WHERE hearing_id = $1 ORDER BY id",
    )
    .bind(hearing_id.to_owned())
    .fetch_all(store.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|(line_id, previous, text, by, role, at)| Correction {
            line_id,
            hearing_id: hearing_id.to_owned(),
            previous,
            text,
            by,
            role,
            at: from_millis(at),
        })
        .collect())
}

/// Writes an audit row inside `conn`'s transaction.
async fn audit(
    conn: &mut AnyConnection,
    who: &Editor,
    at: OffsetDateTime,
    action: &str,
    target: &str,
    detail: String,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_log (at_ms, actor, role, source, action, target, outcome, detail)
         VALUES ($1, $2, $3, $4, $5, $6, 'ok', $7)",
    )
    .bind(millis(at))
    .bind(who.user.clone())
    .bind(who.role.clone())
    .bind(who.source.clone())
    .bind(action.to_owned())
    .bind(target.to_owned())
    .bind(detail)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Longest corrected text accepted (characters).
pub const MAX_TEXT: usize = 4000;

/// Corrects a final line of a hearing not yet signed off. The machine text stays; the
/// correction (previous and new text, who, when) and an audit row (`transcript.correct`)
/// are written in the same transaction. Returns the line as it now stands.
pub async fn correct(
    store: &Store,
    hearing_id: &str,
    line_id: &str,
    text: &str,
    who: &Editor,
    now: OffsetDateTime,
) -> Result<Line, TranscriptError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(TranscriptError::BadText(
            "empty; a line is corrected, never deleted".into(),
        ));
    }
    if text.chars().count() > MAX_TEXT {
        return Err(TranscriptError::BadText(format!(
            "longer than {MAX_TEXT} characters"
        )));
    }
    let mut tx = store.pool().begin().await?;
    if let Some(s) = signoff_on(&mut tx, hearing_id).await? {
        return Err(TranscriptError::SignedOff {
            hearing: hearing_id.to_owned(),
            by: s.by,
            at: gavel_protocol::rfc3339(s.at),
        });
    }
    let row = sqlx::query(&format!(
        "SELECT {LINE_COLUMNS} FROM transcript_lines WHERE line_id = $1 AND hearing_id = $2"
    ))
    .bind(line_id.to_owned())
    .bind(hearing_id.to_owned())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Err(TranscriptError::NoLine {
            hearing: hearing_id.to_owned(),
            line: line_id.to_owned(),
        });
    };
    let mut line = line_from_row(&row)?;
    if !line.is_final {
        return Err(TranscriptError::Partial(line_id.to_owned()));
    }
    if line.text == text {
        return Ok(line);
    }
    sqlx::query(
        "INSERT INTO transcript_corrections (line_id, hearing_id, previous, text, by_user, role, at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(line_id.to_owned())
    .bind(hearing_id.to_owned())
    .bind(line.text.clone())
    .bind(text.to_owned())
    .bind(who.user.clone())
    .bind(who.role.clone())
    .bind(millis(now))
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE transcript_lines SET text = $1, corrections = corrections + 1, updated_ms = $2
         WHERE line_id = $3",
    )
    .bind(text.to_owned())
    .bind(millis(now))
    .bind(line_id.to_owned())
    .execute(&mut *tx)
    .await?;
    index(&mut tx, store.backend(), line_id).await?;
    let detail = serde_json::json!({
        "hearing": hearing_id,
        "line": line_id,
        "seat": line.seat,
        "machine_text": line.machine_text,
        "previous": line.text,
        "text": text,
    })
    .to_string();
    audit(&mut tx, who, now, "transcript.correct", line_id, detail).await?;
    tx.commit().await?;
    line.text = text.to_owned();
    line.corrections += 1;
    Ok(line)
}

/// Signs a hearing's transcript off: its final lines as they stand, by digest. Once
/// signed, corrections are refused; the digest shows any later change (a late line from a
/// device). Refused when already signed or when there is no final line.
pub async fn sign_off(
    store: &Store,
    hearing_id: &str,
    who: &Editor,
    now: OffsetDateTime,
) -> Result<SignOff, TranscriptError> {
    let mut tx = store.pool().begin().await?;
    if let Some(s) = signoff_on(&mut tx, hearing_id).await? {
        return Err(TranscriptError::SignedOff {
            hearing: hearing_id.to_owned(),
            by: s.by,
            at: gavel_protocol::rfc3339(s.at),
        });
    }
    let rows = sqlx::query(&format!(
        "SELECT {LINE_COLUMNS} FROM transcript_lines WHERE hearing_id = $1"
    ))
    .bind(hearing_id.to_owned())
    .fetch_all(&mut *tx)
    .await?;
    let lines: Vec<Line> = rows.iter().map(line_from_row).collect::<Result<_, _>>()?;
    let (sha256, n) = digest(hearing_id, &lines);
    if n == 0 {
        return Err(TranscriptError::Empty(hearing_id.to_owned()));
    }
    // Design: the primary key makes a second sign-off fail even when two race.
    sqlx::query(
        "INSERT INTO transcript_signoffs (hearing_id, by_user, role, at_ms, sha256, lines)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(hearing_id.to_owned())
    .bind(who.user.clone())
    .bind(who.role.clone())
    .bind(millis(now))
    .bind(sha256.clone())
    .bind(i(n))
    .execute(&mut *tx)
    .await?;
    let detail =
        serde_json::json!({"hearing": hearing_id, "lines": n, "sha256": sha256}).to_string();
    audit(&mut tx, who, now, "transcript.sign_off", hearing_id, detail).await?;
    tx.commit().await?;
    Ok(SignOff {
        hearing_id: hearing_id.to_owned(),
        by: who.user.clone(),
        role: who.role.clone(),
        at: from_millis(millis(now)),
        sha256,
        lines: n,
    })
}

/// What a search asks for.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    /// A substring of the text in force (any language; case-insensitive for Latin letters).
    pub text: String,
    pub court: Option<String>,
    pub room: Option<String>,
    /// Hearings scheduled to start in `[from, to)`.
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
    pub limit: i64,
}

/// One line found.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Hit {
    pub hearing_id: String,
    pub line_id: String,
    pub case_number: Option<String>,
    pub court: Option<String>,
    pub room: Option<String>,
    /// The hearing's scheduled start.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub hearing_start: Option<OffsetDateTime>,
    pub seat: String,
    pub offset_ns: u64,
    /// `HH:MM:SS` on the hearing's timeline.
    pub time: String,
    /// The text around the first match.
    pub snippet: String,
    #[serde(rename = "final")]
    pub is_final: bool,
}

/// Escapes LIKE wildcards (`\` is the escape character).
fn like_pattern(q: &str) -> String {
    let mut p = String::from("%");
    for c in q.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// About `width` characters of `text` around the first case-insensitive match of `q`.
pub fn snippet(text: &str, q: &str, width: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    let lower: Vec<char> = chars.iter().flat_map(|c| c.to_lowercase()).collect();
    let needle: Vec<char> = q.chars().flat_map(|c| c.to_lowercase()).collect();
    if lower.len() != chars.len() || chars.len() <= width {
        return text.to_owned();
    }
    let at = (0..=lower.len().saturating_sub(needle.len()))
        .find(|&i| lower[i..].starts_with(&needle))
        .unwrap_or(0);
    let start = at.saturating_sub(width.saturating_sub(needle.len()) / 2);
    let end = (start + width).min(chars.len());
    let start = end.saturating_sub(width);
    let mut s = String::new();
    if start > 0 {
        s.push('…');
    }
    s.extend(&chars[start..end]);
    if end < chars.len() {
        s.push('…');
    }
    s
}

/// Lines whose text in force contains the query, newest hearings first.
pub async fn search(store: &Store, q: &SearchQuery) -> Result<Vec<Hit>, StoreError> {
    let wild = q.text.contains(['%', '_', '\\']);
    let (from, filter) = match store.backend() {
        // The trigram FTS5 table answers LIKE from its index when the pattern holds three
        // characters in a row and no ESCAPE clause (SQLite hands such a LIKE to no
        // index). Shorter queries (the two-character words Chinese is full of) and
        // queries with wildcard characters scan the lines table instead: FTS5 cannot
        // answer them from trigrams, and older SQLite releases answered them wrongly.
        Backend::Sqlite if !wild && q.text.chars().count() >= 3 => (
            "transcript_fts f JOIN transcript_lines l ON l.id = f.rowid",
            "f.text LIKE $1",
        ),
        Backend::Sqlite if wild => ("transcript_lines l", "l.text LIKE $1 ESCAPE '\\'"),
        Backend::Sqlite => ("transcript_lines l", "l.text LIKE $1"),
        Backend::Postgres => ("transcript_lines l", "l.text ILIKE $1 ESCAPE '\\'"),
    };
    let pattern = if wild {
        like_pattern(&q.text)
    } else {
        format!("%{}%", q.text)
    };
    let sql = format!(
        "SELECT l.hearing_id AS hearing_id, l.line_id AS line_id, l.seat AS seat,
           l.offset_ns AS offset_ns, l.text AS text, l.is_final AS is_final,
           h.court AS court, h.room AS room, h.start_ms AS start_ms, h.record AS record
         FROM {from} LEFT JOIN hearings h ON h.id = l.hearing_id
         WHERE {filter} AND ($2 = '' OR h.court = $2) AND ($3 = '' OR h.room = $3)
           AND ($4 = 0 OR h.start_ms >= $4) AND ($5 = 0 OR h.start_ms < $5)
         ORDER BY h.start_ms DESC, l.hearing_id, l.offset_ns
         LIMIT $6"
    );
    let rows = sqlx::query(&sql)
        .bind(pattern)
        .bind(q.court.clone().unwrap_or_default())
        .bind(q.room.clone().unwrap_or_default())
        .bind(q.from.map(millis).unwrap_or(0))
        .bind(q.to.map(millis).unwrap_or(0))
        .bind(q.limit)
        .fetch_all(store.pool())
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let text: String = row.try_get("text")?;
        let offset = u64::try_from(row.try_get::<i64, _>("offset_ns")?).unwrap_or(0);
        let record: Option<String> = row.try_get("record")?;
        let case_number = record
            .and_then(|r| serde_json::from_str::<serde_json::Value>(&r).ok())
            .and_then(|v| v["case_number"].as_str().map(str::to_owned));
        out.push(Hit {
            hearing_id: row.try_get("hearing_id")?,
            line_id: row.try_get("line_id")?,
            case_number,
            court: row.try_get("court")?,
            room: row.try_get("room")?,
            hearing_start: row.try_get::<Option<i64>, _>("start_ms")?.map(from_millis),
            seat: row.try_get("seat")?,
            offset_ns: offset,
            time: super::export::hms(offset),
            snippet: snippet(&text, &q.text, 60),
            is_final: row.try_get::<i64, _>("is_final")? != 0,
        });
    }
    Ok(out)
}

/// Whether a hearing has at least one final line (its transcript is present).
pub async fn has_final_lines(store: &Store, hearing_id: &str) -> Result<bool, StoreError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM transcript_lines WHERE hearing_id = $1 AND is_final = 1",
    )
    .bind(hearing_id.to_owned())
    .fetch_one(store.pool())
    .await?;
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_wildcards_in_a_query_are_literal() {
        assert_eq!(like_pattern("50%_a\\b"), "%50\\%\\_a\\\\b%");
    }

    #[test]
    fn a_snippet_centres_on_the_match() {
        let text = "甲".repeat(100) + "原告陈述" + &"乙".repeat(100);
        let s = snippet(&text, "原告", 20);
        assert!(s.contains("原告陈述"), "{s}");
        assert!(s.starts_with('…') && s.ends_with('…'));
        assert_eq!(snippet("short", "x", 60), "short");
    }
}
