//! The `#[rpc]` trait, the params structs and the `METHODS` catalogue come from one
//! declaration; these tests pin that the server's module and the jsonrpsee client
//! agree with it.

use std::path::Path;

use broodlink::config::Config;
use broodlink::rpc::Rpc;
use broodlink::service::Linkspace;
use broodlink::store::Store;
use broodlink_protocol::{BroodLinkApiClient, BroodLinkApiServer, Visibility, METHODS};
use jsonrpsee::core::client::SubscriptionClientT;
use jsonrpsee::ws_client::WsClientBuilder;
use serde_json::{json, Value};

use crate::harness::*;

#[tokio::test]
async fn rpc_module_serves_exactly_the_catalogue() {
    let store = Store::open(Path::new(":memory:"), Default::default()).await.expect("in-memory store");
    let opened = Linkspace::open(Config::default(), store, None, None).await.expect("linkspace");
    let module = Rpc::new(opened.linkspace).into_rpc();
    let mut served: Vec<&str> = module.method_names().collect();
    let mut declared: Vec<&str> = METHODS.iter().map(|m| m.name).collect();
    served.sort_unstable();
    declared.sort_unstable();
    assert_eq!(served, declared);
}

#[tokio::test]
async fn generated_rust_client_talks_to_the_server() {
    let server = TestServer::start().await;
    let client = WsClientBuilder::default().build(server.url()).await.expect("jsonrpsee client connects");
    let auth = client.auth(server.controller_key.clone(), None).await.expect("auth");
    assert_eq!(auth.role, broodlink_protocol::Role::Controller);

    let room = client
        .create_room("From Rust".into(), Some(Visibility::Public), Some("typed".into()))
        .await
        .expect("room.create")
        .room;
    assert_eq!(room.name, "From Rust");
    assert_eq!(room.description.as_deref(), Some("typed"));

    // A second agent, on a raw socket, sends; the typed client receives the event.
    let invited = client.invite_agent("Raw".into()).await.expect("agent.invite");
    let mut raw = Client::connect(&server.url()).await;
    raw.auth(&invited.api_key).await;
    raw.ok("room.join", json!({ "roomId": room.room_id })).await;
    let mut messages = client.subscribe_to_method::<Value>("message").await.expect("subscribe to events");
    let sent = raw.ok("message.send", json!({ "roomId": room.room_id, "content": "hello typed client" })).await;

    let event = tokio::time::timeout(TIMEOUT, messages.next()).await.expect("event in time").expect("stream open");
    let event = event.expect("valid event");
    assert_eq!(event["message"]["content"], "hello typed client");
    assert_eq!(event["message"]["messageId"], sent["messageId"]);

    let history = client.room_history(room.room_id.clone(), Some(10), None, None, None).await.expect("room.history");
    assert_eq!(history.messages.len(), 1);
    assert_eq!(history.messages[0].seq, sent["seq"].as_i64().unwrap());

    let err = client.join_room("no-such-room".into()).await.expect_err("unknown room");
    match err {
        jsonrpsee::core::client::Error::Call(e) => assert_eq!(e.code(), 4010),
        other => panic!("unexpected error {other:?}"),
    }
}
