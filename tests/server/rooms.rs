use serde_json::json;

use crate::harness::*;

use serde_json::Value;

// ---- helpers ----

/// A server and its connected controller.
async fn setup() -> (TestServer, Client) {
    let server = TestServer::start().await;
    let controller = server.controller().await;
    (server, controller)
}

/// Creates a room and returns its id.
async fn create(client: &mut Client, name: &str, visibility: &str) -> String {
    let result = client.ok("room.create", json!({ "name": name, "visibility": visibility })).await;
    result["room"]["roomId"].as_str().expect("roomId").to_owned()
}

/// The rooms in `room.list`, in order.
async fn list(client: &mut Client) -> Vec<Value> {
    let result = client.ok("room.list", json!({})).await;
    result["rooms"].as_array().expect("rooms array").clone()
}

/// The entry for `room_id` in the caller's `room.list`, if listed.
async fn listed(client: &mut Client, room_id: &str) -> Option<Value> {
    list(client).await.into_iter().find(|r| r["roomId"] == room_id)
}

/// The agent ids of a room's members, in `room.info` order.
async fn member_ids(client: &mut Client, room_id: &str) -> Vec<String> {
    let info = client.ok("room.info", json!({ "roomId": room_id })).await;
    info["members"].as_array().expect("members").iter().map(|m| m["agentId"].as_str().unwrap().to_owned()).collect()
}

const UNKNOWN_ROOM: &str = "00000000-0000-4000-8000-000000000000";
const UNKNOWN_AGENT: &str = "11111111-1111-4111-8111-111111111111";

// ---- room.create ----

#[tokio::test]
async fn create_makes_a_public_room_owned_and_joined_by_its_creator() {
    let (server, mut ctrl) = setup().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let result = alice.client.ok("room.create", json!({ "name": "Research" })).await;
    let room = &result["room"];
    assert!(room["roomId"].as_str().is_some_and(|id| id.len() == 36), "roomId is a UUID: {room}");
    assert_eq!(room["name"], "Research");
    assert_eq!(room["visibility"], "public", "public is the default");
    assert_eq!(room["description"], Value::Null);
    assert_eq!(room["ownerId"], alice.id.as_str());
    assert_eq!(room["ownerName"], "Alice");
    assert_eq!(room["isLobby"], false);
    assert_eq!(room["memberCount"], 1);
    assert_eq!(room["isMember"], true);
    assert!(room["createdAt"].as_i64().is_some_and(|t| t > 1_600_000_000_000), "createdAt in ms: {room}");
    let room_id = room["roomId"].as_str().unwrap();
    assert_eq!(member_ids(&mut alice.client, room_id).await, vec![alice.id.clone()]);
}

#[tokio::test]
async fn create_private_room_with_description_and_trimmed_name() {
    let (server, mut ctrl) = setup().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let result = alice
        .client
        .ok("room.create", json!({ "name": "  War Room  ", "visibility": "private", "description": "plans" }))
        .await;
    let room = &result["room"];
    assert_eq!(room["name"], "War Room");
    assert_eq!(room["visibility"], "private");
    assert_eq!(room["description"], "plans");
    assert_eq!(room["isMember"], true);
    assert_eq!(room["memberCount"], 1);
}

#[tokio::test]
async fn create_rejects_invalid_names_and_params_with_invalid_params() {
    let (server, mut ctrl) = setup().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    alice.client.err("room.create", json!({ "name": "" }), -32602).await;
    alice.client.err("room.create", json!({ "name": "   " }), -32602).await;
    alice.client.err("room.create", json!({ "name": "x".repeat(101) }), -32602).await;
    alice.client.err("room.create", json!({}), -32602).await;
    alice.client.err("room.create", json!({ "name": "Ok", "visibility": "secret" }), -32602).await;
    alice.client.err("room.create", json!({ "name": "Ok", "description": "d".repeat(1001) }), -32602).await;
    // The limits themselves are allowed (characters, not bytes).
    alice.client.ok("room.create", json!({ "name": "é".repeat(100), "description": "d".repeat(1000) })).await;
    // Nothing was created by the failed calls.
    assert_eq!(list(&mut alice.client).await.len(), 2);
}

#[tokio::test]
async fn create_beyond_max_rooms_gets_4040_and_deleted_rooms_stop_counting() {
    let server = TestServer::start_with(|c| c.max_rooms = 2).await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let first = create(&mut alice.client, "One", "public").await;
    create(&mut ctrl, "Two", "private").await;
    alice.client.err("room.create", json!({ "name": "Three" }), 4040).await;
    ctrl.err("room.create", json!({ "name": "Three" }), 4040).await;
    alice.client.ok("room.delete", json!({ "roomId": first })).await;
    create(&mut alice.client, "Three", "public").await;
    alice.client.err("room.create", json!({ "name": "Four" }), 4040).await;
}

#[tokio::test]
async fn public_room_created_event_goes_to_every_online_agent() {
    let (server, mut ctrl) = setup().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let result = alice.client.ok("room.create", json!({ "name": "Open", "description": "all welcome" })).await;
    let expected = json!({
        "roomId": result["room"]["roomId"],
        "name": "Open",
        "ownerId": alice.id,
        "visibility": "public",
        "description": "all welcome",
    });
    assert_eq!(bob.client.event("room.created").await, expected);
    assert_eq!(ctrl.event("room.created").await, expected);
    assert_eq!(alice.client.event("room.created").await, expected);
}

#[tokio::test]
async fn private_room_created_event_goes_only_to_owner_and_controller() {
    let (server, mut ctrl) = setup().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let result = alice.client.ok("room.create", json!({ "name": "Hidden", "visibility": "private" })).await;
    let expected = json!({
        "roomId": result["room"]["roomId"],
        "name": "Hidden",
        "ownerId": alice.id,
        "visibility": "private",
        "description": null,
    });
    assert_eq!(alice.client.event("room.created").await, expected);
    assert_eq!(ctrl.event("room.created").await, expected);
    bob.client.assert_no_event("room.created").await;
}

// ---- room.list ----

#[tokio::test]
async fn list_shows_the_lobby_first_then_rooms_oldest_first_with_membership_flags() {
    let (server, mut ctrl) = setup().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let first = create(&mut alice.client, "First", "public").await;
    let second = create(&mut bob.client, "Second", "public").await;
    bob.client.ok("room.join", json!({ "roomId": first })).await;

    let rooms = list(&mut alice.client).await;
    assert_eq!(rooms.len(), 3);
    assert_eq!(rooms[0]["isLobby"], true);
    assert_eq!(rooms[0]["roomId"], alice.client.lobby_id().as_str());
    assert_eq!(rooms[0]["isMember"], true);
    assert_eq!(rooms[0]["memberCount"], 3, "every agent is in the lobby");
    assert_eq!(rooms[1]["roomId"], first.as_str());
    assert_eq!(rooms[1]["name"], "First");
    assert_eq!(rooms[1]["ownerId"], alice.id.as_str());
    assert_eq!(rooms[1]["ownerName"], "Alice");
    assert_eq!(rooms[1]["isLobby"], false);
    assert_eq!(rooms[1]["memberCount"], 2);
    assert_eq!(rooms[1]["isMember"], true);
    assert_eq!(rooms[2]["roomId"], second.as_str());
    assert_eq!(rooms[2]["ownerName"], "Bob");
    assert_eq!(rooms[2]["memberCount"], 1);
    assert_eq!(rooms[2]["isMember"], false);
    assert_eq!(rooms[2]["isInvited"], false);
}

#[tokio::test]
async fn private_room_is_listed_only_for_members_invitees_and_the_controller() {
    let (server, mut ctrl) = setup().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let mut carol = server.participant(&mut ctrl, "Carol").await;
    let room = create(&mut alice.client, "Hidden", "private").await;

    assert!(listed(&mut bob.client, &room).await.is_none(), "outsider must not see a private room");
    let own = listed(&mut alice.client, &room).await.expect("owner sees it");
    assert_eq!(own["isMember"], true);
    let seen = listed(&mut ctrl, &room).await.expect("controller sees every room");
    assert_eq!(seen["isMember"], false);
    assert_eq!(seen["visibility"], "private");

    alice.client.ok("room.invite", json!({ "roomId": room, "agentId": bob.id })).await;
    let invited = listed(&mut bob.client, &room).await.expect("invitee sees it");
    assert_eq!(invited["isInvited"], true);
    assert_eq!(invited["isMember"], false);
    assert_eq!(invited["memberCount"], 1);
    assert!(listed(&mut carol.client, &room).await.is_none(), "another outsider still does not");
}

#[tokio::test]
async fn creator_of_a_public_room_is_not_reported_as_invited() {
    // protocol/src/types.rs: `isInvited` is "always `false` for public rooms nobody was invited to".
    let (server, mut ctrl) = setup().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let result = alice.client.ok("room.create", json!({ "name": "Open" })).await;
    assert_eq!(result["room"]["isInvited"], false, "room.create result: {result}");
    let room = result["room"]["roomId"].as_str().unwrap().to_owned();
    assert_eq!(listed(&mut alice.client, &room).await.unwrap()["isInvited"], false);
}

// ---- room.join ----

#[tokio::test]
async fn join_public_room_returns_it_and_notifies_members_including_the_joiner() {
    let (server, mut ctrl) = setup().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let mut carol = server.participant(&mut ctrl, "Carol").await;
    let room = create(&mut alice.client, "Open", "public").await;
    carol.client.clear_events().await;

    let result = bob.client.ok("room.join", json!({ "roomId": room })).await;
    assert_eq!(result["room"]["roomId"], room.as_str());
    assert_eq!(result["room"]["isMember"], true);
    assert_eq!(result["room"]["memberCount"], 2);

    let expected = json!({ "roomId": room, "agentId": bob.id, "displayName": "Bob" });
    assert_eq!(alice.client.event("room.joined").await, expected);
    assert_eq!(bob.client.event("room.joined").await, expected);
    carol.client.assert_no_event("room.joined").await;
    ctrl.assert_no_event("room.joined").await;
    assert_eq!(member_ids(&mut carol.client, &room).await, vec![alice.id.clone(), bob.id.clone()]);
}

#[tokio::test]
async fn join_private_room_without_invitation_gets_4013() {
    let (server, mut ctrl) = setup().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let room = create(&mut alice.client, "Hidden", "private").await;
    bob.client.err("room.join", json!({ "roomId": room }), 4013).await;
    assert_eq!(member_ids(&mut alice.client, &room).await, vec![alice.id.clone()]);
}

#[tokio::test]
async fn join_private_room_with_invitation_succeeds() {
    let (server, mut ctrl) = setup().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let room = create(&mut alice.client, "Hidden", "private").await;
    alice.client.ok("room.invite", json!({ "roomId": room, "agentId": bob.id })).await;
    let result = bob.client.ok("room.join", json!({ "roomId": room })).await;
    assert_eq!(result["room"]["isMember"], true);
    assert_eq!(result["room"]["visibility"], "private");
    assert_eq!(result["room"]["memberCount"], 2);
    let expected = json!({ "roomId": room, "agentId": bob.id, "displayName": "Bob" });
    assert_eq!(alice.client.event("room.joined").await, expected);
}

#[tokio::test]
async fn controller_joins_a_private_room_without_invitation() {
    let (server, mut ctrl) = setup().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let room = create(&mut alice.client, "Hidden", "private").await;
    let result = ctrl.ok("room.join", json!({ "roomId": room })).await;
    assert_eq!(result["room"]["isMember"], true);
    let joined = alice.client.event("room.joined").await;
    assert_eq!(joined["agentId"], ctrl.agent_id().as_str());
    assert_eq!(member_ids(&mut alice.client, &room).await, vec![alice.id.clone(), ctrl.agent_id()]);
}

#[tokio::test]
async fn join_as_member_or_of_the_lobby_gets_4012_and_unknown_room_gets_4010() {
    let (server, mut ctrl) = setup().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let room = create(&mut alice.client, "Open", "public").await;
    alice.client.err("room.join", json!({ "roomId": room }), 4012).await;
    let lobby = alice.client.lobby_id();
    alice.client.err("room.join", json!({ "roomId": lobby }), 4012).await;
    alice.client.err("room.join", json!({ "roomId": UNKNOWN_ROOM }), 4010).await;
    alice.client.err("room.join", json!({ "roomId": "not-a-room" }), 4010).await;
    alice.client.err("room.join", json!({}), -32602).await;
}

// ---- room.leave ----

#[tokio::test]
async fn leave_notifies_the_remaining_members_and_the_leaver() {
    let (server, mut ctrl) = setup().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let mut carol = server.participant(&mut ctrl, "Carol").await;
    let room = create(&mut alice.client, "Open", "public").await;
    bob.client.ok("room.join", json!({ "roomId": room })).await;

    let result = bob.client.ok("room.leave", json!({ "roomId": room })).await;
    assert_eq!(result, json!({ "ok": true, "roomId": room }));
    let expected = json!({ "roomId": room, "agentId": bob.id });
    assert_eq!(alice.client.event("room.left").await, expected);
    assert_eq!(bob.client.event("room.left").await, expected);
    carol.client.assert_no_event("room.left").await;
    ctrl.assert_no_event("room.left").await;

    assert_eq!(member_ids(&mut alice.client, &room).await, vec![alice.id.clone()]);
    let entry = listed(&mut bob.client, &room).await.expect("public room still listed");
    assert_eq!(entry["isMember"], false);
    assert_eq!(entry["memberCount"], 1);
}

#[tokio::test]
async fn leave_when_not_a_member_gets_4011_and_the_lobby_gets_4030() {
    let (server, mut ctrl) = setup().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let room = create(&mut alice.client, "Open", "public").await;
    bob.client.err("room.leave", json!({ "roomId": room }), 4011).await;
    let lobby = bob.client.lobby_id();
    bob.client.err("room.leave", json!({ "roomId": lobby }), 4030).await;
    bob.client.err("room.leave", json!({ "roomId": UNKNOWN_ROOM }), 4010).await;
}

#[tokio::test]
async fn leaving_a_private_room_keeps_the_invitation_so_rejoining_works() {
    let (server, mut ctrl) = setup().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let room = create(&mut alice.client, "Hidden", "private").await;
    alice.client.ok("room.invite", json!({ "roomId": room, "agentId": bob.id })).await;
    bob.client.ok("room.join", json!({ "roomId": room })).await;
    bob.client.ok("room.leave", json!({ "roomId": room })).await;

    let entry = listed(&mut bob.client, &room).await.expect("still visible to the invitee");
    assert_eq!(entry["isMember"], false);
    assert_eq!(entry["isInvited"], true);
    bob.client.ok("room.join", json!({ "roomId": room })).await;
    assert_eq!(member_ids(&mut alice.client, &room).await, vec![alice.id.clone(), bob.id.clone()]);
}

// ---- room.info ----

#[tokio::test]
async fn info_lists_members_with_display_name_online_state_and_join_time() {
    let (server, mut ctrl) = setup().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let room = create(&mut alice.client, "Open", "public").await;
    bob.client.ok("room.join", json!({ "roomId": room })).await;
    bob.client.close().await;
    // Bob's last connection closed: wait until the server has noticed.
    loop {
        let presence = alice.client.event("presence").await;
        if presence["agentId"] == bob.id.as_str() && presence["online"] == false {
            break;
        }
    }

    let info = alice.client.ok("room.info", json!({ "roomId": room })).await;
    assert_eq!(info["room"]["roomId"], room.as_str());
    assert_eq!(info["room"]["name"], "Open");
    assert_eq!(info["room"]["ownerName"], "Alice");
    assert_eq!(info["room"]["memberCount"], 2);
    let members = info["members"].as_array().unwrap();
    assert_eq!(members.len(), 2);
    assert_eq!(members[0]["agentId"], alice.id.as_str());
    assert_eq!(members[0]["displayName"], "Alice");
    assert_eq!(members[0]["role"], "participant");
    assert_eq!(members[0]["online"], true);
    assert_eq!(members[1]["agentId"], bob.id.as_str());
    assert_eq!(members[1]["displayName"], "Bob");
    assert_eq!(members[1]["online"], false);
    let created = info["room"]["createdAt"].as_i64().unwrap();
    let alice_joined = members[0]["joinedAt"].as_i64().unwrap();
    let bob_joined = members[1]["joinedAt"].as_i64().unwrap();
    assert!(alice_joined >= created && bob_joined >= alice_joined, "joinedAt in ms, in join order: {info}");
}

#[tokio::test]
async fn lobby_info_lists_every_agent_online_or_not() {
    let (server, mut ctrl) = setup().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let bob = server.participant(&mut ctrl, "Bob").await;
    bob.client.close().await;
    loop {
        let presence = alice.client.event("presence").await;
        if presence["agentId"] == bob.id.as_str() && presence["online"] == false {
            break;
        }
    }
    let lobby = alice.client.lobby_id();
    let info = alice.client.ok("room.info", json!({ "roomId": lobby })).await;
    assert_eq!(info["room"]["isLobby"], true);
    assert_eq!(info["room"]["memberCount"], 3);
    let members = info["members"].as_array().unwrap();
    let find = |id: &str| {
        members.iter().find(|m| m["agentId"] == id).cloned().unwrap_or_else(|| panic!("{id} missing: {info}"))
    };
    let controller = find(&ctrl.agent_id());
    assert_eq!(controller["role"], "controller");
    assert_eq!(controller["online"], true);
    assert_eq!(find(&alice.id)["displayName"], "Alice");
    assert_eq!(find(&alice.id)["online"], true);
    assert_eq!(find(&bob.id)["displayName"], "Bob");
    assert_eq!(find(&bob.id)["online"], false);
    assert_eq!(members.len(), 3);
}

#[tokio::test]
async fn info_on_a_private_room_is_4010_for_outsiders_but_visible_to_invitees_and_the_controller() {
    let (server, mut ctrl) = setup().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let room = create(&mut alice.client, "Hidden", "private").await;
    bob.client.err("room.info", json!({ "roomId": room }), 4010).await;
    bob.client.err("room.info", json!({ "roomId": UNKNOWN_ROOM }), 4010).await;
    assert_eq!(member_ids(&mut ctrl, &room).await, vec![alice.id.clone()]);
    alice.client.ok("room.invite", json!({ "roomId": room, "agentId": bob.id })).await;
    assert_eq!(member_ids(&mut bob.client, &room).await, vec![alice.id.clone()]);
}

// ---- room.invite ----

#[tokio::test]
async fn invite_notifies_only_the_invitee() {
    let (server, mut ctrl) = setup().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let mut carol = server.participant(&mut ctrl, "Carol").await;
    let mut dave = server.participant(&mut ctrl, "Dave").await;
    let room = create(&mut alice.client, "Hidden", "private").await;
    alice.client.ok("room.invite", json!({ "roomId": room, "agentId": carol.id })).await;
    carol.client.ok("room.join", json!({ "roomId": room })).await;
    carol.client.clear_events().await;

    let result = alice.client.ok("room.invite", json!({ "roomId": room, "agentId": bob.id })).await;
    assert_eq!(result, json!({ "ok": true, "roomId": room, "agentId": bob.id }));
    assert_eq!(
        bob.client.event("room.invited").await,
        json!({ "roomId": room, "name": "Hidden", "byAgentId": alice.id, "byDisplayName": "Alice" })
    );
    alice.client.assert_no_event("room.invited").await;
    carol.client.assert_no_event("room.invited").await;
    dave.client.assert_no_event("room.invited").await;
    ctrl.assert_no_event("room.invited").await;
}

#[tokio::test]
async fn controller_may_invite_to_any_room_and_public_rooms_accept_invitations() {
    let (server, mut ctrl) = setup().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let hidden = create(&mut alice.client, "Hidden", "private").await;
    let open = create(&mut alice.client, "Open", "public").await;
    ctrl.ok("room.invite", json!({ "roomId": hidden, "agentId": bob.id })).await;
    let event = bob.client.event("room.invited").await;
    assert_eq!(event["byAgentId"], ctrl.agent_id().as_str());
    assert_eq!(event["roomId"], hidden.as_str());
    bob.client.ok("room.join", json!({ "roomId": hidden })).await;

    alice.client.ok("room.invite", json!({ "roomId": open, "agentId": bob.id })).await;
    let event = bob.client.event("room.invited").await;
    assert_eq!(event["name"], "Open");
}

#[tokio::test]
async fn invite_errors_non_owner_4003_unknown_agent_4020_member_4012_lobby_4030() {
    let (server, mut ctrl) = setup().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let carol = server.participant(&mut ctrl, "Carol").await;
    let room = create(&mut alice.client, "Open", "public").await;
    bob.client.ok("room.join", json!({ "roomId": room })).await;

    bob.client.err("room.invite", json!({ "roomId": room, "agentId": carol.id }), 4003).await;
    alice.client.err("room.invite", json!({ "roomId": room, "agentId": UNKNOWN_AGENT }), 4020).await;
    alice.client.err("room.invite", json!({ "roomId": room, "agentId": bob.id }), 4012).await;
    alice.client.err("room.invite", json!({ "roomId": room, "agentId": alice.id }), 4012).await;
    let lobby = alice.client.lobby_id();
    alice.client.err("room.invite", json!({ "roomId": lobby, "agentId": carol.id }), 4030).await;
    ctrl.err("room.invite", json!({ "roomId": lobby, "agentId": carol.id }), 4030).await;
    alice.client.err("room.invite", json!({ "roomId": UNKNOWN_ROOM, "agentId": carol.id }), 4010).await;
}

// ---- room.kick ----

#[tokio::test]
async fn kick_sends_kicked_to_the_member_and_room_left_to_the_room() {
    let (server, mut ctrl) = setup().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let mut carol = server.participant(&mut ctrl, "Carol").await;
    let mut dave = server.participant(&mut ctrl, "Dave").await;
    let room = create(&mut alice.client, "Open", "public").await;
    bob.client.ok("room.join", json!({ "roomId": room })).await;
    carol.client.ok("room.join", json!({ "roomId": room })).await;

    let result = alice.client.ok("room.kick", json!({ "roomId": room, "agentId": bob.id })).await;
    assert_eq!(result, json!({ "ok": true, "roomId": room, "agentId": bob.id }));
    let kicked = bob.client.event("kicked").await;
    assert_eq!(kicked["roomId"], room.as_str());
    assert!(kicked["reason"].as_str().is_some_and(|r| !r.is_empty()), "a default reason: {kicked}");
    assert_eq!(kicked.as_object().unwrap().len(), 2, "kicked is {{roomId, reason}}: {kicked}");

    let left = json!({ "roomId": room, "agentId": bob.id });
    assert_eq!(alice.client.event("room.left").await, left);
    assert_eq!(carol.client.event("room.left").await, left);
    assert_eq!(bob.client.event("room.left").await, left);
    alice.client.assert_no_event("kicked").await;
    carol.client.assert_no_event("kicked").await;
    dave.client.assert_no_event("kicked").await;
    dave.client.assert_no_event("room.left").await;
    assert_eq!(member_ids(&mut alice.client, &room).await, vec![alice.id.clone(), carol.id.clone()]);
    // A public room stays open to the kicked agent.
    bob.client.ok("room.join", json!({ "roomId": room })).await;
}

#[tokio::test]
async fn kick_passes_a_custom_reason_through() {
    let (server, mut ctrl) = setup().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let room = create(&mut alice.client, "Open", "public").await;
    bob.client.ok("room.join", json!({ "roomId": room })).await;
    // The controller may kick in any room.
    ctrl.ok("room.kick", json!({ "roomId": room, "agentId": bob.id, "reason": "spamming" })).await;
    assert_eq!(bob.client.event("kicked").await, json!({ "roomId": room, "reason": "spamming" }));
}

#[tokio::test]
async fn kicked_member_of_a_private_room_cannot_rejoin() {
    let (server, mut ctrl) = setup().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let room = create(&mut alice.client, "Hidden", "private").await;
    alice.client.ok("room.invite", json!({ "roomId": room, "agentId": bob.id })).await;
    bob.client.ok("room.join", json!({ "roomId": room })).await;
    alice.client.ok("room.kick", json!({ "roomId": room, "agentId": bob.id })).await;
    bob.client.event("kicked").await;
    assert!(listed(&mut bob.client, &room).await.is_none(), "invitation revoked: the room is hidden again");
    bob.client.err("room.join", json!({ "roomId": room }), 4013).await;
    // A new invitation lets it back in.
    alice.client.ok("room.invite", json!({ "roomId": room, "agentId": bob.id })).await;
    bob.client.ok("room.join", json!({ "roomId": room })).await;
}

#[tokio::test]
async fn kick_errors_non_owner_4003_non_member_4011_controller_4003_lobby_4030() {
    let (server, mut ctrl) = setup().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let carol = server.participant(&mut ctrl, "Carol").await;
    let room = create(&mut alice.client, "Open", "public").await;
    bob.client.ok("room.join", json!({ "roomId": room })).await;
    ctrl.ok("room.join", json!({ "roomId": room })).await;

    bob.client.err("room.kick", json!({ "roomId": room, "agentId": alice.id }), 4003).await;
    alice.client.err("room.kick", json!({ "roomId": room, "agentId": carol.id }), 4011).await;
    alice.client.err("room.kick", json!({ "roomId": room, "agentId": UNKNOWN_AGENT }), 4011).await;
    let controller_id = ctrl.agent_id();
    alice.client.err("room.kick", json!({ "roomId": room, "agentId": controller_id }), 4003).await;
    let lobby = alice.client.lobby_id();
    alice.client.err("room.kick", json!({ "roomId": lobby, "agentId": bob.id }), 4030).await;
    ctrl.err("room.kick", json!({ "roomId": lobby, "agentId": bob.id }), 4030).await;
    alice.client.err("room.kick", json!({ "roomId": UNKNOWN_ROOM, "agentId": bob.id }), 4010).await;
    assert_eq!(member_ids(&mut alice.client, &room).await, vec![alice.id.clone(), bob.id.clone(), controller_id]);
}

// ---- room.visibility ----

#[tokio::test]
async fn going_private_keeps_members_invited_and_locks_outsiders_out() {
    let (server, mut ctrl) = setup().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let mut carol = server.participant(&mut ctrl, "Carol").await;
    let room = create(&mut alice.client, "Open", "public").await;
    bob.client.ok("room.join", json!({ "roomId": room })).await;
    carol.client.clear_events().await;

    let result = alice.client.ok("room.visibility", json!({ "roomId": room, "visibility": "private" })).await;
    assert_eq!(result["room"]["visibility"], "private");
    let changed = json!({ "roomId": room, "visibility": "private" });
    assert_eq!(alice.client.event("room.visibilityChanged").await, changed);
    assert_eq!(bob.client.event("room.visibilityChanged").await, changed);
    carol.client.assert_no_event("room.visibilityChanged").await;
    ctrl.assert_no_event("room.visibilityChanged").await;

    // Members were marked invited: they may leave and come back.
    bob.client.ok("room.leave", json!({ "roomId": room })).await;
    assert_eq!(listed(&mut bob.client, &room).await.expect("invitee sees it")["isInvited"], true);
    bob.client.ok("room.join", json!({ "roomId": room })).await;

    // Outsiders no longer see it nor may join it.
    assert!(listed(&mut carol.client, &room).await.is_none());
    carol.client.err("room.join", json!({ "roomId": room }), 4013).await;
}

#[tokio::test]
async fn going_public_opens_the_room_and_repeating_a_visibility_sends_nothing() {
    let (server, mut ctrl) = setup().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let room = create(&mut alice.client, "Hidden", "private").await;
    assert!(listed(&mut bob.client, &room).await.is_none());

    // The controller may change any room's visibility.
    let result = ctrl.ok("room.visibility", json!({ "roomId": room, "visibility": "public" })).await;
    assert_eq!(result["room"]["visibility"], "public");
    assert_eq!(alice.client.event("room.visibilityChanged").await, json!({ "roomId": room, "visibility": "public" }));
    bob.client.assert_no_event("room.visibilityChanged").await;
    assert_eq!(listed(&mut bob.client, &room).await.expect("now public")["visibility"], "public");
    bob.client.ok("room.join", json!({ "roomId": room })).await;

    alice.client.clear_events().await;
    let again = alice.client.ok("room.visibility", json!({ "roomId": room, "visibility": "public" })).await;
    assert_eq!(again["room"]["visibility"], "public");
    alice.client.assert_no_event("room.visibilityChanged").await;
}

#[tokio::test]
async fn visibility_errors_non_owner_4003_lobby_4030() {
    let (server, mut ctrl) = setup().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let room = create(&mut alice.client, "Open", "public").await;
    bob.client.ok("room.join", json!({ "roomId": room })).await;
    bob.client.err("room.visibility", json!({ "roomId": room, "visibility": "private" }), 4003).await;
    let lobby = alice.client.lobby_id();
    ctrl.err("room.visibility", json!({ "roomId": lobby, "visibility": "private" }), 4030).await;
    alice.client.err("room.visibility", json!({ "roomId": lobby, "visibility": "private" }), 4030).await;
    alice.client.err("room.visibility", json!({ "roomId": room, "visibility": "secret" }), -32602).await;
    assert_eq!(listed(&mut bob.client, &room).await.unwrap()["visibility"], "public");
}

// ---- room.update ----

#[tokio::test]
async fn update_changes_name_and_description_and_notifies_members_only() {
    let (server, mut ctrl) = setup().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let mut carol = server.participant(&mut ctrl, "Carol").await;
    let room = create(&mut alice.client, "Old", "public").await;
    bob.client.ok("room.join", json!({ "roomId": room })).await;

    let result = alice.client.ok("room.update", json!({ "roomId": room, "name": "New", "description": "about" })).await;
    assert_eq!(result["room"]["name"], "New");
    assert_eq!(result["room"]["description"], "about");
    let updated = json!({ "roomId": room, "name": "New", "description": "about" });
    assert_eq!(alice.client.event("room.updated").await, updated);
    assert_eq!(bob.client.event("room.updated").await, updated);
    carol.client.assert_no_event("room.updated").await;
    ctrl.assert_no_event("room.updated").await;
    let entry = listed(&mut carol.client, &room).await.unwrap();
    assert_eq!(entry["name"], "New");
    assert_eq!(entry["description"], "about");

    // One field at a time: the other stays.
    let result = alice.client.ok("room.update", json!({ "roomId": room, "description": "more" })).await;
    assert_eq!(result["room"]["name"], "New");
    assert_eq!(result["room"]["description"], "more");
    assert_eq!(bob.client.event("room.updated").await, json!({ "roomId": room, "name": "New", "description": "more" }));
    let result = ctrl.ok("room.update", json!({ "roomId": room, "name": "Newer" })).await;
    assert_eq!(result["room"]["name"], "Newer");
    assert_eq!(result["room"]["description"], "more");
    // An empty description clears it.
    let result = alice.client.ok("room.update", json!({ "roomId": room, "description": "" })).await;
    assert_eq!(result["room"]["description"], Value::Null);
}

#[tokio::test]
async fn update_errors_no_field_32602_non_owner_4003_lobby_4030() {
    let (server, mut ctrl) = setup().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let room = create(&mut alice.client, "Old", "public").await;
    bob.client.ok("room.join", json!({ "roomId": room })).await;
    alice.client.err("room.update", json!({ "roomId": room }), -32602).await;
    alice.client.err("room.update", json!({ "roomId": room, "name": null, "description": null }), -32602).await;
    alice.client.err("room.update", json!({ "roomId": room, "name": "" }), -32602).await;
    bob.client.err("room.update", json!({ "roomId": room, "name": "Mine" }), 4003).await;
    let lobby = alice.client.lobby_id();
    alice.client.err("room.update", json!({ "roomId": lobby, "name": "Mine" }), 4030).await;
    ctrl.err("room.update", json!({ "roomId": lobby, "name": "Mine" }), 4030).await;
    bob.client.assert_no_event("room.updated").await;
    assert_eq!(listed(&mut bob.client, &room).await.unwrap()["name"], "Old");
}

// ---- room.delete ----

#[tokio::test]
async fn delete_notifies_members_and_controller_and_removes_the_room() {
    let (server, mut ctrl) = setup().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let mut carol = server.participant(&mut ctrl, "Carol").await;
    let room = create(&mut alice.client, "Doomed", "public").await;
    bob.client.ok("room.join", json!({ "roomId": room })).await;
    let sent = bob.client.ok("message.send", json!({ "roomId": room, "content": "last words" })).await;

    let result = alice.client.ok("room.delete", json!({ "roomId": room })).await;
    assert_eq!(result, json!({ "ok": true, "roomId": room }));
    let deleted = json!({ "roomId": room });
    assert_eq!(alice.client.event("room.deleted").await, deleted);
    assert_eq!(bob.client.event("room.deleted").await, deleted);
    assert_eq!(ctrl.event("room.deleted").await, deleted);
    carol.client.assert_no_event("room.deleted").await;

    for client in [&mut alice.client, &mut bob.client, &mut carol.client, &mut ctrl] {
        assert!(listed(client, &room).await.is_none(), "a deleted room leaves room.list");
    }
    carol.client.err("room.join", json!({ "roomId": room }), 4010).await;
    bob.client.err("room.join", json!({ "roomId": room }), 4010).await;
    bob.client.err("message.send", json!({ "roomId": room, "content": "hello?" }), 4010).await;
    bob.client.err("room.info", json!({ "roomId": room }), 4010).await;
    bob.client.err("room.history", json!({ "roomId": room }), 4010).await;
    alice.client.err("room.delete", json!({ "roomId": room }), 4010).await;

    // The controller still reads its history and info; ownership passed to it.
    let history = ctrl.ok("room.history", json!({ "roomId": room })).await;
    let messages = history["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["messageId"], sent["messageId"]);
    assert_eq!(messages[0]["content"], "last words");
    let info = ctrl.ok("room.info", json!({ "roomId": room })).await;
    assert_eq!(info["room"]["ownerId"], ctrl.agent_id().as_str());
    assert_eq!(info["members"], json!([]));
}

#[tokio::test]
async fn delete_errors_non_owner_4003_lobby_4030() {
    let (server, mut ctrl) = setup().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let room = create(&mut alice.client, "Kept", "public").await;
    bob.client.ok("room.join", json!({ "roomId": room })).await;
    bob.client.err("room.delete", json!({ "roomId": room }), 4003).await;
    let lobby = alice.client.lobby_id();
    alice.client.err("room.delete", json!({ "roomId": lobby }), 4030).await;
    ctrl.err("room.delete", json!({ "roomId": lobby }), 4030).await;
    bob.client.assert_no_event("room.deleted").await;
    assert!(listed(&mut bob.client, &room).await.is_some());
    // The controller may delete any room.
    ctrl.ok("room.delete", json!({ "roomId": room })).await;
    assert_eq!(bob.client.event("room.deleted").await, json!({ "roomId": room }));
}

// ---- room.takeOwnership ----

#[tokio::test]
async fn take_ownership_makes_the_controller_owner_and_member_and_tells_the_room_and_previous_owner() {
    let (server, mut ctrl) = setup().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let mut carol = server.participant(&mut ctrl, "Carol").await;
    let room = create(&mut alice.client, "Abandoned", "private").await;
    alice.client.ok("room.invite", json!({ "roomId": room, "agentId": bob.id })).await;
    bob.client.ok("room.join", json!({ "roomId": room })).await;
    // The owner walks away: it is no longer a member, but still the owner.
    alice.client.ok("room.leave", json!({ "roomId": room })).await;
    alice.client.clear_events().await;
    bob.client.clear_events().await;
    carol.client.clear_events().await;

    let controller_id = ctrl.agent_id();
    let result = ctrl.ok("room.takeOwnership", json!({ "roomId": room })).await;
    assert_eq!(result["room"]["ownerId"], controller_id.as_str());
    assert_eq!(result["room"]["isMember"], true);
    assert_eq!(result["room"]["memberCount"], 2);

    let changed = json!({ "roomId": room, "newOwnerId": controller_id, "previousOwnerId": alice.id });
    assert_eq!(bob.client.event("room.ownerChanged").await, changed);
    assert_eq!(alice.client.event("room.ownerChanged").await, changed);
    assert_eq!(ctrl.event("room.ownerChanged").await, changed);
    carol.client.assert_no_event("room.ownerChanged").await;
    let joined = bob.client.event("room.joined").await;
    assert_eq!(joined["agentId"], controller_id.as_str());
    carol.client.assert_no_event("room.joined").await;

    assert_eq!(member_ids(&mut bob.client, &room).await, vec![bob.id.clone(), controller_id.clone()]);
    // The previous owner has lost its powers.
    alice.client.err("room.update", json!({ "roomId": room, "name": "Mine again" }), 4003).await;
}

#[tokio::test]
async fn take_ownership_notifies_a_previous_owner_who_is_a_member_once() {
    let (server, mut ctrl) = setup().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let room = create(&mut alice.client, "Mine", "public").await;
    alice.client.clear_events().await;
    ctrl.ok("room.takeOwnership", json!({ "roomId": room })).await;
    let events = alice.client.take_events("room.ownerChanged").await;
    assert_eq!(events.len(), 1, "exactly one room.ownerChanged: {events:?}");
    assert_eq!(events[0]["previousOwnerId"], alice.id.as_str());
    let entry = listed(&mut alice.client, &room).await.unwrap();
    assert_eq!(entry["ownerId"], ctrl.agent_id().as_str());
    assert_eq!(entry["isMember"], true, "the previous owner stays a member");
    assert_eq!(entry["memberCount"], 2);
}

#[tokio::test]
async fn take_ownership_errors_participant_4003_lobby_4030_unknown_4010() {
    let (server, mut ctrl) = setup().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let room = create(&mut alice.client, "Mine", "public").await;
    alice.client.err("room.takeOwnership", json!({ "roomId": room }), 4003).await;
    // Controller-only: rejected before params are parsed.
    alice.client.err("room.takeOwnership", json!({}), 4003).await;
    let lobby = ctrl.lobby_id();
    ctrl.err("room.takeOwnership", json!({ "roomId": lobby }), 4030).await;
    ctrl.err("room.takeOwnership", json!({ "roomId": UNKNOWN_ROOM }), 4010).await;
    assert_eq!(listed(&mut alice.client, &room).await.unwrap()["ownerId"], alice.id.as_str());
}
