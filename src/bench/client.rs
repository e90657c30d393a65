//! A small async JSON-RPC 2.0 client over one WebSocket, for the load generator.
//!
//! Writes happen on the caller's task ([`Client::start`] sends the frame and returns a
//! [`PendingCall`], so calls can be pipelined); a reader task routes each response to
//! its caller by `id` and hands `message` events to an [`EventSink`] without copying
//! them. Nothing received from the network is trusted: frames that do not parse are
//! counted as anomalies, never unwrapped.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::error::BenchError;

/// How long a call may wait for its response.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting (TCP + WebSocket handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a graceful close may take before the connection is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Anomalies kept per connection (the count goes on).
const ANOMALY_SAMPLES: usize = 5;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Reply = Result<Box<RawValue>, WireError>;

/// A `message` event, borrowed from the frame it arrived in.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageEvent<'a> {
    #[serde(borrow)]
    pub room_id: Cow<'a, str>,
    #[serde(borrow)]
    pub message: EventMessage<'a>,
}

/// The fields of a delivered message the load generator looks at.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventMessage<'a> {
    pub seq: i64,
    #[serde(borrow)]
    pub sender_id: Cow<'a, str>,
    #[serde(borrow)]
    pub content: Cow<'a, str>,
}

/// Receives the `message` events of one connection, on its reader task.
pub trait EventSink: Send + Sync + 'static {
    fn message(&self, event: &MessageEvent<'_>, received: Instant);
}

/// How to reach the server.
#[derive(Debug, Clone)]
pub struct Connector {
    url: String,
    config: WebSocketConfig,
}

impl Connector {
    /// A connector for busy connections. The read buffer is 16 KiB, not tungstenite's
    /// 128 KiB: tungstenite zero-fills the whole of it before every read, which was 8 %
    /// of the load generator's CPU while reading fan-out (a few hundred bytes a read).
    pub fn new(url: &str) -> Connector {
        Connector {
            url: url.to_owned(),
            config: WebSocketConfig::default().read_buffer_size(16 * 1024).write_buffer_size(0),
        }
    }

    /// A connector with small buffers, for many idle connections.
    pub fn lean(url: &str) -> Connector {
        Connector {
            url: url.to_owned(),
            config: WebSocketConfig::default().read_buffer_size(4 * 1024).write_buffer_size(0),
        }
    }

    /// Opens a WebSocket; `message` events go to `sink`, if any.
    pub async fn connect(&self, sink: Option<Arc<dyn EventSink>>) -> Result<Client, BenchError> {
        let connecting = tokio_tungstenite::connect_async_with_config(self.url.as_str(), Some(self.config), true);
        let (socket, _) = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| BenchError::ConnectTimeout { url: self.url.clone(), timeout: CONNECT_TIMEOUT })?
            .map_err(|e| BenchError::Connect { url: self.url.clone(), source: Box::new(e) })?;
        let (sink_half, stream) = socket.split();
        let shared = Arc::new(Shared::default());
        let reader = tokio::spawn(read_loop(stream, shared.clone(), sink));
        Ok(Client { socket: sink_half, shared, reader, next_id: 0 })
    }

    /// Opens a WebSocket and authenticates with `api_key`.
    pub async fn agent(
        &self,
        api_key: &str,
        sink: Option<Arc<dyn EventSink>>,
    ) -> Result<(Client, broodlink_protocol::AuthResult), BenchError> {
        let mut client = self.connect(sink).await?;
        let params = broodlink_protocol::AuthParams { api_key: api_key.to_owned(), display_name: None };
        let auth = client.call("auth", &params).await?;
        Ok((client, auth))
    }
}

/// One connection.
pub struct Client {
    socket: SplitSink<Socket, Message>,
    shared: Arc<Shared>,
    reader: JoinHandle<()>,
    next_id: u64,
}

/// A request that was sent and whose response has not been awaited yet.
pub struct PendingCall {
    method: &'static str,
    reply: oneshot::Receiver<Reply>,
    shared: Arc<Shared>,
}

#[derive(Serialize)]
struct Request<'a, P> {
    jsonrpc: &'static str,
    id: u64,
    method: &'a str,
    params: &'a P,
}

impl Client {
    /// Sends a request and waits for its result.
    pub async fn call<P: Serialize, R: DeserializeOwned>(
        &mut self,
        method: &'static str,
        params: &P,
    ) -> Result<R, BenchError> {
        self.start(method, params).await?.finish().await
    }

    /// Sends a request; its result is awaited later with [`PendingCall::finish`].
    pub async fn start<P: Serialize>(&mut self, method: &'static str, params: &P) -> Result<PendingCall, BenchError> {
        self.next_id += 1;
        let id = self.next_id;
        let frame = serde_json::to_string(&Request { jsonrpc: "2.0", id, method, params })
            .map_err(|source| BenchError::Encode { method, source })?;
        let (tx, rx) = oneshot::channel();
        {
            let mut state = self.shared.lock();
            if let Some(reason) = &state.closed {
                return Err(BenchError::Closed { method, reason: reason.clone() });
            }
            state.pending.insert(id, tx);
        }
        if let Err(e) = self.socket.send(Message::text(frame)).await {
            self.shared.lock().pending.remove(&id);
            return Err(BenchError::Write { method, source: Box::new(e) });
        }
        Ok(PendingCall { method, reply: rx, shared: self.shared.clone() })
    }

    /// Why the server closed this connection, once it has.
    pub fn closed(&self) -> Option<String> {
        self.shared.lock().closed.clone()
    }

    /// Frames that did not make sense (unparseable, unknown ids, …): how many, and the
    /// first few.
    pub fn anomalies(&self) -> (u64, Vec<String>) {
        let state = self.shared.lock();
        (state.anomalies, state.anomaly_samples.clone())
    }

    /// The reason of a `disconnected` event the server sent, if any.
    pub fn disconnected(&self) -> Option<String> {
        self.shared.lock().disconnected.clone()
    }

    /// Closes the connection politely, waiting briefly for the server's close.
    pub async fn close(mut self) {
        let closing = async {
            let _ = self.socket.close().await;
            let _ = (&mut self.reader).await;
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, closing).await;
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl PendingCall {
    /// Waits for the response and decodes its result.
    pub async fn finish<R: DeserializeOwned>(self) -> Result<R, BenchError> {
        let method = self.method;
        let reply = match tokio::time::timeout(CALL_TIMEOUT, self.reply).await {
            Err(_) => return Err(BenchError::Timeout { method, timeout: CALL_TIMEOUT }),
            Ok(Err(_)) => {
                let reason = self.shared.lock().closed.clone().unwrap_or_else(|| "connection lost".into());
                return Err(BenchError::Closed { method, reason });
            }
            Ok(Ok(reply)) => reply,
        };
        match reply {
            Ok(raw) => serde_json::from_str(raw.get()).map_err(|source| BenchError::Decode { method, source }),
            Err(e) => Err(BenchError::Rpc { method, code: e.code, message: e.message }),
        }
    }
}

/// State shared by a client and its reader task.
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    pending: HashMap<u64, oneshot::Sender<Reply>>,
    /// Set (with the reason) when the connection ends; no call is accepted after.
    closed: Option<String>,
    disconnected: Option<String>,
    anomalies: u64,
    anomaly_samples: Vec<String>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn anomaly(&self, what: impl FnOnce() -> String) {
        let mut state = self.lock();
        state.anomalies += 1;
        if state.anomaly_samples.len() < ANOMALY_SAMPLES {
            state.anomaly_samples.push(what());
        }
    }
}

/// The envelope of any frame the server sends.
#[derive(Default)]
struct Incoming<'a> {
    id: Option<u64>,
    method: Option<Cow<'a, str>>,
    params: Option<Params<'a>>,
    result: Option<&'a RawValue>,
    error: Option<WireError>,
}

/// An event's params: a `message` event's are read in the same pass as the envelope
/// when `method` comes first, as the server writes it (the load generator reads every
/// delivery, and reading the params twice was a quarter of its CPU); any other event's
/// are kept raw. So a malformed `message` event is an anomaly on every connection, also
/// where nobody reads messages.
enum Params<'a> {
    Message(MessageEvent<'a>),
    Raw(&'a RawValue),
}

impl<'de> Deserialize<'de> for Incoming<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(IncomingVisitor)
    }
}

struct IncomingVisitor;

/// The envelope's keys, read without allocating.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum Field {
    Id,
    Method,
    Params,
    Result,
    Error,
    #[serde(other)]
    Other,
}

impl Field {
    /// The key's slot and name; `None` for the keys the load generator ignores.
    fn known(&self) -> Option<(usize, &'static str)> {
        match self {
            Field::Id => Some((0, "id")),
            Field::Method => Some((1, "method")),
            Field::Params => Some((2, "params")),
            Field::Result => Some((3, "result")),
            Field::Error => Some((4, "error")),
            Field::Other => None,
        }
    }
}

/// A string borrowed from the frame when it has no escapes.
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

impl<'de> serde::de::Visitor<'de> for IncomingVisitor {
    type Value = Incoming<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON-RPC response or notification")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Incoming<'de>, A::Error> {
        let mut frame = Incoming::default();
        let mut seen = [false; 5];
        while let Some(key) = map.next_key::<Field>()? {
            // A key twice is a broken frame, as the derived parser had it.
            if let Some((slot, name)) = key.known() {
                if std::mem::replace(&mut seen[slot], true) {
                    return Err(serde::de::Error::duplicate_field(name));
                }
            }
            match key {
                Field::Id => frame.id = map.next_value()?,
                Field::Method => frame.method = map.next_value::<Option<Text<'de>>>()?.map(|t| t.0),
                Field::Params if frame.method.as_deref() == Some("message") => {
                    frame.params = Some(Params::Message(map.next_value()?));
                }
                Field::Params => frame.params = Some(Params::Raw(map.next_value()?)),
                Field::Result => frame.result = map.next_value()?,
                Field::Error => frame.error = map.next_value()?,
                Field::Other => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(frame)
    }
}

impl<'a> Params<'a> {
    /// The params as a `message` event, read now if they were kept raw.
    fn message(self) -> Option<MessageEvent<'a>> {
        match self {
            Params::Message(event) => Some(event),
            Params::Raw(raw) => serde_json::from_str(raw.get()).ok(),
        }
    }

    fn raw(&self) -> Option<&'a RawValue> {
        match self {
            Params::Raw(raw) => Some(raw),
            Params::Message(_) => None,
        }
    }
}

#[derive(Debug, Deserialize)]
struct WireError {
    code: i64,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct Disconnected {
    #[serde(default)]
    reason: String,
}

async fn read_loop(mut stream: SplitStream<Socket>, shared: Arc<Shared>, sink: Option<Arc<dyn EventSink>>) {
    let reason = loop {
        match stream.next().await {
            Some(Ok(Message::Text(text))) => handle_frame(text.as_str(), &shared, sink.as_deref()),
            Some(Ok(Message::Close(frame))) => {
                break frame.map_or_else(
                    || "closed".to_owned(),
                    |f| format!("close {}: {}", u16::from(f.code), f.reason.as_str()),
                )
            }
            Some(Ok(Message::Binary(_))) => shared.anomaly(|| "binary frame".into()),
            Some(Ok(_)) => {}
            Some(Err(e)) => break format!("read error: {e}"),
            None => break "connection ended".to_owned(),
        }
    };
    let mut state = shared.lock();
    state.closed = Some(reason);
    // Dropping the senders wakes every waiting caller with "closed".
    state.pending.clear();
}

fn handle_frame(text: &str, shared: &Shared, sink: Option<&dyn EventSink>) {
    let received = Instant::now();
    let frame: Incoming<'_> = match serde_json::from_str(text) {
        Ok(frame) => frame,
        Err(e) => return shared.anomaly(|| format!("unparseable frame ({e}): {}", clip(text))),
    };
    match (frame.id, frame.method.as_deref()) {
        (Some(id), None) => {
            let reply = match (frame.result, frame.error) {
                (_, Some(error)) => Err(error),
                (Some(result), None) => Ok(result.to_owned()),
                (None, None) => return shared.anomaly(|| format!("response without result: {}", clip(text))),
            };
            let waiter = shared.lock().pending.remove(&id);
            match waiter {
                // The caller may have given up (timeout); nothing to do then.
                Some(waiter) => drop(waiter.send(reply)),
                None => shared.anomaly(|| format!("response to unknown id {id}")),
            }
        }
        (None, Some("message")) => {
            let Some(sink) = sink else { return };
            match frame.params.and_then(Params::message) {
                Some(event) => sink.message(&event, received),
                None => shared.anomaly(|| format!("malformed message event: {}", clip(text))),
            }
        }
        (None, Some("disconnected")) => {
            let reason = frame
                .params
                .as_ref()
                .and_then(Params::raw)
                .and_then(|p| serde_json::from_str::<Disconnected>(p.get()).ok())
                .map_or_else(String::new, |d| d.reason);
            shared.lock().disconnected = Some(reason);
        }
        (None, Some(_)) => {} // other events: presence, room.joined, …
        _ => shared.anomaly(|| format!("unexpected frame: {}", clip(text))),
    }
}

fn clip(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Seqs(Mutex<Vec<(i64, String)>>);

    impl EventSink for Seqs {
        fn message(&self, event: &MessageEvent<'_>, _received: Instant) {
            let mut seen = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            seen.push((event.message.seq, event.message.content.to_string()));
        }
    }

    fn seqs(sink: &Seqs) -> Vec<(i64, String)> {
        sink.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    #[test]
    fn message_events_reach_the_sink_whatever_the_key_order_or_escapes() {
        let shared = Shared::default();
        let sink = Seqs::default();
        let params = r#"{"roomId":"r","message":{"seq":7,"senderId":"a","content":"say \"hi\"","extra":[1,{}]}}"#;
        handle_frame(&format!(r#"{{"jsonrpc":"2.0","method":"message","params":{params}}}"#), &shared, Some(&sink));
        // An escaped method name still names it, read in one pass or, with the params
        // first, in a second one.
        handle_frame(&format!(r#"{{"method":"mess\u0061ge","params":{params}}}"#), &shared, Some(&sink));
        handle_frame(
            &format!(r#"{{"params":{params},"method":"mess\u0061ge","jsonrpc":"2.0"}}"#),
            &shared,
            Some(&sink),
        );
        assert_eq!(seqs(&sink), vec![(7, "say \"hi\"".to_owned()); 3]);
        assert_eq!(shared.lock().anomalies, 0);
    }

    #[test]
    fn malformed_frames_are_anomalies_and_other_events_are_skipped() {
        let shared = Shared::default();
        let sink = Seqs::default();
        handle_frame(r#"{"jsonrpc":"2.0","method":"presence","params":{"agentId":"x"}}"#, &shared, Some(&sink));
        handle_frame(r#"{"jsonrpc":"2.0","method":"disconnected","params":{"reason":"kicked"}}"#, &shared, Some(&sink));
        assert_eq!(shared.lock().anomalies, 0);
        assert_eq!(shared.lock().disconnected.as_deref(), Some("kicked"));
        handle_frame(r#"{"jsonrpc":"2.0","method":"message","params":{"roomId":"r"}}"#, &shared, Some(&sink));
        handle_frame(r#"{"params":{"roomId":"r"},"method":"message"}"#, &shared, Some(&sink));
        handle_frame("not json", &shared, Some(&sink));
        handle_frame(r#"{"jsonrpc":"2.0","id":3,"result":{}}"#, &shared, Some(&sink));
        handle_frame(r#"{"jsonrpc":"2.0","method":"presence","method":"message"}"#, &shared, Some(&sink));
        assert!(seqs(&sink).is_empty());
        assert_eq!(shared.lock().anomalies, 5, "{:?}", shared.lock().anomaly_samples);
    }

    #[test]
    fn responses_reach_their_caller_and_an_answer_without_result_is_an_anomaly() {
        let shared = Shared::default();
        let mut replies = Vec::new();
        for id in 1..=3 {
            let (reply, answer) = oneshot::channel();
            shared.lock().pending.insert(id, reply);
            replies.push(answer);
        }
        handle_frame(r#"{"jsonrpc":"2.0","id":1,"result":{"timestamp":5}}"#, &shared, None);
        handle_frame(r#"{"jsonrpc":"2.0","id":2,"error":{"code":4003,"message":"no"}}"#, &shared, None);
        handle_frame(r#"{"jsonrpc":"2.0","id":3,"result":null}"#, &shared, None);
        let mut answers = replies.into_iter().map(|mut answer| answer.try_recv());
        assert!(matches!(answers.next(), Some(Ok(Ok(result))) if result.get() == r#"{"timestamp":5}"#));
        assert!(matches!(answers.next(), Some(Ok(Err(WireError { code: 4003, .. })))));
        // Left waiting (its caller times out), and counted.
        assert!(matches!(answers.next(), Some(Err(_))));
        assert_eq!(shared.lock().anomalies, 1, "{:?}", shared.lock().anomaly_samples);
    }
}
