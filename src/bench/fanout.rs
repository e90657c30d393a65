//! `bench fanout`: a room of M members, S of them sending at a fixed total rate.
//! Reports deliveries/s and send→delivery latency to each message's first and last
//! recipient, and checks that every member got every acked message once, in order.

use std::time::Duration;

use clap::Args;
use serde::Serialize;

use super::deliveries::DeliveryTotals;
use super::stats::{per_second, Checks, Latency, Table};
use super::traffic::{self, Pace, Plan};
use super::{parse_duration, seconds, with_fleet, BenchError, Report, Target};

#[derive(Args, Debug, Clone)]
pub struct FanoutArgs {
    /// Members of the room (senders included)
    #[arg(long, default_value_t = 100)]
    pub members: usize,
    /// How many of the members send
    #[arg(long, default_value_t = 4)]
    pub senders: usize,
    /// Total send rate in msgs/s (open loop); deliveries/s is about rate × (members − 1)
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// How long to send
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Message size in bytes
    #[arg(long, default_value_t = 64)]
    pub size: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct FanoutReport {
    pub members: usize,
    pub senders: usize,
    pub target_rate: f64,
    pub duration_s: f64,
    pub message_bytes: usize,
    pub acked: u64,
    pub acked_per_s: f64,
    pub ack_latency: Latency,
    pub deliveries: DeliveryTotals,
    /// Deliveries per second, from the first send to the last delivery.
    pub deliveries_per_s: f64,
    /// Send→delivery latency to each message's first recipient.
    pub first_recipient: Latency,
    /// … and to its last recipient.
    pub last_recipient: Latency,
    /// … over every delivery.
    pub all_recipients: Latency,
    pub errors: u64,
    pub checks: Checks,
}

pub async fn run(target: &Target, args: &FanoutArgs) -> Result<FanoutReport, BenchError> {
    let plan = Plan {
        members: args.members,
        rooms: 1,
        senders: args.senders,
        pace: Pace::Open { rate: args.rate },
        duration: args.duration,
        size: args.size,
        spread: true,
        client_msg_ids: false,
    };
    traffic::validate(&plan)?;
    with_fleet(target, async |fleet| {
        let outcome = traffic::run(fleet, &plan).await?;
        let (first, last) =
            outcome.first_last.as_ref().map_or_else(Default::default, |(f, l)| (Latency::of(f), Latency::of(l)));
        Ok(FanoutReport {
            members: args.members,
            senders: args.senders,
            target_rate: args.rate,
            duration_s: seconds(args.duration),
            message_bytes: args.size,
            acked: outcome.acked,
            acked_per_s: per_second(outcome.acked, outcome.send_elapsed.as_secs_f64()),
            ack_latency: Latency::of(&outcome.ack_latency),
            deliveries_per_s: per_second(outcome.deliveries.totals.delivered, outcome.delivery_elapsed.as_secs_f64()),
            deliveries: outcome.deliveries.totals,
            first_recipient: first,
            last_recipient: last,
            all_recipients: Latency::of(&outcome.delivery_latency),
            errors: outcome.errors,
            checks: outcome.checks,
        })
    })
    .await
}

impl Report for FanoutReport {
    const SCENARIO: &'static str = "fanout";

    fn table(&self) -> Table {
        let mut table = Table::new(format!(
            "bench fanout: room of {} members, {} senders at {} msgs/s, {} s, {}-byte messages",
            self.members, self.senders, self.target_rate, self.duration_s, self.message_bytes
        ));
        table
            .row("acked messages", format!("{} ({} msgs/s)", self.acked, self.acked_per_s))
            .row("ack latency", &self.ack_latency)
            .row("deliveries", format!("{} of {} expected", self.deliveries.delivered, self.deliveries.expected))
            .row("throughput", format!("{} deliveries/s", self.deliveries_per_s))
            .row("to first recipient", &self.first_recipient)
            .row("to last recipient", &self.last_recipient)
            .row("to every recipient", &self.all_recipients)
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
