//! Group commit for messages. Senders queue their message and wait; one task takes
//! everything queued while the previous commit ran, and under the write lock gives each
//! message its `seq`, inserts them all in one transaction, commits, fans the events out
//! in `seq` order and only then answers each sender. One fsync serves the whole batch,
//! and the write lock keeps batches ordered with every other state change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use broodlink_protocol::{DmEvent, Event, MessageEvent, SendResult};
use tokio::sync::{mpsc, oneshot};

use super::views::message_view;
use super::{new_message_id, Linkspace};
use crate::error::{ServiceError, ServiceResult};
use crate::hub::Audience;
use crate::store::MessageRow;

/// Most messages one transaction takes; more wait for the next one.
const MAX_BATCH: usize = 512;
/// Queued messages before senders wait for room in the queue.
const QUEUE: usize = 4096;

/// A message waiting for its commit.
pub(super) struct Pending {
    pub room_id: String,
    pub sender_id: String,
    pub sender_name: String,
    pub content: String,
    /// For a direct message: the recipient.
    pub to_agent_id: Option<String>,
    /// The sending connection, which gets the result instead of the event.
    pub session_id: u64,
    /// The id the client gave the message, making retries idempotent.
    pub client_msg_id: Option<String>,
}

impl Pending {
    /// What identifies a retry of this message: its sender and client id.
    fn client_key(&self) -> Option<(String, String)> {
        client_key(&self.sender_id, self.client_msg_id.as_deref())
    }
}

impl MessageRow {
    fn client_key(&self) -> Option<(String, String)> {
        client_key(&self.sender_id, self.client_msg_id.as_deref())
    }
}

fn client_key(sender_id: &str, client_msg_id: Option<&str>) -> Option<(String, String)> {
    client_msg_id.map(|id| (sender_id.to_owned(), id.to_owned()))
}

struct Job {
    message: Pending,
    reply: oneshot::Sender<ServiceResult<SendResult>>,
}

/// The senders' side of the queue.
pub(super) struct Committer {
    queue: mpsc::Sender<Job>,
}

impl Committer {
    /// Starts the commit task. It holds the linkspace weakly, so dropping the linkspace
    /// closes the queue and ends the task.
    pub(super) fn start(linkspace: Weak<Linkspace>) -> Committer {
        let (queue, jobs) = mpsc::channel(QUEUE);
        tokio::spawn(run(linkspace, jobs));
        Committer { queue }
    }

    /// Queues a message and waits until it is committed (or refused). `enqueued` is
    /// fired once the message has its place in the queue.
    pub(super) async fn commit(&self, message: Pending, enqueued: Option<&Enqueued>) -> ServiceResult<SendResult> {
        let (reply, answer) = oneshot::channel();
        self.queue.send(Job { message, reply }).await.map_err(|_| ServiceError::ShuttingDown)?;
        if let Some(enqueued) = enqueued {
            enqueued.fire();
        }
        answer.await.map_err(|_| ServiceError::ShuttingDown)?
    }
}

/// Tells a connection that its message has its place in the commit queue, so the order
/// of that message and the connection's next request is settled and the connection may
/// read on (the dispatcher pipelines sends this way). Dropped unfired when the handler
/// fails before queueing.
#[derive(Clone)]
pub struct Enqueued(Arc<Mutex<Option<oneshot::Sender<()>>>>);

impl Enqueued {
    pub fn new() -> (Enqueued, oneshot::Receiver<()>) {
        let (fire, fired) = oneshot::channel();
        (Enqueued(Arc::new(Mutex::new(Some(fire)))), fired)
    }

    fn fire(&self) {
        if let Some(fire) = self.0.lock().unwrap_or_else(PoisonError::into_inner).take() {
            let _ = fire.send(());
        }
    }
}

async fn run(linkspace: Weak<Linkspace>, mut jobs: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let Some(linkspace) = linkspace.upgrade() else { break };
        linkspace.commit_batch(&mut batch).await;
    }
}

impl Linkspace {
    async fn commit_batch(&self, batch: &mut Vec<Job>) {
        let clock = &mut self.write().await;
        let mut rows = Vec::with_capacity(batch.len());
        let mut accepted = Vec::with_capacity(batch.len());
        // Retries of a message taken earlier in this same batch: (its row, the retry).
        let mut repeats = Vec::new();
        let mut in_batch = HashMap::new();
        for job in batch.drain(..) {
            let key = job.message.client_key();
            if let Some(&row) = key.as_ref().and_then(|key| in_batch.get(key)) {
                repeats.push((row, job.reply));
                continue;
            }
            // Membership may have changed since the sender was checked: the rule is
            // membership at commit time.
            if let Err(refusal) = self.check_sender(&job.message) {
                let _ = job.reply.send(Err(refusal));
                continue;
            }
            if let Some(key) = key {
                in_batch.insert(key, rows.len());
            }
            let (seq, timestamp) = clock.tick();
            let Pending { room_id, sender_id, sender_name, content, to_agent_id, session_id, client_msg_id } =
                job.message;
            rows.push(MessageRow {
                seq,
                id: new_message_id(),
                room_id,
                sender_id,
                sender_name,
                content,
                to_agent_id,
                timestamp,
                removed_by: None,
                removed_reason: None,
                client_msg_id,
            });
            accepted.push((job.reply, session_id));
        }
        if rows.is_empty() {
            return;
        }
        let prune_lobby = rows.iter().any(|row| row.to_agent_id.is_none() && self.is_lobby(&row.room_id));
        let lobby = prune_lobby.then_some((self.lobby_id.as_str(), self.config.lobby.history_limit));
        let inserted = match self.store.insert_messages(&rows, lobby).await {
            Ok(inserted) => inserted,
            Err(e) => {
                tracing::error!(error = %e, messages = rows.len(), "committing messages failed");
                let replies = accepted.into_iter().map(|(reply, _)| reply).chain(repeats.into_iter().map(|(_, r)| r));
                for reply in replies {
                    let _ = reply.send(Err(ServiceError::CommitFailed));
                }
                return;
            }
        };
        // A row the database skipped is a retry of a message stored before: it gets that
        // message's result and no event, and its `seq` stays unused (a gap).
        let originals: HashMap<(String, String), SendResult> = inserted
            .originals
            .into_iter()
            .flatten()
            .map(|row| {
                let result = SendResult { message_id: row.id, timestamp: row.timestamp, seq: row.seq };
                ((row.sender_id, row.client_msg_id), result)
            })
            .collect();
        let mut results = Vec::with_capacity(rows.len());
        for (row, (reply, session_id)) in rows.into_iter().zip(accepted) {
            let result = if inserted.seqs.contains(&row.seq) {
                let result = SendResult { message_id: row.id.clone(), timestamp: row.timestamp, seq: row.seq };
                self.fan_out(row, session_id);
                Some(result)
            } else {
                // A retry. `None` if its original could not be read back just now: the
                // client retries (with the same id) and gets it then.
                row.client_key().and_then(|key| originals.get(&key).cloned())
            };
            let _ = reply.send(result.clone().ok_or(ServiceError::CommitFailed));
            results.push(result);
        }
        for (row, reply) in repeats {
            let _ = reply.send(results[row].clone().ok_or(ServiceError::CommitFailed));
        }
    }

    /// Whether the sender may still post there (room messages outside the lobby).
    fn check_sender(&self, message: &Pending) -> ServiceResult<()> {
        // A connection closed since (its agent kicked, banned or revoked) sends nothing.
        if !self.hub.has_session(message.session_id) {
            return Err(ServiceError::Forbidden("this connection is being closed"));
        }
        if message.to_agent_id.is_some() || self.is_lobby(&message.room_id) {
            return Ok(());
        }
        match self.hub.membership(&message.room_id, &message.sender_id) {
            Some(true) => Ok(()),
            Some(false) => Err(ServiceError::NotAMember),
            None => Err(ServiceError::RoomNotFound),
        }
    }

    /// Sends a committed message's event: `dm` to the recipient, or `message` to the
    /// room (every online agent for the lobby), never to the sending connection.
    fn fan_out(&self, row: MessageRow, session_id: u64) {
        if let Some(to) = row.to_agent_id.clone() {
            let event = Event::Dm(DmEvent {
                from_agent_id: row.sender_id,
                from_display_name: row.sender_name,
                to_agent_id: to.clone(),
                content: row.content,
                message_id: row.id,
                timestamp: row.timestamp,
                seq: row.seq,
            });
            self.hub.send(Audience::Agents(&[&to]), &event, Some(session_id));
            return;
        }
        let room_id = row.room_id.clone();
        let audience = if self.is_lobby(&room_id) { Audience::Everyone } else { Audience::Room(&room_id, &[]) };
        let event = Event::Message(MessageEvent { room_id: room_id.clone(), message: message_view(row) });
        self.hub.send(audience, &event, Some(session_id));
    }
}
