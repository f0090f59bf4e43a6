//! The service hall end to end: the kiosk page in headless Chromium takes a ticket that the
//! emulated ESC/POS printer (socat pty pair) receives, looks up a case (public fields only,
//! a wrong check code refused), the hall display shows a number called through the API and
//! the kiosk speaks it; and a kiosk cut off from broker and controller keeps issuing
//! numbers that reach the controller's queue exactly once afterwards.
//!
//! `GAVEL_TEST_KIOSK_OUTAGE_S` sets the outage (default 12 s; `cargo xtask soak` runs 300).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use gavel_hil::serial_peers::{Emulator, EscPosPrinter, PtyPair};
use gavel_hil::{
    AgentSpec, Broker, ChromeDriver, Controller, Mosquitto, PgDatabase, Proc, free_port,
    start_agent_env, unique,
};
use serde_json::{Value, json};

const COURT: &str = "xihu-court";
const SECRET: &str = "test-hall-secret";

async fn text(client: &Client, css: &str, timeout: Duration) -> Option<String> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Ok(e) = client.find(Locator::Css(css)).await
            && let Ok(t) = e.text().await
            && !t.trim().is_empty()
        {
            return Some(t);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Starts a kiosk agent serving its page on a free port; returns it and the page's URL.
fn start_kiosk(
    dir: &Path,
    spec: &AgentSpec,
    controller: &Controller,
    mqtt: &(String, u16),
    env: &[(&str, &str)],
) -> (Proc, String) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut all = vec![
        ("GAVEL_KIOSK_LISTEN", listen.as_str()),
        ("GAVEL_CONTROLLER_URL", controller.url.as_str()),
    ];
    all.extend_from_slice(env);
    let agent = start_agent_env(dir, spec, mqtt, &[], &all).expect("kiosk agent");
    (agent, format!("http://{listen}"))
}

async fn wait_page(url: &str) {
    let start = Instant::now();
    loop {
        if let Ok(r) = reqwest::get(format!("{url}/api/services")).await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "kiosk page not up at {url}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_kiosk_page_prints_a_ticket_looks_up_a_case_and_the_hall_display_shows_the_call() {
    let dir = tempfile::tempdir().expect("tmp");
    let controller = Controller::start_with_env(
        dir.path(),
        &Broker::Embedded,
        None,
        &[("GAVEL_HALL_SECRET", SECRET)],
    )
    .expect("controller");
    let pair = PtyPair::start(dir.path(), "printer").expect("socat");
    let printer = Emulator::start(&pair.device, EscPosPrinter::default());
    let mut spec = AgentSpec::new(&unique("kiosk"), "service-kiosk");
    spec.court = COURT.into();
    spec.room = "hall".into();
    let announce_dir = dir.path().join("announce");
    let (mut agent, kiosk) = start_kiosk(
        dir.path(),
        &spec,
        &controller,
        &controller.mqtt,
        &[
            ("GAVEL_PRINTER_PORT", &pair.host.display().to_string()),
            ("GAVEL_ANNOUNCE_DIR", &announce_dir.display().to_string()),
        ],
    );
    controller
        .wait_online(&spec.id, true, Duration::from_secs(20))
        .await
        .expect("kiosk online");
    wait_page(&kiosk).await;

    // A hearing of a case, with a party whose name must never reach the kiosk.
    let case = "(2026)浙0106民初1234号";
    let start = time::OffsetDateTime::now_utc() + time::Duration::days(2);
    let start_text = start
        .format(&time::format_description::well_known::Rfc3339)
        .expect("time");
    let end_text = (start + time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .expect("time");
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/hearings", controller.url))
        .json(&json!({
            "case_number": case, "court": COURT, "room": "room-7",
            "scheduled_start": start_text, "scheduled_end": end_text,
            "judge": "Judge Qian", "parties": [{"role": "plaintiff", "name": "Zhang Sanfeng"}]
        }))
        .send()
        .await
        .expect("create hearing");
    assert!(resp.status().is_success(), "{:?}", resp.text().await);
    let (ok, code, err) = controller.gavelctl(&["hall", "check-code", case]);
    assert!(ok, "{err}");
    let code = code.trim().to_owned();
    assert_eq!(code.len(), 6, "{code}");

    let driver = ChromeDriver::start().expect("chromedriver");
    let client = driver.session().await.expect("session");
    client.goto(&kiosk).await.expect("open kiosk page");

    // Take a ticket for filing: the page shows its number...
    let button = "button[data-service=\"filing\"]";
    assert!(
        text(&client, button, Duration::from_secs(10))
            .await
            .is_some()
    );
    client
        .find(Locator::Css(button))
        .await
        .expect("filing")
        .click()
        .await
        .expect("click");
    let number = text(&client, "#ticket-number", Duration::from_secs(10))
        .await
        .expect("ticket number shown");
    assert!(number.starts_with('A') && number.len() == 5, "{number}");
    println!("ticket taken in Chromium: {number}");

    // ...and the printer received that ticket's ESC/POS bytes: initialise, the number at
    // triple size, the service, a cut.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !printer.with(|p| p.receipts.iter().any(|r| r.contains(&number))) {
        assert!(
            Instant::now() < deadline,
            "ticket {number} not printed: {:?}",
            printer.with(|p| p.receipts.clone())
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let raw = printer.with(|p| p.raw.clone());
    let mut big = vec![0x1D, b'!', 0x22];
    big.extend(number.as_bytes());
    assert!(
        raw.windows(big.len()).any(|w| w == big),
        "number at 3x size"
    );
    // A Chinese receipt printer (the profile's GB18030): the service's Chinese name in
    // GB18030 bytes inside the printer's Chinese mode, then its English name.
    let (zh, _, _) = encoding_rs::GB18030.encode("立案");
    let mut service = b"Service: ".to_vec();
    service.extend_from_slice(&zh);
    service.extend_from_slice(b" filing");
    assert!(
        raw.windows(service.len()).any(|w| w == service.as_slice()),
        "service line in GB18030"
    );
    assert!(
        raw.windows(2).any(|w| w == [0x1C, b'&']),
        "Chinese mode on (FS &)"
    );
    assert!(raw.windows(2).any(|w| w == [0x1B, b'@']), "initialise");
    assert!(raw.windows(4).any(|w| w == [0x1D, b'V', 66, 3]), "cut");
    let receipt = printer.with(|p| p.receipts.last().cloned().unwrap_or_default());
    assert!(
        receipt.contains(COURT) && receipt.contains("Waiting ahead: 0"),
        "{receipt}"
    );

    // A printer out of paper refuses the next ticket, clearly, without spending a number.
    printer.with(|p| p.has_paper = false);
    let r = reqwest::Client::new()
        .post(format!("{kiosk}/api/tickets"))
        .json(&json!({"service": "filing"}))
        .send()
        .await
        .expect("ticket");
    assert_eq!(r.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = r.json().await.expect("json");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("printer is not ready")),
        "{body}"
    );
    printer.with(|p| p.has_paper = true);

    // The ticket reaches the controller's queue.
    let queue = wait_queue(&controller, 1, Duration::from_secs(20)).await;
    assert_eq!(queue["services"][0]["service"], "filing");
    assert_eq!(queue["services"][0]["waiting"], 1);

    // Look up the case in English: public fields only.
    client
        .find(Locator::Css("#lang-en"))
        .await
        .expect("en")
        .click()
        .await
        .expect("click");
    lookup(&client, case, &code).await;
    let status = text(&client, "#case-status", Duration::from_secs(10))
        .await
        .expect("case status shown");
    assert_eq!(status, "Scheduled");
    let room = text(&client, "#case-room", Duration::from_secs(5))
        .await
        .expect("room");
    assert_eq!(room, "room-7");
    let next = text(&client, "#case-next", Duration::from_secs(5))
        .await
        .expect("next");
    let local = start.to_offset(time::UtcOffset::from_hms(8, 0, 0).expect("offset"));
    let day = format!(
        "{:04}-{:02}-{:02}",
        local.year(),
        u8::from(local.month()),
        local.day()
    );
    assert!(next.starts_with(&day), "{next} vs {day}");
    let page = client.source().await.expect("source");
    assert!(
        !page.contains("Zhang") && !page.contains("Qian"),
        "no names on the kiosk"
    );

    // A wrong check code is refused like an unknown case.
    let wrong = if code == "000000" { "000001" } else { "000000" };
    lookup(&client, case, wrong).await;
    let refused = text(&client, "#lookup-error", Duration::from_secs(10))
        .await
        .expect("refusal shown");
    assert!(refused.contains("No case matches"), "{refused}");

    // Look-ups are rate-limited per client, with a clear message.
    let http = reqwest::Client::new();
    let mut limited = None;
    for _ in 0..6 {
        let r = http
            .post(format!("{kiosk}/api/lookup"))
            .json(&json!({"case_number": case, "check_code": wrong}))
            .send()
            .await
            .expect("lookup");
        if r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r.json::<Value>().await.expect("json"));
            break;
        }
    }
    let limited = limited.expect("rate limited within 6 quick look-ups");
    assert!(
        limited["error"]
            .as_str()
            .is_some_and(|e| e.contains("try again in")),
        "{limited}"
    );
    assert!(limited["retry_after_s"].as_u64().is_some_and(|s| s >= 1));
    let stats: Value = http
        .get(format!("{kiosk}/api/stats"))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    println!("kiosk stats: {stats}");
    assert_eq!(stats["lookups_found"], 1);
    assert!(stats["rate_limited"].as_u64().is_some_and(|n| n >= 1));

    // A window calls the number through the API: the hall display shows it...
    let (ok, out, err) = controller.gavelctl(&["hall", "call", COURT, "3"]);
    assert!(ok, "{err}");
    assert!(out.contains(&number) && out.contains("window 3"), "{out}");
    client
        .goto(&format!("{}/hall/{COURT}", controller.url))
        .await
        .expect("open hall display");
    let shown = format!("#latest[data-number=\"{number}\"][data-window=\"3\"]");
    let start_wait = Instant::now();
    let mut found = false;
    while start_wait.elapsed() < Duration::from_secs(10) {
        if client.find(Locator::Css(&shown)).await.is_ok() {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(found, "hall display does not show {number} at window 3");
    let latest = text(&client, "#latest-text", Duration::from_secs(5))
        .await
        .expect("latest text");
    assert!(
        latest.contains(&format!("请 {number} 号到 3 号窗口")),
        "{latest}"
    );

    // ...and the kiosk, which can announce, spoke it: an audible WAV per language.
    let deadline = Instant::now() + Duration::from_secs(20);
    let wavs = loop {
        let wavs: Vec<_> = std::fs::read_dir(&announce_dir)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.to_string_lossy().contains(&number))
                    .filter(|p| p.extension().is_some_and(|x| x == "wav"))
                    .collect()
            })
            .unwrap_or_default();
        if wavs.len() == 2 && agent.log_text().matches("announced").count() >= 2 {
            break wavs;
        }
        assert!(
            Instant::now() < deadline,
            "announcement not rendered: {wavs:?}\n{}",
            agent.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for w in &wavs {
        let (rms, secs) = gavel_kiosk::speech::wav_level(w).expect("wav");
        println!("{}: {secs:.2} s, RMS {rms:.4}", w.display());
        assert!(secs > 1.0 && rms > 0.01, "{} silent or short", w.display());
    }

    // Nothing about the look-ups was kept or logged on the kiosk.
    let log = agent.log_text();
    assert!(!log.contains("浙0106民初1234"), "look-up in the log");
    let data = dir.path().join(format!("agent-{}", spec.id));
    for entry in std::fs::read_dir(&data).expect("data dir").flatten() {
        if let Ok(bytes) = std::fs::read(entry.path()) {
            let needle = "浙0106民初1234".as_bytes();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "case number kept in {}",
                entry.path().display()
            );
        }
    }
    client.close().await.expect("close");
    agent.terminate(Duration::from_secs(5));
}

async fn lookup(client: &Client, case: &str, code: &str) {
    for (css, value) in [("#case-number", case), ("#check-code", code)] {
        let e = client.find(Locator::Css(css)).await.expect("input");
        e.clear().await.expect("clear");
        e.send_keys(value).await.expect("type");
    }
    // Clear the previous answer so the next wait sees the new one.
    client
        .execute(
            "document.getElementById('lookup-result').textContent = '';",
            vec![],
        )
        .await
        .expect("js");
    client
        .find(Locator::Css("#lookup-btn"))
        .await
        .expect("button")
        .click()
        .await
        .expect("click");
}

/// Polls the court's hall until it holds `tickets` tickets.
async fn wait_queue(controller: &Controller, tickets: u64, timeout: Duration) -> Value {
    let start = Instant::now();
    loop {
        let v = controller
            .get(&format!("/api/v1/hall/{COURT}"))
            .await
            .ok()
            .flatten()
            .unwrap_or(Value::Null);
        if v["tickets"].as_u64() == Some(tickets) {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "hall holds {:?} tickets, not {tickets}: {v}",
            v["tickets"]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn take(http: &reqwest::Client, kiosk: &str, service: &str) -> Option<String> {
    let r = http
        .post(format!("{kiosk}/api/tickets"))
        .json(&json!({ "service": service }))
        .send()
        .await
        .ok()?;
    if r.status() != reqwest::StatusCode::CREATED {
        return None;
    }
    let v: Value = r.json().await.ok()?;
    v["number"].as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kiosk_offline_keeps_numbering_without_duplicates_and_the_queue_holds_each_ticket_once() {
    let outage_s: u64 = std::env::var("GAVEL_TEST_KIOSK_OUTAGE_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    kiosk_offline(outage_s, None).await;
}

/// The same on PostgreSQL (a short outage: the store's hall queries are what is checked).
#[tokio::test(flavor = "multi_thread")]
async fn a_kiosk_offline_keeps_numbering_without_duplicates_on_postgres() {
    let db = PgDatabase::create().expect("PostgreSQL database (is PostgreSQL running?)");
    kiosk_offline(4, Some(&db.url())).await;
}

async fn kiosk_offline(outage_s: u64, database: Option<&str>) {
    let dir = tempfile::tempdir().expect("tmp");
    let mut broker = Mosquitto::private().expect("mosquitto");
    let env = [("GAVEL_HALL_SECRET", SECRET)];
    let mut controller = Controller::start_with_env(dir.path(), &broker.broker(), database, &env)
        .expect("controller");
    let mut spec = AgentSpec::new(&unique("kiosk"), "service-kiosk");
    spec.court = COURT.into();
    spec.room = "hall".into();
    // Many tickets a minute from one screen: this test is about numbering, not limits.
    let limits = [
        ("GAVEL_KIOSK_NUMBER", "4"),
        ("GAVEL_KIOSK_TICKETS_PER_MINUTE", "6000"),
    ];
    let mqtt = controller.mqtt.clone();
    let (agent, kiosk) = start_kiosk(dir.path(), &spec, &controller, &mqtt, &limits);
    let mut agent = Some(agent);
    controller
        .wait_online(&spec.id, true, Duration::from_secs(20))
        .await
        .expect("online");
    wait_page(&kiosk).await;
    let http = reqwest::Client::new();
    let services = ["filing", "consultation", "payment", "mediation"];
    let mut issued: Vec<(String, String)> = Vec::new();
    for s in services {
        issued.push((
            take(&http, &kiosk, s).await.expect("online ticket"),
            s.into(),
        ));
    }
    wait_queue(&controller, issued.len() as u64, Duration::from_secs(20)).await;

    // Outage: the controller and the broker go away.
    controller.proc.terminate(Duration::from_secs(10));
    broker.stop();
    let began = Instant::now();
    let mut killed = false;
    let mut i = 0;
    while began.elapsed() < Duration::from_secs(outage_s) {
        // Halfway through, the kiosk loses power too; its numbers go on after the restart.
        if !killed && began.elapsed() > Duration::from_secs(outage_s / 2) {
            if let Some(mut a) = agent.take() {
                a.kill9();
            }
            let (a, _) = {
                let url = kiosk.trim_start_matches("http://");
                let (proc, _) = start_kiosk_at(dir.path(), &spec, &controller, &mqtt, url, &limits);
                (proc, ())
            };
            agent = Some(a);
            wait_page(&kiosk).await;
            killed = true;
        }
        let s = services[i % services.len()];
        i += 1;
        match take(&http, &kiosk, s).await {
            Some(n) => issued.push((n, s.into())),
            None => panic!("no ticket while offline (ticket {i})"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let offline = issued.len() - services.len();
    println!(
        "{offline} tickets issued during a {outage_s} s outage (agent SIGKILLed and restarted once)"
    );
    let distinct: BTreeSet<&String> = issued.iter().map(|(n, _)| n).collect();
    assert_eq!(
        distinct.len(),
        issued.len(),
        "duplicate numbers: {issued:?}"
    );
    assert!(issued.iter().all(|(n, _)| n.chars().nth(1) == Some('4')));

    // Back: the broker, then the controller (same data).
    broker.start().expect("broker back");
    controller = Controller::start_with_env(dir.path(), &broker.broker(), database, &env)
        .expect("controller");
    let back = Instant::now();
    let queue = wait_queue(&controller, issued.len() as u64, Duration::from_secs(90)).await;
    println!(
        "all {} tickets in the controller's queue {:.1} s after it returned",
        issued.len(),
        back.elapsed().as_secs_f64()
    );
    let mut per_service: BTreeMap<String, u64> = BTreeMap::new();
    for (_, s) in &issued {
        *per_service.entry(s.clone()).or_default() += 1;
    }
    for s in queue["services"].as_array().expect("services") {
        let name = s["service"].as_str().expect("name");
        assert_eq!(
            s["waiting"].as_u64(),
            per_service.get(name).copied().or(Some(0)),
            "{name}: {queue}"
        );
    }

    // Calling every ticket gives each issued number exactly once, in issue order.
    let mut called = Vec::new();
    let last = loop {
        let (ok, out, _) = controller.gavelctl(&["--json", "hall", "call", COURT, "1"]);
        let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        match v["called"]["number"].as_str() {
            Some(n) if ok => called.push(n.to_owned()),
            _ => break v,
        }
        if called.len() == 1 {
            // A recall calls the same number again (and spends no ticket).
            let (ok, out, err) = controller.gavelctl(&["--json", "hall", "recall", COURT, "1"]);
            assert!(ok, "{err}");
            let v: Value = serde_json::from_str(&out).expect("json");
            assert_eq!(v["called"]["number"].as_str(), Some(called[0].as_str()));
            assert_eq!(v["called"]["recall"], true);
        }
        assert!(called.len() <= issued.len(), "more calls than tickets");
    };
    assert_eq!(last["reason"], "nobody is waiting", "{last}");
    let want: Vec<String> = issued.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(called, want, "each ticket once, in the order issued");

    // A controller restart neither loses nor repeats any of them.
    controller.proc.terminate(Duration::from_secs(10));
    controller = Controller::start_with_env(dir.path(), &broker.broker(), database, &env)
        .expect("controller");
    let v = wait_queue(&controller, issued.len() as u64, Duration::from_secs(20)).await;
    let waiting: u64 = v["services"]
        .as_array()
        .expect("services")
        .iter()
        .map(|s| s["waiting"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(waiting, 0, "{v}");
    if let Some(mut a) = agent.take() {
        a.terminate(Duration::from_secs(5));
    }
}

/// Starts the kiosk again on the same address (after a power cut).
fn start_kiosk_at(
    dir: &Path,
    spec: &AgentSpec,
    controller: &Controller,
    mqtt: &(String, u16),
    listen: &str,
    env: &[(&str, &str)],
) -> (Proc, String) {
    let mut all = vec![
        ("GAVEL_KIOSK_LISTEN", listen),
        ("GAVEL_CONTROLLER_URL", controller.url.as_str()),
    ];
    all.extend_from_slice(env);
    let agent = start_agent_env(dir, spec, mqtt, &[], &all).expect("kiosk agent");
    (agent, format!("http://{listen}"))
}
