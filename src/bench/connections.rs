//! `bench connections`: opens C authenticated idle connections. Reports the
//! connect+auth rate and latency and, when the server's pid is known (`--server-pid`,
//! or the pid file of `--data-dir`), its resident memory per connection from
//! `/proc/<pid>/status`. Checks that every connection authenticated and stayed open.

use std::time::{Duration, Instant};

use broodlink_protocol::{LobbyGetMotdParams, MotdResult};
use clap::Args;
use futures_util::{stream, StreamExt};
use serde::Serialize;

use super::client::{Client, Connector};
use super::fleet::Invited;
use super::stats::{self, per_second, Checks, Latency, Table};
use super::{parse_duration, seconds, with_fleet, BenchError, Report, Target};

/// How long closed connections get to be released before the last memory reading.
const RELEASE_WAIT: Duration = Duration::from_millis(500);

#[derive(Args, Debug, Clone)]
pub struct ConnectionsArgs {
    /// Connections to open
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
    /// Agents to spread the connections over [default: one agent per connection]
    #[arg(long)]
    pub agents: Option<usize>,
    /// Connections being opened at the same time
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// The server's process id, to read its memory (VmRSS) [default: from --data-dir's pid file]
    #[arg(long)]
    pub server_pid: Option<i32>,
    /// How long to hold the connections open before reading the server's memory
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub hold: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnectionsReport {
    pub count: usize,
    pub agents: usize,
    pub concurrency: usize,
    pub opened: usize,
    pub failed: usize,
    pub elapsed_s: f64,
    /// Connections opened and authenticated per second.
    pub connects_per_s: f64,
    /// Connect + WebSocket handshake + `auth`, per connection.
    pub connect_latency: Latency,
    pub memory: Option<Memory>,
    pub checks: Checks,
}

/// The server's resident memory (VmRSS), KiB.
#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    pub pid: i32,
    pub before_kib: u64,
    pub connected_kib: u64,
    pub per_connection_kib: f64,
    pub after_close_kib: u64,
}

pub async fn run(target: &Target, args: &ConnectionsArgs) -> Result<ConnectionsReport, BenchError> {
    let agents = args.agents.unwrap_or(args.count);
    if args.count == 0 || agents == 0 || agents > args.count {
        return Err(BenchError::InvalidArgs("need 1 ≤ agents ≤ count connections".into()));
    }
    // Fail before doing anything if the pid is given but unreadable.
    if let Some(pid) = args.server_pid {
        vm_rss_kib(pid)?;
    }
    with_fleet(target, async |fleet| {
        let invited = fleet.invite(agents).await?;
        let connector = Connector::lean(&target.url);
        let mut checks = Checks::new();
        let before = args.server_pid.map(vm_rss_kib).transpose()?;

        let started = Instant::now();
        let (mut clients, latency) = open_all(&connector, &invited, args, &mut checks).await;
        let elapsed = started.elapsed();
        let opened = clients.len();

        ping_all(&mut clients, args.concurrency, &mut checks).await;
        tokio::time::sleep(args.hold).await;
        let connected = args.server_pid.map(vm_rss_kib).transpose()?;
        held_checks(&clients, &mut checks);
        stream::iter(clients.into_iter().map(Client::close)).buffer_unordered(args.concurrency.max(1)).count().await;
        tokio::time::sleep(RELEASE_WAIT).await;
        let after_close = args.server_pid.map(vm_rss_kib).transpose()?;

        let memory = match (args.server_pid, before, connected, after_close) {
            (Some(pid), Some(before), Some(connected), Some(after_close)) => Some(Memory {
                pid,
                before_kib: before,
                connected_kib: connected,
                per_connection_kib: per_connection(before, connected, opened),
                after_close_kib: after_close,
            }),
            _ => None,
        };
        Ok(ConnectionsReport {
            count: args.count,
            agents,
            concurrency: args.concurrency,
            opened,
            failed: args.count - opened,
            elapsed_s: seconds(elapsed),
            connects_per_s: per_second(opened as u64, elapsed.as_secs_f64()),
            connect_latency: Latency::of(&latency),
            memory,
            checks,
        })
    })
    .await
}

/// Opens `args.count` connections (connection `i` as agent `i % agents`),
/// `args.concurrency` at a time; failures become failed checks.
async fn open_all(
    connector: &Connector,
    invited: &[Invited],
    args: &ConnectionsArgs,
    checks: &mut Checks,
) -> (Vec<Client>, hdrhistogram::Histogram<u64>) {
    let mut latency = stats::histogram();
    let mut clients = Vec::with_capacity(args.count);
    let (mut failures, mut first_failure) = (0, None);
    let mut attempts = stream::iter((0..args.count).map(|i| {
        let agent = &invited[i % invited.len()];
        async move {
            let started = Instant::now();
            let result = connector.agent(&agent.api_key, None).await;
            (started.elapsed(), result)
        }
    }))
    .buffer_unordered(args.concurrency.max(1));
    while let Some((took, result)) = attempts.next().await {
        match result {
            Ok((client, _)) => {
                stats::record(&mut latency, u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
                clients.push(client);
            }
            Err(e) => {
                failures += 1;
                first_failure.get_or_insert(e);
            }
        }
    }
    if let Some(first) = first_failure {
        checks.fail(format!("{failures} of {} connect+auth attempts failed, e.g. {first}", args.count));
    }
    (clients, latency)
}

/// A round trip on every connection: each must still answer.
async fn ping_all(clients: &mut [Client], concurrency: usize, checks: &mut Checks) {
    let total = clients.len();
    let pings = clients
        .iter_mut()
        .map(|c| async move { c.call::<_, MotdResult>("lobby.getMotd", &LobbyGetMotdParams {}).await });
    let failures: Vec<BenchError> =
        stream::iter(pings).buffer_unordered(concurrency.max(1)).filter_map(|r| async move { r.err() }).collect().await;
    if let Some(first) = failures.first() {
        checks.fail(format!("{} of {total} open connections stopped answering, e.g. {first}", failures.len()));
    }
}

/// What the server did to the connections while they were held, counted over all of them.
fn held_checks(clients: &[Client], checks: &mut Checks) {
    let total = clients.len();
    let closed: Vec<String> = clients.iter().filter_map(Client::closed).collect();
    if let Some(first) = closed.first() {
        checks.fail(format!("the server closed {} of {total} connections ({first})", closed.len()));
    }
    let disconnected: Vec<String> = clients.iter().filter_map(Client::disconnected).collect();
    if let Some(first) = disconnected.first() {
        checks
            .fail(format!("the server sent `disconnected` to {} of {total} connections ({first})", disconnected.len()));
    }
    let (anomalies, samples) =
        clients.iter().map(Client::anomalies).fold((0, Vec::new()), |(n, mut all), (count, s)| {
            all.extend(s);
            (n + count, all)
        });
    if anomalies > 0 {
        checks.fail(format!("{anomalies} frames did not make sense, e.g. {:?}", &samples[..samples.len().min(3)]));
    }
}

fn per_connection(before: u64, connected: u64, count: usize) -> f64 {
    if count == 0 {
        return 0.0;
    }
    let grown = connected.saturating_sub(before) as f64;
    (grown / count as f64 * 100.0).round() / 100.0
}

/// The resident set size of process `pid`, in KiB, from `/proc/<pid>/status`.
pub fn vm_rss_kib(pid: i32) -> Result<u64, BenchError> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|source| BenchError::Proc { path: path.clone(), source })?;
    parse_vm_rss(&status).ok_or_else(|| BenchError::Proc {
        path,
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "no VmRSS line"),
    })
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line["VmRSS:".len()..].trim().trim_end_matches("kB").trim().parse().ok()
}

impl Report for ConnectionsReport {
    const SCENARIO: &'static str = "connections";

    fn table(&self) -> Table {
        let mut table = Table::new(format!(
            "bench connections: {} connections as {} agents, {} at a time",
            self.count, self.agents, self.concurrency
        ));
        table
            .row("opened", format!("{} ({} failed) in {} s", self.opened, self.failed, self.elapsed_s))
            .row("connect+auth rate", format!("{} connections/s", self.connects_per_s))
            .row("connect+auth latency", &self.connect_latency);
        match &self.memory {
            Some(m) => table
                .row("server pid", m.pid)
                .row("server RSS before", format!("{} KiB", m.before_kib))
                .row("server RSS connected", format!("{} KiB", m.connected_kib))
                .row("RSS per connection", format!("{} KiB", m.per_connection_kib))
                .row("server RSS after close", format!("{} KiB", m.after_close_kib)),
            None => table.row("server memory", "not measured (pass --server-pid or --data-dir)"),
        };
        table
    }

    fn checks_mut(&mut self) -> &mut Checks {
        &mut self.checks
    }

    fn checks(&self) -> &Checks {
        &self.checks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_from_the_status_file() {
        let status = "Name:\tbroodlink\nVmPeak:\t  200 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(12345));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn memory_per_connection_is_the_growth_divided() {
        assert_eq!(per_connection(1000, 3000, 400), 5.0);
        assert_eq!(per_connection(3000, 1000, 400), 0.0);
        assert_eq!(per_connection(0, 10, 0), 0.0);
    }

    #[test]
    fn the_own_process_has_a_resident_size() {
        let pid = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
        assert!(vm_rss_kib(pid).is_ok_and(|kib| kib > 0));
    }
}
