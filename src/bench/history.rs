//! `bench history`: fills a room with K messages (several agents, each with many
//! requests in flight), then times `room.history` pages: the newest page, a deep
//! `beforeSeq` page (in the oldest tenth of the room) and an `afterSeq` catch-up. Every
//! page is checked against the acknowledged seqs: exactly the right messages, oldest
//! first, with the right `hasMore`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use broodlink_protocol::{HistoryResult, MessageSendParams, RoomHistoryParams, SendResult};
use clap::Args;
use futures_util::future::join_all;
use hdrhistogram::Histogram;
use rand::Rng;
use serde::Serialize;

use super::client::{Client, PendingCall};
use super::fleet::{self, Fleet};
use super::stamp::{Clock, Stamp};
use super::stats::{self, per_second, Checks, Latency, Table};
use super::traffic::connection_checks;
use super::{seconds, with_fleet, BenchError, Report, Target};

/// Connections opened at once while setting up.
const CONNECT_CONCURRENCY: usize = 16;

#[derive(Args, Debug, Clone)]
pub struct HistoryArgs {
    /// Messages to fill the room with
    #[arg(long, default_value_t = 10_000)]
    pub messages: u64,
    /// Agents sending at once while filling
    #[arg(long, default_value_t = 8)]
    pub senders: usize,
    /// Requests each of them keeps in flight
    #[arg(long, default_value_t = 32)]
    pub window: usize,
    /// Timed queries of each kind
    #[arg(long, default_value_t = 200)]
    pub queries: usize,
    /// Size of the newest and the deep page
    #[arg(long, default_value_t = 50)]
    pub page: u32,
    /// Size of the `afterSeq` catch-up page
    #[arg(long, default_value_t = 500)]
    pub catch_up: u32,
    /// Message size in bytes
    #[arg(long, default_value_t = 64)]
    pub size: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct HistoryReport {
    pub messages: u64,
    pub senders: usize,
    pub message_bytes: usize,
    pub fill_s: f64,
    /// Acked messages per second while filling.
    pub fill_per_s: f64,
    pub queries: usize,
    pub page: u32,
    pub catch_up: u32,
    /// `room.history {limit: page}`.
    pub newest: Latency,
    /// `room.history {limit: page, beforeSeq}` in the oldest tenth (absent if the room is too small).
    pub deep_before: Option<Latency>,
    /// `room.history {limit: catch_up, afterSeq}`.
    pub after_seq: Latency,
    pub errors: u64,
    pub checks: Checks,
}

pub async fn run(target: &Target, args: &HistoryArgs) -> Result<HistoryReport, BenchError> {
    if args.messages == 0 || args.senders == 0 || args.window == 0 || args.page == 0 || args.catch_up == 0 {
        return Err(BenchError::InvalidArgs("messages, senders, window, page and catch-up must be positive".into()));
    }
    with_fleet(target, async |fleet| measure(fleet, args).await).await
}

async fn measure(fleet: &mut Fleet, args: &HistoryArgs) -> Result<HistoryReport, BenchError> {
    let mut checks = Checks::new();
    let (clients, room_id) = seat(fleet, args.senders).await?;

    let fill_started = Instant::now();
    let Filled { seqs, clients: mut filled_by, errors } = fill(clients, &room_id, args, &mut checks).await;
    let fill_time = fill_started.elapsed();
    checks.ensure(seqs.len() as u64 == args.messages, || {
        format!("only {} of {} messages were acknowledged", seqs.len(), args.messages)
    });
    checks.ensure(seqs.windows(2).all(|w| w[0] < w[1]), || "two messages were acknowledged with the same seq".into());

    // Query on one member's connection; the others are done.
    if filled_by.is_empty() {
        return Err(BenchError::InvalidArgs("every filling agent failed".into()));
    }
    let mut reader = filled_by.remove(0);
    for client in &filled_by {
        connection_checks(client, &mut checks);
    }
    join_all(filled_by.into_iter().map(Client::close)).await;
    let mut query = Query { client: &mut reader, room_id: &room_id, seqs: &seqs, checks: &mut checks, errors: 0 };
    let newest = query.times(args.queries, |q| q.newest(args.page)).await;
    let deep_before = if seqs.len() > args.page as usize {
        Some(query.times(args.queries, |q| q.deep_before(args.page)).await)
    } else {
        None
    };
    let after_seq = query.times(args.queries, |q| q.after_seq(args.catch_up)).await;
    let query_errors = query.errors;
    connection_checks(&reader, &mut checks);
    reader.close().await;

    Ok(HistoryReport {
        messages: args.messages,
        senders: args.senders,
        message_bytes: args.size,
        fill_s: seconds(fill_time),
        fill_per_s: per_second(seqs.len() as u64, fill_time.as_secs_f64()),
        queries: args.queries,
        page: args.page,
        catch_up: args.catch_up,
        newest: Latency::of(&newest),
        deep_before: deep_before.as_ref().map(Latency::of),
        after_seq: Latency::of(&after_seq),
        errors: errors + query_errors,
        checks,
    })
}

/// Invites and connects `count` agents; the first creates the room, the rest join.
async fn seat(fleet: &mut Fleet, count: usize) -> Result<(Vec<Client>, String), BenchError> {
    let agents = fleet.invite(count).await?;
    let connector = fleet.connector().clone();
    let mut clients = fleet::connect(&connector, &agents, vec![None; count], CONNECT_CONCURRENCY).await?;
    let Some((owner, rest)) = clients.split_first_mut() else {
        return Err(BenchError::InvalidArgs("at least one sender is needed".into()));
    };
    let mut joiners: Vec<&mut Client> = rest.iter_mut().collect();
    let room_id = fleet.room(owner, &mut joiners).await?;
    Ok((clients, room_id))
}

/// Sends `args.messages` messages over the clients, `args.window` in flight on each.
/// Errors become failed checks.
async fn fill(clients: Vec<Client>, room_id: &str, args: &HistoryArgs, checks: &mut Checks) -> Filled {
    let claimed = Arc::new(AtomicU64::new(0));
    let clock = Clock::start();
    let tasks = clients.into_iter().map(|client| {
        let claimed = claimed.clone();
        let (room_id, total, window, size) = (room_id.to_owned(), args.messages, args.window, args.size);
        tokio::spawn(async move { fill_one(client, room_id, total, window, size, claimed, clock).await })
    });
    let mut all = Filled { seqs: Vec::new(), clients: Vec::new(), errors: 0 };
    for joined in join_all(tasks).await {
        match joined {
            Ok(one) => {
                all.seqs.extend(one.seqs);
                all.errors += one.errors.len() as u64;
                for e in one.errors {
                    checks.fail(format!("filling: {e}"));
                }
                all.clients.push(one.client);
            }
            Err(e) => checks.fail(format!("a filling task crashed: {e}")),
        }
    }
    all.seqs.sort_unstable();
    all
}

/// The room's acked seqs (ascending), the connections that sent them, and how many sends failed.
struct Filled {
    seqs: Vec<i64>,
    clients: Vec<Client>,
    errors: u64,
}

/// What one filling connection did.
struct FilledBy {
    client: Client,
    seqs: Vec<i64>,
    errors: Vec<BenchError>,
}

async fn fill_one(
    mut client: Client,
    room_id: String,
    total: u64,
    window: usize,
    size: usize,
    claimed: Arc<AtomicU64>,
    clock: Clock,
) -> FilledBy {
    let mut seqs = Vec::new();
    let mut errors = Vec::new();
    let mut in_flight: VecDeque<PendingCall> = VecDeque::with_capacity(window);
    loop {
        if in_flight.len() < window {
            let id = claimed.fetch_add(1, Ordering::Relaxed);
            if id < total {
                let stamp = Stamp { id, sent_us: clock.micros(Instant::now()) };
                let params =
                    MessageSendParams { room_id: room_id.clone(), content: stamp.content(size), client_msg_id: None };
                match client.start("message.send", &params).await {
                    Ok(call) => in_flight.push_back(call),
                    Err(e) => {
                        errors.push(e);
                        break;
                    }
                }
                continue;
            }
        }
        let Some(call) = in_flight.pop_front() else { break };
        match call.finish::<SendResult>().await {
            Ok(sent) => seqs.push(sent.seq),
            Err(e) => {
                let fatal = e.is_fatal();
                errors.push(e);
                if fatal {
                    break;
                }
            }
        }
    }
    FilledBy { client, seqs, errors }
}

/// Timed `room.history` calls on one connection, each checked against the seqs.
struct Query<'a> {
    client: &'a mut Client,
    room_id: &'a str,
    /// Every acked seq of the room, ascending.
    seqs: &'a [i64],
    checks: &'a mut Checks,
    errors: u64,
}

/// One page to ask for and what it must contain.
struct Page {
    what: String,
    params: RoomHistoryParams,
    expected: Vec<i64>,
    has_more: bool,
}

impl Query<'_> {
    /// Runs `count` queries made by `page`; their latencies (µs).
    async fn times(&mut self, count: usize, page: impl Fn(&Self) -> Page) -> Histogram<u64> {
        let mut latency = stats::histogram();
        for _ in 0..count {
            let page = page(self);
            let started = Instant::now();
            let result = self.client.call::<_, HistoryResult>("room.history", &page.params).await;
            let took = started.elapsed();
            match result {
                Ok(result) => {
                    stats::record(&mut latency, micros(took));
                    self.verify(&page, &result);
                }
                Err(e) => {
                    self.errors += 1;
                    self.checks.fail(format!("{}: {e}", page.what));
                    if e.is_fatal() {
                        break;
                    }
                }
            }
        }
        latency
    }

    fn verify(&mut self, page: &Page, result: &HistoryResult) {
        let got: Vec<i64> = result.messages.iter().map(|m| m.seq).collect();
        if got != page.expected {
            let shown = |s: &[i64]| match (s.first(), s.last()) {
                (Some(a), Some(b)) => format!("{} messages, seq {a}..={b}", s.len()),
                _ => "no messages".to_owned(),
            };
            self.checks.fail(format!("{}: got {}, expected {}", page.what, shown(&got), shown(&page.expected)));
        }
        if result.has_more != page.has_more {
            self.checks.fail(format!("{}: hasMore is {}, expected {}", page.what, result.has_more, page.has_more));
        }
        if let Some(foreign) = result.messages.iter().find(|m| m.room_id != self.room_id) {
            self.checks.fail(format!("{}: message {} of room {} in the page", page.what, foreign.seq, foreign.room_id));
        }
    }

    fn params(&self, limit: u32, before_seq: Option<i64>, after_seq: Option<i64>) -> RoomHistoryParams {
        RoomHistoryParams { room_id: self.room_id.to_owned(), limit: Some(limit), before: None, before_seq, after_seq }
    }

    /// The newest `limit` messages.
    fn newest(&self, limit: u32) -> Page {
        let n = self.seqs.len();
        let from = n.saturating_sub(limit as usize);
        Page {
            what: format!("newest page of {limit}"),
            params: self.params(limit, None, None),
            expected: self.seqs[from..].to_vec(),
            has_more: from > 0,
        }
    }

    /// The `limit` messages before a seq in the oldest tenth of the room (needs more
    /// than `limit` messages).
    fn deep_before(&self, limit: u32) -> Page {
        let limit_n = limit as usize;
        let n = self.seqs.len();
        let deepest = (n / 10).max(limit_n).min(n - 1);
        let at = rand::rng().random_range(limit_n..=deepest);
        Page {
            what: format!("page of {limit} before seq {}", self.seqs[at]),
            params: self.params(limit, Some(self.seqs[at]), None),
            expected: self.seqs[at - limit_n..at].to_vec(),
            has_more: at > limit_n,
        }
    }

    /// The oldest `limit` messages after a random seq.
    fn after_seq(&self, limit: u32) -> Page {
        let n = self.seqs.len();
        let limit_n = limit as usize;
        let at = rand::rng().random_range(0..=n.saturating_sub(limit_n + 1));
        let after = self.seqs.get(at).copied().unwrap_or(0);
        let end = (at + 1 + limit_n).min(n);
        Page {
            what: format!("catch-up of {limit} after seq {after}"),
            params: self.params(limit, None, Some(after)),
            expected: self.seqs.get(at + 1..end).unwrap_or_default().to_vec(),
            has_more: end < n,
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Report for HistoryReport {
    const SCENARIO: &'static str = "history";

    fn table(&self) -> Table {
        let mut table = Table::new(format!(
            "bench history: room of {} messages ({}-byte), {} queries of each kind",
            self.messages, self.message_bytes, self.queries
        ));
        table
            .row("filled", format!("in {} s by {} agents ({} msgs/s)", self.fill_s, self.senders, self.fill_per_s))
            .row(format!("newest {}", self.page), &self.newest);
        match &self.deep_before {
            Some(latency) => table.row(format!("deep beforeSeq {}", self.page), latency),
            None => table.row(format!("deep beforeSeq {}", self.page), "skipped: room too small"),
        };
        table.row(format!("afterSeq catch-up {}", self.catch_up), &self.after_seq).row("errors", self.errors);
        table
    }

    fn checks_mut(&mut self) -> &mut Checks {
        &mut self.checks
    }

    fn checks(&self) -> &Checks {
        &self.checks
    }
}
