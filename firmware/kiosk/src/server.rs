//! The kiosk's HTTP shell: the page and its JSON endpoints, around the ticket book and the
//! rate limiters.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the touchscreen page |
//! | `GET /api/services` | court name, languages, services with their letters and, when the controller answers, the queue |
//! | `POST /api/tickets` `{service}` | 201 the ticket (printed, queued as an event); 422 unknown service; 429 too many; 503 printer |
//! | `POST /api/lookup` `{case_number, check_code}` | 200 public fields; 404 no such case/code; 429; 503 controller unreachable |
//! | `GET /api/stats` | counts only |

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use gavel_devices::escpos::{Encoding, Printer, QueueTicket};
use gavel_devices::serial::PortSettings;
use gavel_link::Outbox;
use gavel_protocol::{EventBody, Phase};
use gavel_store::Store;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tracing::{info, warn};

use crate::limit::{Limits, RateLimiter, Scope, Verdict};
use crate::tickets::{BookSettings, Counters, Input, Issued, Output, Refusal, TicketBook};

/// Where the counters live in the device store.
pub const COUNTERS_KEY: &str = "kiosk.counters";

const PAGE: &str = include_str!("../assets/kiosk.html");

/// How the kiosk runs.
#[derive(Debug, Clone)]
pub struct KioskSettings {
    /// The controller's API (`http://controller:8700`); look-ups and queue lengths need
    /// it, tickets do not.
    pub controller: Option<String>,
    /// The court (placement) whose hall queue the tickets join.
    pub court: String,
    /// Court name printed on tickets and shown on the page.
    pub court_name: String,
    /// Languages of the page (`zh`, `en`).
    pub languages: Vec<String>,
    /// Ticket numbering.
    pub book: BookSettings,
    /// Limits of `POST /api/tickets`.
    pub ticket_limits: Limits,
    /// Limits of `POST /api/lookup`.
    pub lookup_limits: Limits,
    /// How long to wait for the controller before going on without it.
    pub controller_timeout: Duration,
    /// Text encoding of the receipt printer (GB18030 for Chinese printers: tickets then
    /// carry Chinese service names).
    pub printer_encoding: Encoding,
}

/// The service as printed: with its Chinese name on a Chinese printer.
pub fn service_label(service: &str, encoding: Encoding) -> String {
    let zh = match service {
        "filing" => "立案",
        "consultation" => "咨询",
        "payment" => "缴费",
        "mediation" => "调解",
        _ => "",
    };
    if encoding == Encoding::Gb18030 && !zh.is_empty() {
        format!("{zh} {service}")
    } else {
        service.to_string()
    }
}

/// The ticket printer.
pub enum PrinterPort {
    /// ESC/POS on a serial port.
    Serial(PortSettings),
    /// No printer (demo, rigs): the ticket is logged instead.
    Simulated,
}

/// What the kiosk needs from the agent.
pub struct KioskParts {
    pub settings: KioskSettings,
    pub store: Arc<Store>,
    pub outbox: Arc<Outbox>,
    pub printer: PrinterPort,
}

/// Counts, the only trace look-ups leave.
#[derive(Debug, Default, Serialize)]
pub struct Stats {
    pub tickets_issued: AtomicU64,
    pub tickets_refused: AtomicU64,
    pub print_failures: AtomicU64,
    pub lookups_found: AtomicU64,
    pub lookups_not_found: AtomicU64,
    pub lookups_failed: AtomicU64,
    pub rate_limited: AtomicU64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

struct Kiosk {
    settings: KioskSettings,
    store: Arc<Store>,
    outbox: Arc<Outbox>,
    printer: Option<Arc<std::sync::Mutex<Printer>>>,
    book: tokio::sync::Mutex<TicketBook>,
    ticket_limit: std::sync::Mutex<RateLimiter<IpAddr>>,
    lookup_limit: std::sync::Mutex<RateLimiter<IpAddr>>,
    started: Instant,
    http: reqwest::Client,
    stats: Stats,
}

/// Serves the kiosk on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    parts: KioskParts,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let store = parts.store.clone();
    let stored: Option<Counters> =
        tokio::task::spawn_blocking(move || store.get_meta(COUNTERS_KEY))
            .await
            .ok()
            .and_then(|r| r.ok())
            .flatten()
            .and_then(|b| serde_json::from_slice(&b).ok());
    let printer = match parts.printer {
        PrinterPort::Serial(s) => Some(Arc::new(std::sync::Mutex::new(Printer::new(s)))),
        PrinterPort::Simulated => None,
    };
    let http = reqwest::Client::builder()
        .timeout(parts.settings.controller_timeout)
        .build()
        .unwrap_or_default();
    let kiosk = Arc::new(Kiosk {
        book: tokio::sync::Mutex::new(TicketBook::new(parts.settings.book.clone(), stored)),
        ticket_limit: std::sync::Mutex::new(RateLimiter::new(parts.settings.ticket_limits)),
        lookup_limit: std::sync::Mutex::new(RateLimiter::new(parts.settings.lookup_limits)),
        settings: parts.settings,
        store: parts.store,
        outbox: parts.outbox,
        printer,
        started: Instant::now(),
        http,
        stats: Stats::default(),
    });
    let app = Router::new()
        .route("/", get(page))
        .route("/api/services", get(services))
        .route("/api/tickets", post(take_ticket))
        .route("/api/lookup", post(lookup))
        .route("/api/stats", get(stats))
        .with_state(kiosk);
    info!(addr = %listener.local_addr()?, "kiosk page listening");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
    /// The same message in Chinese.
    error_zh: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_s: Option<u32>,
}

fn error(code: StatusCode, en: impl Into<String>, zh: impl Into<String>) -> Response {
    (
        code,
        Json(ErrorBody {
            error: en.into(),
            error_zh: zh.into(),
            retry_after_s: None,
        }),
    )
        .into_response()
}

fn limited(kiosk: &Kiosk, scope: Scope, retry_after_s: u32) -> Response {
    inc(&kiosk.stats.rate_limited);
    let (en, zh) = match scope {
        Scope::Client => (
            format!("Too many requests from this screen. Please try again in {retry_after_s} s."),
            format!("操作过于频繁，请 {retry_after_s} 秒后再试。"),
        ),
        Scope::Overall => (
            format!("The kiosk is busy. Please try again in {retry_after_s} s."),
            format!("服务繁忙，请 {retry_after_s} 秒后再试。"),
        ),
    };
    let mut resp = (
        StatusCode::TOO_MANY_REQUESTS,
        Json(ErrorBody {
            error: en,
            error_zh: zh,
            retry_after_s: Some(retry_after_s),
        }),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&retry_after_s.to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

fn check(
    kiosk: &Kiosk,
    limiter: &std::sync::Mutex<RateLimiter<IpAddr>>,
    client: IpAddr,
) -> Option<Response> {
    let verdict = match limiter.lock() {
        Ok(mut l) => l.check(kiosk.started.elapsed(), &client),
        Err(p) => p.into_inner().check(kiosk.started.elapsed(), &client),
    };
    match verdict {
        Verdict::Allow => None,
        Verdict::Deny {
            scope,
            retry_after_s,
        } => Some(limited(kiosk, scope, retry_after_s)),
    }
}

async fn page() -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Html(PAGE)).into_response()
}

/// The controller's view of the hall, as far as the kiosk reads it.
#[derive(Debug, Deserialize)]
struct HallQueue {
    services: Vec<QueueService>,
}

#[derive(Debug, Deserialize)]
struct QueueService {
    service: String,
    waiting: u32,
    estimate_s: u32,
}

/// Reads the hall queue from the controller and tells the book; `None` when unreachable.
async fn refresh_queue(kiosk: &Kiosk) -> Option<HallQueue> {
    let base = kiosk.settings.controller.as_ref()?;
    let url = format!(
        "{}/api/v1/hall/{}",
        base.trim_end_matches('/'),
        kiosk.settings.court
    );
    let resp = kiosk.http.get(url).send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let queue: HallQueue = resp.json().await.ok()?;
    let now = OffsetDateTime::now_utc();
    let mut book = kiosk.book.lock().await;
    for s in &queue.services {
        book.handle(
            now,
            Input::QueueSeen {
                service: s.service.clone(),
                waiting: s.waiting,
                estimate_s: s.estimate_s,
            },
        );
    }
    Some(queue)
}

#[derive(Serialize)]
struct ServiceItem {
    service: String,
    letter: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    waiting: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    estimate_s: Option<u32>,
}

#[derive(Serialize)]
struct ServicesBody {
    court_name: String,
    languages: Vec<String>,
    /// Whether the controller answered (tickets are issued either way).
    online: bool,
    services: Vec<ServiceItem>,
}

async fn services(State(kiosk): State<Arc<Kiosk>>) -> Response {
    let queue = refresh_queue(&kiosk).await;
    let book = kiosk.book.lock().await;
    let services = book
        .services()
        .iter()
        .map(|s| {
            let q = queue
                .as_ref()
                .and_then(|q| q.services.iter().find(|x| &x.service == s));
            ServiceItem {
                service: s.clone(),
                letter: book.letter(s).map(String::from).unwrap_or_default(),
                waiting: q.map(|q| q.waiting),
                estimate_s: q.map(|q| q.estimate_s),
            }
        })
        .collect();
    Json(ServicesBody {
        court_name: kiosk.settings.court_name.clone(),
        languages: kiosk.settings.languages.clone(),
        online: queue.is_some(),
        services,
    })
    .into_response()
}

#[derive(Deserialize)]
struct TakeTicket {
    service: String,
}

async fn take_ticket(
    State(kiosk): State<Arc<Kiosk>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(req): Json<TakeTicket>,
) -> Response {
    if let Some(resp) = check(&kiosk, &kiosk.ticket_limit, peer.ip()) {
        return resp;
    }
    // The queue length on the ticket, when the controller answers in time.
    refresh_queue(&kiosk).await;
    // Design: a printer that cannot print refuses the ticket before a number is spent.
    if let Some(p) = &kiosk.printer {
        let p = p.clone();
        let status = tokio::task::spawn_blocking(move || match p.lock() {
            Ok(mut p) => p.status(),
            Err(poisoned) => poisoned.into_inner().status(),
        })
        .await;
        let problem = match status {
            Ok(Ok(s)) if s.online && s.paper => None,
            Ok(Ok(s)) if !s.paper => Some("out of paper".to_owned()),
            Ok(Ok(_)) => Some("offline".to_owned()),
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(e.to_string()),
        };
        if let Some(problem) = problem {
            inc(&kiosk.stats.print_failures);
            warn!(%problem, "ticket printer not ready");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "The ticket printer is not ready. Please ask the staff.",
                "取号打印机暂不可用，请联系工作人员。",
            );
        }
    }
    // Design: one ticket at a time, so numbers are spent, printed and queued in order.
    let mut book = kiosk.book.lock().await;
    let now = OffsetDateTime::now_utc();
    let mut issued: Option<Issued> = None;
    for output in book.handle(
        now,
        Input::Take {
            service: req.service,
        },
    ) {
        match output {
            Output::Persist(counters) => {
                let store = kiosk.store.clone();
                let saved = tokio::task::spawn_blocking(move || {
                    let bytes = serde_json::to_vec(&counters).unwrap_or_default();
                    store.put_meta(COUNTERS_KEY, &bytes)
                })
                .await;
                if !matches!(saved, Ok(Ok(()))) {
                    warn!("could not store the ticket counters; no ticket issued");
                    inc(&kiosk.stats.tickets_refused);
                    return error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "The kiosk could not issue a ticket. Please ask the staff.",
                        "无法取号，请联系工作人员。",
                    );
                }
            }
            Output::Issue(t) => issued = Some(t),
            Output::Refuse(r) => {
                inc(&kiosk.stats.tickets_refused);
                let (code, zh) = match &r {
                    Refusal::UnknownService(_) => {
                        (StatusCode::UNPROCESSABLE_ENTITY, "没有此项业务。")
                    }
                    Refusal::NumbersUsedUp { .. } => {
                        (StatusCode::CONFLICT, "今日该业务号码已发完。")
                    }
                };
                return error(code, r.to_string(), zh);
            }
        }
    }
    let Some(ticket) = issued else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "no ticket", "无法取号");
    };
    let encoding = kiosk.settings.printer_encoding;
    let receipt = QueueTicket {
        court: kiosk.settings.court_name.clone(),
        number: ticket.number.clone(),
        service: service_label(&ticket.service, encoding),
        waiting: ticket.waiting_ahead,
        issued: ticket.issued.to_offset(kiosk.settings.book.offset),
    }
    .receipt_in(encoding);
    match &kiosk.printer {
        Some(p) => {
            let p = p.clone();
            let printed = tokio::task::spawn_blocking(move || match p.lock() {
                Ok(mut p) => p.print(receipt),
                Err(poisoned) => poisoned.into_inner().print(receipt),
            })
            .await;
            if let Err(e) = printed
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
            {
                inc(&kiosk.stats.print_failures);
                warn!(number = %ticket.number, error = %e, "printing the ticket failed; its number is not used");
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The ticket could not be printed. Please try again or ask the staff.",
                    "打印失败，请重试或联系工作人员。",
                );
            }
        }
        None => {
            info!(number = %ticket.number, service = %ticket.service, "ticket printed (simulated printer)")
        }
    }
    // Queued through the outbox: durable now, delivered when the controller is reachable.
    let body = EventBody::Ticket {
        number: ticket.number.clone(),
        service: ticket.service.clone(),
        day: ticket.day.clone(),
        issued: ticket.issued,
    };
    let id = format!("ticket-{}-{}", ticket.day, ticket.number);
    if let Err(e) = kiosk.outbox.emit(id, Phase::End, body).await {
        warn!(number = %ticket.number, error = %e, "the printed ticket could not be stored for the controller");
    }
    drop(book);
    inc(&kiosk.stats.tickets_issued);
    info!(number = %ticket.number, service = %ticket.service, "ticket issued");
    (StatusCode::CREATED, Json(ticket)).into_response()
}

#[derive(Deserialize, Serialize)]
struct Lookup {
    case_number: String,
    check_code: String,
}

/// What the screen may show of a case: nothing else is passed on.
#[derive(Debug, Deserialize, Serialize)]
struct PublicCase {
    case_number: String,
    status: String,
    next_hearing: Option<PublicHearing>,
}

#[derive(Debug, Deserialize, Serialize)]
struct PublicHearing {
    date: String,
    time: String,
    room: String,
}

async fn lookup(
    State(kiosk): State<Arc<Kiosk>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(req): Json<Lookup>,
) -> Response {
    if let Some(resp) = check(&kiosk, &kiosk.lookup_limit, peer.ip()) {
        return resp;
    }
    let case = req.case_number.trim();
    let code = req.check_code.trim();
    if case.is_empty() || case.chars().count() > 64 || code.is_empty() || code.len() > 16 {
        inc(&kiosk.stats.lookups_not_found);
        return error(
            StatusCode::BAD_REQUEST,
            "Enter the case number and the check code printed on your notice.",
            "请输入案号和通知书上的查询码。",
        );
    }
    let Some(base) = &kiosk.settings.controller else {
        inc(&kiosk.stats.lookups_failed);
        return unavailable();
    };
    // Design: the case number and code go to the controller and the answer to the
    // screen; neither is logged or kept here.
    let resp = kiosk
        .http
        .post(format!("{}/api/v1/hall/lookup", base.trim_end_matches('/')))
        .json(&Lookup {
            case_number: case.to_owned(),
            check_code: code.to_owned(),
        })
        .send()
        .await;
    let resp = match resp {
        Ok(r) => r,
        Err(_) => {
            inc(&kiosk.stats.lookups_failed);
            return unavailable();
        }
    };
    match resp.status() {
        s if s.is_success() => match resp.json::<PublicCase>().await {
            Ok(case) => {
                inc(&kiosk.stats.lookups_found);
                Json(case).into_response()
            }
            Err(_) => {
                inc(&kiosk.stats.lookups_failed);
                unavailable()
            }
        },
        reqwest::StatusCode::NOT_FOUND => {
            inc(&kiosk.stats.lookups_not_found);
            error(
                StatusCode::NOT_FOUND,
                "No case matches this case number and check code.",
                "案号或查询码不正确。",
            )
        }
        reqwest::StatusCode::TOO_MANY_REQUESTS => limited(&kiosk, Scope::Overall, 60),
        _ => {
            inc(&kiosk.stats.lookups_failed);
            unavailable()
        }
    }
}

fn unavailable() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "Case look-up is not available right now. Tickets can still be taken.",
        "案件查询暂不可用，仍可取号。",
    )
}

async fn stats(State(kiosk): State<Arc<Kiosk>>) -> Response {
    Json(&kiosk.stats).into_response()
}

#[cfg(test)]
mod label_tests {
    use super::*;

    #[test]
    fn a_chinese_printer_prints_the_services_chinese_name_first() {
        assert_eq!(service_label("filing", Encoding::Gb18030), "立案 filing");
        assert_eq!(
            service_label("mediation", Encoding::Gb18030),
            "调解 mediation"
        );
        assert_eq!(service_label("filing", Encoding::Utf8), "filing");
        assert_eq!(service_label("other", Encoding::Gb18030), "other");
    }
}
