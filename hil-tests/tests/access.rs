//! API access control and the audit log (issue 9), against a controller with sign-in on:
//! unauthenticated calls are refused; an inspector cannot start an update or change a
//! schedule; a clerk acts only on the rooms of their own court; every refusal is audited
//! with who, what and why; password guessing is stopped; `gavelctl` signs in, manages users
//! and exports the audit log.

use std::time::Duration;

use gavel_hil::{Broker, Controller, bin};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

struct Http {
    base: String,
    client: Client,
}

impl Http {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .timeout(Duration::from_secs(30));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
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

    async fn login(&self, user: &str, password: &str) -> (StatusCode, Value) {
        self.call(
            reqwest::Method::POST,
            "/api/v1/login",
            None,
            Some(json!({"user": user, "password": password})),
        )
        .await
    }

    async fn token(&self, user: &str, password: &str) -> String {
        let (status, v) = self.login(user, password).await;
        assert_eq!(status, StatusCode::OK, "login {user}: {v}");
        v["token"].as_str().expect("token").to_owned()
    }
}

fn hearing(id: &str, court: &str) -> Value {
    json!({"id": id, "case_number": format!("(2026)测{id}号"), "court": court, "room": "room-101",
           "scheduled_start": "2030-01-02T02:00:00Z", "scheduled_end": "2030-01-02T03:00:00Z",
           "judge": "王法官"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_limit_what_each_user_may_do_and_every_refusal_is_audited() {
    let dir = tempfile::tempdir().expect("tempdir");
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
    use reqwest::Method as M;

    // Unauthenticated: refused, with what to do.
    let (status, v) = http.call(M::GET, "/api/v1/devices", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
    assert!(
        v["error"].as_str().unwrap_or("").contains("gavelctl login"),
        "{v}"
    );
    let (status, _) = http
        .call(M::POST, "/api/v1/ota/campaigns", None, Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = http
        .call(M::GET, "/api/v1/devices", Some("gvs-forged"), None)
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a made-up token is refused"
    );
    // Public routes stay public.
    assert_eq!(
        http.call(M::GET, "/api/v1/health", None, None).await.0,
        StatusCode::OK
    );

    // The administrator adds users through gavelctl (signed in through gavelctl login).
    let home = dir.path().join("home");
    let gavelctl = |args: &[&str], env: &[(&str, &str)]| {
        let out = std::process::Command::new(bin("gavelctl"))
            .arg("--controller")
            .arg(&c.url)
            .args(args)
            .env("XDG_CONFIG_HOME", &home)
            .env_remove("GAVEL_TOKEN")
            .envs(env.iter().copied())
            .output()
            .expect("gavelctl runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, _, err) = gavelctl(&["devices", "ls"], &[]);
    assert!(!ok && err.contains("gavelctl login"), "{err}");
    let (ok, out, err) = gavelctl(
        &["login", "--user", "admin"],
        &[("GAVEL_PASSWORD", "admin-password-1")],
    );
    assert!(ok, "login: {err}");
    assert!(out.contains("signed in as admin (administrator)"), "{out}");
    for (name, role, court) in [
        ("insp", "inspector", None),
        ("chen", "clerk", Some("hz-intermediate")),
    ] {
        let mut args = vec!["users", "add", name, "--role", role];
        if let Some(court) = court {
            args.extend(["--court", court]);
        }
        let (ok, out, err) = gavelctl(&args, &[("GAVEL_NEW_PASSWORD", "a-long-password-2")]);
        assert!(ok, "users add {name}: {err}");
        assert!(
            out.contains(&format!("user {name} added as {role}")),
            "{out}"
        );
    }
    let (ok, out, _) = gavelctl(&["users", "ls"], &[]);
    assert!(
        ok && out.contains("chen") && out.contains("hz-intermediate"),
        "{out}"
    );
    // `gavelctl ota publish` uploads with the session too: a file that is no bundle gets
    // past sign-in to the repository's checks.
    let junk = dir.path().join("junk.gota");
    std::fs::write(&junk, b"not a bundle").expect("junk");
    let (ok, _, err) = gavelctl(&["ota", "publish", junk.to_str().expect("utf-8")], &[]);
    assert!(
        !ok && err.contains("bundle refused") && !err.contains("not signed in"),
        "{err}"
    );

    // The inspector reads, but cannot start an update or change a schedule.
    let insp = http.token("insp", "a-long-password-2").await;
    assert_eq!(
        http.call(M::GET, "/api/v1/alarms", Some(&insp), None)
            .await
            .0,
        StatusCode::OK
    );
    let (status, v) = http
        .call(
            M::POST,
            "/api/v1/ota/campaigns",
            Some(&insp),
            Some(json!({"bundle": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["error"].as_str().unwrap_or("").contains("inspector"),
        "{v}"
    );
    let (status, _) = http
        .call(
            M::POST,
            "/api/v1/hearings",
            Some(&insp),
            Some(hearing("h-insp", "hz-intermediate")),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The clerk schedules and records in their own court only.
    let chen = http.token("chen", "a-long-password-2").await;
    let (status, v) = http
        .call(
            M::POST,
            "/api/v1/hearings",
            Some(&chen),
            Some(hearing("h-own", "hz-intermediate")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "own court: {v}");
    let (status, v) = http
        .call(
            M::POST,
            "/api/v1/hearings",
            Some(&chen),
            Some(hearing("h-other", "nb-intermediate")),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("works for court hz-intermediate, not nb-intermediate"),
        "{v}"
    );
    let (status, _) = http
        .call(
            M::POST,
            "/api/v1/rooms/nb-intermediate/room-1/recording/start",
            Some(&chen),
            Some(json!({"by": "chen"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = http
        .call(
            M::POST,
            "/api/v1/hearings/h-own/cancel",
            Some(&chen),
            Some(json!({"by": "chen", "reason": "parties settled"})),
        )
        .await;
    assert_ne!(status, StatusCode::FORBIDDEN, "own hearing");
    let (status, _) = http.call(M::GET, "/api/v1/audit", Some(&chen), None).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "clerks do not read the audit log"
    );

    // Password guessing: five failures lock the name, even for the right password.
    for _ in 0..5 {
        assert_eq!(
            http.login("insp", "wrong-password").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let (status, v) = http.login("insp", "a-long-password-2").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{v}");

    // Every refusal is in the audit log: who, what, why.
    let (ok, out, err) = gavelctl(&["--json", "audit", "--denied", "--limit", "100"], &[]);
    assert!(ok, "audit: {err}");
    let log: Vec<Value> = serde_json::from_str(&out).expect("json");
    let has = |actor: &str, action: &str, detail: &str| {
        log.iter().any(|e| {
            e["actor"] == actor
                && e["action"].as_str().unwrap_or("").contains(action)
                && e["detail"].as_str().unwrap_or("").contains(detail)
                && e["outcome"] == "denied"
        })
    };
    assert!(
        has("(anonymous)", "GET /api/v1/devices", "not signed in"),
        "{log:#?}"
    );
    assert!(
        has("insp", "POST /api/v1/ota/campaigns", "inspector"),
        "{log:#?}"
    );
    assert!(has("insp", "POST /api/v1/hearings", "schedule"), "{log:#?}");
    assert!(
        has("chen", "POST /api/v1/hearings", "nb-intermediate"),
        "{log:#?}"
    );
    assert!(
        has("chen", "recording/start", "nb-intermediate"),
        "{log:#?}"
    );
    assert!(has("chen", "GET /api/v1/audit", "clerk"), "{log:#?}");
    assert!(
        has("(anonymous)", "POST /api/v1/login", "too many"),
        "{log:#?}"
    );
    // State changes that were allowed are audited too, with their outcome.
    let (ok, out, _) = gavelctl(&["--json", "audit", "--limit", "200"], &[]);
    assert!(ok);
    let all: Vec<Value> = serde_json::from_str(&out).expect("json");
    assert!(
        all.iter().any(|e| e["actor"] == "chen"
            && e["action"]
                .as_str()
                .unwrap_or("")
                .starts_with("POST /api/v1/hearings ")
            && e["outcome"] == "ok"),
        "{all:#?}"
    );
    // The dashboard asks to sign in, refuses a wrong password, and goes live after signing in.
    let driver = gavel_hil::ChromeDriver::start().expect("chromedriver");
    let browser = driver.session().await.expect("session");
    browser.goto(&c.url).await.expect("open dashboard");
    let find = |css: &'static str| {
        let browser = browser.clone();
        async move {
            for _ in 0..100 {
                if let Ok(e) = browser.find(fantoccini::Locator::Css(css)).await
                    && e.is_displayed().await.unwrap_or(false)
                {
                    return e;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("{css} not shown within 10 s");
        }
    };
    find("#signin-user")
        .await
        .send_keys("admin")
        .await
        .expect("type");
    let pw = find("#signin-password").await;
    pw.send_keys("not-the-password").await.expect("type");
    find("#signin-form button")
        .await
        .click()
        .await
        .expect("click");
    let mut said = String::new();
    for _ in 0..100 {
        said = find("#signin-error").await.text().await.unwrap_or_default();
        if !said.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(said.contains("wrong user name or password"), "{said:?}");
    pw.clear().await.expect("clear");
    pw.send_keys("admin-password-1").await.expect("type");
    find("#signin-form button")
        .await
        .click()
        .await
        .expect("click");
    let mut live = false;
    for _ in 0..100 {
        if find("#conn").await.text().await.unwrap_or_default() == "live" {
            live = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(live, "the dashboard's stream did not open after signing in");
    browser.close().await.expect("close");

    let csv = dir.path().join("audit.csv");
    let (ok, _, err) = gavelctl(&["audit", "--csv", csv.to_str().expect("path")], &[]);
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(&csv).expect("csv");
    assert!(text.starts_with("at,actor,role,source,action,target,outcome,detail\n"));
    assert!(text.contains("denied"), "{text}");
}
