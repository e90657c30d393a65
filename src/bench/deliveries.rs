//! What each recipient received, and the check that it is exactly what it should
//! have: every acknowledged message of its room sent by another member, once each, in
//! `seq` order, and nothing else.
//!
//! A recipient keeps one bit per `seq` (relative to the first it saw), so a run of
//! millions of deliveries costs kilobytes, and checks order as frames arrive.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use super::client::{EventSink, MessageEvent};
use super::stamp::{Clock, Stamp};
use super::stats::{self, Checks};

/// Examples of missing seqs named per failing recipient.
const EXAMPLES: usize = 5;

/// A message the server acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acked {
    pub seq: i64,
    /// The index of the member that sent it.
    pub sender: usize,
    /// Its stamp's id.
    pub id: u64,
}

/// The `message` events one member's connection received in its bench room.
pub struct Recipient {
    member: usize,
    agent_id: String,
    room: OnceLock<String>,
    clock: Clock,
    spread: Option<Arc<Spread>>,
    seen: Mutex<Seen>,
}

struct Seen {
    /// The seq that bit 0 stands for (the first one received).
    base: Option<i64>,
    bits: Vec<u64>,
    /// Seqs below `base` (only a server delivering out of order produces them).
    below_base: Vec<i64>,
    distinct: u64,
    duplicates: u64,
    out_of_order: u64,
    echoes: u64,
    unstamped: u64,
    last_seq: Option<i64>,
    latency: Histogram<u64>,
    last_at: Option<Instant>,
}

impl Recipient {
    pub fn new(member: usize, agent_id: &str, clock: Clock, spread: Option<Arc<Spread>>) -> Recipient {
        Recipient {
            member,
            agent_id: agent_id.to_owned(),
            room: OnceLock::new(),
            clock,
            spread,
            seen: Mutex::new(Seen {
                base: None,
                bits: Vec::new(),
                below_base: Vec::new(),
                distinct: 0,
                duplicates: 0,
                out_of_order: 0,
                echoes: 0,
                unstamped: 0,
                last_seq: None,
                latency: stats::histogram(),
                last_at: None,
            }),
        }
    }

    /// Starts recording the messages of this room (events of other rooms are ignored).
    pub fn watch(&self, room_id: &str) {
        let _ = self.room.set(room_id.to_owned());
    }

    pub fn member(&self) -> usize {
        self.member
    }

    /// Distinct messages received so far.
    pub fn delivered(&self) -> u64 {
        self.lock().distinct
    }

    fn lock(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Compares what arrived with `acked` (the room's acknowledged messages, any order).
    pub fn verify(&self, acked: &[Acked]) -> DeliveryCheck {
        let seen = self.lock();
        let mut below_base = seen.below_base.clone();
        below_base.sort_unstable();
        let mut verdict = Verdict { expected: 0, matched: 0, missing_examples: Vec::new(), seen: &seen };
        for a in acked.iter().filter(|a| a.sender != self.member) {
            verdict.expected += 1;
            let got = match seen.base {
                Some(base) if a.seq >= base => seen.has(a.seq - base),
                _ => below_base.binary_search(&a.seq).is_ok(),
            };
            if got {
                verdict.matched += 1;
            } else if verdict.missing_examples.len() < EXAMPLES {
                verdict.missing_examples.push(a.seq);
            }
        }
        verdict.conclude(&self.agent_id)
    }

    /// Send→delivery latencies (µs) of everything received, and when the last arrived.
    pub fn latency(&self) -> (Histogram<u64>, Option<Instant>) {
        let seen = self.lock();
        (seen.latency.clone(), seen.last_at)
    }
}

impl EventSink for Recipient {
    fn message(&self, event: &MessageEvent<'_>, received: Instant) {
        if self.room.get().map(String::as_str) != Some(&*event.room_id) {
            return;
        }
        let stamp = Stamp::parse(&event.message.content);
        let latency = stamp.map(|s| self.clock.micros(received).saturating_sub(s.sent_us));
        let mut seen = self.lock();
        seen.last_at = Some(received);
        if event.message.sender_id == self.agent_id {
            seen.echoes += 1;
        }
        if !seen.insert(event.message.seq) {
            return; // a duplicate: counted, not measured twice
        }
        match (stamp, latency) {
            (Some(stamp), Some(latency)) => {
                stats::record(&mut seen.latency, latency);
                drop(seen);
                if let Some(spread) = &self.spread {
                    spread.observe(stamp.id, latency);
                }
            }
            _ => seen.unstamped += 1,
        }
    }
}

impl Seen {
    /// Records a seq; false if it was already received.
    fn insert(&mut self, seq: i64) -> bool {
        if let Some(last) = self.last_seq {
            if seq <= last && !self.contains(seq) {
                self.out_of_order += 1;
            }
        }
        if self.contains(seq) {
            self.duplicates += 1;
            return false;
        }
        let base = *self.base.get_or_insert(seq);
        match u64::try_from(seq - base) {
            Ok(offset) => {
                let word = (offset / 64) as usize;
                if word >= self.bits.len() {
                    self.bits.resize(word + 1, 0);
                }
                self.bits[word] |= 1 << (offset % 64);
            }
            Err(_) => self.below_base.push(seq),
        }
        self.distinct += 1;
        self.last_seq = Some(self.last_seq.map_or(seq, |last| last.max(seq)));
        true
    }

    fn contains(&self, seq: i64) -> bool {
        match self.base {
            Some(base) if seq >= base => self.has(seq - base),
            Some(_) => self.below_base.contains(&seq),
            None => false,
        }
    }

    fn has(&self, offset: i64) -> bool {
        let Ok(offset) = u64::try_from(offset) else { return false };
        self.bits.get((offset / 64) as usize).is_some_and(|word| word & (1 << (offset % 64)) != 0)
    }
}

/// One recipient's comparison, before it is turned into counts and failures.
struct Verdict<'a> {
    expected: u64,
    matched: u64,
    missing_examples: Vec<i64>,
    seen: &'a Seen,
}

impl Verdict<'_> {
    fn conclude(self, agent_id: &str) -> DeliveryCheck {
        let seen = self.seen;
        let mut check = DeliveryCheck {
            totals: DeliveryTotals {
                expected: self.expected,
                delivered: seen.distinct,
                missing: self.expected - self.matched,
                duplicates: seen.duplicates,
                out_of_order: seen.out_of_order,
                unexpected: seen.distinct - self.matched,
            },
            checks: Checks::new(),
        };
        let t = &check.totals;
        let who = format!("recipient {agent_id}");
        let mut failures = Vec::new();
        if t.missing > 0 {
            failures.push(format!(
                "{who}: {} of {} acknowledged messages never arrived (e.g. seq {:?})",
                t.missing, t.expected, self.missing_examples
            ));
        }
        if t.duplicates > 0 {
            failures.push(format!("{who}: {} messages arrived more than once", t.duplicates));
        }
        if t.out_of_order > 0 {
            failures.push(format!("{who}: {} messages arrived out of seq order", t.out_of_order));
        }
        if seen.echoes > 0 {
            failures.push(format!("{who}: got {} of its own messages back on the sending connection", seen.echoes));
        }
        if t.unexpected > 0 {
            failures.push(format!("{who}: {} messages arrived that were never acknowledged to a sender", t.unexpected));
        }
        if seen.unstamped > 0 {
            failures.push(format!("{who}: {} messages without the bench's stamp", seen.unstamped));
        }
        for failure in failures {
            check.checks.fail(failure);
        }
        check
    }
}

/// Delivery counts, summed over recipients.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DeliveryTotals {
    /// Deliveries that should have happened: each acked message × the other members.
    pub expected: u64,
    /// Distinct deliveries that happened.
    pub delivered: u64,
    pub missing: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    /// Delivered but never acknowledged (or echoed to the sender).
    pub unexpected: u64,
}

impl DeliveryTotals {
    fn add(&mut self, other: &DeliveryTotals) {
        self.expected += other.expected;
        self.delivered += other.delivered;
        self.missing += other.missing;
        self.duplicates += other.duplicates;
        self.out_of_order += other.out_of_order;
        self.unexpected += other.unexpected;
    }
}

/// The counts and the failures of one or more recipients.
#[derive(Debug, Clone)]
pub struct DeliveryCheck {
    pub totals: DeliveryTotals,
    pub checks: Checks,
}

/// Verifies every recipient against its room's acknowledged messages
/// (`acked[room]` for a recipient watching room index `room_of(member)`).
pub fn verify_all<'a>(recipients: &[Arc<Recipient>], acked_for: impl Fn(&Recipient) -> &'a [Acked]) -> DeliveryCheck {
    let mut all = DeliveryCheck { totals: DeliveryTotals::default(), checks: Checks::new() };
    for recipient in recipients {
        let check = recipient.verify(acked_for(recipient));
        all.totals.add(&check.totals);
        all.checks.absorb(check.checks);
    }
    all
}

/// Waits until the recipients hold `expected` distinct deliveries in all, or `timeout`.
pub async fn settle(recipients: &[Arc<Recipient>], expected: u64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while recipients.iter().map(|r| r.delivered()).sum::<u64>() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Per message (by stamp id): the latency to its first and to its last recipient.
pub struct Spread {
    /// Latency + 1 µs (0: not delivered yet).
    first: Vec<AtomicU64>,
    last: Vec<AtomicU64>,
}

impl Spread {
    /// Room for stamp ids `0..capacity`; larger ids are not tracked.
    pub fn new(capacity: usize) -> Spread {
        Spread {
            first: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
            last: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn observe(&self, id: u64, latency_us: u64) {
        let Ok(index) = usize::try_from(id) else { return };
        let (Some(first), Some(last)) = (self.first.get(index), self.last.get(index)) else { return };
        let value = latency_us.saturating_add(1);
        // 0 means unset: replace it, or keep the smaller.
        let _ = first.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |current| {
            (current == 0 || value < current).then_some(value)
        });
        last.fetch_max(value, Ordering::Relaxed);
    }

    /// Histograms (µs) of the first- and last-recipient latency of these messages.
    pub fn histograms(&self, ids: impl IntoIterator<Item = u64>) -> (Histogram<u64>, Histogram<u64>) {
        let (mut first_h, mut last_h) = (stats::histogram(), stats::histogram());
        for id in ids {
            let Ok(index) = usize::try_from(id) else { continue };
            let (Some(first), Some(last)) = (self.first.get(index), self.last.get(index)) else { continue };
            let (first, last) = (first.load(Ordering::Relaxed), last.load(Ordering::Relaxed));
            if first > 0 {
                stats::record(&mut first_h, first - 1);
                stats::record(&mut last_h, last - 1);
            }
        }
        (first_h, last_h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::client::EventMessage;
    use std::borrow::Cow;

    fn event<'a>(room: &'a str, seq: i64, sender: &'a str) -> MessageEvent<'a> {
        MessageEvent {
            room_id: Cow::Borrowed(room),
            message: EventMessage {
                seq,
                sender_id: Cow::Borrowed(sender),
                content: Cow::Owned(Stamp { id: seq as u64, sent_us: 0 }.content(0)),
            },
        }
    }

    fn acked(seqs: &[(i64, usize)]) -> Vec<Acked> {
        seqs.iter().map(|&(seq, sender)| Acked { seq, sender, id: seq as u64 }).collect()
    }

    fn recipient() -> Recipient {
        let r = Recipient::new(0, "me", Clock::start(), None);
        r.watch("room");
        r
    }

    #[test]
    fn exactly_the_others_messages_in_order_pass() {
        let r = recipient();
        for seq in [10, 11, 13] {
            r.message(&event("room", seq, "other"), Instant::now());
        }
        r.message(&event("elsewhere", 12, "other"), Instant::now());
        let check = r.verify(&acked(&[(10, 1), (11, 2), (12, 0), (13, 1)]));
        assert!(check.checks.passed, "{:?}", check.checks);
        assert_eq!(check.totals.expected, 3);
        assert_eq!(check.totals.delivered, 3);
    }

    #[test]
    fn missing_duplicate_reordered_and_unacked_messages_fail() {
        let r = recipient();
        for seq in [20, 22, 22, 21, 99] {
            r.message(&event("room", seq, "other"), Instant::now());
        }
        let check = r.verify(&acked(&[(20, 1), (21, 1), (22, 1), (23, 1)]));
        let t = &check.totals;
        assert_eq!((t.missing, t.duplicates, t.out_of_order, t.unexpected), (1, 1, 1, 1), "{t:?}");
        assert_eq!(check.checks.failures.len(), 4, "{:?}", check.checks.failures);
    }

    #[test]
    fn a_seq_below_the_first_one_is_still_found() {
        let r = recipient();
        r.message(&event("room", 50, "other"), Instant::now());
        r.message(&event("room", 40, "other"), Instant::now());
        let check = r.verify(&acked(&[(40, 1), (50, 1)]));
        assert_eq!(check.totals.missing, 0);
        assert_eq!(check.totals.out_of_order, 1);
    }

    #[test]
    fn spread_keeps_the_first_and_last_latency() {
        let spread = Spread::new(4);
        spread.observe(1, 300);
        spread.observe(1, 100);
        spread.observe(1, 200);
        spread.observe(9, 5); // beyond capacity: ignored
        let (first, last) = spread.histograms([1, 2]);
        assert_eq!((first.len(), last.len()), (1, 1));
        assert_eq!(first.max(), 100);
        assert_eq!(last.max(), 300);
    }
}
