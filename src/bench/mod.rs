//! `broodlink bench`: the load generator. It runs against any BroodLink URL with the
//! controller key, invites the agents and creates the rooms each scenario needs, and
//! removes them at the end (unless `--keep`). Every scenario reports its figures
//! (latencies from an hdrhistogram) and correctness checks; a failed check makes the
//! command exit 1 (2 when the run could not be made at all).
//!
//! Scenarios: [`send`], [`fanout`], [`connections`], [`history`], and [`roundtrip`], the
//! machine's ceiling for any call; each is a library function (`run`) returning a
//! report, which the smoke test calls too.

pub mod client;
pub mod connections;
pub mod deliveries;
pub mod error;
pub mod fanout;
pub mod fleet;
pub mod history;
pub mod load;
pub mod roundtrip;
pub mod send;
pub mod stamp;
pub mod stats;
pub mod traffic;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde::Serialize;

use crate::instance::Instance;
pub use error::BenchError;
use fleet::Fleet;
use stats::{Checks, Table};

/// `broodlink bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The server's WebSocket URL
    #[arg(long, default_value = "ws://127.0.0.1:18800", global = true)]
    pub url: String,
    /// The controller's API key (the run invites and revokes its agents with it)
    #[arg(long, env = "BROODLINK_CONTROLLER_KEY", hide_env_values = true, global = true)]
    pub controller_key: Option<String>,
    /// Print the results as JSON
    #[arg(long, global = true)]
    pub json: bool,
    /// Leave the invited agents and the rooms in place at the end
    #[arg(long, global = true)]
    pub keep: bool,
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Subcommand, Debug)]
pub enum Scenario {
    /// Agents in one room send as fast as acknowledgements allow (or at --rate): acked msgs/s, ack latency
    Send(send::SendArgs),
    /// A room of M members, S senders at a fixed rate: deliveries/s, latency to the first and last recipient
    Fanout(fanout::FanoutArgs),
    /// Opens C authenticated idle connections: connect+auth rate, server memory per connection
    Connections(connections::ConnectionsArgs),
    /// Fills a room with K messages, then times `room.history` pages
    History(history::HistoryArgs),
    /// Agents call `ping` back to back: the transport's ceiling (no storage, no fan-out)
    Roundtrip(roundtrip::RoundtripArgs),
}

/// Where a run goes and with which key.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub controller_key: String,
    /// Leave the agents and rooms in place.
    pub keep: bool,
}

/// A scenario's results.
pub trait Report: Serialize {
    /// The scenario's name, as on the command line.
    const SCENARIO: &'static str;
    /// The figures for people.
    fn table(&self) -> Table;
    fn checks_mut(&mut self) -> &mut Checks;
    fn checks(&self) -> &Checks;
}

/// Runs `broodlink bench`; the exit code is 0 when every check passed.
pub fn main(args: BenchArgs, instance: &Instance) -> ExitCode {
    let Some(controller_key) = args.controller_key.clone().filter(|k| !k.trim().is_empty()) else {
        return error(BenchError::NoControllerKey);
    };
    let target = Target { url: args.url.clone(), controller_key, keep: args.keep };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return error(BenchError::Runtime(e)),
    };
    let json = args.json;
    runtime.block_on(async move {
        match args.scenario {
            Scenario::Send(a) => emit(send::run(&target, &a).await, json),
            Scenario::Fanout(a) => emit(fanout::run(&target, &a).await, json),
            Scenario::Connections(mut a) => {
                a.server_pid = a.server_pid.or_else(|| instance.running_pid());
                emit(connections::run(&target, &a).await, json)
            }
            Scenario::History(a) => emit(history::run(&target, &a).await, json),
            Scenario::Roundtrip(a) => emit(roundtrip::run(&target, &a).await, json),
        }
    })
}

fn error(e: BenchError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(2)
}

#[derive(Serialize)]
struct Envelope<'a, R> {
    scenario: &'static str,
    #[serde(flatten)]
    report: &'a R,
}

fn emit<R: Report>(result: Result<R, BenchError>, json: bool) -> ExitCode {
    let report = match result {
        Ok(report) => report,
        Err(e) => return error(e),
    };
    if json {
        match serde_json::to_string_pretty(&Envelope { scenario: R::SCENARIO, report: &report }) {
            Ok(text) => println!("{text}"),
            Err(e) => return error(BenchError::Encode { method: "report", source: e }),
        }
    } else {
        print!("{}", report.table());
        print_checks(report.checks());
    }
    if report.checks().passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn print_checks(checks: &Checks) {
    if checks.passed {
        println!("  correctness: PASS");
        return;
    }
    println!("  correctness: FAIL");
    for failure in &checks.failures {
        println!("    - {failure}");
    }
    if checks.more_failures > 0 {
        println!("    … and {} more", checks.more_failures);
    }
}

/// Opens the controller's connection, runs `measure` (until done or Ctrl-C), then
/// cleans up whatever happened; cleanup problems become failed checks.
async fn with_fleet<R: Report>(
    target: &Target,
    measure: impl AsyncFnOnce(&mut Fleet) -> Result<R, BenchError>,
) -> Result<R, BenchError> {
    let mut fleet = Fleet::open(target).await?;
    let outcome = tokio::select! {
        outcome = measure(&mut fleet) => outcome,
        _ = interrupted() => Err(BenchError::Interrupted),
    };
    if let Some(kept) = fleet.kept() {
        eprintln!("{kept}");
    }
    let cleanup = fleet.finish().await;
    match outcome {
        Ok(mut report) => {
            report.checks_mut().absorb(cleanup);
            Ok(report)
        }
        Err(e) => {
            for failure in cleanup.failures {
                eprintln!("warning: {failure}");
            }
            Err(e)
        }
    }
}

/// Resolves on Ctrl-C (never, if the signal cannot be watched).
async fn interrupted() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Parses a duration: `10s`, `500ms`, `2m`, `1.5s`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("`{text}` is not a duration (e.g. 10s, 500ms, 2m)"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        other => return Err(format!("unknown unit `{other}` in `{text}` (use ms, s or m)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{text}`: {e}"))
}

/// Seconds, for reports.
fn seconds(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_or_without_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3h").is_err());
    }
}
