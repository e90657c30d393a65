//! Agents sending `message.send` as fast as they can, each call recorded: every content
//! written to a socket (`sent`) and every one the server answered with a result
//! (`acked`, with its `seq` and id). Then the room's whole history is read back and
//! checked against that record. Used by the backup and the SIGKILL tests.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::harness::Client;

/// The `limits` of a server these floods run against: they send as fast as answers
/// come, which on a fast machine exceeds the default per-agent rates.
pub const UNLIMITED_RATES: &str = r#"{ "callsPerSecond": 0, "sendsPerSecond": 0 }"#;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A running server must answer a call within this; a killed one closes at once.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// What the server acknowledged for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub seq: i64,
    pub message_id: String,
}

#[derive(Debug, Default)]
pub struct Ledger {
    /// Every content ever written to a socket (recorded before the write).
    pub sent: HashSet<String>,
    /// Every content whose call returned a result.
    pub acked: HashMap<String, Ack>,
    /// Error responses (none are expected).
    pub errors: Vec<String>,
}

pub type SharedLedger = Arc<Mutex<Ledger>>;

/// A room with `count` participants in it, created through `controller`; returns the
/// room id and the participants' keys.
pub async fn room_with_agents(url: &str, controller: &mut Client, count: usize) -> (String, Vec<String>) {
    let room = controller.ok("room.create", json!({ "name": "flood" })).await;
    let room_id = room["room"]["roomId"].as_str().expect("roomId").to_owned();
    let mut keys = Vec::new();
    for i in 0..count {
        let invited = controller.ok("agent.invite", json!({ "displayName": format!("sender-{i}") })).await;
        let key = invited["apiKey"].as_str().expect("apiKey").to_owned();
        let mut agent = Client::connect(url).await;
        agent.auth(&key).await;
        agent.ok("room.join", json!({ "roomId": room_id })).await;
        agent.close().await;
        keys.push(key);
    }
    (room_id, keys)
}

/// A connection authenticated with `key`, ready to flood.
pub struct Sender {
    socket: Socket,
    tag: String,
}

/// How a sender's loop ended.
#[derive(Debug)]
pub struct SenderEnd {
    /// Shown in assertion messages.
    #[allow(dead_code)]
    pub tag: String,
    pub sent: usize,
    pub acked: usize,
    /// Why it stopped: "stopped" (asked to), or what happened to the connection.
    pub reason: String,
}

impl Sender {
    pub async fn connect(url: &str, key: &str, tag: String) -> Sender {
        let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("websocket connects");
        let auth = json!({ "jsonrpc": "2.0", "id": 0, "method": "auth", "params": { "apiKey": key } });
        socket.send(Message::text(auth.to_string())).await.expect("send auth");
        match read_response(&mut socket, 0).await {
            Ok(response) if response.get("result").is_some() => {}
            other => panic!("{tag}: auth failed: {other:?}"),
        }
        Sender { socket, tag }
    }

    /// Sends `<tag>-m1`, `<tag>-m2`, … to `room_id`, one call at a time, until `stop` is
    /// set, a call fails, or the connection breaks.
    pub async fn flood(mut self, room_id: String, ledger: SharedLedger, stop: Arc<AtomicBool>) -> SenderEnd {
        let (mut sent, mut acked) = (0, 0);
        let mut n: u64 = 0;
        let reason = loop {
            if stop.load(Ordering::Relaxed) {
                break "stopped".to_owned();
            }
            n += 1;
            let content = format!("{}-m{n}", self.tag);
            let request = json!({
                "jsonrpc": "2.0", "id": n, "method": "message.send",
                "params": { "roomId": room_id, "content": content },
            });
            ledger.lock().expect("ledger").sent.insert(content.clone());
            sent += 1;
            if let Err(e) = self.socket.send(Message::text(request.to_string())).await {
                break format!("send failed: {e}");
            }
            match read_response(&mut self.socket, n).await {
                Ok(response) => {
                    if let Some(result) = response.get("result") {
                        let ack = Ack {
                            seq: result["seq"].as_i64().expect("seq in the result"),
                            message_id: result["messageId"].as_str().expect("messageId").to_owned(),
                        };
                        ledger.lock().expect("ledger").acked.insert(content, ack);
                        acked += 1;
                    } else {
                        ledger.lock().expect("ledger").errors.push(format!("{content}: {response}"));
                        break format!("error response: {response}");
                    }
                }
                Err(why) => break why,
            }
        };
        SenderEnd { tag: self.tag, sent, acked, reason }
    }
}

/// Reads frames until the response with this id (events are skipped).
async fn read_response(socket: &mut Socket, id: u64) -> Result<Value, String> {
    loop {
        let frame = match tokio::time::timeout(ANSWER_TIMEOUT, socket.next()).await {
            Err(_) => return Err(format!("no answer within {ANSWER_TIMEOUT:?}")),
            Ok(None) => return Err("connection closed".into()),
            Ok(Some(Err(e))) => return Err(format!("connection error: {e}")),
            Ok(Some(Ok(Message::Text(text)))) => text,
            Ok(Some(Ok(Message::Close(_)))) => return Err("connection closed".into()),
            Ok(Some(Ok(_))) => continue,
        };
        let value: Value = serde_json::from_str(frame.as_str()).map_err(|e| format!("invalid JSON ({e}): {frame}"))?;
        if value.get("id") == Some(&json!(id)) {
            return Ok(value);
        }
        if value.get("id").is_some() {
            return Err(format!("response to another call while waiting for {id}: {value}"));
        }
    }
}

/// The room's whole history, oldest first, paged forwards with `afterSeq`.
pub async fn whole_history(client: &mut Client, room_id: &str) -> Vec<Value> {
    let mut messages: Vec<Value> = Vec::new();
    let mut after = 0;
    loop {
        let page = client.ok("room.history", json!({ "roomId": room_id, "afterSeq": after, "limit": 1000 })).await;
        let batch = page["messages"].as_array().cloned().unwrap_or_default();
        if let Some(last) = batch.last() {
            after = last["seq"].as_i64().expect("seq");
        }
        let more = page["hasMore"].as_bool().expect("hasMore");
        assert!(!(more && batch.is_empty()), "hasMore with an empty page after seq {after}");
        messages.extend(batch);
        if !more {
            return messages;
        }
    }
}

/// Checks a room's history against the ledger: seqs strictly increasing; no content
/// that was never sent; none twice; every acknowledged one present with the `seq` and
/// id it was acknowledged with. Returns the contents found.
#[track_caller]
pub fn verify(history: &[Value], ledger: &Ledger) -> HashSet<String> {
    let mut problems = Vec::new();
    let mut previous: Option<i64> = None;
    let mut found: HashMap<&str, &Value> = HashMap::new();
    for message in history {
        let seq = message["seq"].as_i64().expect("seq");
        if let Some(previous) = previous.filter(|p| seq <= *p) {
            problems.push(format!("seq {seq} follows seq {previous}"));
        }
        previous = Some(seq);
        let content = message["content"].as_str().expect("content");
        if !ledger.sent.contains(content) {
            problems.push(format!("seq {seq}: {content:?} was never sent"));
        }
        if let Some(first) = found.insert(content, message) {
            problems.push(format!("{content:?} is stored twice: seq {} and seq {seq}", first["seq"]));
        }
    }
    let mut missing: Vec<(&String, &Ack)> = Vec::new();
    for (content, ack) in &ledger.acked {
        match found.get(content.as_str()) {
            None => missing.push((content, ack)),
            Some(message) => {
                if message["seq"] != ack.seq || message["messageId"] != ack.message_id.as_str() {
                    problems.push(format!(
                        "{content:?} was acknowledged as seq {} ({}) but is stored as seq {} ({})",
                        ack.seq, ack.message_id, message["seq"], message["messageId"]
                    ));
                }
            }
        }
    }
    if !missing.is_empty() {
        missing.sort_by_key(|(_, ack)| ack.seq);
        let seqs: Vec<String> = missing.iter().take(20).map(|(c, a)| format!("{c} (seq {})", a.seq)).collect();
        problems.push(format!(
            "{} acknowledged message(s) are missing (of {} acknowledged; the history holds {}, max seq {:?}): {}",
            missing.len(),
            ledger.acked.len(),
            history.len(),
            previous,
            seqs.join(", ")
        ));
    }
    if !ledger.errors.is_empty() {
        problems.push(format!("error responses: {:?}", &ledger.errors[..ledger.errors.len().min(5)]));
    }
    let shown: Vec<&String> = problems.iter().take(30).collect();
    assert!(problems.is_empty(), "{} problem(s) in the room's history:\n{shown:#?}", problems.len());
    found.keys().map(|c| (*c).to_owned()).collect()
}
