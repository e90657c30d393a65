//! The network edge: an axum router that upgrades `/` to a WebSocket (and answers
//! `GET /healthz`), and per connection a reader loop and one writer task.
//!
//! The reader handles one frame at a time, except that consecutive `message.send` and
//! `message.dm` calls are pipelined: once a message has its place in the commit queue
//! the reader reads on, and responses still go out in the order the requests came.
//! Responses and events share one bounded queue (the session's outbox), drained by the
//! writer, which encodes whatever is queued into one write.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use broodlink_protocol::{DisconnectedEvent, ErrorCode, Event};
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesOrdered;
use futures_util::StreamExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tower_service::Service;
use tungstenite::Utf8Bytes;

use crate::dispatch::{Begun, Dispatcher};
use crate::outbox::Outbound;
use crate::service::Linkspace;
use crate::session::Session;
use crate::websocket::{encoded_len, Incoming, NotAnUpgrade, ReadError, Reader, Upgrade, WebSocket, Writer};

/// Messages one connection may have queued for commit before its reader waits for the
/// oldest to be answered.
const MAX_PIPELINE: usize = 64;
/// How long one write (of at most `WRITE_BATCH` bytes, or one frame) to a client may
/// take; a client that reads nothing for this long is dropped (its writer ends, which
/// closes its queue and so the connection).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// What every connection is told when the server stops.
pub const SHUTDOWN_REASON: &str = "server shutting down";
/// Text the writer encodes into one write, at most (or one frame, if larger). What it
/// has taken no longer counts against the outbound queue's bound, and it must be
/// written within `WRITE_TIMEOUT`: a client must read at least this much per timeout.
const WRITE_BATCH: usize = 64 * 1024;
/// How long a closing connection's writer may take to flush what is queued.
const WRITER_GRACE: Duration = Duration::from_secs(5);

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

/// Accepts TCP connections and serves HTTP/1.1 on each until `shutdown` resolves; then
/// lets each HTTP connection finish the request it is on. Upgraded WebSockets live on
/// in their own tasks (the transport says goodbye to them).
///
/// Our own loop rather than `axum::serve`, which wraps every connection in a private
/// type (to detect HTTP/2) and so hides the TCP stream an upgraded WebSocket is split
/// from.
pub async fn serve(listener: TcpListener, router: Router, shutdown: impl Future<Output = ()>) {
    let (_stop, stopping) = tokio::sync::watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, typically: wait for some to close
                    // rather than spin on the error.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        // Small frames must not wait for the peer's delayed ACK (Nagle): without
        // TCP_NODELAY an ack behind a previous write can take 40 ms.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(remote));
            router.clone().call(request)
        });
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => return,
                // Resolves when the accept loop ends (the sender is dropped).
                _ = stopping.changed() => connection.as_mut().graceful_shutdown(),
            }
            let _ = connection.await;
        });
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
    let max_message = transport.max_frame_bytes;
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
        return ws.accept(max_message, move |mut socket| async move {
            socket.writer.close(1013, refusal);
            let _ = tokio::time::timeout(WRITE_TIMEOUT, socket.writer.flush()).await;
        });
    }
    ws.accept(max_message, move |socket| connection(socket, remote, transport, slot))
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
    let WebSocket { mut reader, writer } = socket;
    let queue_limit = transport.linkspace.config.limits.outbound_queue_frames as usize;
    let session = Arc::new(Session::new(id, remote, queue_limit));
    tracing::debug!(conn = id, %remote, "connected");

    let mut writer = tokio::spawn(write_loop(writer, session.clone()));
    read_loop(&mut reader, &session, &transport).await;
    transport.linkspace.connection_closed(&session).await;
    // The writer sends what is queued and ends; a client that does not read would keep
    // it blocked on a full socket, so it gets a deadline.
    session.outbox().finish();
    drop(session);
    if tokio::time::timeout(WRITER_GRACE, &mut writer).await.is_err() {
        writer.abort();
    }
    tracing::debug!(conn = id, "disconnected");
}

async fn read_loop(reader: &mut Reader, session: &Arc<Session>, transport: &Transport) {
    let mut pending = FuturesOrdered::new();
    read_frames(reader, session, transport, &mut pending).await;
    // Messages already queued are committed or refused before the connection counts
    // as closed; nobody is left to read their results.
    while pending.next().await.is_some() {}
}

/// The responses still to come of messages queued for commit, oldest first. The reader
/// polls them between frames; each runs to its end.
type Pending = FuturesOrdered<BoxFuture<'static, Option<String>>>;

async fn read_frames(reader: &mut Reader, session: &Arc<Session>, transport: &Transport, pending: &mut Pending) {
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
            message = reader.next(), if pending.len() < MAX_PIPELINE => message,
            _ = session.closed() => return,
            _ = keepalive.tick() => {
                if keepalive.is_dead() {
                    let reason = "keepalive timeout: no pong";
                    let event = Event::Disconnected(DisconnectedEvent { reason: reason.into(), retry: true });
                    session.disconnect(crate::hub::frame(&event), 1008, reason);
                    return;
                }
                if keepalive.should_ping() {
                    session.control(Outbound::Ping);
                }
                continue;
            }
            _ = &mut auth_deadline, if session.identity().is_none() => {
                let reason = format!("no auth within {}s: call auth first, right after connecting", auth_timeout.as_secs());
                let event = Event::Disconnected(DisconnectedEvent { reason: reason.clone(), retry: false });
                session.disconnect(crate::hub::frame(&event), 1008, &reason);
                return;
            }
            // Also true from the start for a connection upgraded as the server stops.
            () = stopping(&mut shutdown) => {
                // Authenticated sessions were told by the linkspace; this covers the rest.
                let event = Event::Disconnected(DisconnectedEvent { reason: SHUTDOWN_REASON.into(), retry: true });
                session.disconnect(crate::hub::frame(&event), 1001, SHUTDOWN_REASON);
                return;
            }
        };
        keepalive.heard();
        let text = match message {
            Some(Ok(Incoming::Text(text))) => text,
            Some(Ok(Incoming::Binary)) => {
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
            Some(Ok(Incoming::Ping(payload))) => {
                session.control(Outbound::Pong(payload));
                continue;
            }
            Some(Ok(Incoming::Pong)) => continue,
            Some(Ok(Incoming::Close(code))) => {
                // The closing handshake: the client's status echoed (§5.5.1).
                session.close_with(code.unwrap_or(1000), "");
                return;
            }
            Some(Err(ReadError::Frame(e))) => {
                tracing::debug!(conn = session.id, "closing: {e}");
                session.close_with(e.close_code(), e.reason());
                return;
            }
            Some(Err(ReadError::Io(_))) | None => return,
        };
        let next = match transport.dispatcher.begin(session, &text).await {
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
        let response = transport.dispatcher.finish(session, &text, next).await;
        if !answer(session, response).await {
            return;
        }
    }
}

/// Resolves once the server is stopping (at once if it already is).
async fn stopping(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stopping| *stopping).await;
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

/// Sends what the session queues until the queue is finished, a close frame is sent,
/// or the client fails or stalls; then marks the writer gone so that the reader and
/// every sender stop waiting on it.
async fn write_loop(mut writer: Writer, session: Arc<Session>) {
    let outbox = session.outbox();
    while let Some(items) = outbox.take(WRITE_BATCH).await {
        // One allocation for the whole batch (control frames: at most 127 bytes).
        let bytes =
            items.iter().map(|item| if let Outbound::Frame(text) = item { encoded_len(text.len()) } else { 127 });
        writer.reserve(bytes.sum());
        for item in items {
            match item {
                Outbound::Frame(text) => writer.text(&text),
                Outbound::Ping => writer.ping(),
                Outbound::Pong(payload) => writer.pong(&payload),
                Outbound::Close { code, reason } => {
                    writer.close(code, &reason);
                    break;
                }
            }
        }
        if !matches!(tokio::time::timeout(WRITE_TIMEOUT, writer.flush()).await, Ok(Ok(()))) {
            outbox.writer_gone();
            return;
        }
        if writer.is_closed() {
            break;
        }
    }
    if !writer.is_closed() {
        // Finished without a close frame (the client went away, or its TCP closed
        // first): say goodbye in case it is still reading.
        writer.close(1000, "");
        let _ = tokio::time::timeout(WRITE_TIMEOUT, writer.flush()).await;
    }
    writer.shutdown().await;
    outbox.writer_gone();
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
