//! Hearings end to end through `gavelctl` and the running controller: an iCalendar file
//! from a court calendar is imported and enforced (its room does not record: alarm), the
//! case management commands move it (the alarm clears) and cancel it (who and why shown),
//! and bad files are refused with their lines named.

use std::time::{Duration, Instant};

use gavel_hil::{Broker, Controller, unique};
use serde_json::Value;

async fn not_recording(c: &Controller, room: &str) -> usize {
    c.get("/api/v1/alarms")
        .await
        .expect("alarms")
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter(|a| a["kind"] == "not_recording" && a["room"] == room)
        .count()
}

async fn wait_alarms(c: &Controller, room: &str, want: usize) {
    let start = Instant::now();
    while not_recording(c, room).await != want {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "expected {want} not_recording alarm(s) in {room}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn ics_time(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_icalendar_schedule_is_imported_enforced_moved_and_cancelled_with_gavelctl() {
    let dir = tempfile::tempdir().expect("tmp");
    let controller = Controller::start_with_env(
        dir.path(),
        &Broker::Embedded,
        None,
        &[("GAVEL_ALARM_GRACE_S", "2")],
    )
    .expect("controller");
    let room = unique("room");
    let now = time::OffsetDateTime::now_utc();

    // A calendar export: CRLF, a folded SUMMARY, a fixed-offset TZID, a cancelled event.
    let ics = format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Court CMS//EN\r\n\
         BEGIN:VEVENT\r\nUID:hearing-now@cms.example\r\nSUMMARY:(2026)浙0106民\r\n 初9号\r\n\
         DTSTART:{}\r\nDTEND:{}\r\nX-GAVEL-COURT:test-court\r\nX-GAVEL-ROOM:{room}\r\n\
         ORGANIZER;CN=王法官:mailto:wang@court.example\r\n\
         ATTENDEE;CN=张三;ROLE=PLAINTIFF:mailto:zs@example.com\r\nEND:VEVENT\r\n\
         BEGIN:VEVENT\r\nUID:hearing-off@cms.example\r\nSUMMARY:(2026)浙0106民初10号\r\n\
         DTSTART;TZID=Asia/Shanghai:20300101T090000\r\nDURATION:PT1H\r\n\
         LOCATION:test-court/{room}\r\nX-GAVEL-JUDGE:李法官\r\nSTATUS:CANCELLED\r\nEND:VEVENT\r\n\
         END:VCALENDAR\r\n",
        ics_time(now - time::Duration::seconds(1)),
        ics_time(now + time::Duration::minutes(30)),
    );
    let file = dir.path().join("court.ics");
    std::fs::write(&file, &ics).expect("ics");
    let (ok, out, err) = controller.gavelctl(&["hearings", "import", &file.to_string_lossy()]);
    assert!(ok, "{err}");
    assert!(out.contains("imported 2 hearings"), "{out}");

    // Enforced: the room records nothing, so an alarm after the 2 s grace.
    wait_alarms(&controller, &room, 1).await;
    let (ok, out, err) = controller.gavelctl(&["--json", "hearings", "ls"]);
    assert!(ok, "{err}");
    let list: Value = serde_json::from_str(&out).expect("json");
    let list = list.as_array().expect("list");
    let live = list
        .iter()
        .find(|h| h["case_number"] == "(2026)浙0106民初9号")
        .expect("the folded SUMMARY unfolded");
    let id = live["id"].as_str().expect("id").to_owned();
    assert_eq!(live["judge"], "王法官");
    assert!(list.iter().any(|h| h["status"] == "cancelled"));

    // Moved an hour later by the case management command: the alarm clears.
    let later = (now + time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .expect("ts");
    let (ok, out, err) = controller.gavelctl(&[
        "hearings",
        "move",
        &id,
        "--start",
        &later,
        "--by",
        "clerk-li",
        "--why",
        "judge delayed",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("moved by clerk-li"), "{out}");
    wait_alarms(&controller, &room, 0).await;

    // Cancelled: shown with who and why; cancelling again is refused with the reason.
    let (ok, _, err) = controller.gavelctl(&[
        "hearings",
        "cancel",
        &id,
        "--by",
        "clerk-li",
        "--why",
        "parties settled",
    ]);
    assert!(ok, "{err}");
    let (ok, out, err) = controller.gavelctl(&["hearings", "show", &id]);
    assert!(ok, "{err}");
    assert!(out.contains("status     cancelled"), "{out}");
    assert!(out.contains("by clerk-li (judge delayed)"), "{out}");
    assert!(out.contains("by clerk-li (parties settled)"), "{out}");
    assert!(out.contains("party      plaintiff: 张三"), "{out}");
    let (ok, _, err) = controller.gavelctl(&["hearings", "cancel", &id, "--why", "again"]);
    assert!(!ok);
    assert!(
        err.contains("409") && err.contains("already cancelled"),
        "{err}"
    );

    // Created by command, in the slot the cancelled hearing freed.
    let (ok, out, err) = controller.gavelctl(&[
        "hearings",
        "create",
        "--case",
        "(2026)浙0106民初11号",
        "--court",
        "test-court",
        "--room",
        &room,
        "--start",
        &later,
        "--end",
        &(now + time::Duration::hours(2))
            .format(&time::format_description::well_known::Rfc3339)
            .expect("ts"),
        "--judge",
        "王法官",
        "--party",
        "defendant:李四",
        "--id",
        "cms-11",
    ]);
    assert!(ok, "{err}");
    assert!(out.starts_with("cms-11: scheduled"), "{out}");
    let (ok, _, err) = controller.gavelctl(&[
        "hearings",
        "create",
        "--case",
        "X",
        "--court",
        "test-court",
        "--room",
        "Bad Room",
        "--start",
        "soon",
        "--end",
        "later",
        "--judge",
        "J",
    ]);
    assert!(!ok);
    assert!(
        err.contains("400")
            && err.contains("field `room`")
            && err.contains("field `scheduled_start`"),
        "{err}"
    );

    // A broken calendar (no extension: sniffed) imports nothing and names lines and fields.
    let bad = dir.path().join("broken-export");
    std::fs::write(
        &bad,
        "BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:x\nSUMMARY:X\nLOCATION:Main hall\n\
         DTSTART;VALUE=DATE:20300101\nDTEND:20300101T100000Z\nX-GAVEL-JUDGE:J\nEND:VEVENT\n\
         END:VCALENDAR\n",
    )
    .expect("bad");
    let (ok, _, err) = controller.gavelctl(&["hearings", "import", &bad.to_string_lossy()]);
    assert!(!ok);
    assert!(err.contains("line 5, field `LOCATION`"), "{err}");
    assert!(err.contains("line 6, field `DTSTART`"), "{err}");
    assert!(
        err.contains("nothing imported") && err.contains("Ics"),
        "{err}"
    );
    let count = controller
        .get("/api/v1/hearings")
        .await
        .expect("hearings")
        .and_then(|v| v.as_array().map(Vec::len));
    assert_eq!(count, Some(3));
}
