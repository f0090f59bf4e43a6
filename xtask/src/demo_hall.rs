//! The demo's service hall: litigants take tickets at the kiosk's page (`hall-kiosk-1`,
//! simulated printer) and windows call them (`gavelctl hall call`); the kiosk speaks each
//! call into a WAV file (no speakers in the demo).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The kiosk page's address: 127.0.0.1:8710 when free, else any free port.
pub fn kiosk_listen() -> String {
    if std::net::TcpListener::bind("127.0.0.1:8710").is_ok() {
        return "127.0.0.1:8710".into();
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "127.0.0.1:8710".into())
}

/// Where the kiosk writes its spoken announcements.
pub fn announce_dir(demo_dir: &Path) -> PathBuf {
    demo_dir.join("announce")
}

/// `POST path` with a JSON body to `addr`; the response body.
fn post(addr: &str, path: &str, body: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("kiosk {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default())
}

/// The hall's part of the scenario.
pub struct HallDemo {
    kiosk: String,
    court: String,
    announce: PathBuf,
    next: Instant,
    step: u32,
    /// Tickets taken and numbers called so far.
    pub tickets: u32,
    pub calls: u32,
}

impl HallDemo {
    pub fn new(kiosk: &str, court: &str, announce: PathBuf) -> Self {
        Self {
            kiosk: kiosk.to_owned(),
            court: court.to_owned(),
            announce,
            next: Instant::now() + Duration::from_secs(8),
            step: 0,
            tickets: 0,
            calls: 0,
        }
    }

    /// Takes two tickets or calls a number, every 6 s; returns what to narrate.
    pub fn tick(
        &mut self,
        gavelctl: impl Fn(&[&str]) -> Result<String, String>,
    ) -> Option<Result<String, String>> {
        if Instant::now() < self.next {
            return None;
        }
        self.next = Instant::now() + Duration::from_secs(6);
        self.step += 1;
        if self.step % 2 == 1 {
            let mut taken = Vec::new();
            for service in ["filing", "mediation"] {
                let body = match post(
                    &self.kiosk,
                    "/api/tickets",
                    &format!("{{\"service\":\"{service}\"}}"),
                ) {
                    Ok(b) => b,
                    Err(e) => return Some(Err(e)),
                };
                let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                match v["number"].as_str() {
                    Some(n) => {
                        self.tickets += 1;
                        taken.push(format!(
                            "{n} ({service}, {} ahead)",
                            v["waiting_ahead"].as_u64().unwrap_or(0)
                        ));
                    }
                    None => return Some(Err(format!("kiosk refused a ticket: {body}"))),
                }
            }
            Some(Ok(format!(
                "hall: litigants take tickets at the kiosk page http://{}/ -> {} (printed, queued through the outbox)",
                self.kiosk,
                taken.join(", ")
            )))
        } else {
            let window = if self.step.is_multiple_of(4) {
                "2"
            } else {
                "1"
            };
            let out = gavelctl(&["--json", "hall", "call", &self.court, window]);
            Some(out.and_then(|o| {
                let v: Value = serde_json::from_str(&o).map_err(|e| e.to_string())?;
                let n = v["called"]["number"].as_str().unwrap_or("?");
                self.calls += 1;
                Ok(format!(
                    "hall: window {window} calls {n} (gavelctl hall call): the display shows it, the kiosk says \"请 {n} 号到 {window} 号窗口\" / \"Number {n}, please go to window {window}\" (WAV in {})",
                    self.announce.display()
                ))
            }))
        }
    }
}
