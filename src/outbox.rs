//! A connection's outbound queue: what its writer task sends next. Bounded in frames;
//! at each wake-up the writer takes up to a write's worth (`take`) and encodes it into
//! one buffer, so what a stalled client pins is the queue plus one write, and events
//! shared across recipients stay shared while they wait.
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

    /// Places still free. (Once the writer is gone a push says `Closed`, which is not
    /// the same as full: the client did not fall behind, it went away.)
    pub fn room(&self) -> usize {
        self.limit.saturating_sub(self.state().items.len())
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

    /// The oldest items, as many as fit in `bytes` of text (at least one); waits while
    /// the queue is empty. `None` once the queue is finished and empty.
    pub async fn take(&self, bytes: usize) -> Option<VecDeque<Outbound>> {
        loop {
            match self.take_or_finished(bytes) {
                Ok(items) => return Some(items),
                Err(true) => return None,
                // `notify_one` keeps a wake-up for a writer that is not waiting yet.
                Err(false) => self.for_writer.notified().await,
            }
        }
    }

    /// What `take` would return now, without waiting: `None` if nothing is queued.
    pub fn try_take(&self, bytes: usize) -> Option<VecDeque<Outbound>> {
        self.take_or_finished(bytes).ok()
    }

    /// The oldest items; if there are none, whether the queue is finished (looked at
    /// under the same lock, so an item queued just before `finish` is not missed).
    fn take_or_finished(&self, bytes: usize) -> Result<VecDeque<Outbound>, bool> {
        let mut state = self.state();
        if state.items.is_empty() {
            return Err(state.finished);
        }
        let items = take_front(&mut state.items, bytes);
        drop(state);
        self.for_senders.notify_waiters();
        Ok(items)
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

/// Takes items off the front of `items` while their text fits in `bytes` (the first
/// always), leaving the rest. The usual case, all of it, moves the queue's allocation
/// to the writer rather than copying.
fn take_front(items: &mut VecDeque<Outbound>, bytes: usize) -> VecDeque<Outbound> {
    let size = |item: &Outbound| if let Outbound::Frame(text) = item { text.len() } else { 0 };
    let mut total = 0;
    let count = items
        .iter()
        .take_while(|item| {
            total += size(item);
            total <= bytes
        })
        .count()
        .max(1);
    if count == items.len() {
        return std::mem::take(items);
    }
    items.drain(..count).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: usize) -> Outbound {
        Outbound::Frame(Utf8Bytes::from("x".repeat(len)))
    }

    fn taken(outbox: &Outbox, bytes: usize) -> usize {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        runtime.block_on(outbox.take(bytes)).map_or(0, |items| items.len())
    }

    #[test]
    fn the_writer_takes_a_write_worth_and_leaves_the_rest_queued_against_the_bound() {
        let outbox = Outbox::new(4);
        for _ in 0..4 {
            outbox.try_push(frame(100)).expect("room");
        }
        assert_eq!(outbox.try_push(frame(1)), Err(Refused::Full));
        assert_eq!(taken(&outbox, 250), 2, "two of 100 bytes fit in 250");
        assert_eq!(outbox.room(), 2, "what the writer has not taken still counts");
        assert_eq!(taken(&outbox, 10), 1, "one item even when it alone is larger");
        assert_eq!(taken(&outbox, 1000), 1);
        assert_eq!(outbox.room(), 4);
    }

    #[test]
    fn a_push_after_the_writer_is_gone_is_closed_not_full() {
        let outbox = Outbox::new(2);
        outbox.writer_gone();
        assert_eq!(outbox.room(), 2);
        assert_eq!(outbox.try_push(Outbound::Ping), Err(Refused::Closed));
    }

    #[test]
    fn a_finished_outbox_hands_over_what_is_queued_then_ends() {
        let outbox = Outbox::new(8);
        outbox.try_push(frame(1)).expect("room");
        outbox.try_push(Outbound::Ping).expect("room");
        outbox.finish();
        assert_eq!(outbox.try_push(frame(1)), Err(Refused::Closed));
        assert_eq!(taken(&outbox, 1 << 20), 2);
        assert_eq!(taken(&outbox, 1 << 20), 0, "then None");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sender_waiting_for_room_is_woken_when_the_writer_takes() {
        let outbox = std::sync::Arc::new(Outbox::new(1));
        outbox.try_push(frame(1)).expect("room");
        let sender = outbox.clone();
        let waiting = tokio::spawn(async move { sender.push(frame(2)).await });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "no room yet");
        assert_eq!(outbox.take(1 << 20).await.map(|items| items.len()), Some(1));
        let pushed = tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await;
        assert_eq!(pushed.expect("woken").expect("no panic"), Ok(()));
    }
}
