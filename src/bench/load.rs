//! One sender's loop: closed (the next message goes out when the previous one is
//! acknowledged) or open (messages go out on a fixed schedule whatever the server's
//! pace, and latency counts from the scheduled time, so queueing is not hidden).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use broodlink_protocol::{MessageSendParams, SendResult};
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use hdrhistogram::Histogram;

use super::client::Client;
use super::deliveries::Acked;
use super::error::BenchError;
use super::stamp::{Clock, Stamp};
use super::stats;

/// Requests one open-loop sender may have unanswered; beyond it, it waits (and the
/// waiting shows in its latency, which counts from the scheduled time).
const MAX_IN_FLIGHT: usize = 4096;
/// Errors described per sender (the rest are counted).
const ERROR_SAMPLES: usize = 3;

/// What one sender sends.
#[derive(Debug, Clone)]
pub struct Sender {
    /// The member's index (it never receives its own messages).
    pub member: usize,
    pub room_id: String,
    /// Message size in bytes.
    pub size: usize,
    pub clock: Clock,
    /// Whether messages carry a `clientMsgId` (the stamp id, unique in a run).
    pub client_msg_ids: bool,
}

/// A fixed schedule shared by `senders` senders: message `g` (its stamp id) is due at
/// `start + g / rate`, and belongs to sender `g % senders`; there are `total`.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub start: Instant,
    pub rate: f64,
    pub total: u64,
    pub senders: u64,
}

impl Schedule {
    /// Messages a run of `duration` at `rate` sends.
    pub fn total_for(rate: f64, duration: Duration) -> u64 {
        (rate * duration.as_secs_f64()).ceil() as u64
    }

    fn due(&self, id: u64) -> Instant {
        self.start + Duration::from_secs_f64(id as f64 / self.rate)
    }
}

/// The errors one loop met: how many, and the first few described.
#[derive(Debug, Default)]
pub struct Errors {
    pub count: u64,
    pub samples: Vec<String>,
}

impl Errors {
    /// Counts `e`; false when it leaves the connection unusable (the loop stops).
    pub fn record(&mut self, e: BenchError) -> bool {
        self.count += 1;
        let fatal = e.is_fatal();
        if self.samples.len() < ERROR_SAMPLES {
            self.samples.push(e.to_string());
        }
        !fatal
    }
}

/// What one sender saw.
pub struct Outcome {
    pub acked: Vec<Acked>,
    /// Ack latency, µs.
    pub latency: Histogram<u64>,
    pub last_ack: Option<Instant>,
    pub errors: Errors,
}

impl Outcome {
    fn new() -> Outcome {
        Outcome { acked: Vec::new(), latency: stats::histogram(), last_ack: None, errors: Errors::default() }
    }

    /// Records one answer; false if the connection is gone.
    fn answer(&mut self, sender: &Sender, id: u64, since: Instant, result: Result<SendResult, BenchError>) -> bool {
        match result {
            Ok(sent) => {
                let now = Instant::now();
                stats::record(&mut self.latency, micros(now.saturating_duration_since(since)));
                self.acked.push(Acked { seq: sent.seq, sender: sender.member, id });
                self.last_ack = Some(now);
                true
            }
            Err(e) => self.errors.record(e),
        }
    }
}

/// A duration in whole µs, for the histograms.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn params(sender: &Sender, stamp: Stamp) -> MessageSendParams {
    MessageSendParams {
        room_id: sender.room_id.clone(),
        content: stamp.content(sender.size),
        client_msg_id: sender.client_msg_ids.then(|| format!("bench-{}", stamp.id)),
    }
}

/// Sends back to back until `end`; stamp ids come from the shared counter.
pub async fn closed_loop(client: &mut Client, sender: &Sender, end: Instant, ids: &AtomicU64) -> Outcome {
    let mut outcome = Outcome::new();
    while Instant::now() < end {
        let id = ids.fetch_add(1, Ordering::Relaxed);
        let sent = Instant::now();
        let stamp = Stamp { id, sent_us: sender.clock.micros(sent) };
        let result = client.call("message.send", &params(sender, stamp)).await;
        if !outcome.answer(sender, id, sent, result) {
            break;
        }
    }
    outcome
}

/// Sends this sender's share of `schedule` (messages `index`, `index + senders`, …)
/// on time, without waiting for acknowledgements.
pub async fn open_loop(client: &mut Client, sender: &Sender, schedule: Schedule, index: u64) -> Outcome {
    let mut outcome = Outcome::new();
    let mut in_flight = FuturesUnordered::new();
    let mut next = index;
    loop {
        let due = schedule.due(next);
        let may_send = next < schedule.total && in_flight.len() < MAX_IN_FLIGHT;
        tokio::select! {
            biased;
            Some((id, due, result)) = in_flight.next(), if !in_flight.is_empty() => {
                if !outcome.answer(sender, id, due, result) {
                    break;
                }
            }
            _ = tokio::time::sleep_until(due.into()), if may_send => {
                let stamp = Stamp { id: next, sent_us: sender.clock.micros(due) };
                next += schedule.senders;
                match client.start("message.send", &params(sender, stamp)).await {
                    Ok(call) => in_flight.push(async move { (stamp.id, due, call.finish::<SendResult>().await) }),
                    Err(e) => {
                        if !outcome.errors.record(e) {
                            break;
                        }
                    }
                }
            }
            else => break,
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_spreads_messages_evenly() {
        let start = Instant::now();
        let schedule =
            Schedule { start, rate: 1000.0, total: Schedule::total_for(1000.0, Duration::from_secs(2)), senders: 4 };
        assert_eq!(schedule.total, 2000);
        assert_eq!(schedule.due(0), start);
        assert_eq!(schedule.due(500), start + Duration::from_millis(500));
    }
}
