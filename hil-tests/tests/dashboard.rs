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
