//! A connection's outbound queue: what its writer task sends next. Bounded in frames;
//! the writer takes everything queued at each wake-up and encodes it into one write.
//!
//! Unlike a channel, it allocates only while frames wait: of 10,000 idle connections
//! none holds queue memory (a tokio channel allocates a block of 32 slots up front).

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;
use tungstenite::Utf8Bytes;

/// What the writer task sends next.
#[derive(Debug)]
pub enum Outbound {
    /// A text frame: a response or an event (events share one allocation across recipients).
    Frame(Utf8Bytes),
    /// A WebSocket ping (keepalive).
    Ping,
    /// The answer to the client's ping, with its payload.
    Pong(Vec<u8>),
    /// Close the WebSocket with this status code and reason.
    Close { code: u16, reason: String },
}

/// Why an item was not queued.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the outbound queue is full")]
    Full,
    #[error("the connection's writer has ended")]
    Closed,
}

#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    limit: usize,
    /// Wakes the writer when something was queued or the queue was finished.
    for_writer: Notify,
    /// Wakes those waiting for room, and those waiting for the writer to end.
    for_senders: Notify,
}

#[derive(Debug, Default)]
struct State {
    items: VecDeque<Outbound>,
    /// Nothing more will be queued; the writer ends once it has sent what is there.
    finished: bool,
    /// The writer has ended: nothing queued now would be sent.
    writer_gone: bool,
}

impl Outbox {
    pub fn new(limit: usize) -> Outbox {
        Outbox { state: Mutex::default(), limit, for_writer: Notify::new(), for_senders: Notify::new() }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent at every step, so a panic elsewhere while it was
        // held leaves nothing to repair.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Places still free.
    pub fn room(&self) -> usize {
        let state = self.state();
        if state.writer_gone {
            return 0;
        }
        self.limit.saturating_sub(state.items.len())
    }

    /// Queues `item` if there is room, without waiting.
    pub fn try_push(&self, item: Outbound) -> Result<(), Refused> {
        self.offer(item).map_err(|(refused, _)| refused)
    }

    /// Queues `item`, waiting for room.
    pub async fn push(&self, mut item: Outbound) -> Result<(), Refused> {
        loop {
            let room = self.for_senders.notified();
            tokio::pin!(room);
            // Registered before looking, so room made between the look and the wait
            // still wakes this sender.
            room.as_mut().enable();
            item = match self.offer(item) {
                Err((Refused::Full, item)) => item,
                done => return done.map_err(|(refused, _)| refused),
            };
            room.await;
        }
    }

    /// Queues `item`, or gives it back with the reason it was refused.
    fn offer(&self, item: Outbound) -> Result<(), (Refused, Outbound)> {
        let mut state = self.state();
        if state.writer_gone || state.finished {
            return Err((Refused::Closed, item));
        }
        if state.items.len() >= self.limit {
            return Err((Refused::Full, item));
        }
        state.items.push_back(item);
        drop(state);
        self.for_writer.notify_one();
        Ok(())
    }

    /// Everything queued, taken at once; waits while the queue is empty. `None` once the
    /// queue is finished and empty.
    pub async fn take(&self) -> Option<VecDeque<Outbound>> {
        loop {
            {
                let mut state = self.state();
                if !state.items.is_empty() {
                    let items = std::mem::take(&mut state.items);
                    drop(state);
                    self.for_senders.notify_waiters();
                    return Some(items);
                }
                if state.finished {
                    return None;
                }
            }
            // `notify_one` keeps a wake-up for a writer that is not waiting yet.
            self.for_writer.notified().await;
        }
    }

    /// No more items: the writer sends what is queued and ends.
    pub fn finish(&self) {
        self.state().finished = true;
        self.for_writer.notify_one();
    }

    /// Called by the writer as it ends, whatever the reason.
    pub fn writer_gone(&self) {
        let mut state = self.state();
        state.writer_gone = true;
        state.items = VecDeque::new();
        drop(state);
        self.for_senders.notify_waiters();
    }

    /// Resolves once the writer has ended.
    pub async fn writer_ended(&self) {
        loop {
            let changed = self.for_senders.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.state().writer_gone {
                return;
            }
            changed.await;
        }
    }
}
