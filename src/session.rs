//! One WebSocket connection: who it is (once authenticated), and the queue its
//! writer task drains. Handlers reach the session through the call's extensions.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use broodlink_protocol::{DisconnectedEvent, Event, Role};
use tokio::sync::Notify;
use tungstenite::Utf8Bytes;

use crate::outbox::{Outbound, Outbox, Refused};

/// Queue slots kept free for the goodbye (`disconnected` and the close frame): a
/// connection counts as full this many slots before its queue really is.
pub const RESERVED_SLOTS: usize = 2;
/// The `disconnected` reason of a connection whose queue filled up.
pub const SLOW_CONSUMER: &str = "slow consumer";

/// The agent a connection authenticated as.
#[derive(Debug, Clone)]
pub struct Identity {
    pub agent_id: String,
    pub role: Role,
    /// The registered name, or the `displayName` given to `auth` for this session.
    pub display_name: String,
}

impl Identity {
    pub fn is_controller(&self) -> bool {
        self.role == Role::Controller
    }
}

/// Events parked during `auth` beyond which the connection is cut off.
const MAX_HELD: usize = 65_536;

#[derive(Debug)]
pub struct Session {
    pub id: u64,
    pub remote: SocketAddr,
    identity: OnceLock<Identity>,
    outbox: Outbox,
    /// While `Some`, events are parked here instead of queued: `auth` holds them so
    /// that its response goes out before any event, then the transport releases them.
    held: Mutex<Option<Vec<Utf8Bytes>>>,
    closed: AtomicBool,
    /// Wakes the reader loop when the server closes the connection.
    close_signal: Notify,
}

impl Session {
    /// `queue_limit`: frames queued for a client that does not read before it is cut
    /// off, not counting [`RESERVED_SLOTS`].
    pub fn new(id: u64, remote: SocketAddr, queue_limit: usize) -> Session {
        Session {
            id,
            remote,
            identity: OnceLock::new(),
            outbox: Outbox::new(queue_limit + RESERVED_SLOTS),
            held: Mutex::new(None),
            closed: AtomicBool::new(false),
            close_signal: Notify::new(),
        }
    }

    pub fn identity(&self) -> Option<&Identity> {
        self.identity.get()
    }

    /// Binds the connection to an agent. Returns false if it already was.
    pub fn authenticate(&self, identity: Identity) -> bool {
        self.identity.set(identity).is_ok()
    }

    /// Queues an event frame without waiting.
    pub fn push(&self, frame: Utf8Bytes) {
        if self.is_closed() {
            return;
        }
        {
            let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(held) = held.as_mut() {
                if held.len() < MAX_HELD {
                    held.push(frame);
                } else {
                    tracing::warn!(conn = self.id, "too many events held during auth; disconnecting");
                    self.close_now();
                }
                return;
            }
        }
        if self.outbox.room() <= RESERVED_SLOTS {
            self.cut_off_slow_consumer();
            return;
        }
        match self.outbox.try_push(Outbound::Frame(frame)) {
            Ok(()) => {}
            Err(Refused::Full) => self.cut_off_slow_consumer(),
            // The connection is already going away.
            Err(Refused::Closed) => self.close_now(),
        }
    }

    /// Queues a WebSocket control frame (a keepalive ping, the answer to the client's
    /// ping), unless the queue is (nearly) full: a client that does not read is dealt
    /// with by [`Session::push`].
    pub fn control(&self, frame: Outbound) {
        if !self.is_closed() && self.outbox.room() > RESERVED_SLOTS {
            let _ = self.outbox.try_push(frame);
        }
    }

    /// What the connection's writer sends.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// A client whose queue is full is not reading: it is told why (in the slots kept
    /// for that) and disconnected, rather than allowed to grow server memory.
    fn cut_off_slow_consumer(&self) {
        tracing::warn!(conn = self.id, "outbound queue full; disconnecting slow consumer");
        let event = Event::Disconnected(DisconnectedEvent { reason: SLOW_CONSUMER.into(), retry: true });
        self.disconnect(crate::hub::frame(&event), 1008, SLOW_CONSUMER);
    }

    /// Queues a response, waiting for room: the client's own requests are throttled by
    /// its own reading speed.
    pub async fn respond(&self, frame: Utf8Bytes) {
        let _ = self.outbox.push(Outbound::Frame(frame)).await;
    }

    /// Parks events until [`Session::release_held`].
    pub fn hold_events(&self) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.get_or_insert_with(Vec::new);
    }

    /// Queues the parked events, in order, and stops parking. Waits for room in the
    /// queue: the presence snapshot alone can exceed it on a busy server, and this
    /// connection's reader is what is waiting.
    ///
    /// Parking goes on until the parked list is empty, so an event pushed while earlier
    /// ones are being sent still queues behind them.
    pub async fn release_held(&self) {
        loop {
            let frames = {
                let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
                match held.as_mut() {
                    None => return,
                    Some(frames) if frames.is_empty() => {
                        *held = None;
                        return;
                    }
                    Some(frames) => std::mem::take(frames),
                }
            };
            for frame in frames {
                if self.is_closed() || self.outbox.push(Outbound::Frame(frame)).await.is_err() {
                    self.discard_held();
                    return;
                }
            }
        }
    }

    /// Stops parking without waiting: the parked events are dropped (the connection is
    /// being closed).
    pub fn discard_held(&self) {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Sends `frame` (a `disconnected` event) and closes the connection with `code`.
    pub fn disconnect(&self, frame: Utf8Bytes, code: u16, reason: &str) {
        self.discard_held();
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        // Straight into the queue (not `push`, which refuses once closed): the goodbye and
        // the close frame go out if there is room; if not, the connection ends anyway.
        let _ = self.outbox.try_push(Outbound::Frame(frame));
        let _ = self.outbox.try_push(Outbound::Close { code, reason: reason.to_owned() });
        self.close_signal.notify_one();
    }

    /// Closes with a WebSocket status code and no goodbye event (a protocol-level
    /// failure such as an oversized frame).
    pub fn close_with(&self, code: u16, reason: &str) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            // Never wait here: a client that does not read must not pin this task.
            let _ = self.outbox.try_push(Outbound::Close { code, reason: reason.to_owned() });
            self.close_signal.notify_one();
        }
    }

    /// Closes without a goodbye (the queue may be full).
    fn close_now(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            self.close_signal.notify_one();
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Resolves once the server has decided to close this connection, or its writer
    /// has ended (the socket failed or a write timed out): either way nothing more
    /// reaches the client, so the connection must not stay registered.
    pub async fn closed(&self) {
        if self.is_closed() {
            return;
        }
        tokio::select! {
            _ = self.close_signal.notified() => {}
            _ = self.outbox.writer_ended() => self.close_now(),
        }
    }
}
