//! Message traffic in rooms, shared by `send` and `fanout`: invite and connect the
//! members, seat them in rooms, let the senders loose, then wait for every delivery
//! and check each recipient's stream against what was acknowledged.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use broodlink_protocol::{LobbyGetMotdParams, MotdResult};
use futures_util::future::join_all;
use hdrhistogram::Histogram;

use super::client::{Client, EventSink};
use super::deliveries::{self, Acked, DeliveryCheck, Recipient, Spread};
use super::error::BenchError;
use super::fleet::{self, Fleet};
use super::load::{self, Schedule, Sender};
use super::stamp::Clock;
use super::stats::{self, Checks};

/// Connections opened at once while setting up.
const CONNECT_CONCURRENCY: usize = 32;
/// How long deliveries may trail the last acknowledgement.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Set-up time between the last join and the first scheduled message.
const WARM_UP: Duration = Duration::from_millis(100);

/// How fast the senders go.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Each sender sends when its previous message is acknowledged.
    Closed,
    /// This many messages per second in total, on schedule.
    Open { rate: f64 },
}

/// One traffic run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Members, spread round-robin over `rooms` rooms.
    pub members: usize,
    pub rooms: usize,
    /// The first `senders` members send; everyone receives.
    pub senders: usize,
    pub pace: Pace,
    pub duration: Duration,
    pub size: usize,
    /// Track latency to each message's first and last recipient (open pace only).
    pub spread: bool,
    /// Give every message a `clientMsgId`, as the generated clients do.
    pub client_msg_ids: bool,
}

/// What a traffic run measured.
pub struct Outcome {
    pub acked: u64,
    /// Ack latency, µs.
    pub ack_latency: Histogram<u64>,
    /// From the first scheduled send to the last acknowledgement.
    pub send_elapsed: Duration,
    pub deliveries: DeliveryCheck,
    /// Send→delivery latency over every delivery, µs.
    pub delivery_latency: Histogram<u64>,
    /// From the first scheduled send to the last delivery.
    pub delivery_elapsed: Duration,
    /// Latency to each message's first and last recipient, µs (with `spread`).
    pub first_last: Option<(Histogram<u64>, Histogram<u64>)>,
    pub errors: u64,
    pub checks: Checks,
}

/// The members: one connection each, and what each received.
struct Crew {
    clients: Vec<Client>,
    recipients: Vec<Arc<Recipient>>,
    room_of: Vec<usize>,
    rooms: Vec<String>,
}

/// Runs `plan` (check it first with [`validate`], before creating anything).
pub async fn run(fleet: &mut Fleet, plan: &Plan) -> Result<Outcome, BenchError> {
    validate(plan)?;
    let clock = Clock::start();
    let spread = match plan.pace {
        Pace::Open { rate } if plan.spread => {
            let total = Schedule::total_for(rate, plan.duration);
            let capacity = usize::try_from(total).map_err(|_| BenchError::InvalidArgs("too many messages".into()))?;
            Some(Arc::new(Spread::new(capacity)))
        }
        _ => None,
    };
    let mut crew = assemble(fleet, plan, clock, spread.clone()).await?;

    let start = Instant::now() + WARM_UP;
    let end = start + plan.duration;
    let ids = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::with_capacity(plan.senders);
    for (index, client) in crew.clients.drain(..plan.senders).enumerate() {
        let sender = Sender {
            member: index,
            room_id: crew.rooms[crew.room_of[index]].clone(),
            size: plan.size,
            clock,
            client_msg_ids: plan.client_msg_ids,
        };
        let ids = ids.clone();
        let pace = plan.pace;
        let total_senders = plan.senders as u64;
        senders.push(tokio::spawn(async move {
            let mut client = client;
            tokio::time::sleep_until(start.into()).await;
            let outcome = match pace {
                Pace::Closed => load::closed_loop(&mut client, &sender, end, &ids).await,
                Pace::Open { rate } => {
                    let total = Schedule::total_for(rate, end - start);
                    let schedule = Schedule { start, rate, total, senders: total_senders };
                    load::open_loop(&mut client, &sender, schedule, index as u64).await
                }
            };
            (client, outcome)
        }));
    }

    let mut checks = Checks::new();
    let mut acked: Vec<Vec<Acked>> = vec![Vec::new(); crew.rooms.len()];
    let mut ack_latency = stats::histogram();
    let mut last_ack = start;
    let mut errors = 0;
    let mut returned = Vec::with_capacity(plan.senders);
    for (index, joined) in join_all(senders).await.into_iter().enumerate() {
        let (client, outcome) = match joined {
            Ok(done) => done,
            Err(e) => {
                checks.fail(format!("sender {index} crashed: {e}"));
                continue;
            }
        };
        returned.push(client);
        check_sender_order(index, &outcome.acked, &mut checks);
        stats::merge(&mut ack_latency, &outcome.latency);
        last_ack = last_ack.max(outcome.last_ack.unwrap_or(start));
        errors += outcome.errors.count;
        for sample in &outcome.errors.samples {
            checks.fail(format!("sender {index}: {sample}"));
        }
        acked[crew.room_of[index]].extend(outcome.acked);
    }
    // Senders first again, so client `i` is member `i`'s (unless a sender crashed, which already failed).
    returned.append(&mut crew.clients);
    crew.clients = returned;
    for room in &mut acked {
        room.sort_unstable_by_key(|a| a.seq);
        check_unique(room, &mut checks);
    }

    sync(&mut crew.clients, &mut checks).await;
    let expected = crew
        .recipients
        .iter()
        .map(|r| acked[crew.room_of[r.member()]].iter().filter(|a| a.sender != r.member()).count() as u64)
        .sum();
    deliveries::settle(&crew.recipients, expected, SETTLE_TIMEOUT).await;
    let check = deliveries::verify_all(&crew.recipients, |r| &acked[crew.room_of[r.member()]]);
    checks.absorb(check.checks.clone());
    for client in &crew.clients {
        connection_checks(client, &mut checks);
    }

    let mut delivery_latency = stats::histogram();
    let mut last_delivery = start;
    for recipient in &crew.recipients {
        let (latency, last) = recipient.latency();
        stats::merge(&mut delivery_latency, &latency);
        last_delivery = last_delivery.max(last.unwrap_or(start));
    }
    let first_last = spread.map(|s| s.histograms(acked.iter().flatten().map(|a| a.id)));
    join_all(crew.clients.into_iter().map(Client::close)).await;

    Ok(Outcome {
        acked: acked.iter().map(|room| room.len() as u64).sum(),
        ack_latency,
        send_elapsed: last_ack.saturating_duration_since(start),
        deliveries: check,
        delivery_latency,
        delivery_elapsed: last_delivery.saturating_duration_since(start),
        first_last,
        errors,
        checks,
    })
}

/// Rejects plans that cannot produce a meaningful run.
pub fn validate(plan: &Plan) -> Result<(), BenchError> {
    let invalid = |what: &str| Err(BenchError::InvalidArgs(what.to_owned()));
    if plan.members < 2 {
        return invalid("a room needs at least 2 members for anything to be delivered");
    }
    if plan.rooms == 0 || plan.members < 2 * plan.rooms {
        return invalid("every room needs at least 2 members (agents ≥ 2 × rooms)");
    }
    if plan.senders == 0 || plan.senders > plan.members {
        return invalid("senders must be between 1 and the number of members");
    }
    if plan.duration.is_zero() {
        return invalid("the duration must be positive");
    }
    if let Pace::Open { rate } = plan.pace {
        if !(rate.is_finite() && rate > 0.0) {
            return invalid("the rate must be a positive number of messages per second");
        }
    }
    Ok(())
}

/// Invites and connects the members and seats member `i` in room `i % rooms`, whose
/// first member creates it.
async fn assemble(
    fleet: &mut Fleet,
    plan: &Plan,
    clock: Clock,
    spread: Option<Arc<Spread>>,
) -> Result<Crew, BenchError> {
    let agents = fleet.invite(plan.members).await?;
    let recipients: Vec<Arc<Recipient>> = agents
        .iter()
        .enumerate()
        .map(|(i, agent)| Arc::new(Recipient::new(i, &agent.agent_id, clock, spread.clone())))
        .collect();
    let sinks = recipients.iter().map(|r| Some(r.clone() as Arc<dyn EventSink>)).collect();
    let connector = fleet.connector().clone();
    let mut clients = fleet::connect(&connector, &agents, sinks, CONNECT_CONCURRENCY).await?;
    let room_of: Vec<usize> = (0..plan.members).map(|i| i % plan.rooms).collect();

    let mut rooms = Vec::with_capacity(plan.rooms);
    for room in 0..plan.rooms {
        let mut seated = clients.iter_mut().enumerate().filter(|(i, _)| room_of[*i] == room).map(|(_, c)| c);
        let Some(owner) = seated.next() else { continue };
        let mut joiners: Vec<&mut Client> = seated.collect();
        rooms.push(fleet.room(owner, &mut joiners).await?);
    }
    for recipient in &recipients {
        recipient.watch(&rooms[room_of[recipient.member()]]);
    }
    Ok(Crew { clients, recipients, room_of, rooms })
}

/// One connection's acknowledgements, in the order it sent, must have increasing seqs.
fn check_sender_order(index: usize, acked: &[Acked], checks: &mut Checks) {
    let mut by_send = acked.to_vec();
    by_send.sort_unstable_by_key(|a| a.id);
    if let Some(pair) = by_send.windows(2).find(|w| w[0].seq >= w[1].seq) {
        checks.fail(format!(
            "sender {index}: message {} was acknowledged with seq {} after message {} got seq {}",
            pair[1].id, pair[1].seq, pair[0].id, pair[0].seq
        ));
    }
}

/// No two acknowledgements may carry the same seq (`room` sorted by seq).
fn check_unique(room: &[Acked], checks: &mut Checks) {
    let duplicates = room.windows(2).filter(|w| w[0].seq == w[1].seq).count();
    checks.ensure(duplicates == 0, || format!("{duplicates} seqs were acknowledged to two different messages"));
}

/// A round trip on every connection: the server queues an event before it answers the
/// call that caused it, so after this every delivery of an acknowledged message has
/// been sent.
async fn sync(clients: &mut [Client], checks: &mut Checks) {
    let calls = clients
        .iter_mut()
        .map(|c| async move { c.call::<_, MotdResult>("lobby.getMotd", &LobbyGetMotdParams {}).await });
    for (i, result) in join_all(calls).await.into_iter().enumerate() {
        if let Err(e) = result {
            checks.fail(format!("member {i}: sync after the run failed: {e}"));
        }
    }
}

/// The server must not have closed or disconnected a member, nor sent nonsense.
pub fn connection_checks(client: &Client, checks: &mut Checks) {
    if let Some(reason) = client.disconnected() {
        checks.fail(format!("the server sent `disconnected` ({reason})"));
    }
    if let Some(reason) = client.closed() {
        checks.fail(format!("the server closed a connection: {reason}"));
    }
    let (count, samples) = client.anomalies();
    if count > 0 {
        checks.fail(format!("{count} frames did not make sense, e.g. {samples:?}"));
    }
}
