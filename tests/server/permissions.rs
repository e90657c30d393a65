use serde_json::json;

use crate::harness::*;
use broodlink_protocol::{Permission, METHODS};
use serde_json::Value;

// The permission matrix, driven by the protocol catalogue: a method added to the
// protocol is covered here automatically (and the tests that need valid params panic
// until they are told how to call it).

fn methods_with(permission: Permission) -> Vec<&'static str> {
    METHODS.iter().filter(|m| m.permission == permission).map(|m| m.name).collect()
}

fn str_of(value: &Value) -> String {
    value.as_str().expect("a string").to_owned()
}

/// A room owned by `owner` with `members` joined; returns its id.
async fn room_with(owner: &mut Client, members: &mut [&mut Client], name: &str) -> String {
    let room = str_of(&owner.ok("room.create", json!({ "name": name })).await["room"]["roomId"]);
    for member in members.iter_mut() {
        member.ok("room.join", json!({ "roomId": room })).await;
    }
    room
}

/// Valid params for a RoomOwner method on `room`: `invitee` is not a member,
/// `kickee` is a member that is not the owner.
fn owner_params(method: &str, room: &str, invitee: &str, kickee: &str) -> Value {
    match method {
        "room.invite" => json!({ "roomId": room, "agentId": invitee }),
        "room.kick" => json!({ "roomId": room, "agentId": kickee, "reason": "matrix" }),
        "room.visibility" => json!({ "roomId": room, "visibility": "private" }),
        "room.delete" => json!({ "roomId": room }),
        "room.update" => json!({ "roomId": room, "name": "Renamed", "description": "new" }),
        other => panic!("the permission matrix needs valid params for the RoomOwner method {other}"),
    }
}

/// Checks the result of a successful RoomOwner call made with [`owner_params`].
fn check_owner_result(method: &str, result: &Value, room: &str, invitee: &str, kickee: &str) {
    match method {
        "room.invite" => assert_eq!(result, &json!({ "ok": true, "roomId": room, "agentId": invitee })),
        "room.kick" => assert_eq!(result, &json!({ "ok": true, "roomId": room, "agentId": kickee })),
        "room.visibility" => {
            assert_eq!(result["room"]["roomId"], room);
            assert_eq!(result["room"]["visibility"], "private");
        }
        "room.delete" => assert_eq!(result, &json!({ "ok": true, "roomId": room })),
        "room.update" => {
            assert_eq!(result["room"]["roomId"], room);
            assert_eq!(result["room"]["name"], "Renamed");
            assert_eq!(result["room"]["description"], "new");
        }
        other => panic!("no result check for {other}"),
    }
}

#[tokio::test]
async fn the_catalogue_declares_auth_as_the_only_public_method() {
    assert_eq!(methods_with(Permission::Public), vec!["auth"]);
    let mut names: Vec<&str> = METHODS.iter().map(|m| m.name).collect();
    let count = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), count, "duplicate method names in the catalogue");
    for expected in ["agent.unban", "room.takeOwnership", "lobby.setMotd", "docs.update", "message.dm"] {
        assert!(names.contains(&expected), "{expected} missing from the catalogue");
    }
}

#[tokio::test]
async fn every_method_except_auth_requires_authentication() {
    let server = TestServer::start().await;
    let mut client = Client::connect(&server.url()).await;
    for method in METHODS.iter().filter(|m| m.name != "auth") {
        let e = client.err(method.name, json!({}), 4001).await;
        assert!(!e.message.is_empty());
        // Checked before params are parsed: garbage params still get 4001, not -32602.
        client.err(method.name, json!({ "roomId": 5 }), 4001).await;
        client.err(method.name, json!({ "agentId": [], "content": null, "name": {} }), 4001).await;
    }
    // Still unauthenticated, still usable.
    client.auth(&server.controller_key).await;
}

#[tokio::test]
async fn participants_get_4003_for_every_controller_method() {
    let server = TestServer::start().await;
    let mut controller = server.controller().await;
    let mut participant = server.participant(&mut controller, "Participant").await;
    let controller_methods = methods_with(Permission::Controller);
    assert!(controller_methods.len() >= 9, "{controller_methods:?}");
    controller.clear_events().await;
    participant.client.clear_events().await;

    for method in &controller_methods {
        // Checked before params are parsed: `{}` gets 4003, not -32602.
        participant.client.err(method, json!({}), 4003).await;
        participant.client.err(method, json!({ "agentId": 5 }), 4003).await;
    }
    // Even with valid params for the most tempting ones.
    let me = participant.id.clone();
    participant.client.err("agent.invite", json!({ "displayName": "Sneaky" }), 4003).await;
    participant.client.err("agent.kick", json!({ "agentId": controller.agent_id() }), 4003).await;
    participant.client.err("agent.unban", json!({ "agentId": me }), 4003).await;
    participant.client.err("lobby.setMotd", json!({ "content": "pwned" }), 4003).await;
    participant.client.err("docs.update", json!({ "name": "constitution", "content": "pwned" }), 4003).await;

    // Nothing happened.
    let agents = controller.ok("agent.list", json!({})).await;
    assert_eq!(agents["agents"].as_array().unwrap().len(), 2, "{agents}");
    assert!(controller.ok("lobby.getMotd", json!({})).await["motd"].is_null());
    let constitution = controller.ok("docs.get", json!({ "name": "constitution" })).await;
    assert_ne!(constitution["content"], "pwned");
    controller.assert_no_event("lobby.motd").await;
    controller.assert_no_event("docs.updated").await;
    participant.client.assert_no_event("disconnected").await;
}

#[tokio::test]
async fn room_owner_methods_are_forbidden_to_members_and_outsiders_who_do_not_own_the_room() {
    let server = TestServer::start().await;
    let mut controller = server.controller().await;
    let mut owner = server.participant(&mut controller, "Owner").await;
    let mut member = server.participant(&mut controller, "Member").await;
    let mut kickee = server.participant(&mut controller, "Kickee").await;
    let mut invitee = server.participant(&mut controller, "Invitee").await;
    let mut outsider = server.participant(&mut controller, "Outsider").await;
    let owner_methods = methods_with(Permission::RoomOwner);
    assert!(owner_methods.len() >= 5, "{owner_methods:?}");

    let room = room_with(&mut owner.client, &mut [&mut member.client, &mut kickee.client], "Owned").await;
    let before = owner.client.ok("room.info", json!({ "roomId": room })).await;
    for client in [&mut owner.client, &mut member.client, &mut kickee.client, &mut invitee.client, &mut outsider.client]
    {
        client.clear_events().await;
    }

    for method in &owner_methods {
        let params = owner_params(method, &room, &invitee.id, &kickee.id);
        member.client.err(method, params.clone(), 4003).await;
        outsider.client.err(method, params, 4003).await;
    }

    // Nothing changed, and nobody was told anything.
    let after = owner.client.ok("room.info", json!({ "roomId": room })).await;
    assert_eq!(after, before, "a forbidden call changed the room");
    invitee.client.assert_no_event("room.invited").await;
    kickee.client.assert_no_event("kicked").await;
    for client in [&mut owner.client, &mut member.client, &mut kickee.client] {
        for event in ["room.left", "room.updated", "room.visibilityChanged", "room.deleted"] {
            client.assert_no_event(event).await;
        }
    }
}

#[tokio::test]
async fn room_owner_methods_succeed_for_the_owner_and_for_the_controller() {
    let server = TestServer::start().await;
    let mut controller = server.controller().await;
    let mut owner = server.participant(&mut controller, "Owner").await;
    let mut kickee = server.participant(&mut controller, "Kickee").await;
    let invitee = server.participant(&mut controller, "Invitee").await;

    for method in methods_with(Permission::RoomOwner) {
        // The owner, on its own room.
        let room = room_with(&mut owner.client, &mut [&mut kickee.client], &format!("{method} by owner")).await;
        let params = owner_params(method, &room, &invitee.id, &kickee.id);
        let result = owner.client.call(method, params).await.unwrap_or_else(|e| panic!("owner {method}: {e:?}"));
        check_owner_result(method, &result, &room, &invitee.id, &kickee.id);

        // The controller, on a room it neither owns nor belongs to.
        let room = room_with(&mut owner.client, &mut [&mut kickee.client], &format!("{method} by controller")).await;
        let params = owner_params(method, &room, &invitee.id, &kickee.id);
        let result = controller.call(method, params).await.unwrap_or_else(|e| panic!("controller {method}: {e:?}"));
        check_owner_result(method, &result, &room, &invitee.id, &kickee.id);
    }
}

/// Invites an agent (never connected) and returns its id.
async fn new_agent(controller: &mut Client, purpose: &str) -> String {
    let invited = controller.ok("agent.invite", json!({ "displayName": format!("Target of {purpose}") })).await;
    str_of(&invited["agentId"])
}

/// Valid params for a Controller method; may set up what the call needs.
async fn controller_params(server: &TestServer, controller: &mut Client, method: &str) -> Value {
    match method {
        "agent.invite" => json!({ "displayName": "Fresh" }),
        "agent.list" => json!({}),
        "agent.kick" | "agent.ban" | "agent.revoke" => {
            json!({ "agentId": new_agent(controller, method).await, "reason": "matrix" })
        }
        "agent.unban" => {
            let id = new_agent(controller, method).await;
            controller.ok("agent.ban", json!({ "agentId": id })).await;
            json!({ "agentId": id })
        }
        "room.takeOwnership" => {
            let mut owner = server.participant(controller, "Room owner").await;
            let room = room_with(&mut owner.client, &mut [], "To be taken").await;
            json!({ "roomId": room })
        }
        "lobby.setMotd" => json!({ "content": "Welcome to the hive!" }),
        "docs.update" => json!({ "name": "constitution", "content": "# Rules\nBe kind." }),
        other => panic!("the permission matrix needs valid params for the Controller method {other}"),
    }
}

#[tokio::test]
async fn every_controller_method_succeeds_for_the_controller() {
    let server = TestServer::start().await;
    let mut controller = server.controller().await;
    let controller_id = controller.agent_id();
    for method in methods_with(Permission::Controller) {
        let params = controller_params(&server, &mut controller, method).await;
        let result =
            controller.call(method, params.clone()).await.unwrap_or_else(|e| panic!("{method} {params}: {e:?}"));
        match method {
            "agent.invite" => assert_eq!(result["displayName"], "Fresh"),
            "agent.list" => assert!(result["agents"].as_array().unwrap().iter().any(|a| a["agentId"] == controller_id)),
            "agent.kick" | "agent.ban" | "agent.revoke" | "agent.unban" => {
                assert_eq!(result, json!({ "ok": true, "agentId": params["agentId"], "disconnected": 0 }))
            }
            "room.takeOwnership" => {
                assert_eq!(result["room"]["roomId"], params["roomId"]);
                assert_eq!(result["room"]["ownerId"], controller_id);
                assert_eq!(result["room"]["isMember"], true);
            }
            "lobby.setMotd" => assert_eq!(result, json!({ "motd": "Welcome to the hive!" })),
            "docs.update" => assert_eq!(result["name"], "constitution"),
            other => panic!("no result check for {other}"),
        }
    }
}

#[tokio::test]
async fn every_catalogue_method_is_routed_and_no_other_name_is() {
    let server = TestServer::start().await;

    // Unauthenticated: every catalogue method exists (4001, not -32601).
    let mut anonymous = Client::connect(&server.url()).await;
    for method in METHODS.iter().filter(|m| m.name != "auth") {
        anonymous.err(method.name, json!({}), 4001).await;
    }
    // `auth` is routed and parses its params.
    anonymous.err("auth", json!({}), -32602).await;
    anonymous.err("auth", json!({ "apiKey": "bl_k_nope" }), 4002).await;

    // Authenticated as the controller (who may call everything): no catalogue method is
    // unknown to the server.
    let mut controller = server.controller().await;
    for method in METHODS.iter().filter(|m| m.name != "auth") {
        if let Err(e) = controller.call(method.name, json!({})).await {
            assert_ne!(e.code, -32601, "{} is in the catalogue but not routed: {e:?}", method.name);
        }
    }

    // Names outside the catalogue are unknown, authenticated or not, including
    // near-misses (case, jsonrpsee's `_` namespace separator).
    let unknown = [
        "room.rename",
        "agent.delete",
        "message.edit",
        "Auth",
        "room.Join",
        "room_join",
        "lobby.getmotd",
        "rpc.discover",
        "agent",
        "",
    ];
    for name in unknown {
        assert!(METHODS.iter().all(|m| m.name != name));
        anonymous.err(name, json!({}), -32601).await;
        controller.err(name, json!({}), -32601).await;
    }
}
