//! The local administration channel: a Unix socket in the data directory (0600, in a
//! 0700 directory), never a network endpoint. `broodlink status/lock/unlock/kick` and
//! `controller-key rotate` talk to the running server through it.
//!
//! The protocol is one JSON line each way: `{"command":"status"}` → `{"ok":true,…}`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

use crate::service::{now_ms, Linkspace};

/// What the admin channel can be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Command {
    Status,
    Lock,
    Unlock,
    Kick,
    RotateControllerKey,
}

/// What `status` reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub pid: u32,
    pub url: String,
    pub started_at: i64,
    pub uptime_ms: i64,
    pub online_agents: usize,
    pub connections: usize,
    pub locked: bool,
}

/// The server side: answers admin requests until the task is dropped.
pub struct AdminServer {
    listener: UnixListener,
    path: PathBuf,
}

impl AdminServer {
    /// Binds the socket, replacing a stale one (the caller has checked no server
    /// answers on it).
    pub fn bind(path: &Path) -> std::io::Result<AdminServer> {
        if path.exists() {
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        Ok(AdminServer { listener, path: path.to_owned() })
    }

    pub async fn run(self, linkspace: Arc<Linkspace>, url: String) {
        let started_at = now_ms();
        loop {
            let Ok((stream, _)) = self.listener.accept().await else { continue };
            let linkspace = linkspace.clone();
            let url = url.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut line = String::new();
                let mut reader = tokio::io::BufReader::new(read);
                if reader.read_line(&mut line).await.is_err() {
                    return;
                }
                let reply = match serde_json::from_str::<Value>(&line)
                    .ok()
                    .and_then(|v| serde_json::from_value::<Command>(v.get("command")?.clone()).ok())
                {
                    Some(command) => answer(command, &linkspace, &url, started_at).await,
                    None => json!({ "ok": false, "error": "unknown admin command" }),
                };
                let _ = write.write_all(format!("{reply}\n").as_bytes()).await;
            });
        }
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn answer(command: Command, linkspace: &Linkspace, url: &str, started_at: i64) -> Value {
    match command {
        Command::Status => {
            let status = Status {
                pid: std::process::id(),
                url: url.to_owned(),
                started_at,
                uptime_ms: now_ms() - started_at,
                online_agents: linkspace.online_agents(),
                connections: linkspace.connection_count(),
                locked: linkspace.is_locked(),
            };
            json!({ "ok": true, "status": status })
        }
        Command::Lock | Command::Unlock => {
            linkspace.set_locked(command == Command::Lock);
            tracing::info!(locked = command == Command::Lock, "lock changed by the operator");
            json!({ "ok": true, "locked": command == Command::Lock })
        }
        Command::Kick => {
            let kicked = linkspace.kick_participants("kicked by the operator").await;
            tracing::info!(kicked, "operator kicked all participants");
            json!({ "ok": true, "kicked": kicked })
        }
        Command::RotateControllerKey => match linkspace.rotate_controller_key().await {
            Ok(key) => {
                tracing::info!("controller key rotated by the operator");
                json!({ "ok": true, "apiKey": key })
            }
            Err(e) => json!({ "ok": false, "error": e.to_string() }),
        },
    }
}

/// Why an admin request failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no server is answering on {0}")]
    NotRunning(PathBuf),
    #[error("the server answered an admin request with an error: {0}")]
    Refused(String),
    #[error("admin channel failure on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// The client side (the CLI): sends one command and returns the reply.
pub fn request(path: &Path, command: Command) -> Result<Value, AdminError> {
    let io = |source| AdminError::Io { path: path.to_owned(), source };
    let mut stream =
        std::os::unix::net::UnixStream::connect(path).map_err(|_| AdminError::NotRunning(path.to_owned()))?;
    // Key rotation waits for the write lock; giving up early would lose the new key.
    let timeout = if command == Command::RotateControllerKey { 120 } else { 10 };
    stream.set_read_timeout(Some(Duration::from_secs(timeout))).map_err(io)?;
    stream.set_write_timeout(Some(Duration::from_secs(10))).map_err(io)?;
    writeln!(stream, "{}", json!({ "command": command })).map_err(io)?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).map_err(io)?;
    let reply: Value = serde_json::from_str(&line).map_err(|e| io(std::io::Error::other(e)))?;
    if reply["ok"] != true {
        return Err(AdminError::Refused(reply["error"].as_str().unwrap_or("unknown").to_owned()));
    }
    Ok(reply)
}
