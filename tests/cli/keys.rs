//! The raw-key test: after a run that invites, rotates and revokes keys with logging at
//! its most verbose, no raw key is in any file of the data directory (database, WAL,
//! log) — only SHA-256 hashes are in the database.

use serde_json::json;

use super::{authed, one_controller_key, Instance};

#[tokio::test]
async fn no_raw_key_reaches_the_database_wal_or_log_even_at_trace_level() {
    let bl = Instance::new();
    let port = bl.port.to_string();
    let mut serve = bl.command(&["serve", "--host", "127.0.0.1", "--port", &port]);
    serve.env("RUST_LOG", "trace");
    let first = super::run(serve).ok();
    let mut keys = vec![one_controller_key(&first)];

    let mut controller = authed(&bl.url(), &keys[0]).await;
    let mut invited = Vec::new();
    for name in ["Alice", "Bob", "Carol"] {
        let result = controller.ok("agent.invite", json!({ "displayName": name })).await;
        let key = result["apiKey"].as_str().expect("apiKey").to_owned();
        let mut agent = authed(&bl.url(), &key).await;
        agent.ok("message.send", json!({ "roomId": agent.lobby_id(), "content": format!("hi from {name}") })).await;
        invited.push(result["agentId"].as_str().expect("agentId").to_owned());
        keys.push(key);
    }
    // A wrong key too: it must not be logged either.
    let wrong = format!("bl_k_{}", "ab".repeat(24));
    let mut stranger = super::harness::Client::connect(&bl.url()).await;
    stranger.err("auth", json!({ "apiKey": wrong }), 4002).await;
    keys.push(wrong);

    controller.ok("agent.revoke", json!({ "agentId": invited[1] })).await;
    let rotated = bl.run(&["controller-key", "rotate"]).ok();
    keys.push(one_controller_key(&rotated));
    let _controller = authed(&bl.url(), keys.last().expect("rotated key")).await;

    let log = bl.log();
    assert!(log.lines().count() > 20, "RUST_LOG=trace should log plenty:\n{log}");
    let check = |when: &str| {
        for entry in std::fs::read_dir(&bl.dir).expect("data dir") {
            let path = entry.expect("entry").path();
            if !path.is_file() {
                continue;
            }
            let bytes = std::fs::read(&path).expect("readable");
            for key in &keys {
                let body = key.rsplit('_').next().expect("key body");
                assert!(
                    !bytes.windows(body.len()).any(|w| w == body.as_bytes()),
                    "{when}: a raw key ({}…) is in {}",
                    &key[..12],
                    path.display()
                );
            }
        }
    };
    check("while running");
    bl.run(&["stop"]).ok();
    check("after stop");
}
