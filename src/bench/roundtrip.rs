//! `bench roundtrip`: N agents call `ping` back to back (closed loop). A `ping` crosses
//! everything a request crosses (socket, framing, JSON-RPC parsing, dispatch, the
//! permission check, the response's serialization and write) but touches no storage
//! and delivers nothing, so its rate is the ceiling of any other call on the same
//! machine with the same load generator: `send` costs this much plus a commit and one
//! delivery per other member.

use std::time::{Duration, Instant};

use broodlink_protocol::{PingParams, PingResult};
use clap::Args;
use futures_util::future::join_all;
use hdrhistogram::Histogram;
use serde::Serialize;

use super::client::Client;
use super::fleet;
use super::load::{micros, Errors};
use super::stats::{self, per_second, Checks, Latency, Table};
use super::traffic::connection_checks;
use super::{parse_duration, seconds, with_fleet, BenchError, Report, Target};

/// Connections opened at once while setting up.
const CONNECT_CONCURRENCY: usize = 32;

#[derive(Args, Debug, Clone)]
pub struct RoundtripArgs {
    /// Agents, each on its own connection, each with one call in flight
    #[arg(long, default_value_t = 64)]
    pub agents: usize,
    /// How long to call
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct RoundtripReport {
    pub agents: usize,
    pub duration_s: f64,
    /// Calls answered with a result.
    pub calls: u64,
    /// Answered calls per second, from the first call to the last answer.
    pub calls_per_s: f64,
    pub latency: Latency,
    pub errors: u64,
    pub checks: Checks,
}

/// What one agent's loop saw.
struct Outcome {
    calls: u64,
    /// Round-trip time, µs.
    latency: Histogram<u64>,
    last_answer: Option<Instant>,
    errors: Errors,
}

pub async fn run(target: &Target, args: &RoundtripArgs) -> Result<RoundtripReport, BenchError> {
    if args.agents == 0 {
        return Err(BenchError::InvalidArgs("at least one agent is needed".into()));
    }
    if args.duration.is_zero() {
        return Err(BenchError::InvalidArgs("the duration must be positive".into()));
    }
    with_fleet(target, async |fleet| {
        let agents = fleet.invite(args.agents).await?;
        let sinks = agents.iter().map(|_| None).collect();
        let clients = fleet::connect(fleet.connector(), &agents, sinks, CONNECT_CONCURRENCY).await?;

        let start = Instant::now();
        let end = start + args.duration;
        let loops = clients.into_iter().map(|client| tokio::spawn(call_until(client, end)));
        let mut checks = Checks::new();
        let mut latency = stats::histogram();
        let (mut calls, mut errors, mut last_answer) = (0, 0, start);
        let mut clients = Vec::with_capacity(args.agents);
        for (index, joined) in join_all(loops).await.into_iter().enumerate() {
            let (client, outcome) = match joined {
                Ok(done) => done,
                Err(e) => {
                    checks.fail(format!("agent {index} crashed: {e}"));
                    continue;
                }
            };
            calls += outcome.calls;
            errors += outcome.errors.count;
            stats::merge(&mut latency, &outcome.latency);
            last_answer = last_answer.max(outcome.last_answer.unwrap_or(start));
            for sample in &outcome.errors.samples {
                checks.fail(format!("agent {index}: {sample}"));
            }
            connection_checks(&client, &mut checks);
            clients.push(client);
        }
        checks.ensure(calls > 0, || "no call was answered".into());
        join_all(clients.into_iter().map(Client::close)).await;
        Ok(RoundtripReport {
            agents: args.agents,
            duration_s: seconds(args.duration),
            calls,
            calls_per_s: per_second(calls, last_answer.saturating_duration_since(start).as_secs_f64()),
            latency: Latency::of(&latency),
            errors,
            checks,
        })
    })
    .await
}

/// Calls `ping` back to back until `end`; stops early when the connection is gone.
async fn call_until(mut client: Client, end: Instant) -> (Client, Outcome) {
    let mut outcome = Outcome { calls: 0, latency: stats::histogram(), last_answer: None, errors: Errors::default() };
    while Instant::now() < end {
        let sent = Instant::now();
        match client.call::<_, PingResult>("ping", &PingParams {}).await {
            Ok(_) => {
                let now = Instant::now();
                stats::record(&mut outcome.latency, micros(now.saturating_duration_since(sent)));
                outcome.calls += 1;
                outcome.last_answer = Some(now);
            }
            Err(e) => {
                if !outcome.errors.record(e) {
                    break;
                }
            }
        }
    }
    (client, outcome)
}

impl Report for RoundtripReport {
    const SCENARIO: &'static str = "roundtrip";

    fn table(&self) -> Table {
        let mut table = Table::new(format!(
            "bench roundtrip: {} agents calling `ping` back to back, {} s (no storage, no fan-out)",
            self.agents, self.duration_s
        ));
        table
            .row("answered calls", self.calls)
            .row("throughput", format!("{} calls/s", self.calls_per_s))
            .row("round trip", &self.latency)
            .row("errors", self.errors);
        table
    }

    fn checks_mut(&mut self) -> &mut Checks {
        &mut self.checks
    }

    fn checks(&self) -> &Checks {
        &self.checks
    }
}
