//! Crash safety: the real server, SIGKILLed while agents flood a room, restarted on the
//! same data directory each time. Every acknowledged message must survive exactly once.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use super::flood::{self, Ledger, Sender};
use super::{authed, one_controller_key, server_pid, signal, Instance};

/// Concurrent sending connections, one agent each.
const SENDERS: usize = 8;
/// Kill points per run (`BROODLINK_CRASH_KILLS` overrides it for a longer soak), with
/// delays spread over [`EARLIEST_MS`, `LATEST_MS`].
const KILLS: u64 = 5;
const EARLIEST_MS: u64 = 50;
const LATEST_MS: u64 = 1500;

/// Whether `pid` has exited (a zombie nobody reaped counts as exited).
fn gone(pid: i32) -> bool {
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err() {
        return true;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state follows the command name, which is in parentheses.
    stat.rsplit_once(')').is_some_and(|(_, rest)| matches!(rest.trim_start().chars().next(), Some('Z' | 'X')))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_sigkill_and_restart() {
    let started = Instant::now();
    let seed: u64 = std::env::var("BROODLINK_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    });
    let kills: u64 = std::env::var("BROODLINK_CRASH_KILLS").ok().and_then(|s| s.parse().ok()).unwrap_or(KILLS).max(1);
    println!("crash test seed {seed} (rerun with BROODLINK_CRASH_SEED={seed}), {kills} kill points");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // One delay in each of `kills` equal slices of the range, in random order.
    let slice = (LATEST_MS - EARLIEST_MS) / kills;
    let mut delays: Vec<u64> = (0..kills).map(|i| EARLIEST_MS + i * slice + rng.random_range(0..=slice)).collect();
    for i in (1..delays.len()).rev() {
        delays.swap(i, rng.random_range(0..=i));
    }

    let bl = Instance::new();
    std::fs::create_dir_all(&bl.dir).expect("data dir");
    // Odd kill points hit a server with synchronous = "full", even ones "normal": both
    // promise that an acknowledged message survives a crash of the server process.
    let durability = |run: usize| if run % 2 == 1 { "full" } else { "normal" };
    let configure = |run: usize| {
        let config =
            format!(r#"{{ "synchronous": "{}", "limits": {} }}"#, durability(run), super::flood::UNLIMITED_RATES);
        std::fs::write(bl.file("broodlink.json"), config).expect("write the config");
    };
    configure(1);
    let key = one_controller_key(&bl.serve().ok());
    let url = bl.url();
    let (room_id, keys) = {
        let mut controller = authed(&url, &key).await;
        flood::room_with_agents(&url, &mut controller, SENDERS).await
    };

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    for (run, delay) in delays.iter().enumerate() {
        let run = run + 1;
        let mut senders = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            senders.push(Sender::connect(&url, key, format!("k{run}-a{i}")).await);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> =
            senders.into_iter().map(|s| tokio::spawn(s.flood(room_id.clone(), ledger.clone(), stop.clone()))).collect();

        tokio::time::sleep(Duration::from_millis(*delay)).await;
        let pid = server_pid(&bl);
        signal(pid, nix::sys::signal::Signal::SIGKILL);
        let killed_at = Instant::now();

        let mut ends = Vec::new();
        for task in tasks {
            ends.push(
                tokio::time::timeout(Duration::from_secs(20), task).await.expect("a sender hung").expect("sender"),
            );
        }
        for end in &ends {
            assert_ne!(end.reason, "stopped", "{end:?}");
            assert!(!end.reason.starts_with("error response"), "a send failed before the kill: {end:?}");
        }
        while !gone(pid) && killed_at.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(gone(pid), "the server survived SIGKILL");

        configure(run + 1);
        let restart = Instant::now();
        bl.serve().ok();
        let restart = restart.elapsed();
        let mut controller = authed(&url, &key).await;
        let history = flood::whole_history(&mut controller, &room_id).await;
        drop(controller);

        let ledger = ledger.lock().expect("ledger");
        let found = flood::verify(&history, &ledger);
        let prefix = format!("k{run}-");
        let sent = ends.iter().map(|e| e.sent).sum::<usize>();
        let acked = ends.iter().map(|e| e.acked).sum::<usize>();
        let found_now = found.iter().filter(|c| c.starts_with(&prefix)).count();
        let line = format!(
            "kill point {run}/{kills} (synchronous={}): SIGKILL after {delay} ms: sent {sent}, acked {acked}, found after restart \
             {found_now} ({} of {} unacknowledged in-flight sends were committed); room total {} messages, \
             every acked one present once, seqs strictly increasing; restart took {} ms",
            durability(run),
            found_now - acked,
            sent - acked,
            history.len(),
            restart.as_millis()
        );
        println!("{line}");
        assert!(acked > 0, "nothing was acknowledged before the kill at {delay} ms:\n{ends:#?}");
    }
    let ledger = ledger.lock().expect("ledger");
    println!(
        "crash test: {kills} SIGKILLs on one data directory, {} sends, {} acknowledged, none lost, in {:.1} s (seed {seed})",
        ledger.sent.len(),
        ledger.acked.len(),
        started.elapsed().as_secs_f64()
    );
}
