use serde_json::json;

use crate::harness::*;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

/// A new connection authenticated with `key`.
async fn connect(server: &TestServer, key: &str) -> Client {
    let mut client = Client::connect(&server.url()).await;
    client.auth(key).await;
    client
}

/// `auth` with `key` must fail with `code`.
async fn auth_fails(server: &TestServer, key: &str, code: i64) {
    let mut client = Client::connect(&server.url()).await;
    client.err("auth", json!({ "apiKey": key }), code).await;
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Every regular file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read data dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else if path.is_file() {
            // Regular files only: the admin socket holds no data.
            out.push(path);
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn room_named<'a>(rooms: &'a Value, name: &str) -> Option<&'a Value> {
    rooms["rooms"].as_array().expect("rooms").iter().find(|r| r["name"] == name)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

#[tokio::test]
async fn controller_key_and_agents_survive_a_restart() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let ctrl_id = ctrl.agent_id();
    let alice = server.participant(&mut ctrl, "Alice").await;
    let bob = server.participant(&mut ctrl, "Bob").await;
    let before = ctrl.ok("agent.list", json!({})).await;
    drop((ctrl, alice.client, bob.client));

    let server = server.restart().await;

    let mut ctrl = connect(&server, &server.controller_key).await;
    assert_eq!(ctrl.agent_id(), ctrl_id);
    assert_eq!(ctrl.auth_result["role"], "controller");
    let mut a = connect(&server, &alice.key).await;
    assert_eq!(a.agent_id(), alice.id);
    assert_eq!(a.auth_result["displayName"], "Alice");
    assert_eq!(a.auth_result["role"], "participant");
    let b = connect(&server, &bob.key).await;
    assert_eq!(b.agent_id(), bob.id);
    assert_eq!(b.auth_result["displayName"], "Bob");

    let after = ctrl.ok("agent.list", json!({})).await;
    let summary = |list: &Value| {
        let mut agents: Vec<Value> = list["agents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| json!([a["agentId"], a["displayName"], a["role"], a["banned"]]))
            .collect();
        agents.sort_by_key(|a| a.to_string());
        agents
    };
    assert_eq!(summary(&after), summary(&before));
    assert_eq!(after["agents"].as_array().unwrap().len(), 3, "{after}");
    let controllers = after["agents"].as_array().unwrap().iter().filter(|a| a["role"] == "controller").count();
    assert_eq!(controllers, 1, "exactly one controller after a restart: {after}");
    // The lobby is the same room.
    assert_eq!(a.lobby_id(), ctrl.lobby_id());
    a.ok("room.list", json!({})).await;
}

#[tokio::test]
async fn rooms_memberships_and_invitations_survive_a_restart() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let bob = server.participant(&mut ctrl, "Bob").await;
    let mut carol = server.participant(&mut ctrl, "Carol").await;

    let public =
        alice.client.ok("room.create", json!({ "name": "Pub", "description": "open to all" })).await["room"].clone();
    let private =
        alice.client.ok("room.create", json!({ "name": "Priv", "visibility": "private" })).await["room"].clone();
    let pub_id = public["roomId"].as_str().unwrap().to_owned();
    let priv_id = private["roomId"].as_str().unwrap().to_owned();
    carol.client.ok("room.join", json!({ "roomId": pub_id })).await;
    // Bob is invited to the private room but does not join before the restart.
    alice.client.ok("room.invite", json!({ "roomId": priv_id, "agentId": bob.id })).await;

    let alice_rooms_before = alice.client.ok("room.list", json!({})).await;
    let pub_info_before = alice.client.ok("room.info", json!({ "roomId": pub_id })).await;
    let priv_info_before = alice.client.ok("room.info", json!({ "roomId": priv_id })).await;
    drop((ctrl, alice.client, bob.client, carol.client));

    let server = server.restart().await;
    let mut alice_c = connect(&server, &alice.key).await;
    let mut bob_c = connect(&server, &bob.key).await;
    let mut carol_c = connect(&server, &carol.key).await;

    // The owner sees both rooms exactly as before (ids, names, owner, visibility,
    // description, member counts, createdAt).
    let alice_rooms = alice_c.ok("room.list", json!({})).await;
    assert_eq!(alice_rooms, alice_rooms_before);
    let pub_room = room_named(&alice_rooms, "Pub").expect("Pub survives");
    assert_eq!(pub_room["roomId"], json!(pub_id));
    assert_eq!(pub_room["description"], "open to all");
    assert_eq!(pub_room["visibility"], "public");
    assert_eq!(pub_room["ownerId"], json!(alice.id));
    assert_eq!(pub_room["ownerName"], "Alice");
    assert_eq!(pub_room["memberCount"], 2);
    assert_eq!(pub_room["isMember"], true);
    let priv_room = room_named(&alice_rooms, "Priv").expect("Priv survives");
    assert_eq!(priv_room["visibility"], "private");
    assert_eq!(priv_room["memberCount"], 1);

    // Memberships: same member lists; members can send without rejoining.
    let strip_online = |info: &Value| {
        let mut info = info.clone();
        for m in info["members"].as_array_mut().unwrap() {
            m.as_object_mut().unwrap().remove("online");
        }
        info
    };
    let pub_info = alice_c.ok("room.info", json!({ "roomId": pub_id })).await;
    assert_eq!(strip_online(&pub_info), strip_online(&pub_info_before));
    let priv_info = alice_c.ok("room.info", json!({ "roomId": priv_id })).await;
    assert_eq!(strip_online(&priv_info), strip_online(&priv_info_before));
    carol_c.ok("message.send", json!({ "roomId": pub_id, "content": "still here" })).await;
    carol_c.err("room.join", json!({ "roomId": pub_id }), 4012).await;
    alice_c.err("room.join", json!({ "roomId": priv_id }), 4012).await;

    // The invitation survives: Bob sees the private room as invited and can join it.
    let bob_rooms = bob_c.ok("room.list", json!({})).await;
    let seen = room_named(&bob_rooms, "Priv").expect("an invitee sees the private room");
    assert_eq!(seen["isInvited"], true);
    assert_eq!(seen["isMember"], false);
    let joined = bob_c.ok("room.join", json!({ "roomId": priv_id })).await;
    assert_eq!(joined["room"]["roomId"], json!(priv_id));
    assert_eq!(joined["room"]["isMember"], true);
    assert_eq!(joined["room"]["memberCount"], 2);

    // Privacy survives too: Carol (not invited) still does not see it.
    let carol_rooms = carol_c.ok("room.list", json!({})).await;
    assert!(room_named(&carol_rooms, "Priv").is_none(), "{carol_rooms}");
    assert!(room_named(&carol_rooms, "Pub").is_some(), "{carol_rooms}");
}

#[tokio::test]
async fn history_survives_a_restart_and_new_messages_get_larger_seq() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let lobby = ctrl.lobby_id();
    let room =
        alice.client.ok("room.create", json!({ "name": "Talk" })).await["room"]["roomId"].as_str().unwrap().to_owned();
    bob.client.ok("room.join", json!({ "roomId": room })).await;

    let mut sent = Vec::new();
    for (i, text) in ["hello", "ünïcödé ✓ 🐝", "line\nbreak \"quoted\""].iter().enumerate() {
        let client = if i % 2 == 0 { &mut alice.client } else { &mut bob.client };
        sent.push(client.ok("message.send", json!({ "roomId": room, "content": text })).await);
    }
    ctrl.ok("message.send", json!({ "roomId": lobby, "content": "lobby note" })).await;
    let dm = alice.client.ok("message.dm", json!({ "toAgentId": bob.id, "content": "psst" })).await;
    let max_seq = dm["seq"].as_i64().unwrap();

    let room_before = alice.client.ok("room.history", json!({ "roomId": room })).await;
    let lobby_before_bob = bob.client.ok("room.history", json!({ "roomId": lobby })).await;
    let lobby_before_ctrl = ctrl.ok("room.history", json!({ "roomId": lobby })).await;
    drop((ctrl, alice.client, bob.client));

    let server = server.restart().await;
    let mut ctrl = connect(&server, &server.controller_key).await;
    let mut alice_c = connect(&server, &alice.key).await;
    let mut bob_c = connect(&server, &bob.key).await;

    let room_after = alice_c.ok("room.history", json!({ "roomId": room })).await;
    assert_eq!(room_after, room_before);
    let messages = room_after["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3);
    for (message, result) in messages.iter().zip(&sent) {
        assert_eq!(message["messageId"], result["messageId"]);
        assert_eq!(message["seq"], result["seq"]);
        assert_eq!(message["timestamp"], result["timestamp"]);
    }
    assert_eq!(messages[1]["content"], "ünïcödé ✓ 🐝");
    assert_eq!(messages[1]["senderName"], "Bob");
    assert_eq!(messages[2]["content"], "line\nbreak \"quoted\"");
    assert_eq!(bob_c.ok("room.history", json!({ "roomId": lobby })).await, lobby_before_bob);
    assert_eq!(ctrl.ok("room.history", json!({ "roomId": lobby })).await, lobby_before_ctrl);
    let dm_seen = lobby_before_bob["messages"].as_array().unwrap().iter().find(|m| m["content"] == "psst").cloned();
    assert_eq!(dm_seen.expect("Bob sees the DM in the lobby")["toAgentId"], json!(bob.id));

    // New messages continue the sequence.
    let next = bob_c.ok("message.send", json!({ "roomId": room, "content": "after restart" })).await;
    assert!(next["seq"].as_i64().unwrap() > max_seq, "seq {next} must exceed {max_seq}");
    assert!(next["timestamp"].as_i64().unwrap() >= messages[2]["timestamp"].as_i64().unwrap());
    let caught_up = alice_c.ok("room.history", json!({ "roomId": room, "afterSeq": messages[2]["seq"] })).await;
    assert_eq!(caught_up["messages"].as_array().unwrap().len(), 1, "{caught_up}");
    assert_eq!(caught_up["messages"][0]["content"], "after restart");
}

#[tokio::test]
async fn removed_messages_stay_removed_after_a_restart() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let lobby = ctrl.lobby_id();
    let kept = alice.client.ok("message.send", json!({ "roomId": lobby, "content": "keep me" })).await;
    let gone = alice.client.ok("message.send", json!({ "roomId": lobby, "content": "secret oops" })).await;
    let gone_id = gone["messageId"].as_str().unwrap().to_owned();
    ctrl.ok("message.remove", json!({ "messageId": gone_id, "reason": "leak" })).await;
    let ctrl_id = ctrl.agent_id();
    drop((ctrl, alice.client));

    let server = server.restart().await;
    let mut alice_c = connect(&server, &alice.key).await;
    let history = alice_c.ok("room.history", json!({ "roomId": lobby })).await;
    let messages = history["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "{history}");
    assert_eq!(messages[0]["messageId"], kept["messageId"]);
    assert_eq!(messages[0]["content"], "keep me");
    assert_eq!(messages[0]["removed"], false);
    assert_eq!(messages[1]["messageId"], json!(gone_id));
    assert_eq!(messages[1]["seq"], gone["seq"]);
    assert_eq!(messages[1]["content"], "[removed]");
    assert_eq!(messages[1]["removed"], true);
    assert_eq!(messages[1]["removedBy"], json!(ctrl_id));
    assert_eq!(messages[1]["reason"], "leak");
    assert!(!history.to_string().contains("secret oops"), "{history}");
    alice_c.err("message.remove", json!({ "messageId": gone_id }), 4061).await;
}

#[tokio::test]
async fn motd_and_updated_constitution_survive_a_restart() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let alice = server.participant(&mut ctrl, "Alice").await;
    ctrl.ok("lobby.setMotd", json!({ "content": "Welcome back, bees" })).await;
    let original = ctrl.ok("docs.get", json!({ "name": "constitution" })).await;
    let updated = ctrl.ok("docs.update", json!({ "name": "constitution", "content": "# Rule one\nBe kind." })).await;
    let version = updated["version"].as_str().unwrap().to_owned();
    assert_ne!(original["version"].as_str().unwrap(), version);
    drop((ctrl, alice.client));

    let server = server.restart().await;
    let mut alice_c = connect(&server, &alice.key).await;
    assert_eq!(alice_c.auth_result["motd"], "Welcome back, bees");
    assert_eq!(alice_c.ok("lobby.getMotd", json!({})).await, json!({ "motd": "Welcome back, bees" }));
    let doc = alice_c.ok("docs.get", json!({ "name": "constitution" })).await;
    assert_eq!(doc["content"], "# Rule one\nBe kind.");
    assert_eq!(doc["version"], json!(version));
    let docs = alice_c.ok("docs.list", json!({})).await;
    let listed =
        docs["docs"].as_array().unwrap().iter().find(|d| d["name"] == "constitution").cloned().expect("listed");
    assert_eq!(listed["version"], json!(version));

    // A second restart changes nothing either (the unchanged file is not re-imported).
    drop(alice_c);
    let server = server.restart().await;
    let mut ctrl = connect(&server, &server.controller_key).await;
    let doc = ctrl.ok("docs.get", json!({ "name": "constitution" })).await;
    assert_eq!(doc["content"], "# Rule one\nBe kind.");
    assert_eq!(doc["version"], json!(version));
    assert_eq!(ctrl.auth_result["motd"], "Welcome back, bees");
}

#[tokio::test]
async fn cleared_motd_stays_cleared_after_a_restart() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    ctrl.ok("lobby.setMotd", json!({ "content": "temporary" })).await;
    ctrl.ok("lobby.setMotd", json!({ "content": null })).await;
    drop(ctrl);
    let server = server.restart().await;
    let mut ctrl = connect(&server, &server.controller_key).await;
    assert_eq!(ctrl.auth_result["motd"], Value::Null);
    assert_eq!(ctrl.ok("lobby.getMotd", json!({})).await, json!({ "motd": null }));
}

#[tokio::test]
async fn edited_constitution_file_is_imported_as_a_new_version_at_restart() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let before = ctrl.ok("docs.get", json!({ "name": "constitution" })).await;
    drop(ctrl);
    std::fs::write(server.data_dir.join("docs/CONSTITUTION.md"), "# Edited on disk\n").expect("edit file");

    let server = server.restart().await;
    let mut ctrl = connect(&server, &server.controller_key).await;
    let after = ctrl.ok("docs.get", json!({ "name": "constitution" })).await;
    assert_eq!(after["content"], "# Edited on disk\n");
    assert_ne!(after["version"], before["version"], "an edited file is a new version");
}

#[tokio::test]
async fn bans_and_revocations_survive_a_restart() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let alice = server.participant(&mut ctrl, "Alice").await;
    let bob = server.participant(&mut ctrl, "Bob").await;
    let carol = server.participant(&mut ctrl, "Carol").await;
    ctrl.ok("agent.ban", json!({ "agentId": alice.id, "reason": "spam" })).await;
    ctrl.ok("agent.revoke", json!({ "agentId": bob.id })).await;
    drop((ctrl, alice.client, bob.client, carol.client));

    let server = server.restart().await;
    auth_fails(&server, &alice.key, 4004).await;
    auth_fails(&server, &bob.key, 4002).await;
    let carol_c = connect(&server, &carol.key).await;
    assert_eq!(carol_c.agent_id(), carol.id);

    let mut ctrl = connect(&server, &server.controller_key).await;
    let list = ctrl.ok("agent.list", json!({})).await;
    let agents = list["agents"].as_array().unwrap();
    let alice_info =
        agents.iter().find(|a| a["agentId"] == json!(alice.id)).expect("a banned agent is still registered");
    assert_eq!(alice_info["banned"], true);
    assert!(agents.iter().all(|a| a["agentId"] != json!(bob.id)), "a revoked agent is gone: {list}");

    // The ban can still be lifted after the restart.
    ctrl.ok("agent.unban", json!({ "agentId": alice.id })).await;
    let alice_c = connect(&server, &alice.key).await;
    assert_eq!(alice_c.agent_id(), alice.id);
}

#[tokio::test]
async fn data_dir_files_hold_no_raw_api_key_only_its_sha256() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut keys = vec![server.controller_key.clone()];
    let mut agents = Vec::new();
    for name in ["Alice", "Bob", "Carol"] {
        let mut agent = server.participant(&mut ctrl, name).await;
        agent
            .client
            .ok("message.send", json!({ "roomId": ctrl.lobby_id(), "content": format!("hi from {name}") }))
            .await;
        keys.push(agent.key.clone());
        agents.push(agent);
    }
    ctrl.sync().await;

    let check = |server: &TestServer, when: &str| {
        let files = files_under(&server.data_dir);
        assert!(files.iter().any(|f| f.ends_with("broodlink.db")), "no database in {files:?}");
        let mut database = Vec::new();
        for file in &files {
            let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            for key in &keys {
                let body = key.rsplit('_').next().unwrap();
                assert_eq!(body.len(), 48, "{key}");
                assert!(!contains(&bytes, key), "{when}: raw key found in {}", file.display());
                assert!(!contains(&bytes, body), "{when}: key body found in {}", file.display());
                assert!(!contains(&bytes, &body.to_uppercase()), "{when}: key body found in {}", file.display());
            }
            let name = file.file_name().unwrap().to_string_lossy();
            if name.starts_with("broodlink.db") {
                database.extend(bytes);
            }
        }
        for key in &keys {
            let hash = sha256_hex(key);
            assert_eq!(hash, broodlink::keys::hash(key));
            assert!(contains(&database, &hash), "{when}: the SHA-256 of {} is not in the database files", &key[..8]);
        }
    };
    check(&server, "while running");
    drop(agents);
    drop(ctrl);
    // After a clean shutdown (WAL checkpointed into the main file) and a restart.
    let server = server.restart().await;
    let _ctrl = connect(&server, &server.controller_key).await;
    check(&server, "after restart");
}

#[tokio::test]
async fn data_dir_has_a_private_database_and_the_docs_files() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    server.participant(&mut ctrl, "Alice").await;
    let db = server.data_dir.join("broodlink.db");
    assert_eq!(mode(&db), 0o600, "broodlink.db mode");
    for suffix in ["-wal", "-shm"] {
        let file = server.data_dir.join(format!("broodlink.db{suffix}"));
        if file.exists() {
            assert_eq!(mode(&file), 0o600, "{} mode", file.display());
        }
    }
    assert!(server.data_dir.join("docs/CONSTITUTION.md").is_file());
    assert!(server.data_dir.join("docs/CONTROLLER.md").is_file());
    assert_eq!(mode(&server.data_dir.join("docs")), 0o700, "docs dir mode");
    // The controller guide is what docs.get serves to the controller.
    let guide = std::fs::read_to_string(server.data_dir.join("docs/CONTROLLER.md")).unwrap();
    let doc = ctrl.ok("docs.get", json!({ "name": "controller" })).await;
    assert_eq!(doc["content"], json!(guide));
    drop(ctrl);

    let server = server.restart().await;
    let _ctrl = connect(&server, &server.controller_key).await;
    for suffix in ["", "-wal", "-shm"] {
        let file = server.data_dir.join(format!("broodlink.db{suffix}"));
        if file.exists() {
            assert_eq!(mode(&file), 0o600, "{} mode after restart", file.display());
        }
    }
}
