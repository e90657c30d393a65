use serde_json::json;

use crate::harness::*;
use serde_json::Value;

// ---- helpers ----

/// `xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx`, lowercase hex.
fn is_uuid_v4(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    parts.len() == 5
        && parts.iter().zip(lens).all(|(p, n)| p.len() == n && p.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')))
        && parts[2].starts_with('4')
        && matches!(parts[3].chars().next(), Some('8' | '9' | 'a' | 'b'))
}

/// `bl_k_` + 48 lowercase hex characters.
fn is_participant_key(s: &str) -> bool {
    s.strip_prefix("bl_k_")
        .is_some_and(|hex| hex.len() == 48 && hex.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')))
}

/// A second connection authenticated with `key`.
async fn connect_as(server: &TestServer, key: &str) -> Client {
    let mut client = Client::connect(&server.url()).await;
    client.auth(key).await;
    client
}

/// The `agent.list` entry for `agent_id`, if listed.
async fn listed(controller: &mut Client, agent_id: &str) -> Option<Value> {
    let list = controller.ok("agent.list", json!({})).await;
    list["agents"].as_array().expect("agents array").iter().find(|a| a["agentId"] == agent_id).cloned()
}

/// The `disconnected` events among `events` (as returned by `wait_closed`).
fn disconnected_events(events: &[Value]) -> Vec<Value> {
    events.iter().filter(|e| e["method"] == "disconnected").map(|e| e["params"].clone()).collect()
}

/// Presence events about `agent_id` among the controller's buffered events.
async fn presence_about(client: &mut Client, agent_id: &str) -> Vec<Value> {
    client.take_events("presence").await.into_iter().filter(|p| p["agentId"] == agent_id).collect()
}

// ---- agent.invite ----

#[tokio::test]
async fn invite_returns_a_participant_with_a_uuid_and_a_working_key() {
    let server = TestServer::start().await;
    let mut controller = server.controller().await;
    let invited = controller.ok("agent.invite", json!({ "displayName": "Research Agent" })).await;

    let agent_id = invited["agentId"].as_str().expect("agentId");
    let api_key = invited["apiKey"].as_str().expect("apiKey");
    assert!(is_uuid_v4(agent_id), "agentId is not a UUID v4: {agent_id}");
    assert!(is_participant_key(api_key), "apiKey is not bl_k_ + 48 hex: {api_key}");
    assert!(!api_key.starts_with("bl_k_ctrl_"));
    assert_eq!(invited["displayName"], "Research Agent");
    assert_eq!(invited["role"], "participant");

    let mut client = Client::connect(&server.url()).await;
    let auth = client.auth(api_key).await;
    assert_eq!(auth["agentId"], agent_id);
    assert_eq!(auth["role"], "participant");
    assert_eq!(auth["displayName"], "Research Agent");

    // Every invite gets its own id and key.
    let other = controller.ok("agent.invite", json!({ "displayName": "Research Agent" })).await;
    assert_ne!(other["agentId"], invited["agentId"]);
    assert_ne!(other["apiKey"], invited["apiKey"]);
}

#[tokio::test]
async fn invite_with_an_empty_or_missing_display_name_is_invalid_params() {
    let server = TestServer::start().await;
    let mut controller = server.controller().await;
    let e = controller.err("agent.invite", json!({ "displayName": "" }), -32602).await;
    assert!(e.message.contains("displayName"), "message should name the field: {e:?}");
    let e = controller.err("agent.invite", json!({}), -32602).await;
    assert!(e.message.contains("displayName"), "message should name the field: {e:?}");
    controller.err("agent.invite", json!({ "displayName": 7 }), -32602).await;
    // Nothing was created.
    let list = controller.ok("agent.list", json!({})).await;
    assert_eq!(list["agents"].as_array().unwrap().len(), 1, "only the controller: {list}");
}

// ---- agent.list ----

#[tokio::test]
async fn agent_list_shows_every_agent_with_role_ban_and_online_status() {
    let server = TestServer::start().await;
    let mut controller = server.controller().await;
    let before_connect = now_ms();
    let online = server.participant(&mut controller, "Online One").await;
    let offline = server.participant(&mut controller, "Gone Soon").await;
    let never = controller.ok("agent.invite", json!({ "displayName": "Never Connected" })).await;
    let never_id = never["agentId"].as_str().unwrap().to_owned();

    controller.clear_events().await;
    offline.client.close().await;
    let gone = controller.event("presence").await;
    assert_eq!(gone, json!({ "agentId": offline.id, "displayName": "Gone Soon", "online": false }));

    let list = controller.ok("agent.list", json!({})).await;
    let agents = list["agents"].as_array().expect("agents");
    assert_eq!(agents.len(), 4, "controller + 3 participants: {list}");

    let find =
        |id: &str| agents.iter().find(|a| a["agentId"] == id).unwrap_or_else(|| panic!("{id} not listed")).clone();
    let me = find(&controller.agent_id());
    assert_eq!(me["role"], "controller");
    assert_eq!(me["online"], true);
    assert_eq!(me["banned"], false);

    let a = find(&online.id);
    assert_eq!(a["displayName"], "Online One");
    assert_eq!(a["role"], "participant");
    assert_eq!(a["banned"], false);
    assert_eq!(a["online"], true);
    assert!(a["lastSeen"].as_i64().expect("lastSeen of a connected agent") >= before_connect, "{a}");

    let b = find(&offline.id);
    assert_eq!(b["displayName"], "Gone Soon");
    assert_eq!(b["online"], false);
    assert!(b["lastSeen"].as_i64().expect("lastSeen of an agent that was connected") >= before_connect, "{b}");

    let c = find(&never_id);
    assert_eq!(c["displayName"], "Never Connected");
    assert_eq!(c["online"], false);
    assert_eq!(c["banned"], false);
    assert!(c["lastSeen"].is_null(), "an agent that never connected has lastSeen null: {c}");

    for agent in agents {
        for field in ["agentId", "displayName", "role", "banned", "online", "lastSeen"] {
            assert!(agent.get(field).is_some(), "{field} missing in {agent}");
        }
    }
}

// ---- agent.kick ----

#[tokio::test]
async fn kick_disconnects_every_connection_of_the_agent_and_it_may_reconnect() {
    let server = TestServer::start().await;
    let mut controller = server.controller().await;
    let mut watcher = server.participant(&mut controller, "Watcher").await;
    let mut target = server.participant(&mut controller, "Target").await;
    let mut second = connect_as(&server, &target.key).await;
    controller.clear_events().await;
    watcher.client.clear_events().await;

    let result = controller.ok("agent.kick", json!({ "agentId": target.id, "reason": "cool down" })).await;
    assert_eq!(result, json!({ "ok": true, "agentId": target.id, "disconnected": 2 }));

    for client in [&mut target.client, &mut second] {
        let events = client.wait_closed().await;
        assert_eq!(
            disconnected_events(&events),
            vec![json!({ "reason": "cool down", "retry": false })],
            "events: {events:?}"
        );
        assert!(client.closed);
    }

    // The others see it go offline, once.
    let expected = json!({ "agentId": target.id, "displayName": "Target", "online": false });
    assert_eq!(watcher.client.event("presence").await, expected);
    assert_eq!(controller.event("presence").await, expected);
    assert!(presence_about(&mut controller, &target.id).await.is_empty());
    assert!(presence_about(&mut watcher.client, &target.id).await.is_empty());
    assert_eq!(listed(&mut controller, &target.id).await.unwrap()["online"], false);

    // A kick is not a ban: the same key works again.
    let again = connect_as(&server, &target.key).await;
    assert_eq!(again.agent_id(), target.id);
    assert_eq!(watcher.client.event("presence").await["online"], true);
}

#[tokio::test]
async fn kick_without_a_reason_still_sends_a_reason() {
    let server = TestServer::start().await;
    let mut controller = server.controller().await;
    let mut target = server.participant(&mut controller, "Target").await;
    controller.ok("agent.kick", json!({ "agentId": target.id })).await;
    let events = target.client.wait_closed().await;
    let disconnected = disconnected_events(&events);
    assert_eq!(disconnected.len(), 1, "events: {events:?}");
    assert!(!disconnected[0]["reason"].as_str().expect("reason is a string").is_empty());
}

#[tokio::test]
async fn kicking_an_offline_agent_disconnects_nothing() {
    let server = TestServer::start().await;
    let mut controller = server.controller().await;
    let invited = controller.ok("agent.invite", json!({ "displayName": "Offline" })).await;
    let result = controller.ok("agent.kick", json!({ "agentId": invited["agentId"] })).await;
    assert_eq!(result, json!({ "ok": true, "agentId": invited["agentId"], "disconnected": 0 }));
}

#[tokio::test]
async fn the_controller_cannot_be_kicked_banned_or_revoked() {
    let server = TestServer::start().await;
    let mut controller = server.controller().await;
    let me = controller.agent_id();
    controller.err("agent.kick", json!({ "agentId": me }), 4003).await;
    controller.err("agent.ban", json!({ "agentId": me }), 4003).await;
    controller.err("agent.revoke", json!({ "agentId": me }), 4003).await;
    // Still connected, still the controller, not banned.
    let entry = listed(&mut controller, &me).await.expect("controller listed");
    assert_eq!(entry["banned"], false);
    assert_eq!(entry["online"], true);
    assert!(controller.take_events("disconnected").await.is_empty());
    let mut other = Client::connect(&server.url()).await;
    other.auth(&server.controller_key).await;
}

#[tokio::test]
async fn agent_actions_on_an_unknown_agent_are_4020() {
    let server = TestServer::start().await;
    let mut controller = server.controller().await;
    let unknown = "3f2b8c1e-9d4a-4e7b-8a6c-1d2e3f4a5b6c";
    for method in ["agent.kick", "agent.ban", "agent.unban", "agent.revoke"] {
        controller.err(method, json!({ "agentId": unknown }), 4020).await;
        controller.err(method, json!({ "agentId": "not-a-uuid" }), 4020).await;
    }
}

// ---- agent.ban / agent.unban ----

#[tokio::test]
async fn ban_disconnects_and_blocks_auth_until_unban() {
    let server = TestServer::start().await;
    let mut controller = server.controller().await;
    let mut target = server.participant(&mut controller, "Target").await;
    let mut second = connect_as(&server, &target.key).await;
    controller.clear_events().await;

    let result = controller.ok("agent.ban", json!({ "agentId": target.id, "reason": "spam" })).await;
    assert_eq!(result, json!({ "ok": true, "agentId": target.id, "disconnected": 2 }));
    for client in [&mut target.client, &mut second] {
        let events = client.wait_closed().await;
        assert_eq!(
            disconnected_events(&events),
            vec![json!({ "reason": "spam", "retry": false })],
            "events: {events:?}"
        );
    }
    assert_eq!(
        controller.event("presence").await,
        json!({ "agentId": target.id, "displayName": "Target", "online": false })
    );

    let entry = listed(&mut controller, &target.id).await.expect("a banned agent is still listed");
    assert_eq!(entry["banned"], true);
    assert_eq!(entry["online"], false);

    // Banned: auth fails with 4004 (and nobody is told it came online).
    let mut retry = Client::connect(&server.url()).await;
    retry.err("auth", json!({ "apiKey": target.key }), 4004).await;
    retry.err("room.list", json!({}), 4001).await;
    controller.assert_no_event("presence").await;

    let result = controller.ok("agent.unban", json!({ "agentId": target.id })).await;
    assert_eq!(result["ok"], true);
    assert_eq!(result["agentId"], target.id);
    assert_eq!(listed(&mut controller, &target.id).await.unwrap()["banned"], false);

    // The same connection may try again after a failed auth.
    let auth = retry.auth(&target.key).await;
    assert_eq!(auth["agentId"], target.id);
    assert_eq!(controller.event("presence").await["online"], true);
}

#[tokio::test]
async fn banning_an_offline_agent_blocks_its_next_auth() {
    let server = TestServer::start().await;
    let mut controller = server.controller().await;
    let invited = controller.ok("agent.invite", json!({ "displayName": "Offline" })).await;
    let result = controller.ok("agent.ban", json!({ "agentId": invited["agentId"] })).await;
    assert_eq!(result["disconnected"], 0);
    let mut client = Client::connect(&server.url()).await;
    client.err("auth", json!({ "apiKey": invited["apiKey"] }), 4004).await;
}

// ---- agent.revoke ----

#[tokio::test]
async fn revoke_disconnects_and_the_key_stops_working() {
    let server = TestServer::start().await;
    let mut controller = server.controller().await;
    let mut watcher = server.participant(&mut controller, "Watcher").await;
    let mut target = server.participant(&mut controller, "Target").await;
    let mut second = connect_as(&server, &target.key).await;
    watcher.client.clear_events().await;

    let result = controller.ok("agent.revoke", json!({ "agentId": target.id, "reason": "retired" })).await;
    assert_eq!(result, json!({ "ok": true, "agentId": target.id, "disconnected": 2 }));
    for client in [&mut target.client, &mut second] {
        let events = client.wait_closed().await;
        assert_eq!(
            disconnected_events(&events),
            vec![json!({ "reason": "retired", "retry": false })],
            "events: {events:?}"
        );
    }
    assert_eq!(
        watcher.client.event("presence").await,
        json!({ "agentId": target.id, "displayName": "Target", "online": false })
    );

    let mut retry = Client::connect(&server.url()).await;
    retry.err("auth", json!({ "apiKey": target.key }), 4002).await;

    assert!(listed(&mut controller, &target.id).await.is_none(), "a revoked agent is not listed");
    // It no longer exists for any agent action, nor as a DM recipient.
    controller.err("agent.kick", json!({ "agentId": target.id }), 4020).await;
    controller.err("agent.revoke", json!({ "agentId": target.id }), 4020).await;
    watcher.client.err("message.dm", json!({ "toAgentId": target.id, "content": "hi" }), 4020).await;
}

#[tokio::test]
async fn revoke_removes_the_agent_from_its_rooms_and_hands_its_rooms_to_the_controller() {
    let server = TestServer::start().await;
    let mut controller = server.controller().await;
    let controller_id = controller.agent_id();
    let mut member = server.participant(&mut controller, "Member").await;
    let mut target = server.participant(&mut controller, "Target").await;

    // A room the target owns, and one it merely joined; the member is in both.
    let owned = target.client.ok("room.create", json!({ "name": "Target's room" })).await["room"]["roomId"]
        .as_str()
        .unwrap()
        .to_owned();
    let joined = member.client.ok("room.create", json!({ "name": "Member's room" })).await["room"]["roomId"]
        .as_str()
        .unwrap()
        .to_owned();
    member.client.ok("room.join", json!({ "roomId": owned })).await;
    target.client.ok("room.join", json!({ "roomId": joined })).await;
    let sent = target.client.ok("message.send", json!({ "roomId": joined, "content": "my last words" })).await;
    let lobby = target.client.lobby_id();
    target.client.ok("message.send", json!({ "roomId": lobby, "content": "bye lobby" })).await;
    member.client.clear_events().await;
    controller.clear_events().await;

    controller.ok("agent.revoke", json!({ "agentId": target.id })).await;
    target.client.wait_closed().await;

    // The member sees it leave both rooms, and the owned room change hands.
    let mut left: Vec<Value> = member.client.take_events("room.left").await;
    left.sort_by_key(|e| e["roomId"].as_str().unwrap().to_owned());
    let mut expected =
        vec![json!({ "roomId": owned, "agentId": target.id }), json!({ "roomId": joined, "agentId": target.id })];
    expected.sort_by_key(|e| e["roomId"].as_str().unwrap().to_owned());
    assert_eq!(left, expected, "room.left for each room it was in, and none for the lobby");
    let owner_changed = json!({ "roomId": owned, "newOwnerId": controller_id, "previousOwnerId": target.id });
    assert_eq!(member.client.take_events("room.ownerChanged").await, vec![owner_changed.clone()]);
    // The controller is the new owner, so it is told too.
    assert_eq!(controller.take_events("room.ownerChanged").await, vec![owner_changed]);

    let info = member.client.ok("room.info", json!({ "roomId": owned })).await;
    assert_eq!(info["room"]["ownerId"], controller_id);
    let members: Vec<&Value> = info["members"].as_array().unwrap().iter().map(|m| &m["agentId"]).collect();
    assert!(!members.contains(&&json!(target.id)), "revoked agent still a member: {info}");
    let info = member.client.ok("room.info", json!({ "roomId": joined })).await;
    assert_eq!(info["room"]["memberCount"], 1, "{info}");
    let lobby_info = member.client.ok("room.info", json!({ "roomId": lobby })).await;
    assert!(
        !lobby_info["members"].as_array().unwrap().iter().any(|m| m["agentId"] == target.id),
        "revoked agent still in the lobby: {lobby_info}"
    );

    // Its messages stay in history under its name.
    let history = member.client.ok("room.history", json!({ "roomId": joined })).await;
    let message = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["messageId"] == sent["messageId"])
        .unwrap_or_else(|| panic!("revoked agent's message gone from history: {history}"));
    assert_eq!(message["content"], "my last words");
    assert_eq!(message["senderName"], "Target");
    assert_eq!(message["senderId"], target.id);
    let history = member.client.ok("room.history", json!({ "roomId": lobby })).await;
    assert!(
        history["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["content"] == "bye lobby" && m["senderName"] == "Target"),
        "lobby message gone: {history}"
    );
}

// ---- presence ----

#[tokio::test]
async fn first_connection_announces_the_agent_to_other_online_agents() {
    let server = TestServer::start().await;
    let mut controller = server.controller().await;
    let mut first = server.participant(&mut controller, "First").await;
    controller.clear_events().await;
    first.client.clear_events().await;

    let second = server.participant(&mut controller, "Second").await;
    let expected = json!({ "agentId": second.id, "displayName": "Second", "online": true });
    assert_eq!(first.client.take_events("presence").await, vec![expected.clone()]);
    assert_eq!(controller.take_events("presence").await, vec![expected]);
}

#[tokio::test]
async fn a_second_connection_of_the_same_agent_is_not_announced_again() {
    let server = TestServer::start().await;
    let mut controller = server.controller().await;
    let agent = server.participant(&mut controller, "Twice").await;
    controller.clear_events().await;

    let _second = connect_as(&server, &agent.key).await;
    controller.assert_no_event("presence").await;
    assert_eq!(listed(&mut controller, &agent.id).await.unwrap()["online"], true);
}

#[tokio::test]
async fn a_new_connection_receives_one_presence_per_other_online_agent() {
    let server = TestServer::start().await;
    let mut controller = server.controller().await;
    let alice = server.participant(&mut controller, "Alice").await;
    let _alice_again = connect_as(&server, &alice.key).await;
    // Invited but never connected: not online, so not in the snapshot.
    controller.ok("agent.invite", json!({ "displayName": "Absent" })).await;

    let mut bob = server.participant(&mut controller, "Bob").await;
    let mut snapshot = bob.client.take_events("presence").await;
    snapshot.sort_by_key(|p| p["displayName"].as_str().unwrap().to_owned());
    let controller_name = controller.auth_result["displayName"].as_str().unwrap().to_owned();
    let mut expected = vec![
        json!({ "agentId": alice.id, "displayName": "Alice", "online": true }),
        json!({ "agentId": controller.agent_id(), "displayName": controller_name, "online": true }),
    ];
    expected.sort_by_key(|p| p["displayName"].as_str().unwrap().to_owned());
    assert_eq!(snapshot, expected, "one presence per other online agent, none for itself");

    // A second connection of Bob gets the same snapshot (others only, not Bob).
    let mut bob_again = connect_as(&server, &bob.key).await;
    let mut snapshot = bob_again.take_events("presence").await;
    snapshot.sort_by_key(|p| p["displayName"].as_str().unwrap().to_owned());
    assert_eq!(snapshot, expected);
}

#[tokio::test]
async fn the_snapshot_names_an_agent_as_its_oldest_connection_does() {
    // The snapshot's frames are kept per online agent; they follow its connections.
    let server = TestServer::start().await;
    let mut controller = server.controller().await;
    let invited = controller.ok("agent.invite", json!({ "displayName": "Alice" })).await;
    let (key, alice_id) = (invited["apiKey"].clone(), invited["agentId"].clone());
    let as_named = |name: &str| json!({ "apiKey": key, "displayName": name });
    let mut first = Client::connect(&server.url()).await;
    first.ok("auth", as_named("Alpha")).await;
    let mut second = Client::connect(&server.url()).await;
    second.ok("auth", as_named("Beta")).await;
    let snapshot_names = |server: &TestServer| {
        let url = server.url();
        let key = server.controller_key.clone();
        let alice_id = alice_id.clone();
        async move {
            let mut observer = Client::connect(&url).await;
            observer.auth(&key).await;
            let snapshot = observer.take_events("presence").await;
            snapshot
                .into_iter()
                .filter(|p| p["agentId"] == alice_id)
                .map(|p| p["displayName"].clone())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(snapshot_names(&server).await, vec![json!("Alpha")]);
    first.close().await;
    // Still online through its second connection, now named as that one is.
    let mut named_beta = Vec::new();
    for _ in 0..50 {
        named_beta = snapshot_names(&server).await;
        if named_beta == vec![json!("Beta")] {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(named_beta, vec![json!("Beta")]);
    second.close().await;
    let mut gone = vec![json!("Beta")];
    for _ in 0..50 {
        gone = snapshot_names(&server).await;
        if gone.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(gone.is_empty(), "offline agents are not in the snapshot: {gone:?}");
}

#[tokio::test]
async fn the_presence_snapshot_arrives_right_after_the_auth_response() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as Frame;

    let server = TestServer::start().await;
    let mut controller = server.controller().await;
    let alice = server.participant(&mut controller, "Alice").await;
    let invited = controller.ok("agent.invite", json!({ "displayName": "Raw" })).await;

    // A raw socket, to see the exact order of frames.
    let (mut socket, _) = tokio_tungstenite::connect_async(server.url()).await.expect("connects");
    let auth = json!({ "jsonrpc": "2.0", "id": 1, "method": "auth", "params": { "apiKey": invited["apiKey"] } });
    let motd = json!({ "jsonrpc": "2.0", "id": 2, "method": "lobby.getMotd", "params": {} });
    socket.send(Frame::text(auth.to_string())).await.unwrap();
    socket.send(Frame::text(motd.to_string())).await.unwrap();
    let mut frames = Vec::new();
    while frames.len() < 4 {
        let frame = tokio::time::timeout(TIMEOUT, socket.next()).await.expect("frame in time").expect("open").unwrap();
        if let Frame::Text(text) = frame {
            frames.push(serde_json::from_str::<Value>(text.as_str()).unwrap());
        }
    }
    // auth response, then the two presence events, then the next response.
    assert_eq!(frames[0]["id"], 1, "no event may precede the auth response: {frames:?}");
    assert!(frames[0]["result"].is_object(), "{frames:?}");
    let mut presence: Vec<Value> = frames[1..3]
        .iter()
        .map(|f| {
            assert_eq!(f["method"], "presence", "expected the presence snapshot: {frames:?}");
            assert!(f.get("id").is_none());
            f["params"].clone()
        })
        .collect();
    presence.sort_by_key(|p| p["agentId"].as_str().unwrap().to_owned());
    let mut expected = vec![
        json!({ "agentId": alice.id, "displayName": "Alice", "online": true }),
        json!({ "agentId": controller.agent_id(), "displayName": controller.auth_result["displayName"], "online": true }),
    ];
    expected.sort_by_key(|p| p["agentId"].as_str().unwrap().to_owned());
    assert_eq!(presence, expected);
    assert_eq!(frames[3]["id"], 2, "{frames:?}");
}

#[tokio::test]
async fn closing_one_of_two_connections_sends_nothing_and_the_last_one_sends_offline() {
    let server = TestServer::start().await;
    let mut controller = server.controller().await;
    let agent = server.participant(&mut controller, "Twice").await;
    let second = connect_as(&server, &agent.key).await;
    controller.clear_events().await;

    agent.client.close().await;
    controller.assert_no_event("presence").await;

    second.close().await;
    let offline = controller.event("presence").await;
    assert_eq!(offline, json!({ "agentId": agent.id, "displayName": "Twice", "online": false }));
    // Exactly one offline announcement for the two closes.
    assert!(presence_about(&mut controller, &agent.id).await.is_empty());
    assert_eq!(listed(&mut controller, &agent.id).await.unwrap()["online"], false);
}

#[tokio::test]
async fn auth_display_name_overrides_the_name_for_that_session_only() {
    let server = TestServer::start().await;
    let mut controller = server.controller().await;
    let invited = controller.ok("agent.invite", json!({ "displayName": "Registered" })).await;
    let agent_id = invited["agentId"].as_str().unwrap().to_owned();
    let lobby = controller.lobby_id();
    controller.clear_events().await;

    let mut alias = Client::connect(&server.url()).await;
    let auth = alias.ok("auth", json!({ "apiKey": invited["apiKey"], "displayName": "Alias" })).await;
    assert_eq!(auth["displayName"], "Alias");
    assert_eq!(auth["agentId"], agent_id);
    assert_eq!(
        controller.event("presence").await,
        json!({ "agentId": agent_id, "displayName": "Alias", "online": true })
    );

    alias.ok("message.send", json!({ "roomId": lobby, "content": "hello" })).await;
    let event = controller.event("message").await;
    assert_eq!(event["message"]["senderName"], "Alias");
    assert_eq!(event["message"]["senderId"], agent_id);

    // Not stored: the registry and a plain session keep the registered name.
    assert_eq!(listed(&mut controller, &agent_id).await.unwrap()["displayName"], "Registered");
    let mut plain = Client::connect(&server.url()).await;
    let auth = plain.ok("auth", json!({ "apiKey": invited["apiKey"] })).await;
    assert_eq!(auth["displayName"], "Registered");
    plain.ok("message.send", json!({ "roomId": lobby, "content": "plain" })).await;
    assert_eq!(controller.event("message").await["message"]["senderName"], "Registered");
}

#[tokio::test]
async fn auth_twice_on_one_connection_is_forbidden_and_keeps_the_first_identity() {
    let server = TestServer::start().await;
    let mut controller = server.controller().await;
    let agent = server.participant(&mut controller, "Agent").await;
    let mut client = agent.client;

    client.err("auth", json!({ "apiKey": agent.key }), 4003).await;
    // Even with the controller's key: no privilege escalation.
    client.err("auth", json!({ "apiKey": server.controller_key }), 4003).await;
    client.err("agent.list", json!({}), 4003).await;
    let list = client.ok("room.list", json!({})).await;
    assert_eq!(list["rooms"][0]["isLobby"], true);
}

#[tokio::test]
async fn shutdown_tells_every_connection_to_retry_and_kicks_tell_it_not_to() {
    let mut server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut kicked = server.participant(&mut ctrl, "Kicked").await;
    let mut staying = server.participant(&mut ctrl, "Staying").await;

    ctrl.ok("agent.kick", json!({ "agentId": kicked.id, "reason": "cool down" })).await;
    let events = kicked.client.wait_closed().await;
    let goodbye: Vec<_> = events.iter().filter(|e| e["method"] == "disconnected").collect();
    assert_eq!(goodbye.len(), 1, "{events:?}");
    assert_eq!(goodbye[0]["params"], json!({ "reason": "cool down", "retry": false }));

    staying.client.sync().await;
    server.stop().await;
    let events = staying.client.wait_closed().await;
    let goodbye: Vec<_> = events.iter().filter(|e| e["method"] == "disconnected").collect();
    assert_eq!(goodbye.len(), 1, "{events:?}");
    assert_eq!(goodbye[0]["params"], json!({ "reason": "server shutting down", "retry": true }));
}
