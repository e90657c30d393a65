//! The network edge: an axum router that upgrades `/` to a WebSocket (and answers
//! `GET /healthz`), and per connection a reader loop and one writer task.
//!
//! The reader handles one frame at a time, except that consecutive `message.send` and
//! `message.dm` calls are pipelined: once a message has its place in the commit queue
//! the reader reads on, and responses still go out in the order the requests came. Responses and events share one bounded queue, drained by the
//! writer, which batches whatever is queued into one flush.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use broodlink_protocol::{DisconnectedEvent, ErrorCode, Event};
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesOrdered, SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::{CloseFrame, Frame};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Bytes, Message, Utf8Bytes};

use crate::dispatch::{Begun, Dispatcher};
use crate::service::Linkspace;
use crate::session::{Outbound, Session, RESERVED_SLOTS};
use crate::websocket::{NotAnUpgrade, Upgrade, WebSocket};

/// Messages one connection may have queued for commit before its reader waits for the
/// oldest to be answered.
const MAX_PIPELINE: usize = 64;
/// How long one write to a client may take; a client that reads nothing for this long
/// is dropped (its writer ends, which closes its queue and so the connection).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// What every connection is told when the server stops.
pub const SHUTDOWN_REASON: &str = "server shutting down";
/// How long a closing connection's writer may take to flush what is queued.
const WRITER_GRACE: Duration = Duration::from_secs(5);
/// Initial WebSocket read buffer per connection.
const READ_BUFFER: usize = 2 * 1024;
/// Bytes the WebSocket writer gathers before writing to the socket (the writer task
/// also flushes after each batch of queued frames).
const WRITE_BUFFER: usize = 2 * 1024;
/// Text longer than this goes out as fragments of this size: tungstenite formats a
/// whole frame into its write buffer and never shrinks it, so one 300 KB history page
/// kept 300 KB per connection for good (measured: 314 KiB each over 300 connections).
const FRAGMENT: usize = 16 * 1024;

pub struct Transport {
    pub linkspace: Arc<Linkspace>,
    pub dispatcher: Dispatcher,
    /// The largest frame the WebSocket layer will read at all; frames between the
    /// dispatcher's limit and this get a JSON-RPC error instead of a closed socket.
    pub max_frame_bytes: usize,
    next_session: AtomicU64,
    /// Open connections (and upgrades under way), against `limits.maxConnections`.
    connections: AtomicUsize,
    /// Each connection task holds a clone; shutdown waits until all are dropped.
    pub(crate) alive: mpsc::Sender<()>,
    /// Flipped once at shutdown; every reader loop watches it.
    pub(crate) shutdown: tokio::sync::watch::Sender<bool>,
}

impl Transport {
    pub fn new(
        linkspace: Arc<Linkspace>,
        dispatcher: Dispatcher,
        max_frame_bytes: usize,
        alive: mpsc::Sender<()>,
    ) -> Self {
        let (shutdown, _) = tokio::sync::watch::channel(false);
        Transport {
            linkspace,
            dispatcher,
            max_frame_bytes,
            next_session: AtomicU64::new(1),
            connections: AtomicUsize::new(0),
            alive,
            shutdown,
        }
    }
}

pub fn router(transport: Arc<Transport>) -> Router {
    Router::new().route("/", get(upgrade)).route("/healthz", get(healthz)).with_state(transport)
}

async fn healthz(State(transport): State<Arc<Transport>>) -> impl IntoResponse {
    Json(serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "onlineAgents": transport.linkspace.online_agents(),
    }))
}

async fn upgrade(
    ws: Result<Upgrade, NotAnUpgrade>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    State(transport): State<Arc<Transport>>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(refused) => return refused.into_response(),
    };
    // Small buffers: tungstenite's defaults (128 KiB each way) would dominate the memory
    // of an idle connection; they grow for a large frame and most frames are small.
    let config = WebSocketConfig::default()
        .max_message_size(Some(transport.max_frame_bytes))
        .max_frame_size(Some(transport.max_frame_bytes))
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER);
    let slot = ConnectionSlot::take(&transport);
    let refusal: Option<&'static str> = if transport.linkspace.is_locked() {
        Some("server is locked: not accepting new connections")
    } else if slot.is_none() {
        Some("server is full: too many connections, try again later")
    } else {
        None
    };
    if let Some(refusal) = refusal {
        // Upgrade, then close with a reason the client can show: a refused HTTP
        // upgrade would reach it as an opaque handshake failure.
        return ws.accept(config, move |mut socket| async move {
            let reason = Utf8Bytes::from_static(refusal);
            let _ = socket.send(Message::Close(Some(CloseFrame { code: 1013.into(), reason }))).await;
        });
    }
    ws.accept(config, move |socket| connection(socket, remote, transport, slot))
}

/// One of the `limits.maxConnections` places, given back when the connection ends.
struct ConnectionSlot(Arc<Transport>);

impl ConnectionSlot {
    fn take(transport: &Arc<Transport>) -> Option<ConnectionSlot> {
        let most = transport.linkspace.config.limits.max_connections as usize;
        let taken = transport.connections.fetch_add(1, Ordering::AcqRel);
        let slot = ConnectionSlot(transport.clone());
        (taken < most).then_some(slot)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn connection(socket: WebSocket, remote: SocketAddr, transport: Arc<Transport>, _slot: Option<ConnectionSlot>) {
    let _alive = transport.alive.clone();
    let id = transport.next_session.fetch_add(1, Ordering::Relaxed);
    let (sink, stream) = socket.split();
    let queue = transport.linkspace.config.limits.outbound_queue_frames as usize + RESERVED_SLOTS;
    let (tx, rx) = mpsc::channel(queue);
    let session = Arc::new(Session::new(id, remote, tx));
    tracing::debug!(conn = id, %remote, "connected");

    let writer = tokio::spawn(write_loop(sink, rx));
    read_loop(stream, &session, &transport).await;
    transport.linkspace.connection_closed(&session).await;
    // Dropping the last sender lets the writer drain what is queued and finish; a client
    // that does not read would keep it blocked on a full socket, so it gets a deadline.
    drop(session);
    let mut writer = writer;
    if tokio::time::timeout(WRITER_GRACE, &mut writer).await.is_err() {
        writer.abort();
    }
    tracing::debug!(conn = id, "disconnected");
}

async fn read_loop(mut stream: SplitStream<WebSocket>, session: &Arc<Session>, transport: &Transport) {
    let mut pending = FuturesOrdered::new();
    read_frames(&mut stream, session, transport, &mut pending).await;
    // Messages already queued are committed or refused before the connection counts
    // as closed; nobody is left to read their results.
    while pending.next().await.is_some() {}
}

/// The responses still to come of messages queued for commit, oldest first. The reader
/// polls them between frames; each runs to its end.
type Pending = FuturesOrdered<BoxFuture<'static, Option<String>>>;

async fn read_frames(
    stream: &mut SplitStream<WebSocket>,
    session: &Arc<Session>,
    transport: &Transport,
    pending: &mut Pending,
) {
    let mut shutdown = transport.shutdown.subscribe();
    let auth_timeout = Duration::from_secs(u64::from(transport.linkspace.config.limits.auth_timeout_seconds));
    let auth_deadline = tokio::time::sleep(auth_timeout);
    tokio::pin!(auth_deadline);
    let mut keepalive = Keepalive::new(&transport.linkspace.config.limits);
    loop {
        let message = tokio::select! {
            Some(done) = pending.next(), if !pending.is_empty() => {
                if !answer(session, done).await {
                    return;
                }
                continue;
            }
            message = stream.next(), if pending.len() < MAX_PIPELINE => message,
            _ = session.closed() => return,
            _ = keepalive.tick() => {
                if keepalive.is_dead() {
                    let reason = "keepalive timeout: no pong";
                    let event = Event::Disconnected(DisconnectedEvent { reason: reason.into(), retry: true });
                    session.disconnect(crate::hub::frame(&event), 1008, reason);
                    return;
                }
                if keepalive.should_ping() {
                    session.ping();
                }
                continue;
            }
            _ = &mut auth_deadline, if session.identity().is_none() => {
                let reason = format!("no auth within {}s: call auth first, right after connecting", auth_timeout.as_secs());
                let event = Event::Disconnected(DisconnectedEvent { reason: reason.clone(), retry: false });
                session.disconnect(crate::hub::frame(&event), 1008, &reason);
                return;
            }
            _ = shutdown.changed() => {
                // Authenticated sessions were told by the linkspace; this covers the rest.
                let event = Event::Disconnected(DisconnectedEvent { reason: SHUTDOWN_REASON.into(), retry: true });
                session.disconnect(crate::hub::frame(&event), 1001, SHUTDOWN_REASON);
                return;
            }
        };
        keepalive.heard();
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Binary(_))) => {
                let error = serde_json::json!({
                    "jsonrpc": "2.0",
                    "id": null,
                    "error": {
                        "code": ErrorCode::InvalidRequest.code(),
                        "message": "binary frames are not supported: send each JSON-RPC request as a text frame",
                    },
                });
                if !answer_pending(session, pending).await || !answer(session, Some(error.to_string())).await {
                    return;
                }
                continue;
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Err(e)) => {
                if let Some((code, reason)) = close_code_for(e) {
                    session.close_with(code, reason);
                }
                return;
            }
            Some(Ok(Message::Close(_))) | None => return,
        };
        let next = match transport.dispatcher.begin(session, text.as_str()).await {
            Begun::Queued(response) => {
                pending.push_back(response);
                continue;
            }
            Begun::InOrder(next) => next,
        };
        // Anything but a queued message takes effect after, and is answered after,
        // every message queued before it.
        if !answer_pending(session, pending).await {
            return;
        }
        let response = transport.dispatcher.finish(session, text.as_str(), next).await;
        if !answer(session, response).await {
            return;
        }
    }
}

/// Waits for every queued message and sends their responses in order. False when the
/// connection closed meanwhile.
async fn answer_pending(session: &Arc<Session>, pending: &mut Pending) -> bool {
    while let Some(done) = pending.next().await {
        if !answer(session, done).await {
            return false;
        }
    }
    true
}

/// Queues a response (and then the events held back during `auth`). False when the
/// connection closed meanwhile: waiting for queue room is cancelled then, so a client
/// that stops reading cannot keep its connection alive after the server closes it.
async fn answer(session: &Arc<Session>, response: Option<String>) -> bool {
    let deliver = async {
        if let Some(response) = response {
            session.respond(Utf8Bytes::from(response)).await;
        }
        session.release_held().await;
    };
    tokio::select! {
        _ = deliver => true,
        _ = session.closed() => false,
    }
}

async fn write_loop(mut sink: Sink, mut queue: mpsc::Receiver<Outbound>) {
    while let Some(first) = queue.recv().await {
        let mut next = Some(first);
        while let Some(item) = next {
            match item {
                Outbound::Frame(text) => {
                    if !feed_text(&mut sink, text).await {
                        return;
                    }
                }
                Outbound::Ping => {
                    if !feed(&mut sink, Message::Ping(Bytes::new())).await {
                        return;
                    }
                }
                Outbound::Close { code, reason } => {
                    let frame = CloseFrame { code: code.into(), reason: Utf8Bytes::from(truncate(&reason, 123)) };
                    let _ = sink.send(Message::Close(Some(frame))).await;
                    return;
                }
            }
            next = queue.try_recv().ok();
        }
        if !matches!(tokio::time::timeout(WRITE_TIMEOUT, sink.flush()).await, Ok(Ok(()))) {
            return;
        }
    }
    let _ = sink.close().await;
}

type Sink = SplitSink<WebSocket, Message>;

/// Buffers one message for the socket; false when the client failed or stalled.
async fn feed(sink: &mut Sink, message: Message) -> bool {
    matches!(tokio::time::timeout(WRITE_TIMEOUT, sink.feed(message)).await, Ok(Ok(())))
}

/// Buffers a text message: whole, or if longer than `FRAGMENT` as fragments of that
/// size (split anywhere: a character may span two fragments, RFC 6455 §5.6).
async fn feed_text(sink: &mut Sink, text: Utf8Bytes) -> bool {
    if text.len() <= FRAGMENT {
        return feed(sink, Message::Text(text)).await;
    }
    let bytes = Bytes::from(text);
    let mut start = 0;
    while start < bytes.len() {
        let end = (start + FRAGMENT).min(bytes.len());
        let opcode = OpCode::Data(if start == 0 { Data::Text } else { Data::Continue });
        if !feed(sink, Message::Frame(Frame::message(bytes.slice(start..end), opcode, end == bytes.len()))).await {
            return false;
        }
        start = end;
    }
    true
}

/// When to ping a quiet connection, and when to give it up for dead. Anything the
/// client sends (a pong included) counts as a sign of life; a connection is dead when a
/// ping got no sign of life back within the timeout.
struct Keepalive {
    /// `None` when keepalive is off.
    ticks: Option<tokio::time::Interval>,
    interval: Duration,
    timeout: Duration,
    last_heard: tokio::time::Instant,
    /// The unanswered ping, if one is out.
    ping_sent: Option<tokio::time::Instant>,
}

impl Keepalive {
    fn new(limits: &crate::config::LimitsConfig) -> Keepalive {
        let interval = Duration::from_secs(u64::from(limits.ping_interval_seconds));
        let timeout = Duration::from_secs(u64::from(limits.pong_timeout_seconds));
        // Ticks often enough to ping on time and to notice a missed pong on time.
        let period = interval.min(timeout).max(Duration::from_millis(100));
        let ticks = (!interval.is_zero()).then(|| {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks
        });
        Keepalive { ticks, interval, timeout, last_heard: tokio::time::Instant::now(), ping_sent: None }
    }

    /// Resolves at each check; never when keepalive is off.
    async fn tick(&mut self) {
        match &mut self.ticks {
            Some(ticks) => {
                ticks.tick().await;
            }
            None => std::future::pending().await,
        }
    }

    fn heard(&mut self) {
        self.last_heard = tokio::time::Instant::now();
        self.ping_sent = None;
    }

    /// Whether to send a ping now: quiet for a whole interval and none is out.
    fn should_ping(&mut self) -> bool {
        if self.ping_sent.is_none() && self.last_heard.elapsed() >= self.interval {
            self.ping_sent = Some(tokio::time::Instant::now());
            return true;
        }
        false
    }

    /// A ping went unanswered for the whole timeout.
    fn is_dead(&self) -> bool {
        self.ping_sent.is_some_and(|sent| sent.elapsed() >= self.timeout)
    }
}

/// The close status a failed read deserves (RFC 6455 §7.4.1), if the peer is still
/// there to receive one.
fn close_code_for(error: tungstenite::Error) -> Option<(u16, &'static str)> {
    match error {
        tungstenite::Error::Capacity(_) => Some((1009, "frame too large")),
        tungstenite::Error::Utf8(_) => Some((1007, "text frame is not valid UTF-8")),
        tungstenite::Error::Protocol(_) => Some((1002, "WebSocket protocol error")),
        _ => None,
    }
}

/// Cuts `text` to at most `max` bytes at a character boundary (close reasons are
/// limited to 123 bytes).
fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}
