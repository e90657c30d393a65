use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn controller_authenticates_and_sees_the_lobby() {
    let server = TestServer::start().await;
    let mut client = Client::connect(&server.url()).await;
    let result = client.auth(&server.controller_key).await;
    assert_eq!(result["status"], "ok");
    assert_eq!(result["role"], "controller");
    assert_eq!(result["lobby"]["name"], "Lobby");
    assert!(result["motd"].is_null());
    let rooms = client.ok("room.list", json!({})).await;
    assert_eq!(rooms["rooms"][0]["isLobby"], true);
}

#[tokio::test]
async fn unauthenticated_calls_get_4001_even_with_bad_params() {
    let server = TestServer::start().await;
    let mut client = Client::connect(&server.url()).await;
    client.err("room.list", json!({}), 4001).await;
    client.err("room.join", json!({ "roomId": 42 }), 4001).await;
    client.err("room.join", json!("nonsense"), 4001).await;
}

#[tokio::test]
async fn wrong_key_gets_4002_and_the_connection_stays_usable() {
    let server = TestServer::start().await;
    let mut client = Client::connect(&server.url()).await;
    client.err("auth", json!({ "apiKey": "bl_k_000000000000000000000000000000000000000000000000" }), 4002).await;
    client.auth(&server.controller_key).await;
}
