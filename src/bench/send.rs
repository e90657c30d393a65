//! `bench send`: N agents in one room (or spread over `--rooms`) send as fast as
//! acknowledgements allow (closed loop) or at a fixed total rate (open loop, latency
//! from the scheduled send time). Reports acked msgs/s and ack latency, and checks that
//! every other member got every acked message once, in order.

use std::time::Duration;

use clap::Args;
use serde::Serialize;

use super::deliveries::DeliveryTotals;
use super::stats::{per_second, Checks, Latency, Table};
use super::traffic::{self, Pace, Plan};
use super::{parse_duration, seconds, with_fleet, BenchError, Report, Target};

#[derive(Args, Debug, Clone)]
pub struct SendArgs {
    /// Agents, each on its own connection, all sending
    #[arg(long, default_value_t = 64)]
    pub agents: usize,
    /// How long to send
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Fixed total rate in msgs/s (open loop); without it each agent sends when its last message is acked
    #[arg(long)]
    pub rate: Option<f64>,
    /// Spread the agents over this many rooms (fewer recipients per message)
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    /// Message size in bytes
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Give every message a clientMsgId, as the generated clients do (the server's
    /// unique index on them is what makes retries idempotent)
    #[arg(long)]
    pub client_msg_ids: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct SendReport {
    pub agents: usize,
    pub rooms: usize,
    /// `closed` or `open`.
    pub mode: &'static str,
    pub target_rate: Option<f64>,
    pub duration_s: f64,
    pub message_bytes: usize,
    pub client_msg_ids: bool,
    pub acked: u64,
    /// Acked messages per second, from the first send to the last ack.
    pub acked_per_s: f64,
    pub ack_latency: Latency,
    pub deliveries: DeliveryTotals,
    pub deliveries_per_s: f64,
    pub delivery_latency: Latency,
    pub errors: u64,
    pub checks: Checks,
}

pub async fn run(target: &Target, args: &SendArgs) -> Result<SendReport, BenchError> {
    let plan = Plan {
        members: args.agents,
        rooms: args.rooms,
        senders: args.agents,
        pace: args.rate.map_or(Pace::Closed, |rate| Pace::Open { rate }),
        duration: args.duration,
        size: args.size,
        spread: false,
        client_msg_ids: args.client_msg_ids,
    };
    traffic::validate(&plan)?;
    with_fleet(target, async |fleet| {
        let outcome = traffic::run(fleet, &plan).await?;
        let send_s = outcome.send_elapsed.as_secs_f64();
        Ok(SendReport {
            agents: args.agents,
            rooms: args.rooms,
            mode: if args.rate.is_some() { "open" } else { "closed" },
            target_rate: args.rate,
            duration_s: seconds(args.duration),
            message_bytes: args.size,
            client_msg_ids: args.client_msg_ids,
            acked: outcome.acked,
            acked_per_s: per_second(outcome.acked, send_s),
            ack_latency: Latency::of(&outcome.ack_latency),
            deliveries_per_s: per_second(outcome.deliveries.totals.delivered, outcome.delivery_elapsed.as_secs_f64()),
            deliveries: outcome.deliveries.totals,
            delivery_latency: Latency::of(&outcome.delivery_latency),
            errors: outcome.errors,
            checks: outcome.checks,
        })
    })
    .await
}

impl Report for SendReport {
    const SCENARIO: &'static str = "send";

    fn table(&self) -> Table {
        let pace = match self.target_rate {
            Some(rate) => format!("open loop at {rate} msgs/s"),
            None => "closed loop".to_owned(),
        };
        let mut table = Table::new(format!(
            "bench send: {} agents in {} room(s), {pace}, {} s, {}-byte messages{}",
            self.agents,
            self.rooms,
            self.duration_s,
            self.message_bytes,
            if self.client_msg_ids { ", each with a clientMsgId" } else { "" }
        ));
        table
            .row("acked messages", self.acked)
            .row("throughput", format!("{} msgs/s", self.acked_per_s))
            .row("ack latency", &self.ack_latency)
            .row("deliveries", format!("{} of {} expected", self.deliveries.delivered, self.deliveries.expected))
            .row("delivery rate", format!("{} deliveries/s", self.deliveries_per_s))
            .row("send→delivery", &self.delivery_latency)
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
