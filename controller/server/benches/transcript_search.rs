//! Transcript search: the indexed query (SQLite FTS5 `trigram`, PostgreSQL `pg_trgm` GIN)
//! against the named baseline measured in the same run, a plain `LIKE`/`ILIKE` scan of
//! `transcript_lines` (ADR 0015).
//!
//! `GAVEL_BENCH_LINES` lines (default 200,000: about 400 hearings of 500 lines) of mixed
//! Chinese and English court speech; queries: a 2-character Chinese word (shorter than a
//! trigram), a 4-character phrase, a rare 6-character phrase, an English word. Run with
//! `cargo bench --profile dev -p gavel-controller --bench transcript_search`
//! (`cargo xtask bench`); PostgreSQL from `GAVEL_TEST_POSTGRES` or 127.0.0.1:5432.

use std::time::Instant;

use gavel_controller::store::Store;
use gavel_controller::transcripts::db::{self, SearchQuery};
use gavel_protocol::{DeviceId, Event};
use serde_json::json;
use time::OffsetDateTime;

const ZH: &[&str] = &[
    "现在开庭",
    "请原告陈述诉讼请求",
    "被告是否同意",
    "本院认为",
    "请出示证据",
    "对证据的真实性",
    "没有异议",
    "借款合同",
    "利息按照约定",
    "请证人到庭",
    "休庭十分钟",
    "继续开庭",
    "双方当事人",
    "事实和理由",
    "法庭辩论",
    "最后陈述",
    "调解",
    "判决",
    "上诉期限",
    "货款",
    "违约金",
    "房屋租赁",
];
const EN: &[&str] = &[
    "the court is in session",
    "the plaintiff claims",
    "the defendant denies",
    "please present the evidence",
    "objection",
    "the contract was signed",
    "interest as agreed",
    "the witness may step down",
];

fn text(rng: &mut fastrand::Rng, n: usize) -> String {
    if n.is_multiple_of(7) {
        (0..3)
            .map(|_| EN[rng.usize(..EN.len())])
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        (0..3)
            .map(|_| ZH[rng.usize(..ZH.len())])
            .collect::<Vec<_>>()
            .join("，")
            + "。"
    }
}

async fn fill(store: &Store, lines: usize) {
    let mut rng = fastrand::Rng::with_seed(6);
    let dev = DeviceId::new("bench-terminal").expect("id");
    let seats = ["judge", "clerk", "plaintiff", "defendant", "witness"];
    let mut batch = Vec::with_capacity(2000);
    for n in 0..lines {
        let hearing = format!("h{}", n / 500);
        let seat = seats[n % seats.len()];
        // One rare phrase in the whole corpus.
        let t = if n == lines / 2 {
            "被告当庭承认借款事实".to_owned()
        } else {
            text(&mut rng, n)
        };
        let v = json!({
            "v": 1, "ts": "2026-11-27T09:00:00Z", "boot_id": "bench", "seq": n,
            "id": format!("tr-{hearing}-{seat}-{n}"), "phase": "end", "historical": false,
            "type": "transcript", "hearing_id": hearing, "seat": seat, "source": "mics:0",
            "line": n, "offset_ns": (n % 500) as u64 * 4_000_000_000u64, "duration_ns": 3_000_000_000u64,
            "text": t, "language": "zh", "model": "base"
        });
        let e: Event =
            gavel_protocol::decode(&serde_json::to_vec(&v).expect("json")).expect("event");
        batch.push((dev.clone(), e, OffsetDateTime::now_utc()));
        if batch.len() == 2000 {
            store.save_batch(&[], &batch, &[]).await.expect("store");
            batch.clear();
        }
    }
    store.save_batch(&[], &batch, &[]).await.expect("store");
}

/// Median milliseconds of `runs` runs of `f`, and the rows it found.
async fn time_it<F, Fut>(runs: usize, mut f: F) -> (f64, usize)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    let mut ms = Vec::new();
    let mut found = 0;
    for _ in 0..runs {
        let t = Instant::now();
        found = f().await;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    (ms[ms.len() / 2], found)
}

/// The baseline: the same predicate over `transcript_lines` on an expression no index
/// covers, so the engine scans every row.
async fn scan(url: &str, pattern: &str) -> usize {
    use sqlx::Connection as _;
    let n: i64 = if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(url).await.expect("sqlite");
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM transcript_lines WHERE (text || '') LIKE $1 ESCAPE '\\'",
        )
        .bind(pattern)
        .fetch_one(&mut c)
        .await
        .expect("scan")
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.expect("postgres");
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM transcript_lines WHERE (text || '') ILIKE $1 ESCAPE '\\'",
        )
        .bind(pattern)
        .fetch_one(&mut c)
        .await
        .expect("scan")
    };
    n as usize
}

async fn bench(name: &str, url: &str, lines: usize) {
    let store = Store::open(url).await.expect("open");
    let t = Instant::now();
    fill(&store, lines).await;
    println!(
        "{name}: {lines} lines stored in {:.1} s ({:.0} lines/s, with the search index)",
        t.elapsed().as_secs_f64(),
        lines as f64 / t.elapsed().as_secs_f64()
    );
    println!("{name}: engine {:?}", store.backend());
    for q in ["原告", "借款合同", "当庭承认借款", "contract"] {
        let query = SearchQuery {
            text: q.into(),
            limit: 100_000,
            ..SearchQuery::default()
        };
        let (indexed, found) = time_it(5, || async {
            db::search(&store, &query).await.expect("search").len()
        })
        .await;
        let pattern = format!("%{q}%");
        let (scan, scanned) = time_it(5, || scan(url, &pattern)).await;
        assert_eq!(
            found, scanned,
            "{name} {q}: the index and the scan disagree"
        );
        println!(
            "{name} {q:<10} {found:>6} lines: indexed {indexed:>8.1} ms, baseline scan {scan:>8.1} ms, ratio {:.2}",
            indexed / scan
        );
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let lines: usize = std::env::var("GAVEL_BENCH_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let dir = tempfile::tempdir().expect("tmp");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("b.db").display());
    bench("sqlite", &url, lines).await;

    use sqlx::Connection as _;
    let server = std::env::var("GAVEL_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let name = format!("gavel_bench_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .expect("PostgreSQL");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create database");
    bench("postgres", &format!("{server}/{name}"), lines).await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .expect("drop database");
}
