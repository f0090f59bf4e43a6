//! The dashboard in headless Chromium: a device appears live, then goes offline, without
//! a reload.

use std::time::Duration;

use fantoccini::Locator;
use gavel_hil::{AgentSpec, Broker, ChromeDriver, Controller, start_agent, unique};

async fn wait_for(client: &fantoccini::Client, css: &str, timeout: Duration) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        if client.find(Locator::Css(css)).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_shows_a_device_appear_and_go_offline_live() {
    let dir = tempfile::tempdir().expect("tmp");
    let controller = Controller::start(dir.path(), &Broker::Embedded, None).expect("controller");
    let driver = ChromeDriver::start().expect("chromedriver");
    let client = driver.session().await.expect("session");
    client.goto(&controller.url).await.expect("open dashboard");
    assert!(wait_for(&client, "#conn", Duration::from_secs(10)).await);
    let mut live = false;
    for _ in 0..100 {
        if client
            .find(Locator::Css("#conn"))
            .await
            .expect("conn")
            .text()
            .await
            .expect("text")
            == "live"
        {
            live = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(live, "dashboard did not connect its event stream");

    let spec = AgentSpec::new(&unique("web"), "courtroom-terminal");
    let online = format!("[data-device-id=\"{}\"][data-online=\"true\"]", spec.id);
    let offline = format!("[data-device-id=\"{}\"][data-online=\"false\"]", spec.id);
    assert!(
        client.find(Locator::Css(&online)).await.is_err(),
        "device shown before it exists"
    );

    let mut agent = start_agent(dir.path(), &spec, &controller.mqtt).expect("agent");
    assert!(
        wait_for(&client, &online, Duration::from_secs(20)).await,
        "device did not appear online"
    );
    let text = client
        .find(Locator::Css(&online))
        .await
        .expect("tile")
        .text()
        .await
        .expect("text");
    assert!(text.contains("courtroom-terminal"), "{text}");
    let count = client
        .find(Locator::Css("#summary-online"))
        .await
        .expect("summary")
        .text()
        .await
        .expect("text");
    assert_eq!(count.trim(), "1");

    agent.kill9();
    assert!(
        wait_for(&client, &offline, Duration::from_secs(10)).await,
        "device did not turn offline"
    );
    client.close().await.expect("close");
}

/// The timeline of today's hearings per room: a hearing appears on its room's row, the
/// recorded span shows while the terminal records it, and once the clerk closes it the
/// verdict of its compliance record shows, with a link to the daily report.
#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_timeline_shows_a_hearing_recorded_and_its_verdict() {
    let dir = tempfile::tempdir().expect("tmp");
    let controller = Controller::start(dir.path(), &Broker::Embedded, None).expect("controller");
    let mut spec = AgentSpec::new(&unique("tl"), "courtroom-terminal");
    spec.room = unique("room");
    let _agent = start_agent(dir.path(), &spec, &controller.mqtt).expect("agent");
    controller
        .wait_online(&spec.id, true, Duration::from_secs(20))
        .await
        .expect("online");
    let now = time::OffsetDateTime::now_utc();
    let fmt = &time::format_description::well_known::Rfc3339;
    let csv = dir.path().join("hearings.csv");
    std::fs::write(
        &csv,
        format!(
            "case_number,court,room,start,end,judge,parties\n(2026)timeline-1,test-court,{},{},{},王法官,plaintiff:张三\n",
            spec.room,
            (now + time::Duration::seconds(3)).format(fmt).expect("ts"),
            (now + time::Duration::seconds(14)).format(fmt).expect("ts"),
        ),
    )
    .expect("csv");
    let (ok, _, err) = controller.gavelctl(&["hearings", "import", &csv.to_string_lossy()]);
    assert!(ok, "{err}");
    let (ok, out, err) = controller.gavelctl(&["--json", "hearings", "ls"]);
    assert!(ok, "{err}");
    let id = serde_json::from_str::<serde_json::Value>(&out).expect("json")[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();

    let driver = ChromeDriver::start().expect("chromedriver");
    let client = driver.session().await.expect("session");
    client.goto(&controller.url).await.expect("open dashboard");
    let row = format!("[data-room=\"test-court/{}\"]", spec.room);
    let hearing = format!("{row} [data-hearing=\"{id}\"]");
    assert!(
        wait_for(&client, &hearing, Duration::from_secs(20)).await,
        "the hearing is not on its room's timeline"
    );
    // The terminal records it by its schedule: a recorded span appears (refreshed every
    // 10 s).
    assert!(
        wait_for(&client, &format!("{row} .tl-rec"), Duration::from_secs(30)).await,
        "no recorded span on the timeline"
    );
    let (ok, _, err) = controller.gavelctl(&["hearings", "close", &id, "--by", "clerk"]);
    assert!(ok, "{err}");
    let complete = format!("{hearing}[data-verdict=\"complete\"]");
    assert!(
        wait_for(&client, &complete, Duration::from_secs(40)).await,
        "the verdict does not show after the close"
    );
    let report = client
        .find(Locator::Css("#timeline a[href*=\"reports/compliance\"]"))
        .await
        .expect("a link to the daily report")
        .attr("href")
        .await
        .expect("href")
        .unwrap_or_default();
    assert!(report.contains("court=test-court"), "{report}");
    client.close().await.expect("close");
}
