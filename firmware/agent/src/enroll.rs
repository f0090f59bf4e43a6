//! `gavel-agent enroll`: the device makes its own key, sends a certificate signing request
//! with the technician's one-time token to the controller, and writes what comes back:
//! its certificate, the CA it trusts, and its assignment (device id, court, room, profile,
//! tags, TLS broker) into its configuration file. The key never leaves the device.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

/// What the controller answers (`POST /api/v1/enroll`).
#[derive(Debug, Deserialize)]
struct EnrollResponse {
    device_id: String,
    certificate: String,
    ca: String,
    not_after: String,
    mqtt_tls_port: Option<u16>,
    #[serde(default)]
    mqtt_tls_host: Option<String>,
    assignment: Assignment,
}

#[derive(Debug, Default, Deserialize)]
struct Assignment {
    court: Option<String>,
    room: Option<String>,
    profile: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
}

/// What enrollment wrote.
#[derive(Debug)]
pub struct Enrolled {
    pub device_id: String,
    pub not_after: String,
    pub broker: Option<(String, u16)>,
    pub identity_dir: PathBuf,
}

/// Enrolls this device at `controller` (an `http://` URL) with `token`, writing the key,
/// certificate and CA into `identity_dir` and the assignment into `config_file`. The TLS
/// broker is reached at `broker_host` (default: the controller's host).
pub async fn enroll(
    controller: &str,
    token: &str,
    config_file: &Path,
    identity_dir: &Path,
    broker_host: Option<&str>,
) -> anyhow::Result<Enrolled> {
    let base = url::Url::parse(controller)
        .with_context(|| format!("--controller {controller:?} is not a URL"))?;
    let key = rcgen::KeyPair::generate().context("making the device key")?;
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "gavel-device-enrolling");
    let csr = params
        .serialize_request(&key)
        .and_then(|c| c.pem())
        .context("making the certificate signing request")?;
    let endpoint = base
        .join("/api/v1/enroll")
        .context("the enrollment address")?;
    let response = reqwest::Client::new()
        .post(endpoint.clone())
        .json(&serde_json::json!({ "token": token, "csr": csr }))
        .send()
        .await
        .with_context(|| format!("cannot reach the controller at {endpoint}"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        let why = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
            .unwrap_or(body);
        bail!("the controller refused enrollment ({status}): {why}");
    }
    let answer: EnrollResponse =
        serde_json::from_str(&body).context("the controller's enrollment answer")?;
    gavel_protocol::DeviceId::new(&answer.device_id)
        .context("the controller assigned an invalid device id")?;

    std::fs::create_dir_all(identity_dir)
        .with_context(|| format!("creating {}", identity_dir.display()))?;
    let files = crate::config::TlsFiles {
        ca: identity_dir.join("ca.pem"),
        cert: identity_dir.join("device.pem"),
        key: identity_dir.join("device.key"),
    };
    write_secret(&files.key, &key.serialize_pem())?;
    write(&files.cert, &answer.certificate)?;
    write(&files.ca, &answer.ca)?;

    let host = broker_host
        .map(String::from)
        .or_else(|| answer.mqtt_tls_host.clone())
        .or_else(|| base.host_str().map(String::from))
        .unwrap_or_else(|| "localhost".into());
    let broker = answer.mqtt_tls_port.map(|p| (host, p));
    update_config(config_file, &answer, broker.as_ref(), &files)?;
    Ok(Enrolled {
        device_id: answer.device_id,
        not_after: answer.not_after,
        broker,
        identity_dir: identity_dir.to_path_buf(),
    })
}

fn update_config(
    path: &Path,
    answer: &EnrollResponse,
    broker: Option<&(String, u16)>,
    files: &crate::config::TlsFiles,
) -> anyhow::Result<()> {
    use toml_edit::{Array, Item, Table, value};
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", path.display()))?;
    doc.insert("device_id", value(answer.device_id.as_str()));
    let a = &answer.assignment;
    if let Some(profile) = &a.profile {
        doc.insert("profile", value(profile.as_str()));
    }
    if let (Some(court), Some(room)) = (&a.court, &a.room) {
        let mut t = Table::new();
        t.insert("court", value(court.as_str()));
        t.insert("room", value(room.as_str()));
        doc.insert("placement", Item::Table(t));
    }
    if !a.tags.is_empty() {
        let mut tags = Array::new();
        for t in &a.tags {
            tags.push(t.as_str());
        }
        doc.insert("tags", value(tags));
    }
    if let Some((host, port)) = broker {
        let mut tls = Table::new();
        tls.insert("ca", value(files.ca.display().to_string()));
        tls.insert("cert", value(files.cert.display().to_string()));
        tls.insert("key", value(files.key.display().to_string()));
        let mut b = Table::new();
        b.insert("host", value(host.as_str()));
        b.insert("port", value(i64::from(*port)));
        b.insert("tls", Item::Table(tls));
        doc.insert("broker", Item::Table(b));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, doc.to_string()).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Writes a private file (0600): a key.
pub(crate) fn write_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}
