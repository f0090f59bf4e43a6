//! The clerk's local control at the courtroom terminal: `gavel-agent clerk start|stop|status`
//! talks to the running agent over a unix socket in its data folder, so recording can be
//! started and stopped (with who and why) even when the controller is unreachable.
//!
//! Wire format: one JSON request line, one JSON answer line, then the connection closes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::room::RoomStatus;

/// The socket's file name in the agent's data folder.
pub const SOCKET: &str = "clerk.sock";

/// Longest request line accepted.
const MAX_LINE: usize = 4096;

/// The socket of the agent whose data folder is `data_dir`.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET)
}

/// What the clerk asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ClerkRequest {
    /// Start recording `hearing` (absent: the schedule's hearing due now).
    Start {
        #[serde(default)]
        hearing: Option<String>,
        by: String,
        #[serde(default)]
        why: Option<String>,
    },
    /// Stop recording `hearing` (absent: the one being recorded).
    Stop {
        #[serde(default)]
        hearing: Option<String>,
        by: String,
        #[serde(default)]
        why: Option<String>,
    },
    /// What the room is doing.
    Status,
}

/// The agent's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClerkAnswer {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The room after the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<RoomStatus>,
}

/// A request waiting for the agent's main loop, with where the answer goes.
pub type Pending = (ClerkRequest, oneshot::Sender<ClerkAnswer>);

/// Listens on `path` (replacing a stale socket) and hands each request to `tx`.
pub fn serve(
    path: &Path,
    tx: mpsc::Sender<Pending>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    if path.exists() {
        std::fs::remove_file(path)
            .with_context(|| format!("removing the stale clerk socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("listening on the clerk socket {}", path.display()))?;
    Ok(tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    warn!(error = %e, "clerk socket accept failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Err(e) = answer(stream, tx).await {
                    debug!(error = %e, "clerk connection ended early");
                }
            });
        }
    }))
}

async fn answer(stream: UnixStream, tx: mpsc::Sender<Pending>) -> anyhow::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read).take(MAX_LINE as u64);
    reader.read_line(&mut line).await?;
    let answer = match serde_json::from_str::<ClerkRequest>(line.trim()) {
        Err(e) => ClerkAnswer {
            ok: false,
            error: Some(format!("not a clerk request: {e}")),
            status: None,
        },
        Ok(request) => {
            let (reply, rx) = oneshot::channel();
            if tx.send((request, reply)).await.is_err() {
                ClerkAnswer {
                    ok: false,
                    error: Some("the agent is stopping".into()),
                    status: None,
                }
            } else {
                rx.await.unwrap_or(ClerkAnswer {
                    ok: false,
                    error: Some("the agent is stopping".into()),
                    status: None,
                })
            }
        }
    };
    let mut out = serde_json::to_vec(&answer)?;
    out.push(b'\n');
    write.write_all(&out).await?;
    write.shutdown().await?;
    Ok(())
}

/// Sends one request to the agent at `path` and returns its answer.
pub async fn call(path: &Path, request: &ClerkRequest) -> anyhow::Result<ClerkAnswer> {
    let stream = UnixStream::connect(path).await.with_context(|| {
        format!(
            "cannot reach the agent at {} (is gavel-agent running with this data folder?)",
            path.display()
        )
    })?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    write.write_all(&line).await?;
    let mut answer = String::new();
    tokio::time::timeout(
        Duration::from_secs(30),
        BufReader::new(read).read_line(&mut answer),
    )
    .await
    .context("the agent did not answer within 30 s")??;
    serde_json::from_str(answer.trim()).with_context(|| format!("the agent's answer {answer:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_reaches_the_agent_and_its_answer_comes_back() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = socket_path(dir.path());
        std::fs::write(&path, b"stale").expect("stale file");
        let (tx, mut rx) = mpsc::channel::<Pending>(4);
        let _server = serve(&path, tx).expect("serve");
        tokio::spawn(async move {
            while let Some((request, reply)) = rx.recv().await {
                let ok =
                    matches!(request, ClerkRequest::Start { ref by, .. } if by == "clerk.wang");
                let _ = reply.send(ClerkAnswer {
                    ok,
                    error: (!ok).then(|| "who?".to_owned()),
                    status: None,
                });
            }
        });
        let answer = call(
            &path,
            &ClerkRequest::Start {
                hearing: Some("H1".into()),
                by: "clerk.wang".into(),
                why: Some("judge entered".into()),
            },
        )
        .await
        .expect("answer");
        assert!(answer.ok, "{answer:?}");
        let answer = call(&path, &ClerkRequest::Status).await.expect("answer");
        assert_eq!(answer.error.as_deref(), Some("who?"));
    }

    #[tokio::test]
    async fn garbage_on_the_socket_gets_a_clear_error() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = socket_path(dir.path());
        let (tx, _rx) = mpsc::channel::<Pending>(4);
        let _server = serve(&path, tx).expect("serve");
        let stream = UnixStream::connect(&path).await.expect("connect");
        let (read, mut write) = stream.into_split();
        write
            .write_all(b"{\"op\":\"launch\"}\n")
            .await
            .expect("write");
        let mut line = String::new();
        BufReader::new(read)
            .read_line(&mut line)
            .await
            .expect("read");
        let answer: ClerkAnswer = serde_json::from_str(&line).expect("json");
        assert!(!answer.ok);
        assert!(
            answer
                .error
                .unwrap_or_default()
                .contains("not a clerk request")
        );
    }
}
