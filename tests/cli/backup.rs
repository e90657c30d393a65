//! `broodlink backup FILE` while agents send, and bringing the backup back: by hand
//! (the README's procedure) into a new data directory, and with `broodlink restore`.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::{ConnectOptions, Connection};

use super::flood::{self, Ledger, Sender};
use super::{authed, controller_keys, mode, one_controller_key, run, Instance, Run};

/// `PRAGMA integrity_check` of a database file, opened read-only.
async fn integrity(path: &Path) -> String {
    let mut connection = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{} does not open as SQLite: {e}", path.display()));
    let check: String = sqlx::query_scalar("PRAGMA integrity_check").fetch_one(&mut connection).await.expect("check");
    connection.close().await.expect("close");
    check
}

/// The number after `messages:` in `backup`'s or `restore`'s output.
#[track_caller]
fn messages_line(out: &Run) -> usize {
    out.stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("messages:").and_then(|n| n.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no `messages: N` line in:\n{out}"))
}

fn seqs_and_contents(history: &[Value]) -> Vec<(i64, String)> {
    history.iter().map(|m| (m["seq"].as_i64().unwrap_or(-1), m["content"].as_str().unwrap_or("").to_owned())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_while_agents_send_holds_every_message_acknowledged_before_it() {
    let bl = Instance::new();
    std::fs::create_dir_all(&bl.dir).expect("data dir");
    let config = format!(r#"{{ "limits": {} }}"#, flood::UNLIMITED_RATES);
    std::fs::write(bl.file("broodlink.json"), config).expect("write the config");
    let key = one_controller_key(&bl.serve().ok());
    let url = bl.url();
    let (room_id, keys) = {
        let mut controller = authed(&url, &key).await;
        flood::room_with_agents(&url, &mut controller, 4).await
    };
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let sender = Sender::connect(&url, key, format!("b-a{i}")).await;
        tasks.push(tokio::spawn(sender.flood(room_id.clone(), ledger.clone(), stop.clone())));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while ledger.lock().expect("ledger").acked.len() < 300 {
        assert!(Instant::now() < deadline, "the senders are not getting answers");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The backup, while the senders keep going.
    let folder = bl.tmp.path().join("backups");
    std::fs::create_dir(&folder).expect("backups folder");
    let file = folder.join("broodlink-backup.db");
    let acked_before = ledger.lock().expect("ledger").acked.clone();
    let backup = {
        let command = bl.command(&["backup", file.to_str().expect("utf-8")]);
        tokio::task::spawn_blocking(move || run(command)).await.expect("backup task")
    };
    let acked_after: HashSet<String> = ledger.lock().expect("ledger").acked.keys().cloned().collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let end = tokio::time::timeout(Duration::from_secs(20), task).await.expect("a sender hung").expect("sender");
        assert_eq!(end.reason, "stopped", "{end:?}");
    }
    let backup = backup.ok();
    let ledger = Arc::try_unwrap(ledger).expect("senders are done").into_inner().expect("ledger");
    println!(
        "backup: {} acknowledged before it started, {} while it ran ({:?}), {} in all",
        acked_before.len(),
        acked_after.len() - acked_before.len(),
        backup.elapsed,
        ledger.acked.len()
    );

    assert!(backup.stdout.contains(&file.display().to_string()), "{backup}");
    assert_eq!(mode(&file), 0o600, "the backup holds keys' hashes: it must be 0600");
    assert_eq!(integrity(&file).await, "ok");
    let in_backup = messages_line(&backup);
    let leftovers: Vec<_> =
        std::fs::read_dir(&folder).expect("folder").filter_map(Result::ok).map(|e| e.file_name()).collect();
    assert_eq!(leftovers.len(), 1, "backup left temporary files: {leftovers:?}");

    // Restore by hand into a new data directory: the backup becomes its broodlink.db.
    let copy = Instance::new();
    std::fs::create_dir_all(&copy.dir).expect("data dir");
    std::fs::copy(&file, copy.file("broodlink.db")).expect("copy the backup in");
    let serve = copy.serve().ok();
    assert!(controller_keys(&serve.all()).is_empty(), "the controller comes with the backup:\n{serve}");
    let mut controller = authed(&copy.url(), &key).await;
    let history = flood::whole_history(&mut controller, &room_id).await;
    drop(controller);
    // Every message acknowledged before the backup started is in it, exactly once...
    let snapshot = Ledger { sent: ledger.sent.clone(), acked: acked_before.clone(), errors: ledger.errors.clone() };
    let found = flood::verify(&history, &snapshot);
    assert!(found.len() >= acked_before.len());
    assert_eq!(history.len(), in_backup, "`backup` reported {in_backup} messages; the room has no others");
    // ...and none acknowledged after it returned (it is one snapshot, taken while it ran).
    let late: Vec<&String> = ledger.acked.keys().filter(|c| !acked_after.contains(*c) && found.contains(*c)).collect();
    assert!(late.is_empty(), "messages acknowledged after the backup finished are in it: {late:?}");

    // `restore` refuses while the server runs, then replaces the database once stopped.
    let file_arg = file.to_str().expect("utf-8");
    let refused = bl.run(&["restore", file_arg]).failed();
    assert!(refused.stderr.contains("broodlink stop"), "{refused}");
    bl.run(&["stop"]).ok();
    let restore = bl.run(&["restore", file_arg]).ok();
    assert_eq!(messages_line(&restore), in_backup, "{restore}");
    let kept: Vec<String> = std::fs::read_dir(&bl.dir)
        .expect("data dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("broodlink.db.before-restore-"))
        .collect();
    assert!(!kept.is_empty() && restore.stdout.contains(&kept[0]), "the old database is kept aside:\n{restore}");
    assert!(!bl.file("broodlink.db-wal").exists() && !bl.file("broodlink.db-shm").exists(), "stale WAL files left");
    assert_eq!(mode(&bl.file("broodlink.db")), 0o600);
    bl.serve().ok();
    let mut controller = authed(&url, &key).await;
    let restored = flood::whole_history(&mut controller, &room_id).await;
    assert_eq!(seqs_and_contents(&restored), seqs_and_contents(&history), "restore gave another history");
}

#[tokio::test]
async fn backup_refuses_to_overwrite_unless_forced_and_writes_0600() {
    let bl = Instance::new();
    bl.run(&["install", "server"]).ok();
    // It works with the server stopped too.
    let file = bl.tmp.path().join("backup.db");
    let file_arg = file.to_str().expect("utf-8");
    bl.run(&["backup", file_arg]).ok();
    assert_eq!(mode(&file), 0o600);

    // An existing file is left alone...
    std::fs::write(&file, "precious").expect("write");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let refused = bl.run(&["backup", file_arg]).failed();
    assert!(refused.stderr.contains("already exists") && refused.stderr.contains("--force"), "{refused}");
    assert_eq!(std::fs::read_to_string(&file).expect("read"), "precious");
    // ...unless --force: then it is replaced by a private, valid backup.
    let forced = bl.run(&["backup", "--force", file_arg]).ok();
    assert_eq!(messages_line(&forced), 0);
    assert_eq!(mode(&file), 0o600);
    assert_eq!(integrity(&file).await, "ok");

    // Never over the live database.
    let db = bl.file("broodlink.db");
    let out = bl.run(&["backup", "--force", db.to_str().expect("utf-8")]).failed();
    assert!(out.stderr.contains("live database"), "{out}");
    bl.serve().ok();
}

#[test]
fn backup_and_restore_say_what_is_wrong_and_how_to_fix_it() {
    let bl = Instance::new();
    let file = bl.tmp.path().join("backup.db");
    let file_arg = file.to_str().expect("utf-8");

    // Nothing set up yet.
    let out = bl.run(&["backup", file_arg]).failed();
    assert!(out.stderr.contains("broodlink serve") && out.stderr.contains("install server"), "{out}");
    assert!(!file.exists() && !bl.dir.exists(), "a failed backup created files");

    bl.run(&["install", "server"]).ok();
    // FILE's folder is missing.
    let nested = bl.tmp.path().join("no/such/folder/backup.db");
    let out = bl.run(&["backup", nested.to_str().expect("utf-8")]).failed();
    assert!(out.stderr.contains("no/such/folder") && out.stderr.contains("does not exist"), "{out}");
    // FILE is a folder.
    let out = bl.run(&["backup", bl.tmp.path().to_str().expect("utf-8")]).failed();
    assert!(out.stderr.contains("is a folder"), "{out}");

    // restore: no such file; a file that is not a backup.
    let out = bl.run(&["restore", file_arg]).failed();
    assert!(out.stderr.contains("no backup file"), "{out}");
    let config = bl.file("broodlink.json");
    let out = bl.run(&["restore", config.to_str().expect("utf-8")]).failed();
    assert!(out.stderr.contains("not a usable backup"), "{out}");

    // An in-memory database cannot be backed up or restored.
    let memory = Instance::new();
    std::fs::create_dir_all(&memory.dir).expect("data dir");
    std::fs::write(memory.file("broodlink.json"), r#"{ "database": ":memory:" }"#).expect("config");
    let out = memory.run(&["backup", file_arg]).failed();
    assert!(out.stderr.contains(":memory:") && out.stderr.contains("impossible"), "{out}");
    bl.run(&["backup", file_arg]).ok();
    let out = memory.run(&["restore", file_arg]).failed();
    assert!(out.stderr.contains(":memory:") && out.stderr.contains("impossible"), "{out}");
}
