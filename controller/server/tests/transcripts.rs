//! Transcripts in the controller's store, on SQLite and on PostgreSQL (127.0.0.1:5432 with
//! trust auth, or `GAVEL_TEST_POSTGRES`): a final line replaces its partials and is never
//! replaced; a correction keeps the machine text and writes an audit row; a sign-off
//! refuses later edits and its digest shows a line that arrived after it; search finds
//! Chinese and English substrings with court filters. The exports are read back with
//! independent parsers: ffprobe (FFmpeg's SRT and WebVTT demuxers) and the DOCX's
//! `word/document.xml` through the `zip` crate.

use std::io::Read as _;
use std::process::Command;

use gavel_controller::store::{Backend, Store};
use gavel_controller::transcripts::db::{self, Editor, SearchQuery, TranscriptError};
use gavel_controller::transcripts::export::{self, Document};
use gavel_fleet::hearings::{Hearing, HearingStatus, Party};
use gavel_protocol::{DeviceId, Event};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::datetime;

/// A transcript event as a transcribing terminal sends it.
#[allow(clippy::too_many_arguments)]
fn line_event(
    seq: u64,
    hearing: &str,
    seat: &str,
    line: u64,
    offset_ms: u64,
    duration_ms: u64,
    text: &str,
    fin: bool,
) -> Event {
    let v = json!({
        "v": 1, "ts": "2026-11-27T09:42:14Z", "boot_id": "boot-1", "seq": seq,
        "id": format!("tr-{hearing}-{seat}-{line}"),
        "phase": if fin { "end" } else { "update" }, "historical": false,
        "type": "transcript", "hearing_id": hearing, "seat": seat, "source": "mics:0",
        "line": line, "offset_ns": offset_ms * 1_000_000, "duration_ns": duration_ms * 1_000_000,
        "text": text, "language": "zh", "model": "base", "confidence": 0.8
    });
    gavel_protocol::decode(&serde_json::to_vec(&v).expect("json")).expect("a valid event")
}

fn hearing(id: &str, court: &str, start: OffsetDateTime) -> Hearing {
    Hearing {
        id: id.into(),
        case_number: format!("(2026)浙0102民初{id}号"),
        court: court.into(),
        room: "room-101".into(),
        scheduled_start: start,
        scheduled_end: start + time::Duration::hours(1),
        judge: "王法官".into(),
        parties: vec![
            Party {
                role: "plaintiff".into(),
                name: "张三".into(),
            },
            Party {
                role: "defendant".into(),
                name: "Acme Ltd".into(),
            },
        ],
        status: HearingStatus::Closed,
        opened_at: Some(start),
        closed_at: Some(start + time::Duration::minutes(50)),
        history: Vec::new(),
    }
}

async fn store_events(store: &Store, events: Vec<Event>) {
    let dev = DeviceId::new("hz-101-terminal").expect("id");
    let batch: Vec<_> = events
        .into_iter()
        .map(|e| (dev.clone(), e, OffsetDateTime::now_utc()))
        .collect();
    store.save_batch(&[], &batch, &[]).await.expect("stored");
}

fn clerk() -> Editor {
    Editor {
        user: "clerk-chen".into(),
        role: Some("clerk".into()),
        source: Some("127.0.0.1".into()),
    }
}

/// The whole store behaviour, run on each engine.
async fn transcripts_on(store: Store) {
    let t0 = datetime!(2026-11-27 01:30 UTC);
    store
        .save_hearings(&[
            hearing("h1", "hz-intermediate", t0),
            hearing("h2", "nb-intermediate", t0 + time::Duration::days(1)),
        ])
        .await
        .expect("hearings");
    // Partials, then the final; a partial arriving after the final changes nothing.
    store_events(
        &store,
        vec![
            line_event(0, "h1", "judge", 0, 1_000, 1_200, "现在开", false),
            line_event(1, "h1", "judge", 0, 1_000, 2_400, "现在开庭，请原", false),
            line_event(
                2,
                "h1",
                "judge",
                0,
                1_000,
                3_200,
                "现在开庭，请原告陈述诉讼请求。",
                true,
            ),
            line_event(
                3,
                "h1",
                "plaintiff",
                0,
                5_000,
                4_000,
                "The defendant owes 20,000 yuan under the CONTRACT.",
                true,
            ),
            line_event(4, "h1", "clerk", 0, 9_500, 1_000, "正在记", false),
            line_event(5, "h1", "judge", 0, 1_000, 500, "late partial", false),
            line_event(
                7,
                "h2",
                "judge",
                0,
                0,
                2_000,
                "原告请求判令被告支付货款。",
                true,
            ),
        ],
    )
    .await;
    // The same events again (a device resending) are duplicates: nothing changes.
    store_events(
        &store,
        vec![line_event(
            2,
            "h1",
            "judge",
            0,
            1_000,
            3_200,
            "现在开庭，请原告陈述诉讼请求。",
            true,
        )],
    )
    .await;
    let lines = db::lines(&store, "h1").await.expect("lines");
    assert_eq!(lines.len(), 3, "{lines:#?}");
    let judge = &lines[0];
    assert_eq!(judge.id, "tr-h1-judge-0");
    assert!(judge.is_final);
    assert_eq!(judge.machine_text, "现在开庭，请原告陈述诉讼请求。");
    assert_eq!(judge.duration_ns, 3_200_000_000, "the final's timing");
    assert!(
        judge.audio_url.contains("from_ms=1000&to_ms=4200"),
        "{}",
        judge.audio_url
    );
    assert!(!lines[2].is_final, "the clerk's line is still partial");

    // A correction keeps the machine text, is listed, and is audited.
    let fixed = db::correct(
        &store,
        "h1",
        "tr-h1-plaintiff-0",
        "The defendant owes 20,000 yuan under the contract of 3 May.",
        &clerk(),
        OffsetDateTime::now_utc(),
    )
    .await
    .expect("corrected");
    assert_eq!(
        fixed.machine_text,
        "The defendant owes 20,000 yuan under the CONTRACT."
    );
    assert!(fixed.corrected());
    let err = db::correct(
        &store,
        "h1",
        "tr-h1-clerk-0",
        "正在记录",
        &clerk(),
        OffsetDateTime::now_utc(),
    )
    .await
    .expect_err("a partial line is not corrected");
    assert!(matches!(err, TranscriptError::Partial(_)), "{err}");
    let err = db::correct(
        &store,
        "h1",
        "tr-h1-judge-0",
        "  ",
        &clerk(),
        OffsetDateTime::now_utc(),
    )
    .await
    .expect_err("empty text");
    assert!(matches!(err, TranscriptError::BadText(_)), "{err}");
    let err = db::correct(
        &store,
        "h2",
        "tr-h1-judge-0",
        "x",
        &clerk(),
        OffsetDateTime::now_utc(),
    )
    .await
    .expect_err("another hearing's line");
    assert!(matches!(err, TranscriptError::NoLine { .. }), "{err}");
    let c = db::corrections(&store, "h1").await.expect("corrections");
    assert_eq!(c.len(), 1);
    assert_eq!(
        c[0].previous,
        "The defendant owes 20,000 yuan under the CONTRACT."
    );
    assert_eq!(c[0].by, "clerk-chen");
    let audit = store.audit_log(50, None).await.expect("audit");
    let edit = audit
        .iter()
        .find(|a| a.action == "transcript.correct")
        .expect("an audit row for the correction");
    assert_eq!(edit.actor, "clerk-chen");
    assert_eq!(edit.target, "tr-h1-plaintiff-0");
    let detail: Value = serde_json::from_str(edit.detail.as_deref().unwrap_or("")).expect("json");
    assert_eq!(
        detail["machine_text"],
        "The defendant owes 20,000 yuan under the CONTRACT."
    );

    // Search: a two-character Chinese word (shorter than a trigram), a longer phrase, an
    // English word in another case, the corrected text (not the replaced one), filters.
    let find = |text: &str, court: Option<&str>| SearchQuery {
        text: text.into(),
        court: court.map(str::to_owned),
        limit: 50,
        ..SearchQuery::default()
    };
    let hits = db::search(&store, &find("原告", None))
        .await
        .expect("search");
    let ids: Vec<&str> = hits.iter().map(|h| h.line_id.as_str()).collect();
    assert_eq!(
        ids,
        ["tr-h2-judge-0", "tr-h1-judge-0"],
        "newest hearing first"
    );
    let hits = db::search(&store, &find("陈述诉讼请求", None))
        .await
        .expect("search");
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].court.as_deref(), Some("hz-intermediate"));
    assert_eq!(hits[0].time, "00:00:01");
    assert_eq!(hits[0].seat, "judge");
    assert!(hits[0].case_number.as_deref().unwrap_or("").contains("h1"));
    let hits = db::search(&store, &find("contract OF 3 may", None))
        .await
        .expect("search");
    assert_eq!(hits.len(), 1, "English ignores case: {hits:?}");
    assert!(
        db::search(&store, &find("CONTRACT.", None))
            .await
            .expect("search")
            .is_empty(),
        "the corrected-away text is no longer found"
    );
    let hits = db::search(&store, &find("原告", Some("nb-intermediate")))
        .await
        .expect("search");
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].hearing_id, "h2");
    assert!(
        db::search(&store, &find("100%", None))
            .await
            .expect("search")
            .is_empty(),
        "% is a literal, not a wildcard"
    );
    let from_day2 = SearchQuery {
        from: Some(t0 + time::Duration::hours(12)),
        ..find("原告", None)
    };
    assert_eq!(
        db::search(&store, &from_day2).await.expect("search").len(),
        1
    );

    // Sign-off: who, when, digest; later edits refused; a line arriving later shows.
    let so = db::sign_off(&store, "h1", &clerk(), OffsetDateTime::now_utc())
        .await
        .expect("signed");
    assert_eq!(so.lines, 2, "the two final lines");
    let lines = db::lines(&store, "h1").await.expect("lines");
    assert_eq!(export::digest("h1", &lines).0, so.sha256);
    let err = db::correct(
        &store,
        "h1",
        "tr-h1-judge-0",
        "改动",
        &clerk(),
        OffsetDateTime::now_utc(),
    )
    .await
    .expect_err("signed off");
    assert!(matches!(err, TranscriptError::SignedOff { .. }), "{err}");
    assert!(err.to_string().contains("clerk-chen"), "{err}");
    let err = db::sign_off(&store, "h1", &clerk(), OffsetDateTime::now_utc())
        .await
        .expect_err("twice");
    assert!(matches!(err, TranscriptError::SignedOff { .. }));
    assert!(
        store
            .audit_log(50, None)
            .await
            .expect("audit")
            .iter()
            .any(|a| a.action == "transcript.sign_off"
                && a.detail.as_deref().unwrap_or("").contains(&so.sha256))
    );
    store_events(
        &store,
        vec![line_event(
            6,
            "h1",
            "clerk",
            0,
            9_500,
            1_500,
            "正在记录。",
            true,
        )],
    )
    .await;
    let lines = db::lines(&store, "h1").await.expect("lines");
    assert_ne!(
        export::digest("h1", &lines).0,
        so.sha256,
        "the late line is visible"
    );
    let err = db::sign_off(&store, "nothing", &clerk(), OffsetDateTime::now_utc())
        .await
        .expect_err("no lines");
    assert!(matches!(err, TranscriptError::Empty(_)));
    assert!(db::has_final_lines(&store, "h1").await.expect("q"));
    assert!(!db::has_final_lines(&store, "nothing").await.expect("q"));

    // The exports, read back by independent parsers.
    let h = hearing("h1", "hz-intermediate", t0);
    let signoff = db::signoff(&store, "h1").await.expect("q");
    let doc = Document {
        hearing: &h,
        lines: &lines,
        signoff: signoff.as_ref(),
        utc_offset: time::UtcOffset::from_hms(8, 0, 0).expect("offset"),
        made_at: OffsetDateTime::now_utc(),
    };
    check_subtitles(&lines);
    let html = export::html(&doc);
    for want in [
        "(2026)浙0102民初h1号",
        "hz-intermediate",
        "plaintiff 张三; defendant Acme Ltd",
        "王法官",
        "2026-11-27 09:30",
        "under the contract of 3 May.",
        "machine text 机器识别: The defendant owes 20,000 yuan under the CONTRACT.",
        "Signed off by clerk-chen",
        "CHANGED SINCE SIGN-OFF",
    ] {
        assert!(
            html.contains(&export::esc(want)),
            "HTML lacks {want:?}:\n{html}"
        );
    }
    let docx = export::docx(&doc).expect("docx");
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(docx)).expect("a zip file");
    let mut xml = String::new();
    zip.by_name("word/document.xml")
        .expect("word/document.xml")
        .read_to_string(&mut xml)
        .expect("utf-8");
    for want in [
        "(2026)浙0102民初h1号",
        "现在开庭，请原告陈述诉讼请求。",
        "under the contract of 3 May.",
        "00:00:05",
        "plaintiff",
        "Signed off by clerk-chen",
    ] {
        assert!(xml.contains(want), "document.xml lacks {want:?}");
    }
    store.close().await;
}

/// SRT and WebVTT through FFmpeg's own demuxers: one cue per final line at the right
/// time and length, the speaker label in the text.
fn check_subtitles(lines: &[export::Line]) {
    let dir = tempfile::tempdir().expect("tmp");
    for (ext, body) in [("srt", export::srt(lines)), ("vtt", export::vtt(lines))] {
        let path = dir.path().join(format!("t.{ext}"));
        std::fs::write(&path, &body).expect("write");
        let out = Command::new("ffprobe")
            .args(["-v", "error", "-show_packets", "-show_data", "-of", "json"])
            .arg(&path)
            .output()
            .expect("ffprobe runs (apt-get install ffmpeg)");
        assert!(
            out.status.success(),
            "ffprobe {ext}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("json");
        let packets = v["packets"].as_array().expect("packets");
        let times: Vec<(f64, f64)> = packets
            .iter()
            .map(|p| {
                let f = |k: &str| p[k].as_str().and_then(|s| s.parse().ok()).unwrap_or(-1.0);
                (f("pts_time"), f("duration_time"))
            })
            .collect();
        assert_eq!(times, [(1.0, 3.2), (5.0, 4.0), (9.5, 1.5)], "{ext}: {body}");
        // The cue text, from ffprobe's hex dump of each packet.
        let text: String = packets
            .iter()
            .map(|p| {
                let dump = p["data"].as_str().unwrap_or("");
                let bytes: Vec<u8> = dump
                    .lines()
                    .flat_map(|l| {
                        l.split(':')
                            .nth(1)
                            .unwrap_or("")
                            .split("  ")
                            .next()
                            .unwrap_or("")
                            .split_whitespace()
                            .flat_map(|w| (0..w.len()).step_by(2).map(move |i| &w[i..i + 2]))
                            .filter_map(|b| u8::from_str_radix(b, 16).ok())
                            .collect::<Vec<_>>()
                    })
                    .collect();
                String::from_utf8_lossy(&bytes).into_owned() + "\n"
            })
            .collect();
        let judge = if ext == "srt" {
            "judge: 现在开庭，请原告陈述诉讼请求。"
        } else {
            "<v judge>现在开庭，请原告陈述诉讼请求。"
        };
        assert!(text.contains(judge), "{ext}: {text}");
        assert!(
            text.contains("under the contract of 3 May."),
            "{ext}: {text}"
        );
    }
}

#[tokio::test]
async fn transcripts_on_sqlite() {
    let dir = tempfile::tempdir().expect("tmp");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let store = Store::open(&url).await.expect("open");
    assert_eq!(store.backend(), Backend::Sqlite);
    transcripts_on(store).await;
    // Reopening runs the migrations again without harm.
    Store::open(&url).await.expect("reopen");
}

#[tokio::test]
async fn transcripts_on_postgres() {
    use sqlx::Connection as _;
    let server = std::env::var("GAVEL_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let name = format!("gavel_tr_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .expect("PostgreSQL on 127.0.0.1:5432 (cargo xtask test starts it)");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create database");
    let store = Store::open(&format!("{server}/{name}"))
        .await
        .expect("open");
    assert_eq!(store.backend(), Backend::Postgres);
    transcripts_on(store).await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .expect("drop database");
}
