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

#[tokio::test]
async fn a_connection_that_never_authenticates_is_closed_after_the_auth_timeout() {
    let server = TestServer::start_with(|c| c.limits.auth_timeout_seconds = 1).await;
    let mut idle = Client::connect(&server.url()).await;
    let mut authenticated = server.controller().await;
    let started = std::time::Instant::now();

    let events = idle.wait_closed().await;
    assert!(started.elapsed() >= std::time::Duration::from_millis(900), "closed too early");
    let goodbye: Vec<_> = events.iter().filter(|e| e["method"] == "disconnected").collect();
    assert_eq!(goodbye.len(), 1, "{events:?}");
    assert_eq!(goodbye[0]["params"]["retry"], false);
    assert!(goodbye[0]["params"]["reason"].as_str().unwrap().contains("auth"), "{goodbye:?}");

    // An authenticated connection is not subject to it.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    authenticated.ok("room.list", json!({})).await;
}
