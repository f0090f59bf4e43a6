//! Hearing transcripts through the whole system (issue 6, the controller's side).
//!
//! A simulated transcribing terminal publishes transcript lines over the real broker as
//! an agent's outbox does (partials as `update`, finals as `end`); with sign-in on, a
//! clerk opens the proofreading page in headless Chromium, watches partial and new lines
//! arrive live, corrects a line and signs the transcript off; the API, the audit log, the
//! exports, search and `gavelctl transcripts` then show the correction with the machine
//! text kept, and later edits are refused. A clerk of another court may not edit.
//!
//! Compliance: a real courtroom terminal records a hearing in a room whose transcriber
//! runs; closed without a transcript it is flagged (`no transcript`); once the final lines
//! arrive it is assessed again and complete.

use std::time::{Duration, Instant};

use fantoccini::Locator;
use gavel_hil::transcriber_sim::{SimLine, TranscriberSim};
use gavel_hil::{AgentSpec, Broker, ChromeDriver, Controller, bin, start_agent_with, unique};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

struct Http {
    base: String,
    client: Client,
}

impl Http {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .timeout(Duration::from_secs(30));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn token(&self, user: &str, password: &str) -> String {
        let resp = self
            .client
            .post(format!("{}/api/v1/login", self.base))
            .json(&json!({"user": user, "password": password}))
            .send()
            .await
            .expect("login");
        assert_eq!(resp.status(), StatusCode::OK, "login {user}");
        let v: Value = resp.json().await.expect("json");
        v["token"].as_str().expect("token").to_owned()
    }

    async fn bytes(&self, path: &str, token: &str) -> Vec<u8> {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        resp.bytes().await.expect("body").to_vec()
    }
}

async fn wait_for(client: &fantoccini::Client, css: &str, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if client.find(Locator::Css(css)).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn row(id: &str) -> String {
    format!("tr[data-line=\"{id}\"]")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clerk_proofreads_a_live_transcript_in_the_browser_and_signs_it_off() {
    let dir = tempfile::tempdir().expect("tmp");
    let c = Controller::start_with_env(
        dir.path(),
        &Broker::Embedded,
        None,
        &[
            ("GAVEL_AUTH", "on"),
            ("GAVEL_BOOTSTRAP_ADMIN", "admin:admin-password-1"),
        ],
    )
    .expect("controller");
    let http = Http {
        base: c.url.clone(),
        client: Client::new(),
    };
    let admin = http.token("admin", "admin-password-1").await;
    for (name, court) in [("chen", "test-court"), ("li", "other-court")] {
        let (status, v) = http
            .call(
                Method::POST,
                "/api/v1/users",
                &admin,
                Some(json!({"name": name, "role": "clerk", "court": court, "password": "clerk-password-1"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
    }
    let chen = http.token("chen", "clerk-password-1").await;
    let li = http.token("li", "clerk-password-1").await;

    // The hearing, with its case, judge and parties.
    let room = unique("room");
    let now = OffsetDateTime::now_utc();
    let id = unique("tr");
    let (status, v) = http
        .call(
            Method::POST,
            "/api/v1/hearings",
            &admin,
            Some(json!({
                "id": id, "case_number": "(2026)浙0102民初88号", "court": "test-court", "room": room,
                "scheduled_start": (now - time::Duration::minutes(1)).format(&Rfc3339).expect("ts"),
                "scheduled_end": (now + time::Duration::hours(1)).format(&Rfc3339).expect("ts"),
                "judge": "王法官",
                "parties": [{"role": "plaintiff", "name": "张三"}, {"role": "defendant", "name": "Acme Ltd"}]
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");

    // The room's transcriber speaks: partial versions, then finals; a line still partial.
    let mut dev = TranscriberSim::connect(&c.mqtt, &unique("term"), "test-court", &room)
        .await
        .expect("simulated transcriber");
    let line = |seat: &'static str,
                n: u64,
                offset_ms: u64,
                duration_ms: u64,
                text: &'static str,
                is_final: bool| SimLine {
        hearing: id.clone(),
        seat,
        line: n,
        offset_ms,
        duration_ms,
        text,
        is_final,
    };
    for l in [
        line("judge", 0, 1_000, 1_500, "现在开庭，请原", false),
        line(
            "judge",
            0,
            1_000,
            3_200,
            "现在开庭，请原告陈述诉讼请求。",
            true,
        ),
        line(
            "plaintiff",
            0,
            5_000,
            4_000,
            "The defendant owes twenty thousand yuan.",
            true,
        ),
        line("clerk", 0, 9_500, 800, "记录在", false),
    ] {
        dev.line(&l).await.expect("publish");
    }
    let judge = format!("tr-{id}-judge-0");
    let plaintiff = format!("tr-{id}-plaintiff-0");
    let clerk = format!("tr-{id}-clerk-0");
    let witness = format!("tr-{id}-witness-0");

    // The clerk signs in on the dashboard and opens the proofreading page.
    let driver = ChromeDriver::start().expect("chromedriver");
    let browser = driver.session().await.expect("session");
    browser.goto(&c.url).await.expect("dashboard");
    let find = |css: String| {
        let browser = browser.clone();
        async move {
            for _ in 0..150 {
                if let Ok(e) = browser.find(Locator::Css(&css)).await
                    && e.is_displayed().await.unwrap_or(false)
                {
                    return e;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("{css} not shown within 15 s");
        }
    };
    find("#signin-user".into())
        .await
        .send_keys("chen")
        .await
        .expect("type");
    find("#signin-password".into())
        .await
        .send_keys("clerk-password-1")
        .await
        .expect("type");
    find("#signin-form button".into())
        .await
        .click()
        .await
        .expect("sign in");
    let mut live = false;
    for _ in 0..100 {
        if find("#conn".into()).await.text().await.unwrap_or_default() == "live" {
            live = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(live, "the dashboard did not go live after signing in");
    browser
        .goto(&format!("{}/hearings/{id}/transcript", c.url))
        .await
        .expect("proofreading page");
    assert!(
        wait_for(
            &browser,
            &format!("{}[data-final=\"true\"]", row(&judge)),
            Duration::from_secs(20)
        )
        .await,
        "the judge's final line is not shown"
    );
    let meta = find("#meta".into()).await.text().await.expect("text");
    for want in [
        "(2026)浙0102民初88号",
        "王法官",
        "plaintiff 张三",
        "test-court",
    ] {
        assert!(meta.contains(want), "header lacks {want}: {meta}");
    }
    // The clerk's line is partial: shown greyed and not editable.
    assert!(
        wait_for(
            &browser,
            &format!("{}.partial[data-final=\"false\"]", row(&clerk)),
            Duration::from_secs(10)
        )
        .await,
        "the partial line is not shown as partial"
    );
    for _ in 0..100 {
        if find("#conn".into()).await.text().await.unwrap_or_default() == "live" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Live: the partial becomes final, a new line appears, without a reload.
    dev.line(&line("clerk", 0, 9_500, 1_400, "记录在案。", true))
        .await
        .expect("publish");
    dev.line(&line(
        "witness",
        0,
        12_000,
        2_000,
        "我看到了被告签字。",
        true,
    ))
    .await
    .expect("publish");
    assert!(
        wait_for(
            &browser,
            &format!("{}[data-final=\"true\"]", row(&clerk)),
            Duration::from_secs(15)
        )
        .await,
        "the partial line was not replaced by its final version live"
    );
    assert!(
        wait_for(&browser, &row(&witness), Duration::from_secs(15)).await,
        "a new line did not appear live"
    );
    let order: Value = browser
        .execute(
            "return Array.from(document.querySelectorAll('#lines tbody tr')).map(function (r) { return r.getAttribute('data-line'); });",
            vec![],
        )
        .await
        .expect("script");
    assert_eq!(order, json!([judge, plaintiff, clerk, witness]));

    // Play: the line's audio span is set on the player.
    find(format!("{} button.play", row(&judge)))
        .await
        .click()
        .await
        .expect("play");
    let src = find("#player".into())
        .await
        .attr("src")
        .await
        .expect("attr")
        .unwrap_or_default();
    assert!(
        src.contains(&format!(
            "/api/v1/archive/hearings/{id}/audio?source=mics%3A0&from_ms=1000&to_ms=4200"
        )),
        "{src}"
    );

    // The clerk corrects the plaintiff's line in place.
    let corrected = "The defendant owes twenty thousand yuan under the contract of 3 May.";
    let input = find(format!("{} input.text", row(&plaintiff))).await;
    input.clear().await.expect("clear");
    input.send_keys(corrected).await.expect("type");
    find(format!("{} button.save", row(&plaintiff)))
        .await
        .click()
        .await
        .expect("save");
    assert!(
        wait_for(
            &browser,
            &format!("{}.corrected[data-saved=\"1\"]", row(&plaintiff)),
            Duration::from_secs(10)
        )
        .await,
        "the correction was not saved: {}",
        find("#error".into()).await.text().await.unwrap_or_default()
    );
    let machine = find(format!("{} .machine", row(&plaintiff)))
        .await
        .text()
        .await
        .expect("text");
    assert!(
        machine.contains("The defendant owes twenty thousand yuan."),
        "{machine}"
    );

    // A clerk of another court may not edit it.
    let (status, v) = http
        .call(
            Method::PUT,
            &format!("/api/v1/hearings/{id}/transcript/lines/{judge}"),
            &li,
            Some(json!({"text": "篡改"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");

    // Sign-off from the page.
    find("#sign".into()).await.click().await.expect("sign");
    browser.accept_alert().await.expect("confirm the sign-off");
    assert!(
        wait_for(
            &browser,
            "#status[data-signed=\"true\"][data-intact=\"true\"]",
            Duration::from_secs(10)
        )
        .await,
        "the page does not show the sign-off"
    );
    let status_text = find("#status".into()).await.text().await.expect("text");
    assert!(status_text.contains("Signed off by chen"), "{status_text}");
    let disabled = find(format!("{} input.text", row(&judge)))
        .await
        .attr("disabled")
        .await
        .expect("attr");
    assert!(disabled.is_some(), "lines stay editable after sign-off");
    browser.close().await.expect("close");

    // The API: correction in force, machine text kept, sign-off by chen, intact.
    let (status, t) = http
        .call(
            Method::GET,
            &format!("/api/v1/hearings/{id}/transcript"),
            &chen,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{t}");
    let lines = t["lines"].as_array().expect("lines");
    let p = lines
        .iter()
        .find(|l| l["id"] == plaintiff)
        .expect("plaintiff line");
    assert_eq!(p["text"], corrected);
    assert_eq!(
        p["machine_text"],
        "The defendant owes twenty thousand yuan."
    );
    assert_eq!(p["corrections"], 1);
    assert_eq!(t["signoff"]["by"], "chen");
    assert_eq!(t["signoff"]["lines"], 4);
    assert_eq!(t["intact"], true);
    assert_eq!(t["signoff"]["sha256"], t["sha256"]);
    let (status, list) = http
        .call(
            Method::GET,
            &format!("/api/v1/hearings/{id}/transcript/corrections"),
            &chen,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list[0]["by"], "chen");
    assert_eq!(
        list[0]["previous"],
        "The defendant owes twenty thousand yuan."
    );
    // Later edits are refused.
    let (status, v) = http
        .call(
            Method::PUT,
            &format!("/api/v1/hearings/{id}/transcript/lines/{judge}"),
            &chen,
            Some(json!({"text": "现在开庭。"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("signed off by chen"),
        "{v}"
    );

    // The audit log: the correction (with before and after) and the sign-off, by chen.
    let (status, audit) = http
        .call(Method::GET, "/api/v1/audit?limit=200", &admin, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let audit = audit.as_array().expect("rows");
    let edit = audit
        .iter()
        .find(|a| a["action"] == "transcript.correct")
        .expect("audited correction");
    assert_eq!(edit["actor"], "chen");
    assert_eq!(edit["role"], "clerk");
    assert_eq!(edit["target"], plaintiff.as_str());
    assert!(edit["detail"].as_str().unwrap_or("").contains(corrected));
    assert!(
        audit
            .iter()
            .any(|a| a["action"] == "transcript.sign_off" && a["actor"] == "chen"),
        "no audited sign-off"
    );
    assert!(
        audit
            .iter()
            .any(|a| a["actor"] == "li" && a["outcome"] == "denied"),
        "the other court's clerk's attempt is not audited"
    );

    // Exports carry the corrected text; the document names the case and the sign-off.
    let srt = String::from_utf8(
        http.bytes(
            &format!("/api/v1/hearings/{id}/transcript?format=srt"),
            &chen,
        )
        .await,
    )
    .expect("utf-8");
    assert!(
        srt.contains("00:00:05,000 --> 00:00:09,000\r\nplaintiff: The defendant owes twenty thousand yuan under the contract of 3 May."),
        "{srt}"
    );
    let vtt = String::from_utf8(
        http.bytes(
            &format!("/api/v1/hearings/{id}/transcript?format=vtt"),
            &chen,
        )
        .await,
    )
    .expect("utf-8");
    assert!(
        vtt.starts_with("WEBVTT") && vtt.contains("<v witness>我看到了被告签字。"),
        "{vtt}"
    );
    let html = String::from_utf8(
        http.bytes(
            &format!("/api/v1/hearings/{id}/transcript?format=html"),
            &chen,
        )
        .await,
    )
    .expect("utf-8");
    for want in [
        "(2026)浙0102民初88号",
        "Signed off by chen",
        "under the contract of 3 May.",
    ] {
        assert!(html.contains(want), "HTML lacks {want}");
    }
    let docx = http
        .bytes(
            &format!("/api/v1/hearings/{id}/transcript?format=docx"),
            &chen,
        )
        .await;
    assert_eq!(&docx[..2], b"PK", "a DOCX is a zip file");

    // Search finds the Chinese and the corrected English text; gavelctl shows and exports.
    let (status, hits) = http
        .call(
            Method::GET,
            "/api/v1/transcripts/search?q=%E5%8E%9F%E5%91%8A&court=test-court",
            &chen,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{hits}");
    assert_eq!(hits[0]["hearing_id"], id.as_str(), "{hits}");
    assert_eq!(hits[0]["seat"], "judge");
    let gavelctl = |args: &[&str]| {
        let out = std::process::Command::new(bin("gavelctl"))
            .arg("--controller")
            .arg(&c.url)
            .args(args)
            .env("GAVEL_TOKEN", &chen)
            .current_dir(dir.path())
            .output()
            .expect("gavelctl runs");
        assert!(
            out.status.success(),
            "gavelctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = gavelctl(&["transcripts", "search", "CONTRACT of 3 may"]);
    assert!(out.contains("1 line(s) found"), "{out}");
    let found: Value = serde_json::from_str(&gavelctl(&[
        "--json",
        "transcripts",
        "search",
        "CONTRACT of 3 may",
    ]))
    .expect("json");
    assert_eq!(found[0]["line_id"], plaintiff.as_str(), "{found}");
    let out = gavelctl(&["transcripts", "show", &id]);
    assert!(out.contains("signed off by chen"), "{out}");
    assert!(out.contains("(text as signed)"), "{out}");
    gavelctl(&[
        "transcripts",
        "export",
        &id,
        "--format",
        "docx",
        "-o",
        "t.docx",
    ]);
    let saved = std::fs::read(dir.path().join("t.docx")).expect("exported file");
    assert!(
        saved.starts_with(b"PK") && saved.len() > 2000,
        "{} bytes",
        saved.len()
    );
}

/// A room whose device transcribes owes a transcript: its hearing, recorded by a real
/// terminal, is flagged `no transcript` when closed without one, and complete once the
/// final lines arrive.
#[tokio::test(flavor = "multi_thread")]
async fn a_transcribing_rooms_hearing_is_flagged_without_a_transcript_and_complete_with_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let c = Controller::start(dir.path(), &Broker::Embedded, None).expect("controller");
    let mut spec = AgentSpec::new(&unique("term"), "courtroom-terminal");
    spec.room = unique("room");
    let _agent = start_agent_with(dir.path(), &spec, &c.mqtt, &[]).expect("agent");
    c.wait_online(&spec.id, true, Duration::from_secs(20))
        .await
        .expect("online");
    let mut dev = TranscriberSim::connect(&c.mqtt, &unique("asr"), "test-court", &spec.room)
        .await
        .expect("simulated transcriber");
    let now = OffsetDateTime::now_utc();
    let t = |s: i64| {
        (now + time::Duration::seconds(s))
            .format(&Rfc3339)
            .expect("ts")
    };
    let csv = dir.path().join("h.csv");
    std::fs::write(
        &csv,
        format!(
            "case_number,court,room,start,end,judge,parties\n(2026)tr-proof,test-court,{},{},{},王法官,plaintiff:张三\n",
            spec.room,
            t(3),
            t(14)
        ),
    )
    .expect("csv");
    let (ok, _, err) = c.gavelctl(&["hearings", "import", &csv.to_string_lossy()]);
    assert!(ok, "{err}");
    let id = c.hearing_id("(2026)tr-proof");
    let ack = c
        .command(
            &spec.id,
            json!({"type": "start_recording", "hearing_id": id, "by": "clerk"}),
        )
        .await
        .expect("start_recording");
    assert_eq!(ack["status"], "ok", "{ack}");
    tokio::time::sleep(Duration::from_secs(15)).await;
    let (ok, _, err) = c.gavelctl(&["hearings", "close", &id, "--by", "clerk"]);
    assert!(ok, "{err}");

    let assessed = |want: &'static str| {
        let c = &c;
        let id = id.clone();
        async move {
            let start = Instant::now();
            loop {
                let r = c
                    .get(&format!("/api/v1/hearings/{id}/compliance"))
                    .await
                    .expect("compliance")
                    .expect("a record");
                if r["verdict"] == want {
                    return r;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(40),
                    "not {want} within 40 s: {r:#}"
                );
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    };
    let r = assessed("incomplete").await;
    assert_eq!(r["transcript_required"], true, "{r:#}");
    assert_eq!(r["transcript_present"], false);
    assert_eq!(r["exceptions"], json!(["no transcript"]), "{r:#}");

    // The transcriber's lines arrive (a tribunal's link came back): assessed again.
    dev.line(&SimLine {
        hearing: id.clone(),
        seat: "judge",
        line: 0,
        offset_ms: 500,
        duration_ms: 2_000,
        text: "现在开庭。",
        is_final: true,
    })
    .await
    .expect("publish");
    let r = assessed("complete").await;
    assert_eq!(r["transcript_present"], true, "{r:#}");
    assert_eq!(r["exceptions"], json!([]), "{r:#}");
}
