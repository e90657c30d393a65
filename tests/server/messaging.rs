//! Messaging: `message.send`, `message.dm`, `message.remove`, `room.history`, lobby
//! retention, privacy of private rooms and DMs, the MOTD and the documents.

use serde_json::{json, Value};

use crate::harness::*;

// ---- helpers ----

/// Message ids are UUID v7 (time-ordered), the others v4.
fn assert_uuid(value: &Value, version: u8) {
    let s = value.as_str().unwrap_or_else(|| panic!("expected a UUID string, got {value}"));
    let bytes = s.as_bytes();
    let ok = s.len() == 36
        && [8, 13, 18, 23].iter().all(|&i| bytes[i] == b'-')
        && s.chars().enumerate().all(|(i, c)| [8, 13, 18, 23].contains(&i) || c.is_ascii_hexdigit())
        && bytes[14] == b'0' + version
        && matches!(bytes[19], b'8' | b'9' | b'a' | b'b' | b'A' | b'B');
    assert!(ok, "not a UUID v{version}: {s}");
}

fn random_uuid() -> String {
    "6f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f".to_owned()
}

/// Creates a room owned by `owner` and returns its id.
async fn create_room(owner: &mut Client, name: &str, visibility: &str) -> String {
    let result = owner.ok("room.create", json!({ "name": name, "visibility": visibility })).await;
    result["room"]["roomId"].as_str().expect("roomId").to_owned()
}

async fn send(client: &mut Client, room_id: &str, content: &str) -> Value {
    client.ok("message.send", json!({ "roomId": room_id, "content": content })).await
}

async fn dm(client: &mut Client, to: &str, content: &str) -> Value {
    client.ok("message.dm", json!({ "toAgentId": to, "content": content })).await
}

/// `room.history` with extra params; returns (messages, hasMore).
async fn history(client: &mut Client, room_id: &str, extra: Value) -> (Vec<Value>, bool) {
    let mut params = json!({ "roomId": room_id });
    for (k, v) in extra.as_object().expect("object").iter() {
        params[k] = v.clone();
    }
    let result = client.ok("room.history", params).await;
    let messages = result["messages"].as_array().expect("messages").clone();
    let has_more = result["hasMore"].as_bool().expect("hasMore");
    (messages, has_more)
}

fn contents(messages: &[Value]) -> Vec<String> {
    messages.iter().map(|m| m["content"].as_str().unwrap().to_owned()).collect()
}

fn seqs(messages: &[Value]) -> Vec<i64> {
    messages.iter().map(|m| m["seq"].as_i64().unwrap()).collect()
}

async fn second_connection(server: &TestServer, key: &str) -> Client {
    let mut client = Client::connect(&server.url()).await;
    client.auth(key).await;
    client
}

// ---- message.send ----

#[tokio::test]
async fn send_returns_id_timestamp_seq_and_members_get_the_message_event() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let mut carol = server.participant(&mut ctrl, "Carol").await;
    let room = create_room(&mut alice.client, "den", "public").await;
    bob.client.ok("room.join", json!({ "roomId": room })).await;
    for c in [&mut alice.client, &mut bob.client, &mut carol.client, &mut ctrl] {
        c.clear_events().await;
    }

    let before = now_ms();
    let sent = send(&mut alice.client, &room, "hello den").await;
    let after = now_ms();
    assert_uuid(&sent["messageId"], 7);
    let timestamp = sent["timestamp"].as_i64().expect("timestamp");
    assert!(before <= timestamp && timestamp <= after, "timestamp {timestamp} not in [{before}, {after}]");
    let seq = sent["seq"].as_i64().expect("seq");
    assert_eq!(sent.as_object().unwrap().len(), 3, "result is exactly {{messageId, timestamp, seq}}: {sent}");

    let event = bob.client.event("message").await;
    assert_eq!(
        event,
        json!({
            "roomId": room,
            "message": {
                "messageId": sent["messageId"],
                "roomId": room,
                "senderId": alice.id,
                "senderName": "Alice",
                "content": "hello den",
                "timestamp": timestamp,
                "seq": seq,
                "removed": false,
            }
        })
    );
    alice.client.assert_no_event("message").await;
    carol.client.assert_no_event("message").await;
    // The controller moderates, but is not a member: no event either.
    ctrl.assert_no_event("message").await;

    let (messages, has_more) = history(&mut bob.client, &room, json!({})).await;
    assert_eq!(messages, vec![event["message"].clone()]);
    assert!(!has_more);
}

#[tokio::test]
async fn the_senders_other_connection_gets_the_message_but_the_sending_one_does_not() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut alice2 = second_connection(&server, &alice.key).await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let mut bob2 = second_connection(&server, &bob.key).await;
    let room = create_room(&mut alice.client, "den", "public").await;
    bob.client.ok("room.join", json!({ "roomId": room })).await;
    for c in [&mut alice.client, &mut alice2, &mut bob.client, &mut bob2] {
        c.clear_events().await;
    }

    let sent = send(&mut alice.client, &room, "from connection one").await;
    for c in [&mut alice2, &mut bob.client, &mut bob2] {
        let event = c.event("message").await;
        assert_eq!(event["message"]["messageId"], sent["messageId"]);
        assert_eq!(event["message"]["content"], "from connection one");
    }
    alice.client.assert_no_event("message").await;
    for c in [&mut alice2, &mut bob.client, &mut bob2] {
        c.assert_no_event("message").await; // exactly one each
    }
}

#[tokio::test]
async fn display_name_override_is_the_sender_name_of_messages_on_that_connection() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let mut alias = Client::connect(&server.url()).await;
    let auth = alias.ok("auth", json!({ "apiKey": alice.key, "displayName": "Alice (laptop)" })).await;
    assert_eq!(auth["displayName"], "Alice (laptop)");

    let lobby = alice.client.lobby_id();
    send(&mut alias, &lobby, "via alias").await;
    let event = bob.client.event("message").await;
    assert_eq!(event["message"]["senderName"], "Alice (laptop)");
    assert_eq!(event["message"]["senderId"], alice.id);
    send(&mut alice.client, &lobby, "via default").await;
    let event = bob.client.event("message").await;
    assert_eq!(event["message"]["senderName"], "Alice");
}

#[tokio::test]
async fn sending_to_a_room_you_have_not_joined_is_4011() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let room = create_room(&mut alice.client, "den", "public").await;
    bob.client.clear_events().await;
    bob.client.err("message.send", json!({ "roomId": room, "content": "hi" }), 4011).await;
    // Leaving makes you a non-member again.
    bob.client.ok("room.join", json!({ "roomId": room })).await;
    bob.client.ok("room.leave", json!({ "roomId": room })).await;
    bob.client.err("message.send", json!({ "roomId": room, "content": "hi" }), 4011).await;
    alice.client.assert_no_event("message").await;
    let (messages, _) = history(&mut alice.client, &room, json!({})).await;
    assert!(messages.is_empty(), "a refused message must not be stored: {messages:?}");
}

#[tokio::test]
async fn sending_to_an_unknown_or_deleted_room_is_4010() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    alice.client.err("message.send", json!({ "roomId": random_uuid(), "content": "hi" }), 4010).await;
    alice.client.err("message.send", json!({ "roomId": "not-a-uuid", "content": "hi" }), 4010).await;
    let room = create_room(&mut alice.client, "doomed", "public").await;
    alice.client.ok("room.delete", json!({ "roomId": room })).await;
    alice.client.err("message.send", json!({ "roomId": room, "content": "hi" }), 4010).await;
}

#[tokio::test]
async fn empty_content_is_invalid_params() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let bob = server.participant(&mut ctrl, "Bob").await;
    let lobby = alice.client.lobby_id();
    alice.client.err("message.send", json!({ "roomId": lobby, "content": "" }), -32602).await;
    alice.client.err("message.send", json!({ "roomId": lobby }), -32602).await;
    alice.client.err("message.dm", json!({ "toAgentId": bob.id, "content": "" }), -32602).await;
    let (messages, _) = history(&mut alice.client, &lobby, json!({})).await;
    assert!(messages.is_empty());
}

#[tokio::test]
async fn content_length_limit_counts_characters_not_bytes() {
    let server = TestServer::start_with(|c| c.max_message_length = 10).await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let bob = server.participant(&mut ctrl, "Bob").await;
    let lobby = alice.client.lobby_id();

    // Exactly 10 characters, 20 and 40 bytes: accepted.
    send(&mut alice.client, &lobby, &"é".repeat(10)).await;
    send(&mut alice.client, &lobby, &"😀".repeat(10)).await;
    send(&mut alice.client, &lobby, &"a".repeat(10)).await;
    dm(&mut alice.client, &bob.id, &"é".repeat(10)).await;
    // 11 characters: too long.
    for content in ["é".repeat(11), "😀".repeat(11), "a".repeat(11)] {
        alice.client.err("message.send", json!({ "roomId": lobby, "content": content }), 4050).await;
        alice.client.err("message.dm", json!({ "toAgentId": bob.id, "content": content }), 4050).await;
    }
    let (messages, _) = history(&mut alice.client, &lobby, json!({})).await;
    assert_eq!(contents(&messages), vec!["é".repeat(10), "😀".repeat(10), "a".repeat(10), "é".repeat(10)]);
}

#[tokio::test]
async fn seq_strictly_increases_across_rooms_and_dms() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let room_a = create_room(&mut alice.client, "a", "public").await;
    let room_b = create_room(&mut bob.client, "b", "private").await;
    let lobby = alice.client.lobby_id();

    let mut results = Vec::new();
    for i in 0..3 {
        results.push(send(&mut alice.client, &room_a, &format!("a{i}")).await);
        results.push(send(&mut bob.client, &room_b, &format!("b{i}")).await);
        results.push(send(&mut alice.client, &lobby, &format!("l{i}")).await);
        results.push(dm(&mut bob.client, &alice.id, &format!("d{i}")).await);
    }
    for pair in results.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert!(a["seq"].as_i64().unwrap() < b["seq"].as_i64().unwrap(), "seq must increase: {a} then {b}");
        assert!(a["timestamp"].as_i64().unwrap() <= b["timestamp"].as_i64().unwrap(), "time never goes back");
        assert_ne!(a["messageId"], b["messageId"]);
    }
}

#[tokio::test]
async fn every_recipient_sees_a_rooms_messages_in_seq_order() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let mut carol = server.participant(&mut ctrl, "Carol").await;
    let mut dave = server.participant(&mut ctrl, "Dave").await;
    let room = create_room(&mut alice.client, "busy", "public").await;
    for c in [&mut bob.client, &mut carol.client, &mut dave.client] {
        c.ok("room.join", json!({ "roomId": room })).await;
    }
    for c in [&mut alice.client, &mut bob.client, &mut carol.client, &mut dave.client] {
        c.clear_events().await;
    }

    const N: usize = 10;
    async fn burst(client: &mut Client, room: &str, who: &str) -> Vec<i64> {
        let mut seqs = Vec::new();
        for i in 0..N {
            seqs.push(send(client, room, &format!("{who}{i}")).await["seq"].as_i64().unwrap());
        }
        seqs
    }
    let (a, b, c) = tokio::join!(
        burst(&mut alice.client, &room, "a"),
        burst(&mut bob.client, &room, "b"),
        burst(&mut carol.client, &room, "c"),
    );

    // Dave (a silent member) sees all 3N, in seq order.
    let mut seen = Vec::new();
    for _ in 0..3 * N {
        seen.push(dave.client.event("message").await["message"]["seq"].as_i64().unwrap());
    }
    let mut expected: Vec<i64> = a.iter().chain(&b).chain(&c).copied().collect();
    expected.sort();
    assert_eq!(seen, expected, "dave must see every message once, in seq order");

    // Each sender sees the others' messages in seq order.
    for (client, own) in [(&mut alice.client, &a), (&mut bob.client, &b), (&mut carol.client, &c)] {
        let got: Vec<i64> =
            client.take_events("message").await.iter().map(|e| e["message"]["seq"].as_i64().unwrap()).collect();
        let want: Vec<i64> = expected.iter().copied().filter(|s| !own.contains(s)).collect();
        assert_eq!(got, want);
    }

    let (messages, _) = history(&mut dave.client, &room, json!({})).await;
    assert_eq!(seqs(&messages), expected, "history is oldest first");
}

#[tokio::test]
async fn sends_written_back_to_back_take_effect_and_are_answered_in_the_order_sent() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let room = create_room(&mut alice.client, "pipelined", "public").await;
    bob.client.ok("room.join", json!({ "roomId": room })).await;

    // 40 sends, a DM, a leave, then one more send, all written before reading anything:
    // the server may keep the sends in flight together, but each request must still take
    // effect after the ones before it (so the last send comes after the leave and fails).
    const N: u64 = 40;
    let request = |id: u64, method: &str, params: Value| {
        json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }).to_string()
    };
    for i in 1..=N {
        bob.client.send_text(&request(i, "message.send", json!({ "roomId": room, "content": format!("m{i}") }))).await;
    }
    bob.client.send_text(&request(N + 1, "message.dm", json!({ "toAgentId": alice.id, "content": "dm" }))).await;
    bob.client.send_text(&request(N + 2, "room.leave", json!({ "roomId": room }))).await;
    bob.client.send_text(&request(N + 3, "message.send", json!({ "roomId": room, "content": "late" }))).await;

    let mut last_seq = 0;
    for id in 1..=N + 1 {
        let response = bob.client.next_response().await;
        assert_eq!(response["id"], json!(id), "responses come in request order: {response}");
        let seq = response["result"]["seq"].as_i64().unwrap_or_else(|| panic!("send {id} failed: {response}"));
        assert!(seq > last_seq, "seq grows in the order sent");
        last_seq = seq;
    }
    let left = bob.client.next_response().await;
    assert_eq!(left["id"], json!(N + 2));
    assert!(left.get("result").is_some(), "room.leave: {left}");
    let late = bob.client.next_response().await;
    assert_eq!(late["id"], json!(N + 3));
    assert_eq!(late["error"]["code"], json!(4011), "a send after leaving is refused: {late}");

    let (messages, _) = history(&mut alice.client, &room, json!({ "limit": 100 })).await;
    let contents: Vec<&str> = messages.iter().map(|m| m["content"].as_str().unwrap_or_default()).collect();
    let expected: Vec<String> = (1..=N).map(|i| format!("m{i}")).collect();
    assert_eq!(contents, expected, "stored once each, in the order sent, and nothing after the leave");
}

// ---- lobby ----

#[tokio::test]
async fn lobby_messages_reach_every_online_agent() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let mut carol = server.participant(&mut ctrl, "Carol").await;
    let lobby = alice.client.lobby_id();
    // Bob has not joined anything: every agent is a lobby member.
    let sent = send(&mut alice.client, &lobby, "hello everyone").await;
    for c in [&mut bob.client, &mut carol.client, &mut ctrl] {
        let event = c.event("message").await;
        assert_eq!(event["roomId"], lobby);
        assert_eq!(event["message"]["messageId"], sent["messageId"]);
        assert_eq!(event["message"]["senderId"], alice.id);
        assert_eq!(event["message"]["content"], "hello everyone");
    }
    alice.client.assert_no_event("message").await;
    let (messages, _) = history(&mut carol.client, &lobby, json!({})).await;
    assert_eq!(contents(&messages), vec!["hello everyone"]);
}

// ---- message.dm ----

#[tokio::test]
async fn dm_reaches_every_connection_of_the_recipient_and_nobody_else() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut alice2 = second_connection(&server, &alice.key).await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let mut bob2 = second_connection(&server, &bob.key).await;
    let mut carol = server.participant(&mut ctrl, "Carol").await;
    for c in [&mut alice.client, &mut alice2, &mut bob.client, &mut bob2, &mut carol.client, &mut ctrl] {
        c.clear_events().await;
    }

    let before = now_ms();
    let sent = dm(&mut alice.client, &bob.id, "psst, bob").await;
    assert_uuid(&sent["messageId"], 7);
    let timestamp = sent["timestamp"].as_i64().unwrap();
    assert!(timestamp >= before && timestamp <= now_ms());
    let expected = json!({
        "fromAgentId": alice.id,
        "fromDisplayName": "Alice",
        "toAgentId": bob.id,
        "content": "psst, bob",
        "messageId": sent["messageId"],
        "timestamp": timestamp,
        "seq": sent["seq"],
    });
    assert_eq!(bob.client.event("dm").await, expected);
    assert_eq!(bob2.event("dm").await, expected);

    for c in [&mut alice.client, &mut alice2, &mut carol.client, &mut ctrl, &mut bob.client, &mut bob2] {
        c.assert_no_event("dm").await;
        c.assert_no_event("message").await;
    }

    // Neither event nor history: carol's lobby history does not show it.
    let lobby = carol.client.lobby_id();
    let (messages, _) = history(&mut carol.client, &lobby, json!({})).await;
    assert!(messages.is_empty(), "carol must not see alice's DM to bob: {messages:?}");
    // Both parties do, with toAgentId.
    for c in [&mut alice.client, &mut bob.client] {
        let (messages, _) = history(c, &lobby, json!({})).await;
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0]["messageId"], sent["messageId"]);
        assert_eq!(messages[0]["toAgentId"], bob.id);
        assert_eq!(messages[0]["senderId"], alice.id);
        assert_eq!(messages[0]["roomId"], lobby);
        assert_eq!(messages[0]["content"], "psst, bob");
    }
}

#[tokio::test]
async fn dm_to_an_offline_agent_is_stored_and_readable_later() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let bob = server.participant(&mut ctrl, "Bob").await;
    bob.client.close().await;
    loop {
        let presence = alice.client.event("presence").await;
        if presence["agentId"] == bob.id && presence["online"] == false {
            break;
        }
    }

    let sent = dm(&mut alice.client, &bob.id, "read this when you are back").await;

    let mut bob_again = second_connection(&server, &bob.key).await;
    let lobby = bob_again.lobby_id();
    let (messages, _) = history(&mut bob_again, &lobby, json!({})).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["messageId"], sent["messageId"]);
    assert_eq!(messages[0]["seq"], sent["seq"]);
    assert_eq!(messages[0]["senderId"], alice.id);
    assert_eq!(messages[0]["senderName"], "Alice");
    assert_eq!(messages[0]["toAgentId"], bob.id);
    assert_eq!(messages[0]["content"], "read this when you are back");
}

#[tokio::test]
async fn dm_to_an_unknown_agent_is_4020() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    alice.client.err("message.dm", json!({ "toAgentId": random_uuid(), "content": "hello?" }), 4020).await;
    alice.client.err("message.dm", json!({ "toAgentId": "nobody", "content": "hello?" }), 4020).await;
    let lobby = alice.client.lobby_id();
    let (messages, _) = history(&mut ctrl, &lobby, json!({})).await;
    assert!(messages.is_empty(), "a refused DM must not be stored: {messages:?}");
}

#[tokio::test]
async fn dm_to_a_revoked_agent_is_4020() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let bob = server.participant(&mut ctrl, "Bob").await;
    dm(&mut alice.client, &bob.id, "before").await;
    ctrl.ok("agent.revoke", json!({ "agentId": bob.id })).await;
    alice.client.err("message.dm", json!({ "toAgentId": bob.id, "content": "after" }), 4020).await;
}

// ---- room.history ----

#[tokio::test]
async fn history_is_oldest_first_with_a_default_limit_of_50() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let room = create_room(&mut alice.client, "long", "public").await;
    for i in 0..55 {
        send(&mut alice.client, &room, &format!("m{i}")).await;
    }
    let (messages, has_more) = history(&mut alice.client, &room, json!({})).await;
    let expected: Vec<String> = (5..55).map(|i| format!("m{i}")).collect();
    assert_eq!(contents(&messages), expected, "the newest 50, oldest first");
    assert!(has_more);
    let s = seqs(&messages);
    assert!(s.windows(2).all(|w| w[0] < w[1]));

    let (messages, has_more) = history(&mut alice.client, &room, json!({ "limit": 55 })).await;
    assert_eq!(messages.len(), 55);
    assert!(!has_more);
}

#[tokio::test]
async fn history_limit_is_capped_at_max_history_per_room() {
    let server = TestServer::start_with(|c| c.max_history_per_room = 5).await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let room = create_room(&mut alice.client, "short", "public").await;
    for i in 0..8 {
        send(&mut alice.client, &room, &format!("m{i}")).await;
    }
    let newest5: Vec<String> = (3..8).map(|i| format!("m{i}")).collect();
    let (messages, has_more) = history(&mut alice.client, &room, json!({ "limit": 100 })).await;
    assert_eq!(contents(&messages), newest5);
    assert!(has_more);
    let (messages, has_more) = history(&mut alice.client, &room, json!({})).await;
    assert_eq!(contents(&messages), newest5, "the default limit is capped too");
    assert!(has_more);
    let (messages, _) = history(&mut alice.client, &room, json!({ "limit": 2 })).await;
    assert_eq!(contents(&messages), vec!["m6", "m7"]);
}

#[tokio::test]
async fn history_before_is_an_exclusive_millisecond_bound() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let room = create_room(&mut alice.client, "timed", "public").await;
    let mut stamps = Vec::new();
    for i in 0..6 {
        stamps.push(send(&mut alice.client, &room, &format!("m{i}")).await["timestamp"].as_i64().unwrap());
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    assert!(stamps.windows(2).all(|w| w[0] < w[1]), "distinct timestamps: {stamps:?}");

    // Exclusive: `before = timestamp of m3` excludes m3 itself.
    let (messages, has_more) = history(&mut alice.client, &room, json!({ "before": stamps[3] })).await;
    assert_eq!(contents(&messages), vec!["m0", "m1", "m2"]);
    assert!(!has_more);
    let (messages, has_more) = history(&mut alice.client, &room, json!({ "before": stamps[3], "limit": 2 })).await;
    assert_eq!(contents(&messages), vec!["m1", "m2"]);
    assert!(has_more);
    let (messages, _) = history(&mut alice.client, &room, json!({ "before": stamps[3] + 1 })).await;
    assert_eq!(contents(&messages), vec!["m0", "m1", "m2", "m3"]);
    let (messages, has_more) = history(&mut alice.client, &room, json!({ "before": stamps[0] })).await;
    assert!(messages.is_empty());
    assert!(!has_more);
}

#[tokio::test]
async fn history_before_matches_the_timestamps_exactly_with_other_rooms_interleaved() {
    // `before` is answered through the server-wide time index (a time bound becomes a
    // `seq` bound); messages of another room, several per millisecond, must not shift it.
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let room = create_room(&mut alice.client, "mine", "public").await;
    let other = create_room(&mut alice.client, "other", "public").await;
    // Rounds of 16 sends written back to back (committed together, so they share a
    // millisecond), alternating between the two rooms.
    let mut mine = Vec::new();
    for round in 0..4 {
        for i in 0..16 {
            let target = if i % 2 == 0 { &room } else { &other };
            alice
                .client
                .send_request("message.send", json!({ "roomId": target, "content": format!("r{round}m{i}") }))
                .await;
        }
        for i in 0..16 {
            let sent = alice.client.next_response().await;
            if i % 2 == 0 {
                mine.push((format!("r{round}m{i}"), sent["result"]["timestamp"].as_i64().expect("timestamp")));
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let mut bounds: Vec<i64> = mine.iter().map(|(_, t)| *t).collect();
    bounds.push(bounds[bounds.len() - 1] + 1);
    bounds.dedup();
    assert!(bounds.len() < mine.len(), "some messages share a millisecond: {bounds:?}");
    for before in bounds {
        let expected: Vec<String> = mine.iter().filter(|(_, t)| *t < before).map(|(c, _)| c.clone()).collect();
        let (messages, has_more) = history(&mut alice.client, &room, json!({ "before": before, "limit": 100 })).await;
        assert_eq!(contents(&messages), expected, "before {before}");
        assert!(!has_more);
        let (messages, has_more) = history(&mut alice.client, &room, json!({ "before": before, "limit": 3 })).await;
        let newest3 = &expected[expected.len().saturating_sub(3)..];
        assert_eq!(contents(&messages), newest3, "before {before}, limit 3");
        assert_eq!(has_more, expected.len() > 3);
    }
}

#[tokio::test]
async fn history_before_seq_pages_backwards_exactly() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let room = create_room(&mut alice.client, "paged", "public").await;
    let mut s = Vec::new();
    for i in 0..7 {
        s.push(send(&mut alice.client, &room, &format!("m{i}")).await["seq"].as_i64().unwrap());
    }
    let (messages, has_more) = history(&mut alice.client, &room, json!({ "beforeSeq": s[5], "limit": 2 })).await;
    assert_eq!(contents(&messages), vec!["m3", "m4"]);
    assert!(has_more);
    let (messages, has_more) = history(&mut alice.client, &room, json!({ "beforeSeq": s[3], "limit": 2 })).await;
    assert_eq!(contents(&messages), vec!["m1", "m2"]);
    assert!(has_more);
    let (messages, has_more) = history(&mut alice.client, &room, json!({ "beforeSeq": s[1], "limit": 2 })).await;
    assert_eq!(contents(&messages), vec!["m0"]);
    assert!(!has_more);

    // Paging backwards through everything yields each message exactly once.
    let mut all = Vec::new();
    let mut cursor: Option<i64> = None;
    loop {
        let extra = match cursor {
            Some(c) => json!({ "beforeSeq": c, "limit": 3 }),
            None => json!({ "limit": 3 }),
        };
        let (page, has_more) = history(&mut alice.client, &room, extra).await;
        cursor = Some(page[0]["seq"].as_i64().unwrap());
        let mut page = seqs(&page);
        page.extend(all);
        all = page;
        if !has_more {
            break;
        }
    }
    assert_eq!(all, s);
}

#[tokio::test]
async fn history_after_seq_returns_the_oldest_messages_after_it() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let room = create_room(&mut alice.client, "catchup", "public").await;
    let mut s = Vec::new();
    for i in 0..7 {
        s.push(send(&mut alice.client, &room, &format!("m{i}")).await["seq"].as_i64().unwrap());
    }
    let (messages, has_more) = history(&mut alice.client, &room, json!({ "afterSeq": s[1], "limit": 3 })).await;
    assert_eq!(contents(&messages), vec!["m2", "m3", "m4"]);
    assert!(has_more);
    let (messages, has_more) = history(&mut alice.client, &room, json!({ "afterSeq": s[4], "limit": 3 })).await;
    assert_eq!(contents(&messages), vec!["m5", "m6"]);
    assert!(!has_more);
    let (messages, has_more) = history(&mut alice.client, &room, json!({ "afterSeq": s[6] })).await;
    assert!(messages.is_empty());
    assert!(!has_more);
    let (messages, has_more) = history(&mut alice.client, &room, json!({ "afterSeq": 0, "limit": 7 })).await;
    assert_eq!(seqs(&messages), s);
    assert!(!has_more);
}

#[tokio::test]
async fn history_limit_zero_is_invalid_params() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let lobby = ctrl.lobby_id();
    ctrl.err("room.history", json!({ "roomId": lobby, "limit": 0 }), -32602).await;
    ctrl.err("room.history", json!({ "roomId": lobby, "limit": -1 }), -32602).await;
    ctrl.err("room.history", json!({ "roomId": lobby, "limit": "ten" }), -32602).await;
}

#[tokio::test]
async fn history_of_a_public_room_is_for_members_only() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let room = create_room(&mut alice.client, "open", "public").await;
    send(&mut alice.client, &room, "members only").await;
    bob.client.err("room.history", json!({ "roomId": room }), 4011).await;
    bob.client.ok("room.join", json!({ "roomId": room })).await;
    let (messages, _) = history(&mut bob.client, &room, json!({})).await;
    assert_eq!(contents(&messages), vec!["members only"]);
    bob.client.ok("room.leave", json!({ "roomId": room })).await;
    bob.client.err("room.history", json!({ "roomId": room }), 4011).await;
    bob.client.err("room.history", json!({ "roomId": random_uuid() }), 4010).await;
}

#[tokio::test]
async fn history_of_a_private_room_is_4010_for_outsiders_and_readable_by_the_controller() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let room = create_room(&mut alice.client, "secret", "private").await;
    let public = create_room(&mut alice.client, "open", "public").await;
    send(&mut alice.client, &room, "classified").await;
    send(&mut alice.client, &public, "not classified").await;
    bob.client.err("room.history", json!({ "roomId": room }), 4010).await;

    // The controller is a member of neither room, and reads both.
    let (messages, _) = history(&mut ctrl, &room, json!({})).await;
    assert_eq!(contents(&messages), vec!["classified"]);
    let (messages, _) = history(&mut ctrl, &public, json!({})).await;
    assert_eq!(contents(&messages), vec!["not classified"]);
}

#[tokio::test]
async fn lobby_history_shows_a_participant_only_its_own_dms_and_the_controller_all() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let mut carol = server.participant(&mut ctrl, "Carol").await;
    let lobby = alice.client.lobby_id();
    let ctrl_id = ctrl.agent_id();

    send(&mut alice.client, &lobby, "public hello").await;
    dm(&mut alice.client, &bob.id, "a->b").await;
    dm(&mut bob.client, &alice.id, "b->a").await;
    dm(&mut carol.client, &ctrl_id, "c->ctrl").await;
    dm(&mut bob.client, &carol.id, "b->c").await;
    send(&mut carol.client, &lobby, "public bye").await;

    let (messages, _) = history(&mut alice.client, &lobby, json!({})).await;
    assert_eq!(contents(&messages), vec!["public hello", "a->b", "b->a", "public bye"]);
    let (messages, _) = history(&mut bob.client, &lobby, json!({})).await;
    assert_eq!(contents(&messages), vec!["public hello", "a->b", "b->a", "b->c", "public bye"]);
    let (messages, _) = history(&mut carol.client, &lobby, json!({})).await;
    assert_eq!(contents(&messages), vec!["public hello", "c->ctrl", "b->c", "public bye"]);
    let (messages, _) = history(&mut ctrl, &lobby, json!({})).await;
    assert_eq!(contents(&messages), vec!["public hello", "a->b", "b->a", "c->ctrl", "b->c", "public bye"]);
    // Room messages carry no toAgentId.
    assert!(messages[0].get("toAgentId").is_none(), "{}", messages[0]);

    // afterSeq/limit apply to the viewer's own view: alice's catch-up never reveals others' DMs.
    let (messages, _) = history(&mut alice.client, &lobby, json!({ "afterSeq": 0, "limit": 3 })).await;
    assert_eq!(contents(&messages), vec!["public hello", "a->b", "b->a"]);
}

#[tokio::test]
async fn lobby_keeps_its_newest_room_messages_and_every_dm() {
    let server = TestServer::start_with(|c| c.lobby.history_limit = 3).await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let lobby = alice.client.lobby_id();
    // The DM is the oldest message of all: the limit must not prune it.
    dm(&mut alice.client, &bob.id, "keep me").await;
    for i in 0..5 {
        send(&mut alice.client, &lobby, &format!("l{i}")).await;
    }
    for c in [&mut bob.client, &mut ctrl] {
        let (messages, has_more) = history(c, &lobby, json!({})).await;
        assert_eq!(contents(&messages), vec!["keep me", "l2", "l3", "l4"]);
        assert!(!has_more);
    }
}

// ---- message.remove ----

#[tokio::test]
async fn sender_removes_its_message_and_members_are_told() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let mut carol = server.participant(&mut ctrl, "Carol").await;
    let room = create_room(&mut alice.client, "den", "public").await;
    bob.client.ok("room.join", json!({ "roomId": room })).await;
    let sent = send(&mut bob.client, &room, "oops").await;
    let keep = send(&mut bob.client, &room, "fine").await;
    for c in [&mut alice.client, &mut bob.client, &mut carol.client] {
        c.clear_events().await;
    }

    let removed = bob.client.ok("message.remove", json!({ "messageId": sent["messageId"], "reason": "typo" })).await;
    assert_eq!(removed, json!({ "ok": true, "messageId": sent["messageId"], "roomId": room }));

    let expected = json!({ "messageId": sent["messageId"], "roomId": room, "removedBy": bob.id, "reason": "typo" });
    assert_eq!(alice.client.event("message.removed").await, expected);
    assert_eq!(bob.client.event("message.removed").await, expected);
    carol.client.assert_no_event("message.removed").await;

    let (messages, _) = history(&mut alice.client, &room, json!({})).await;
    assert_eq!(messages.len(), 2);
    let m = &messages[0];
    assert_eq!(m["messageId"], sent["messageId"]);
    assert_eq!(m["seq"], sent["seq"]);
    assert_eq!(m["senderId"], bob.id);
    assert_eq!(m["content"], "[removed]");
    assert_eq!(m["removed"], true);
    assert_eq!(m["removedBy"], bob.id);
    assert_eq!(m["reason"], "typo");
    assert_eq!(messages[1]["messageId"], keep["messageId"]);
    assert_eq!(messages[1]["content"], "fine");
    assert_eq!(messages[1]["removed"], false);
    assert!(messages[1].get("removedBy").is_none());
}

#[tokio::test]
async fn room_owner_removes_a_members_message() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let room = create_room(&mut alice.client, "den", "public").await;
    bob.client.ok("room.join", json!({ "roomId": room })).await;
    let sent = send(&mut bob.client, &room, "spam").await;
    bob.client.clear_events().await;

    alice.client.ok("message.remove", json!({ "messageId": sent["messageId"] })).await;
    let event = bob.client.event("message.removed").await;
    assert_eq!(event["messageId"], sent["messageId"]);
    assert_eq!(event["removedBy"], alice.id);
    assert_eq!(event["reason"], Value::Null);
    let (messages, _) = history(&mut bob.client, &room, json!({})).await;
    assert_eq!(messages[0]["content"], "[removed]");
    assert_eq!(messages[0]["removed"], true);
    assert_eq!(messages[0]["removedBy"], alice.id);
    assert!(messages[0].get("reason").is_none(), "no reason given: {}", messages[0]);
}

#[tokio::test]
async fn controller_removes_any_message() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let room = create_room(&mut alice.client, "secret", "private").await;
    let sent = send(&mut alice.client, &room, "hidden from bob").await;
    let lobby = alice.client.lobby_id();
    let lobby_msg = send(&mut bob.client, &lobby, "rude").await;
    let dm_msg = dm(&mut bob.client, &alice.id, "rude dm").await;
    alice.client.clear_events().await;
    let ctrl_id = ctrl.agent_id();

    // Not a member of the private room, still allowed.
    ctrl.ok("message.remove", json!({ "messageId": sent["messageId"], "reason": "moderated" })).await;
    let event = alice.client.event("message.removed").await;
    assert_eq!(
        event,
        json!({ "messageId": sent["messageId"], "roomId": room, "removedBy": ctrl_id, "reason": "moderated" })
    );
    bob.client.assert_no_event("message.removed").await;

    ctrl.ok("message.remove", json!({ "messageId": lobby_msg["messageId"] })).await;
    ctrl.ok("message.remove", json!({ "messageId": dm_msg["messageId"] })).await;
    let (messages, _) = history(&mut alice.client, &lobby, json!({})).await;
    assert_eq!(contents(&messages), vec!["[removed]", "[removed]"]);
    assert!(messages.iter().all(|m| m["removedBy"] == ctrl_id));
}

#[tokio::test]
async fn another_member_cannot_remove_a_message() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let mut carol = server.participant(&mut ctrl, "Carol").await;
    let room = create_room(&mut alice.client, "den", "public").await;
    bob.client.ok("room.join", json!({ "roomId": room })).await;
    carol.client.ok("room.join", json!({ "roomId": room })).await;
    let sent = send(&mut bob.client, &room, "mine").await;
    let lobby = alice.client.lobby_id();
    let lobby_msg = send(&mut bob.client, &lobby, "mine too").await;
    for c in [&mut alice.client, &mut bob.client] {
        c.clear_events().await;
    }

    carol.client.err("message.remove", json!({ "messageId": sent["messageId"] }), 4003).await;
    carol.client.err("message.remove", json!({ "messageId": lobby_msg["messageId"] }), 4003).await;
    for c in [&mut alice.client, &mut bob.client] {
        c.assert_no_event("message.removed").await;
    }
    let (messages, _) = history(&mut alice.client, &room, json!({})).await;
    assert_eq!(messages[0]["content"], "mine");
    assert_eq!(messages[0]["removed"], false);
}

#[tokio::test]
async fn removing_an_unknown_message_is_4060_and_removing_twice_is_4061() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    alice.client.err("message.remove", json!({ "messageId": random_uuid() }), 4060).await;
    alice.client.err("message.remove", json!({ "messageId": "nope" }), 4060).await;
    let lobby = alice.client.lobby_id();
    let sent = send(&mut alice.client, &lobby, "once").await;
    alice.client.ok("message.remove", json!({ "messageId": sent["messageId"], "reason": "first" })).await;
    alice.client.err("message.remove", json!({ "messageId": sent["messageId"], "reason": "second" }), 4061).await;
    ctrl.err("message.remove", json!({ "messageId": sent["messageId"] }), 4061).await;
    let (messages, _) = history(&mut alice.client, &lobby, json!({})).await;
    assert_eq!(messages[0]["reason"], "first", "the first removal stands");
    assert_eq!(messages[0]["removedBy"], alice.id);
}

#[tokio::test]
async fn a_dm_is_removed_for_its_two_parties_and_hidden_from_third_parties() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let mut carol = server.participant(&mut ctrl, "Carol").await;
    let sent = dm(&mut alice.client, &bob.id, "private words").await;
    for c in [&mut alice.client, &mut bob.client, &mut carol.client] {
        c.clear_events().await;
    }

    // To carol the DM does not exist.
    carol.client.err("message.remove", json!({ "messageId": sent["messageId"] }), 4060).await;

    alice.client.ok("message.remove", json!({ "messageId": sent["messageId"], "reason": "regret" })).await;
    let lobby = alice.client.lobby_id();
    let expected =
        json!({ "messageId": sent["messageId"], "roomId": lobby, "removedBy": alice.id, "reason": "regret" });
    assert_eq!(alice.client.event("message.removed").await, expected);
    assert_eq!(bob.client.event("message.removed").await, expected);
    carol.client.assert_no_event("message.removed").await;
    let (messages, _) = history(&mut bob.client, &lobby, json!({})).await;
    assert_eq!(messages[0]["content"], "[removed]");
    assert_eq!(messages[0]["toAgentId"], bob.id);
    // Even removed, it stays a thing carol cannot see.
    carol.client.err("message.remove", json!({ "messageId": sent["messageId"] }), 4060).await;
}

// ---- privacy ----

#[tokio::test]
async fn an_outsider_never_receives_or_reads_a_private_rooms_messages() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let mut carol = server.participant(&mut ctrl, "Carol").await;
    let room = create_room(&mut alice.client, "secret", "private").await;
    alice.client.ok("room.invite", json!({ "roomId": room, "agentId": bob.id })).await;
    bob.client.ok("room.join", json!({ "roomId": room })).await;
    carol.client.clear_events().await;

    let sent = send(&mut alice.client, &room, "for members only").await;
    send(&mut bob.client, &room, "agreed").await;
    assert_eq!(bob.client.event("message").await["message"]["content"], "for members only");
    carol.client.assert_no_event("message").await;
    carol.client.err("room.history", json!({ "roomId": room }), 4010).await;
    carol.client.err("room.history", json!({ "roomId": room, "afterSeq": 0 }), 4010).await;
    // Nor can it probe its messages.
    carol.client.err("message.remove", json!({ "messageId": sent["messageId"] }), 4060).await;
    let lobby = carol.client.lobby_id();
    let (messages, _) = history(&mut carol.client, &lobby, json!({})).await;
    assert!(messages.is_empty(), "private messages must not leak into the lobby: {messages:?}");
}

#[tokio::test]
async fn a_kicked_member_stops_receiving_and_reading_a_private_rooms_messages() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let mut bob2 = second_connection(&server, &bob.key).await;
    let room = create_room(&mut alice.client, "secret", "private").await;
    alice.client.ok("room.invite", json!({ "roomId": room, "agentId": bob.id })).await;
    bob.client.ok("room.join", json!({ "roomId": room })).await;
    let before = send(&mut alice.client, &room, "while bob is here").await;
    assert_eq!(bob.client.event("message").await["message"]["messageId"], before["messageId"]);
    assert_eq!(bob2.event("message").await["message"]["messageId"], before["messageId"]);

    alice.client.ok("room.kick", json!({ "roomId": room, "agentId": bob.id, "reason": "bye" })).await;
    bob.client.clear_events().await;
    bob2.clear_events().await;
    let after = send(&mut alice.client, &room, "after bob left").await;
    bob.client.assert_no_event("message").await;
    bob2.assert_no_event("message").await;
    bob.client.err("room.history", json!({ "roomId": room }), 4010).await;
    bob.client.err("room.history", json!({ "roomId": room, "afterSeq": before["seq"] }), 4010).await;
    bob.client.err("message.remove", json!({ "messageId": after["messageId"] }), 4060).await;
    bob.client.err("message.remove", json!({ "messageId": before["messageId"] }), 4060).await;
}

#[tokio::test]
async fn sending_to_a_private_room_you_cannot_see_is_4010() {
    // BEHAVIOUR.md: rooms that are not visible answer 4010, so private rooms do not leak.
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let mut carol = server.participant(&mut ctrl, "Carol").await;
    let room = create_room(&mut alice.client, "secret", "private").await;
    // Invited but not joined: the room is visible, so "not a member".
    alice.client.ok("room.invite", json!({ "roomId": room, "agentId": bob.id })).await;
    bob.client.err("message.send", json!({ "roomId": room, "content": "hi" }), 4011).await;
    // Never invited: the room must look like it does not exist.
    carol.client.err("message.send", json!({ "roomId": room, "content": "let me in" }), 4010).await;
    // Kicked (invitation revoked): the same.
    bob.client.ok("room.join", json!({ "roomId": room })).await;
    alice.client.ok("room.kick", json!({ "roomId": room, "agentId": bob.id })).await;
    bob.client.err("message.send", json!({ "roomId": room, "content": "still here?" }), 4010).await;
    let (messages, _) = history(&mut alice.client, &room, json!({})).await;
    assert!(messages.is_empty(), "{messages:?}");
}

// ---- MOTD ----

#[tokio::test]
async fn controller_sets_the_motd_for_every_online_agent() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let mut bob2 = second_connection(&server, &bob.key).await;
    let ctrl_id = ctrl.agent_id();
    let ctrl_name = ctrl.auth_result["displayName"].clone();
    assert!(alice.client.auth_result["motd"].is_null());
    assert_eq!(alice.client.ok("lobby.getMotd", json!({})).await, json!({ "motd": null }));

    let result = ctrl.ok("lobby.setMotd", json!({ "content": "Welcome to the hive!" })).await;
    assert_eq!(result, json!({ "motd": "Welcome to the hive!" }));
    let expected = json!({ "content": "Welcome to the hive!", "setBy": ctrl_id, "setByName": ctrl_name });
    for c in [&mut alice.client, &mut bob.client, &mut bob2, &mut ctrl] {
        assert_eq!(c.event("lobby.motd").await, expected);
    }
    assert_eq!(alice.client.ok("lobby.getMotd", json!({})).await, json!({ "motd": "Welcome to the hive!" }));

    let late = second_connection(&server, &alice.key).await;
    assert_eq!(late.auth_result["motd"], "Welcome to the hive!");
}

#[tokio::test]
async fn a_null_omitted_or_empty_motd_clears_it() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    for clear in [json!({ "content": null }), json!({}), json!({ "content": "" })] {
        ctrl.ok("lobby.setMotd", json!({ "content": "something" })).await;
        assert_eq!(alice.client.event("lobby.motd").await["content"], "something");
        let result = ctrl.ok("lobby.setMotd", clear.clone()).await;
        assert_eq!(result, json!({ "motd": null }), "{clear}");
        let event = alice.client.event("lobby.motd").await;
        assert_eq!(event["content"], Value::Null, "{clear}");
        assert_eq!(event["setBy"], ctrl.agent_id());
        assert_eq!(alice.client.ok("lobby.getMotd", json!({})).await, json!({ "motd": null }));
        let late = second_connection(&server, &alice.key).await;
        assert!(late.auth_result["motd"].is_null());
    }
}

#[tokio::test]
async fn a_participant_cannot_set_the_motd() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    ctrl.ok("lobby.setMotd", json!({ "content": "original" })).await;
    ctrl.clear_events().await;
    alice.client.err("lobby.setMotd", json!({ "content": "mine now" }), 4003).await;
    alice.client.err("lobby.setMotd", json!({ "content": 42 }), 4003).await;
    ctrl.assert_no_event("lobby.motd").await;
    assert_eq!(alice.client.ok("lobby.getMotd", json!({})).await, json!({ "motd": "original" }));
}

#[tokio::test]
async fn a_motd_longer_than_max_message_length_is_4050() {
    let server = TestServer::start_with(|c| c.max_message_length = 10).await;
    let mut ctrl = server.controller().await;
    ctrl.ok("lobby.setMotd", json!({ "content": "ü".repeat(10) })).await;
    ctrl.err("lobby.setMotd", json!({ "content": "ü".repeat(11) }), 4050).await;
    assert_eq!(ctrl.ok("lobby.getMotd", json!({})).await, json!({ "motd": "ü".repeat(10) }));
}

// ---- documents ----

#[tokio::test]
async fn docs_list_shows_the_controller_doc_to_the_controller_only() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;

    let docs = ctrl.ok("docs.list", json!({})).await["docs"].as_array().unwrap().clone();
    let names: Vec<&str> = docs.iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["constitution", "participant", "controller", "protocol"]);
    assert_eq!(docs[0]["version"], "1.0");
    assert_eq!(docs[0]["editable"], true);
    assert!(docs[1..].iter().all(|d| d["editable"] == false));
    assert!(docs.iter().all(|d| d["title"].as_str().is_some_and(|t| !t.is_empty())));

    let docs = alice.client.ok("docs.list", json!({})).await["docs"].as_array().unwrap().clone();
    let names: Vec<&str> = docs.iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["constitution", "participant", "protocol"]);
    assert_eq!(docs[0]["version"], "1.0");
    assert_eq!(docs[0]["editable"], true);
}

#[tokio::test]
async fn protocol_doc_is_the_generated_reference() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let doc = alice.client.ok("docs.get", json!({ "name": "protocol" })).await;
    let on_disk = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/PROTOCOL.md")).unwrap();
    assert_eq!(doc["content"], on_disk);
    assert_eq!(doc["editable"], false);
    alice.client.err("docs.update", json!({ "name": "protocol", "content": "x" }), 4003).await;
    ctrl.err("docs.update", json!({ "name": "protocol", "content": "x" }), 4071).await;
}

#[tokio::test]
async fn docs_get_returns_each_readable_document() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let constitution_file = std::fs::read_to_string(server.data_dir.join("docs/CONSTITUTION.md")).unwrap();
    let controller_file = std::fs::read_to_string(server.data_dir.join("docs/CONTROLLER.md")).unwrap();

    for c in [&mut ctrl, &mut alice.client] {
        let doc = c.ok("docs.get", json!({ "name": "constitution" })).await;
        assert_eq!(
            doc,
            json!({ "name": "constitution", "content": constitution_file, "version": "1.0", "editable": true })
        );
        let doc = c.ok("docs.get", json!({ "name": "participant" })).await;
        assert_eq!(doc["name"], "participant");
        assert_eq!(doc["editable"], false);
        assert!(!doc["content"].as_str().unwrap().trim().is_empty());
        assert!(doc["version"].as_str().is_some_and(|v| !v.is_empty()));
    }
    let doc = ctrl.ok("docs.get", json!({ "name": "controller" })).await;
    assert_eq!(doc["content"], controller_file);
    assert_eq!(doc["editable"], false);
    // The controller doc is read on each request: edits apply at once.
    std::fs::write(server.data_dir.join("docs/CONTROLLER.md"), "# New directive\n").unwrap();
    let doc = ctrl.ok("docs.get", json!({ "name": "controller" })).await;
    assert_eq!(doc["content"], "# New directive\n");
}

#[tokio::test]
async fn the_controller_doc_does_not_exist_for_participants() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    alice.client.err("docs.get", json!({ "name": "controller" }), 4070).await;
    alice.client.err("docs.get", json!({ "name": "no-such-doc" }), 4070).await;
}

#[tokio::test]
async fn unknown_documents_are_4070() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    ctrl.err("docs.get", json!({ "name": "protocol-of-doom" }), 4070).await;
    ctrl.err("docs.get", json!({ "name": "" }), 4070).await;
    ctrl.err("docs.update", json!({ "name": "protocol-of-doom", "content": "x" }), 4070).await;
}

#[tokio::test]
async fn docs_update_bumps_the_constitution_version_and_tells_everyone() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let ctrl_id = ctrl.agent_id();

    let result = ctrl.ok("docs.update", json!({ "name": "constitution", "content": "# Rules v1.1\nBe kind.\n" })).await;
    assert_eq!(result, json!({ "name": "constitution", "version": "1.1" }));
    let expected = json!({ "name": "constitution", "version": "1.1", "updatedBy": ctrl_id });
    for c in [&mut alice.client, &mut bob.client, &mut ctrl] {
        assert_eq!(c.event("docs.updated").await, expected);
    }
    let doc = alice.client.ok("docs.get", json!({ "name": "constitution" })).await;
    assert_eq!(
        doc,
        json!({ "name": "constitution", "content": "# Rules v1.1\nBe kind.\n", "version": "1.1", "editable": true })
    );
    let docs = bob.client.ok("docs.list", json!({})).await;
    assert_eq!(docs["docs"][0]["version"], "1.1");

    // An explicit version is used as given; the next bump continues from it.
    let result =
        ctrl.ok("docs.update", json!({ "name": "constitution", "content": "# Rules v2\n", "version": "2.0" })).await;
    assert_eq!(result["version"], "2.0");
    assert_eq!(alice.client.event("docs.updated").await["version"], "2.0");
    let result = ctrl.ok("docs.update", json!({ "name": "constitution", "content": "# Rules v2.1\n" })).await;
    assert_eq!(result["version"], "2.1");
    let doc = bob.client.ok("docs.get", json!({ "name": "constitution" })).await;
    assert_eq!(doc["content"], "# Rules v2.1\n");
    assert_eq!(doc["version"], "2.1");
}

#[tokio::test]
async fn read_only_documents_cannot_be_updated() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let before = ctrl.ok("docs.get", json!({ "name": "participant" })).await;
    alice.client.clear_events().await;
    ctrl.err("docs.update", json!({ "name": "participant", "content": "hacked" }), 4071).await;
    ctrl.err("docs.update", json!({ "name": "controller", "content": "hacked" }), 4071).await;
    alice.client.assert_no_event("docs.updated").await;
    assert_eq!(ctrl.ok("docs.get", json!({ "name": "participant" })).await, before);
}

#[tokio::test]
async fn a_participant_cannot_update_documents() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    ctrl.clear_events().await;
    alice.client.err("docs.update", json!({ "name": "constitution", "content": "my rules" }), 4003).await;
    alice.client.err("docs.update", json!({ "name": "participant", "content": "x" }), 4003).await;
    alice.client.err("docs.update", json!({}), 4003).await;
    ctrl.assert_no_event("docs.updated").await;
    let doc = alice.client.ok("docs.get", json!({ "name": "constitution" })).await;
    assert_eq!(doc["version"], "1.0");
}
