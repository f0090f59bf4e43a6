//! The hearing API for case management systems, through a running controller (SQLite in a
//! temp dir, the real Mosquitto on 127.0.0.1:1883): create, get, move, cancel and import
//! (CSV and iCalendar), with their status codes and field-named errors; the enforcement
//! engine sees every change; the audit survives a restart.

use std::time::{Duration, Instant};

use gavel_controller::{BrokerSettings, Running, Settings};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

async fn start(dir: &std::path::Path) -> Running {
    let mut settings = Settings {
        http_listen: "127.0.0.1:0".parse().unwrap(),
        broker: BrokerSettings::External {
            host: "127.0.0.1".into(),
            port: 1883,
        },
        data_dir: dir.to_owned(),
        ..Settings::default()
    };
    settings.auth.enabled = false;
    settings.enforcement.grace_s = 1;
    settings.enforcement.utc_offset_h = 8;
    gavel_controller::start(settings)
        .await
        .expect("controller starts")
}

/// A JSON time as an instant.
fn at(v: &Value) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(
        v.as_str().expect("a time"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("RFC 3339")
}

fn ts(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

struct Api {
    base: String,
    http: Client,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
    async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }
    async fn import(&self, content_type: &str, text: &str) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(format!("{}/api/v1/hearings/import", self.base))
            .header("content-type", content_type)
            .body(text.to_owned())
            .send()
            .await
            .expect("import");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
    /// Open not-recording alarms of `room`.
    async fn not_recording(&self, room: &str) -> usize {
        let (_, v) = self.get("/api/v1/alarms").await;
        v.as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["kind"] == "not_recording" && a["room"] == room)
            .count()
    }
    async fn wait_alarms(&self, room: &str, want: usize) {
        let start = Instant::now();
        while self.not_recording(room).await != want {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "expected {want} not_recording alarm(s) in {room}: {:?}",
                self.get("/api/v1/alarms").await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn fields(v: &Value) -> Vec<String> {
    v["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["field"].as_str().unwrap_or("?").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn case_management_systems_create_move_and_cancel_hearings_and_enforcement_follows() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    let api = Api {
        base: format!("http://{}", running.http_addr),
        http: Client::new(),
    };
    let now = time::OffsetDateTime::now_utc();
    let room = format!("room-{}", now.unix_timestamp_nanos() % 1_000_000_007);

    // Create without an id: generated from case number and start; local times use +08:00.
    let (status, h) = api
        .post(
            "/api/v1/hearings",
            json!({"case_number": "(2026)浙0106民初1号", "court": "hz", "room": "room-a",
                   "scheduled_start": "2030-01-02 09:00", "scheduled_end": "2030-01-02 10:00",
                   "judge": "王法官", "parties": [{"role": "plaintiff", "name": "张三"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{h}");
    let a = h["id"].as_str().unwrap().to_owned();
    assert!(a.ends_with(&format!("-{}", 1_893_546_000)), "{a}");
    assert_eq!(
        at(&h["scheduled_start"]),
        time::macros::datetime!(2030-01-02 01:00 UTC)
    );
    let (status, got) = api.get(&format!("/api/v1/hearings/{a}")).await;
    assert_eq!((status, &got), (StatusCode::OK, &h));
    assert_eq!(
        api.get("/api/v1/hearings/nope").await.0,
        StatusCode::NOT_FOUND
    );

    // Bad values: 400, every field named; wrong JSON types and unknown fields too.
    let (status, e) = api
        .post(
            "/api/v1/hearings",
            json!({"case_number": "", "court": "HZ Court", "room": "room-a",
                   "scheduled_start": "tomorrow", "scheduled_end": "2030-01-02 10:00", "judge": "J"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        fields(&e),
        ["case_number", "court", "scheduled_start"],
        "{e}"
    );
    let (status, e) = api
        .post("/api/v1/hearings", json!({"case_number": 5}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(e["error"].as_str().unwrap().contains("case_number"), "{e}");
    let (status, e) = api.post("/api/v1/hearings", json!({"judgee": "x"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(e["error"].as_str().unwrap().contains("judgee"), "{e}");

    // Conflicts: the same id again, or the room taken.
    let b_body = json!({"id": "cms-b", "case_number": "B", "court": "hz", "room": "room-a",
        "scheduled_start": "2030-01-02T02:30:00Z", "scheduled_end": "2030-01-02T03:30:00Z", "judge": "J"});
    assert_eq!(
        api.post("/api/v1/hearings", b_body.clone()).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        api.post("/api/v1/hearings", b_body).await.0,
        StatusCode::CONFLICT
    );
    let (status, e) = api
        .post(
            "/api/v1/hearings",
            json!({"id": "cms-c", "case_number": "C", "court": "hz", "room": "room-a",
                   "scheduled_start": "2030-01-02T01:30:00Z", "scheduled_end": "2030-01-02T02:00:00Z", "judge": "J"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(e["error"].as_str().unwrap().contains(&a), "{e}");

    // Move: who and why are kept; onto b's slot is a conflict; bad values are 400.
    let (status, m) = api
        .patch(
            &format!("/api/v1/hearings/{a}"),
            json!({"scheduled_start": "2030-01-02T05:00:00Z", "room": "room-b", "by": "cms", "why": "judge ill"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{m}");
    assert_eq!(
        at(&m["scheduled_end"]),
        time::macros::datetime!(2030-01-02 06:00 UTC)
    );
    assert_eq!(m["history"][0]["action"], "moved");
    assert_eq!(m["history"][0]["why"], "judge ill");
    let onto_b = json!({"scheduled_start": "2030-01-02T03:00:00Z", "room": "room-a", "by": "cms"});
    assert_eq!(
        api.patch(&format!("/api/v1/hearings/{a}"), onto_b).await.0,
        StatusCode::CONFLICT
    );
    let (status, e) = api
        .patch(
            &format!("/api/v1/hearings/{a}"),
            json!({"scheduled_end": "later", "by": "cms"}),
        )
        .await;
    assert_eq!(
        (status, fields(&e)),
        (StatusCode::BAD_REQUEST, vec!["scheduled_end".to_owned()])
    );
    assert_eq!(
        api.patch(
            "/api/v1/hearings/nope",
            json!({"room": "room-c", "by": "cms"})
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );

    // Cancel: who and why required; twice is a conflict; a cancelled hearing does not move.
    let (status, e) = api
        .post("/api/v1/hearings/cms-b/cancel", json!({"by": "cms"}))
        .await;
    assert_eq!(
        (status, fields(&e)),
        (StatusCode::BAD_REQUEST, vec!["why".to_owned()])
    );
    let (status, c) = api
        .post(
            "/api/v1/hearings/cms-b/cancel",
            json!({"by": "cms", "why": "settled"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{c}");
    assert_eq!(c["status"], "cancelled");
    assert_eq!(c["history"][0]["by"], "cms");
    assert_eq!(
        api.post(
            "/api/v1/hearings/cms-b/cancel",
            json!({"by": "cms", "why": "again"})
        )
        .await
        .0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        api.patch(
            "/api/v1/hearings/cms-b",
            json!({"room": "room-c", "by": "cms"})
        )
        .await
        .0,
        StatusCode::CONFLICT
    );
    let (status, e) = api
        .post("/api/v1/hearings/cms-b/open", json!({"by": "clerk"}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(e["error"].as_str().unwrap().contains("cancelled"), "{e}");

    // In progress: not cancellable; closed: not movable.
    assert_eq!(
        api.post(
            &format!("/api/v1/hearings/{a}/open"),
            json!({"by": "clerk"})
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.post(
            &format!("/api/v1/hearings/{a}/cancel"),
            json!({"by": "cms", "why": "x"})
        )
        .await
        .0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        api.post(
            &format!("/api/v1/hearings/{a}/close"),
            json!({"by": "clerk"})
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    let (status, e) = api
        .patch(
            &format!("/api/v1/hearings/{a}"),
            json!({"room": "room-c", "by": "cms"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(e["error"].as_str().unwrap().contains("closed"), "{e}");

    // The engine sees every change: a hearing that started a moment ago in a room that
    // does not record raises an alarm; moved an hour later it clears; moved back it is
    // raised again; cancelled it clears.
    let (status, live) = api
        .post(
            "/api/v1/hearings",
            json!({"id": "live-1", "case_number": "L1", "court": "hz", "room": room,
                   "scheduled_start": ts(now - time::Duration::seconds(2)),
                   "scheduled_end": ts(now + time::Duration::minutes(30)), "judge": "J"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{live}");
    api.wait_alarms(&room, 1).await;
    let later =
        json!({"scheduled_start": ts(now + time::Duration::hours(1)), "by": "cms", "why": "later"});
    assert_eq!(
        api.patch("/api/v1/hearings/live-1", later).await.0,
        StatusCode::OK
    );
    api.wait_alarms(&room, 0).await;
    let back = json!({"scheduled_start": ts(now - time::Duration::seconds(2)), "by": "cms"});
    assert_eq!(
        api.patch("/api/v1/hearings/live-1", back).await.0,
        StatusCode::OK
    );
    api.wait_alarms(&room, 1).await;
    let cancel = json!({"by": "cms", "why": "adjourned"});
    assert_eq!(
        api.post("/api/v1/hearings/live-1/cancel", cancel).await.0,
        StatusCode::OK
    );
    api.wait_alarms(&room, 0).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        api.not_recording(&room).await,
        0,
        "a cancelled hearing raised an alarm"
    );

    // The audit and statuses survive a restart.
    running.stop().await;
    let running = start(dir.path()).await;
    let api = Api {
        base: format!("http://{}", running.http_addr),
        http: Client::new(),
    };
    let (_, live) = api.get("/api/v1/hearings/live-1").await;
    assert_eq!(live["status"], "cancelled");
    let actions: Vec<&str> = live["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["moved", "moved", "cancelled"]);
    assert_eq!(live["history"][2]["why"], "adjourned");
    let (_, a_again) = api.get(&format!("/api/v1/hearings/{a}")).await;
    assert_eq!(a_again["status"], "closed");
    running.stop().await;
}

const ICS: &str = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Court CMS//EN\r\n\
BEGIN:VEVENT\r\nUID:case-77@cms.example\r\nSUMMARY:(2026)浙0106民初77号\r\n\
DTSTART;TZID=Asia/Shanghai:20300103T090000\r\nDTEND;TZID=Asia/Shanghai:20300103T100000\r\n\
LOCATION:hz/room-z\r\nORGANIZER;CN=李法官:mailto:li@court.example\r\n\
ATTENDEE;CN=张三;ROLE=PLAINTIFF:mailto:zs@example.com\r\nEND:VEVENT\r\n\
END:VCALENDAR\r\n";

#[tokio::test(flavor = "multi_thread")]
async fn imports_take_csv_or_icalendar_and_are_checked_against_stored_hearings() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    let api = Api {
        base: format!("http://{}", running.http_addr),
        http: Client::new(),
    };
    // iCalendar by content type, and again by sniffing: the second import changes nothing.
    let (status, v) = api.import("text/calendar", ICS).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        (v["imported"].as_u64(), v["format"].as_str()),
        (Some(1), Some("ics"))
    );
    let (status, v) = api.import("application/octet-stream", ICS).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        (v["imported"].as_u64(), v["unchanged"].as_u64()),
        (Some(0), Some(1))
    );
    let (_, list) = api.get("/api/v1/hearings").await;
    let h = &list.as_array().unwrap()[0];
    assert_eq!(
        at(&h["scheduled_start"]),
        time::macros::datetime!(2030-01-03 01:00 UTC)
    );
    assert_eq!(
        (h["judge"].as_str(), h["room"].as_str()),
        (Some("李法官"), Some("room-z"))
    );
    assert_eq!(h["parties"][0]["role"], "plaintiff");

    // An event that overlaps the stored hearing: 422 with its line; nothing imported.
    let clash = ICS
        .replace("UID:case-77@cms.example", "UID:case-78@cms.example")
        .replace("20300103T090000", "20300103T093000")
        .replace("20300103T100000", "20300103T103000");
    let (status, v) = api.import("text/calendar", &clash).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["errors"][0]["line"], 4);
    assert_eq!(v["errors"][0]["field"], "DTSTART");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("(2026)浙0106民初77号"),
        "{v}"
    );

    // A CSV row clashing with it is named by its line too; CSV by content type.
    let csv = "case_number,court,room,start,end,judge\nX1,hz,room-y,2030-01-03 09:00,2030-01-03 10:00,J\nX2,hz,room-z,2030-01-03 09:30,2030-01-03 10:30,J\n";
    let (status, v) = api.import("text/csv", csv).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(
        (
            v["errors"][0]["line"].as_u64(),
            v["errors"][0]["field"].as_str()
        ),
        (Some(3), Some("start"))
    );
    assert_eq!(
        api.get("/api/v1/hearings").await.1.as_array().map(Vec::len),
        Some(1)
    );

    // Garbage and unknown formats are refused clearly.
    let (status, v) = api.import("text/calendar", "hello\n").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["errors"][0]["field"], "BEGIN");
    let (status, v) = api.import("application/json", "{}").await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(
        v["error"].as_str().unwrap().contains("text/calendar"),
        "{v}"
    );

    // A cancelled event cancels the stored hearing, audited as the import.
    let cancelled = ICS.replace("END:VEVENT", "STATUS:CANCELLED\r\nEND:VEVENT");
    let (status, v) = api.import("text/calendar", &cancelled).await;
    assert_eq!(
        (status, v["imported"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{v}"
    );
    let (_, list) = api.get("/api/v1/hearings").await;
    assert_eq!(list[0]["status"], "cancelled");
    assert_eq!(list[0]["history"][0]["by"], "import");
    running.stop().await;
}
