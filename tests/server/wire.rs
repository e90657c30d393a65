use serde_json::json;

use crate::harness::*;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

/// Sends one raw text frame and returns the next response frame (events are buffered).
async fn raw(client: &mut Client, text: &str) -> Value {
    client.send_text(text).await;
    client.next_response().await
}

/// Asserts `response` is a JSON-RPC error with this code and id; returns the error object.
fn assert_error(response: &Value, code: i64, id: Value) -> Value {
    assert_eq!(response["jsonrpc"], "2.0", "{response}");
    assert_eq!(response["error"]["code"], code, "wrong error in {response}");
    assert_eq!(response.get("id"), Some(&id), "wrong id in {response}");
    assert!(response.get("result").is_none(), "error response with a result: {response}");
    response["error"].clone()
}

/// Proves the connection still answers a normal call (and that no stray response
/// is queued ahead of it: the harness panics on an unexpected response).
async fn still_works(client: &mut Client) {
    let rooms = client.ok("room.list", json!({})).await;
    assert_eq!(rooms["rooms"][0]["isLobby"], true);
}

/// One raw HTTP/1.1 GET; returns (status, body).
async fn http_get(server: &TestServer, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.expect("tcp connects");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", server.addr);
    stream.write_all(request.as_bytes()).await.expect("write request");
    let mut bytes = Vec::new();
    tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut bytes)).await.expect("http response in time").expect("read");
    let text = String::from_utf8(bytes).expect("utf-8 response");
    let status: u16 = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP/1.1 response: {text}"));
    let body = text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    (status, body)
}

// ---- malformed and invalid requests ----

#[tokio::test]
async fn malformed_json_gets_parse_error_with_null_id_and_connection_stays_open() {
    let server = TestServer::start().await;
    let mut client = server.controller().await;
    for text in [
        "not json at all",
        r#"{"jsonrpc":"2.0","id":1,"method":"room.list""#,
        r#"{'jsonrpc':'2.0','id':1,'method':'room.list'}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"room.list",}"#,
        r#"[{"jsonrpc":"2.0","id":1,"method":"room.list"}"#,
        "",
    ] {
        let response = raw(&mut client, text).await;
        let error = assert_error(&response, -32700, Value::Null);
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{response}");
        still_works(&mut client).await;
    }
}

#[tokio::test]
async fn valid_json_that_is_not_a_request_gets_invalid_request() {
    let server = TestServer::start().await;
    let mut client = server.controller().await;
    for text in ["42", r#""room.list""#, "null", "true", r#"{"foo":1}"#, r#"{"jsonrpc":"2.0","id":1,"method":7}"#] {
        let response = raw(&mut client, text).await;
        assert_error(&response, -32600, Value::Null);
        still_works(&mut client).await;
    }
}

#[tokio::test]
async fn request_without_method_or_with_wrong_jsonrpc_version_gets_invalid_request_echoing_its_id() {
    let server = TestServer::start().await;
    let mut client = server.controller().await;

    let response = raw(&mut client, r#"{"jsonrpc":"2.0","id":31}"#).await;
    assert_error(&response, -32600, json!(31));
    still_works(&mut client).await;

    let response = raw(&mut client, r#"{"jsonrpc":"1.0","id":32,"method":"room.list"}"#).await;
    assert_error(&response, -32600, json!(32));
    still_works(&mut client).await;

    let response = raw(&mut client, r#"{"id":"no-version","method":"room.list"}"#).await;
    assert_error(&response, -32600, json!("no-version"));
    still_works(&mut client).await;
}

#[tokio::test]
async fn an_invalid_id_is_never_echoed_even_when_the_version_is_wrong_too() {
    let server = TestServer::start().await;
    let mut client = server.controller().await;
    for text in [r#"{"jsonrpc":"1.0","id":{"a":[1]},"method":"auth"}"#, r#"{"jsonrpc":"1.0","id":1e4004}"#] {
        let response = raw(&mut client, text).await;
        assert_error(&response, -32600, Value::Null);
    }
    still_works(&mut client).await;
}

#[tokio::test]
async fn an_escaped_version_string_is_still_2_0() {
    let server = TestServer::start().await;
    let mut client = server.controller().await;
    let response = raw(&mut client, r#"{"jsonrpc":"2\u002e0","id":5,"method":"room.list","params":{}}"#).await;
    assert!(response.get("result").is_some(), "{response}");
}

#[tokio::test]
async fn ids_that_are_not_strings_integers_or_null_get_invalid_request() {
    let server = TestServer::start().await;
    let mut client = server.controller().await;
    for id in ["-1", "1.5", "true", r#"{"a":1}"#, "[1]"] {
        let text = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"room.list"}}"#);
        let response = raw(&mut client, &text).await;
        assert_eq!(response["error"]["code"], -32600, "id {id}: {response}");
        assert!(response.get("result").is_none(), "id {id}: {response}");
        still_works(&mut client).await;
    }
}

#[tokio::test]
async fn unknown_method_gets_method_not_found_with_the_request_id() {
    let server = TestServer::start().await;
    let mut client = server.controller().await;

    let response = raw(&mut client, r#"{"jsonrpc":"2.0","id":77,"method":"room.explode","params":{}}"#).await;
    let error = assert_error(&response, -32601, json!(77));
    assert!(error["message"].as_str().unwrap().contains("room.explode"), "{response}");
    still_works(&mut client).await;

    let response = raw(&mut client, r#"{"jsonrpc":"2.0","id":"abc-1","method":"nope"}"#).await;
    assert_error(&response, -32601, json!("abc-1"));
    still_works(&mut client).await;
}

#[tokio::test]
async fn unknown_method_before_auth_is_method_not_found() {
    let server = TestServer::start().await;
    let mut client = Client::connect(&server.url()).await;
    let response = raw(&mut client, r#"{"jsonrpc":"2.0","id":5,"method":"nope"}"#).await;
    assert_error(&response, -32601, json!(5));
    client.auth(&server.controller_key).await;
    still_works(&mut client).await;
}

#[tokio::test]
async fn ping_answers_with_the_server_clock_once_authenticated() {
    let server = TestServer::start().await;
    let mut client = Client::connect(&server.url()).await;
    // Like every method but `auth`, it needs an authenticated connection.
    client.err("ping", json!({}), 4001).await;
    client.auth(&server.controller_key).await;

    // The server's clock is this machine's; a second of slack for a clock step.
    let before = now_ms() - 1000;
    let answered = client.ok("ping", json!({})).await;
    let raw_answer = raw(&mut client, r#"{"jsonrpc":"2.0","id":"p","method":"ping"}"#).await;
    let after = now_ms() + 1000;
    for timestamp in [&answered["timestamp"], &raw_answer["result"]["timestamp"]] {
        let timestamp = timestamp.as_i64().unwrap_or_else(|| panic!("no timestamp: {answered} {raw_answer}"));
        assert!((before..=after).contains(&timestamp), "{timestamp} not in {before}..={after}");
    }
    still_works(&mut client).await;
}

#[tokio::test]
async fn string_ids_are_echoed_as_strings_and_numbers_as_numbers() {
    let server = TestServer::start().await;
    let mut client = server.controller().await;

    let response = raw(&mut client, r#"{"jsonrpc":"2.0","id":"7","method":"lobby.getMotd","params":{}}"#).await;
    assert_eq!(response["id"], json!("7"), "{response}");
    assert_eq!(response["result"], json!({ "motd": null }));

    let response = raw(&mut client, r#"{"jsonrpc":"2.0","id":7,"method":"lobby.getMotd","params":{}}"#).await;
    assert_eq!(response["id"], json!(7), "{response}");

    let response = raw(&mut client, r#"{"jsonrpc":"2.0","id":"","method":"lobby.getMotd","params":{}}"#).await;
    assert_eq!(response["id"], json!(""), "{response}");

    let response = raw(&mut client, r#"{"jsonrpc":"2.0","id":"r-ü-✓","method":"lobby.getMotd","params":{}}"#).await;
    assert_eq!(response["id"], json!("r-ü-✓"), "{response}");
    assert!(response.get("error").is_none(), "{response}");
}

#[tokio::test]
async fn null_id_is_a_request_and_gets_a_response_with_null_id() {
    let server = TestServer::start().await;
    let mut client = server.controller().await;
    let response = raw(&mut client, r#"{"jsonrpc":"2.0","id":null,"method":"room.list","params":{}}"#).await;
    assert_eq!(response.get("id"), Some(&Value::Null), "{response}");
    assert_eq!(response["result"]["rooms"][0]["isLobby"], true, "{response}");
    still_works(&mut client).await;
}

#[tokio::test]
async fn omitted_params_work_for_a_method_without_params() {
    let server = TestServer::start().await;
    let mut client = server.controller().await;
    let response = raw(&mut client, r#"{"jsonrpc":"2.0","id":1,"method":"room.list"}"#).await;
    assert_eq!(response["id"], 1);
    assert_eq!(response["result"]["rooms"][0]["isLobby"], true, "{response}");

    let response = raw(&mut client, r#"{"jsonrpc":"2.0","id":2,"method":"lobby.getMotd","params":null}"#).await;
    assert_eq!(response["result"], json!({ "motd": null }), "{response}");
}

// ---- params ----

#[tokio::test]
async fn mistyped_param_gets_invalid_params_naming_the_field() {
    let server = TestServer::start().await;
    let mut client = server.controller().await;
    let e = client.err("room.join", json!({ "roomId": 5 }), -32602).await;
    assert!(e.message.contains("roomId"), "message must name the field: {e:?}");
    assert!(e.data.as_str().is_some_and(|d| d.contains("roomId")), "data must name the field: {e:?}");
    still_works(&mut client).await;

    let e = client.err("message.send", json!({ "roomId": client.lobby_id(), "content": ["a"] }), -32602).await;
    assert!(e.message.contains("content"), "message must name the field: {e:?}");
    still_works(&mut client).await;

    let e = client.err("room.history", json!({ "roomId": client.lobby_id(), "limit": "ten" }), -32602).await;
    assert!(e.message.contains("limit"), "message must name the field: {e:?}");
    still_works(&mut client).await;
}

#[tokio::test]
async fn missing_required_param_gets_invalid_params_naming_it() {
    let server = TestServer::start().await;
    let mut client = server.controller().await;
    let e = client.err("room.join", json!({}), -32602).await;
    assert!(e.message.contains("missing field `roomId`"), "{e:?}");
    assert!(e.data.as_str().is_some_and(|d| d.contains("roomId")), "{e:?}");
    still_works(&mut client).await;

    let e = client.err("message.send", json!({ "roomId": client.lobby_id() }), -32602).await;
    assert!(e.message.contains("content"), "{e:?}");
    still_works(&mut client).await;

    // No params at all for a method that needs them.
    let response = raw(&mut client, r#"{"jsonrpc":"2.0","id":"np","method":"room.join"}"#).await;
    let error = assert_error(&response, -32602, json!("np"));
    assert!(error["message"].as_str().unwrap().contains("roomId"), "{response}");
    still_works(&mut client).await;
}

#[tokio::test]
async fn invalid_enum_value_gets_invalid_params() {
    let server = TestServer::start().await;
    let mut client = server.controller().await;
    let e = client.err("room.create", json!({ "name": "x", "visibility": "secret" }), -32602).await;
    assert!(e.message.contains("secret") || e.message.contains("visibility"), "{e:?}");
    // Nothing was created.
    let rooms = client.ok("room.list", json!({})).await;
    assert_eq!(rooms["rooms"].as_array().unwrap().len(), 1, "{rooms}");
}

#[tokio::test]
async fn params_that_are_not_an_object_get_invalid_params() {
    let server = TestServer::start().await;
    let mut client = server.controller().await;
    client.err("room.join", json!("nonsense"), -32602).await;
    client.err("room.join", json!(42), -32602).await;
    still_works(&mut client).await;
}

#[tokio::test]
async fn snake_case_aliases_are_accepted_and_unknown_params_ignored() {
    let server = TestServer::start().await;
    let mut client = server.controller().await;
    let lobby = client.lobby_id();
    let info = client.ok("room.info", json!({ "room_id": lobby, "whatever": [1, 2, 3] })).await;
    assert_eq!(info["room"]["roomId"], json!(lobby));
    let sent = client.ok("message.send", json!({ "roomId": lobby, "content": "hi", "priority": "high" })).await;
    assert!(sent["seq"].is_i64(), "{sent}");
}

// ---- size and shape limits ----

#[tokio::test]
async fn content_longer_than_max_message_length_in_a_large_frame_gets_4050() {
    let server = TestServer::start().await;
    let mut client = server.controller().await;
    let lobby = client.lobby_id();
    // ~1 MB: within the request limit (1 MiB + 64 KiB with the default maxMessageLength),
    // far beyond maxMessageLength (8192 characters).
    let content = "a".repeat(1_000_000);
    client.err("message.send", json!({ "roomId": lobby, "content": content }), 4050).await;
    still_works(&mut client).await;
    let history = client.ok("room.history", json!({ "roomId": lobby })).await;
    assert_eq!(history["messages"], json!([]), "nothing was stored");
}

#[tokio::test]
async fn two_megabyte_content_gets_an_error_not_a_dropped_connection() {
    let server = TestServer::start().await;
    let mut client = server.controller().await;
    let lobby = client.lobby_id();
    // 2 MB is over the default request limit (1 MiB + 64 KiB) but under twice it: the
    // frame is refused with -32600 (BEHAVIOUR.md), and the connection goes on.
    let content = "a".repeat(2_000_000);
    let request = json!({ "jsonrpc": "2.0", "id": 9, "method": "message.send", "params": { "roomId": lobby, "content": content } });
    let response = raw(&mut client, &request.to_string()).await;
    assert_error(&response, -32600, Value::Null);
    still_works(&mut client).await;
}

#[tokio::test]
async fn two_megabyte_content_with_a_larger_request_limit_gets_4050() {
    // With maxMessageLength 400000 the request limit is 2.4 MB + 64 KiB, so a 2 MB
    // content reaches the handler, which counts characters.
    let server = TestServer::start_with(|c| c.max_message_length = 400_000).await;
    let mut client = server.controller().await;
    let lobby = client.lobby_id();
    let content = "a".repeat(2_000_000);
    client.err("message.send", json!({ "roomId": lobby, "content": content }), 4050).await;
    still_works(&mut client).await;
}

#[tokio::test]
async fn frame_over_the_request_limit_gets_invalid_request_and_connection_keeps_working() {
    let server = TestServer::start().await;
    let mut client = server.controller().await;
    let lobby = client.lobby_id();
    let limit = 6 * 8192usize;
    let limit = limit.max(1 << 20) + 64 * 1024;
    let content = "b".repeat(1_572_864); // 1.5 MiB
    let request = json!({ "jsonrpc": "2.0", "id": 3, "method": "message.send", "params": { "roomId": lobby, "content": content } });
    let text = request.to_string();
    assert!(text.len() > limit && text.len() < 2 * limit);
    let response = raw(&mut client, &text).await;
    assert_eq!(response["error"]["code"], -32600);
    assert!(response.get("result").is_none());
    still_works(&mut client).await;
    let history = client.ok("room.history", json!({ "roomId": lobby })).await;
    assert_eq!(history["messages"], json!([]), "nothing was stored");
}

#[tokio::test]
async fn frame_over_twice_the_request_limit_closes_with_1009_and_the_server_goes_on() {
    let server = TestServer::start().await;
    let (mut socket, _) = tokio_tungstenite::connect_async(server.url()).await.expect("connects");
    let text =
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"room.list","params":{{"pad":"{}"}}}}"#, "c".repeat(3 << 20));
    // The server may close while we are still sending; that is fine.
    let _ = socket.send(Message::text(text)).await;
    let mut close_code = None;
    loop {
        match tokio::time::timeout(TIMEOUT, socket.next()).await.expect("server reacts in time") {
            Some(Ok(Message::Close(frame))) => {
                close_code = frame.map(|f| f.code);
                break;
            }
            Some(Ok(Message::Text(t))) => panic!("expected the socket to close, got {t}"),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => break,
        }
    }
    assert_eq!(close_code, Some(CloseCode::Size), "close code");
    // Other connections are unaffected.
    let mut client = server.controller().await;
    still_works(&mut client).await;
}

#[tokio::test]
async fn deeply_nested_params_get_an_error_and_connection_keeps_working() {
    let server = TestServer::start().await;
    let mut client = server.controller().await;
    let depth = 10_000;
    let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let text = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"room.join","params":{{"roomId":{nested}}}}}"#);
    let response = raw(&mut client, &text).await;
    let code = response["error"]["code"].as_i64().unwrap_or_else(|| panic!("expected an error: {response}"));
    assert!(code == -32700 || code == -32602, "{response}");
    still_works(&mut client).await;

    // Deeply nested objects in a param the method parses.
    let nested = format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth));
    let text = format!(
        r#"{{"jsonrpc":"2.0","id":2,"method":"room.create","params":{{"name":"deep","description":{nested}}}}}"#
    );
    let response = raw(&mut client, &text).await;
    assert_error(&response, -32602, json!(2));
    still_works(&mut client).await;

    // As the params object itself.
    let text = format!(r#"{{"jsonrpc":"2.0","id":3,"method":"room.join","params":{nested}}}"#);
    let response = raw(&mut client, &text).await;
    assert_error(&response, -32602, json!(3));
    still_works(&mut client).await;

    // As an unknown param of a method without params: ignored, like any unknown param.
    let text = format!(r#"{{"jsonrpc":"2.0","id":4,"method":"room.list","params":{{"junk":{nested}}}}}"#);
    let response = raw(&mut client, &text).await;
    assert_eq!(response["id"], 4);
    assert_eq!(response["result"]["rooms"][0]["isLobby"], true, "{response}");

    // A deeply nested batch, unterminated and terminated.
    let response = raw(&mut client, &"[".repeat(depth)).await;
    assert_error(&response, -32700, Value::Null);
    let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let response = raw(&mut client, &text).await;
    // A batch whose one element is not a request: one -32600 for it.
    assert_eq!(response.as_array().map(Vec::len), Some(1), "{response}");
    assert_error(&response[0], -32600, Value::Null);
    still_works(&mut client).await;
}

#[tokio::test]
async fn binary_frame_gets_invalid_request_and_connection_keeps_working() {
    let server = TestServer::start().await;
    let mut client = server.controller().await;
    let request = json!({ "jsonrpc": "2.0", "id": 1, "method": "room.list" }).to_string();
    client.send_binary(request.into_bytes()).await;
    let response = client.next_response().await;
    let error = assert_error(&response, -32600, Value::Null);
    assert!(error["message"].as_str().unwrap().contains("text frame"), "{response}");
    client.send_binary(vec![0xff, 0x00, 0x13, 0x37]).await;
    assert_error(&client.next_response().await, -32600, Value::Null);
    still_works(&mut client).await;
}

#[tokio::test]
async fn binary_frame_before_auth_gets_invalid_request_and_auth_still_works() {
    let server = TestServer::start().await;
    let mut client = Client::connect(&server.url()).await;
    client.send_binary(b"hello".to_vec()).await;
    assert_error(&client.next_response().await, -32600, Value::Null);
    client.auth(&server.controller_key).await;
    still_works(&mut client).await;
}

// ---- batches ----

#[tokio::test]
async fn batch_gets_an_array_of_responses_in_request_order() {
    let server = TestServer::start().await;
    let mut client = server.controller().await;
    let text = json!([
        { "jsonrpc": "2.0", "id": 1, "method": "room.list", "params": {} },
        { "jsonrpc": "2.0", "id": "two", "method": "lobby.getMotd" },
        { "jsonrpc": "2.0", "id": 3, "method": "docs.list", "params": {} },
    ])
    .to_string();
    let response = raw(&mut client, &text).await;
    let responses = response.as_array().unwrap_or_else(|| panic!("expected an array: {response}"));
    assert_eq!(responses.len(), 3, "{response}");
    assert_eq!(responses[0]["id"], 1);
    assert_eq!(responses[0]["jsonrpc"], "2.0");
    assert_eq!(responses[0]["result"]["rooms"][0]["isLobby"], true);
    assert_eq!(responses[1]["id"], "two");
    assert_eq!(responses[1]["result"], json!({ "motd": null }));
    assert_eq!(responses[2]["id"], 3);
    assert!(responses[2]["result"]["docs"].is_array());
    still_works(&mut client).await;
}

#[tokio::test]
async fn batch_requests_run_in_order_so_later_ones_see_earlier_effects() {
    let server = TestServer::start().await;
    let mut client = server.controller().await;
    let text = json!([
        { "jsonrpc": "2.0", "id": 1, "method": "lobby.setMotd", "params": { "content": "batched" } },
        { "jsonrpc": "2.0", "id": 2, "method": "lobby.getMotd" },
    ])
    .to_string();
    let response = raw(&mut client, &text).await;
    assert_eq!(response[0]["result"], json!({ "motd": "batched" }), "{response}");
    assert_eq!(response[1]["result"], json!({ "motd": "batched" }), "{response}");
}

#[tokio::test]
async fn batch_mixing_valid_unknown_and_notification_answers_only_requests_with_ids() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    bob.client.clear_events().await;
    let lobby = ctrl.lobby_id();
    let text = json!([
        { "jsonrpc": "2.0", "id": 10, "method": "lobby.getMotd" },
        { "jsonrpc": "2.0", "id": 11, "method": "no.such.method", "params": {} },
        { "jsonrpc": "2.0", "method": "message.send", "params": { "roomId": lobby, "content": "from a batch" } },
        { "jsonrpc": "2.0", "method": "no.such.method" },
        42,
    ])
    .to_string();
    let response = raw(&mut ctrl, &text).await;
    let responses = response.as_array().unwrap_or_else(|| panic!("expected an array: {response}"));
    assert_eq!(responses.len(), 3, "{response}");
    assert_eq!(responses[0]["id"], 10);
    assert_eq!(responses[0]["result"], json!({ "motd": null }));
    assert_eq!(responses[1]["id"], 11);
    assert_eq!(responses[1]["error"]["code"], -32601);
    assert_eq!(responses[2]["id"], Value::Null);
    assert_eq!(responses[2]["error"]["code"], -32600);
    // The notification ran.
    let event = bob.client.event("message").await;
    assert_eq!(event["roomId"], json!(lobby));
    assert_eq!(event["message"]["content"], "from a batch");
    still_works(&mut ctrl).await;
}

#[tokio::test]
async fn batch_of_non_requests_gets_one_invalid_request_per_element() {
    let server = TestServer::start().await;
    let mut client = server.controller().await;
    let response = raw(&mut client, "[1,2]").await;
    let responses = response.as_array().unwrap_or_else(|| panic!("expected an array: {response}"));
    assert_eq!(responses.len(), 2, "{response}");
    for r in responses {
        assert_error(r, -32600, Value::Null);
    }
    still_works(&mut client).await;
}

#[tokio::test]
async fn empty_batch_gets_a_single_invalid_request() {
    let server = TestServer::start().await;
    let mut client = server.controller().await;
    let response = raw(&mut client, "[]").await;
    assert!(response.is_object(), "expected one error object, not an array: {response}");
    assert_error(&response, -32600, Value::Null);
    let response = raw(&mut client, " [ ] ").await;
    assert_error(&response, -32600, Value::Null);
    still_works(&mut client).await;
}

#[tokio::test]
async fn batch_of_only_notifications_gets_no_response() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let lobby = ctrl.lobby_id();
    let text = json!([
        { "jsonrpc": "2.0", "method": "message.send", "params": { "roomId": lobby, "content": "one" } },
        { "jsonrpc": "2.0", "method": "message.send", "params": { "roomId": lobby, "content": "two" } },
        { "jsonrpc": "2.0", "method": "room.explode" },
    ])
    .to_string();
    ctrl.send_text(&text).await;
    // The very next response frame is this call's (the harness panics otherwise).
    let motd = ctrl.ok("lobby.getMotd", json!({})).await;
    assert_eq!(motd, json!({ "motd": null }));
    assert_eq!(bob.client.event("message").await["message"]["content"], "one");
    assert_eq!(bob.client.event("message").await["message"]["content"], "two");
}

// ---- notifications ----

#[tokio::test]
async fn notification_runs_but_gets_no_response() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let lobby = ctrl.lobby_id();
    let text = json!({ "jsonrpc": "2.0", "method": "message.send", "params": { "roomId": lobby, "content": "no reply please" } });
    ctrl.send_text(&text.to_string()).await;
    let response = raw(&mut ctrl, r#"{"jsonrpc":"2.0","id":"after","method":"lobby.getMotd"}"#).await;
    assert_eq!(response["id"], "after", "the notification must not be answered: {response}");
    let event = bob.client.event("message").await;
    assert_eq!(event["message"]["content"], "no reply please");
    assert_eq!(event["message"]["senderId"], json!(ctrl.agent_id()));
    let history = ctrl.ok("room.history", json!({ "roomId": lobby })).await;
    assert_eq!(history["messages"][0]["content"], "no reply please");
}

#[tokio::test]
async fn failing_notifications_get_no_error_response() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    for text in [
        r#"{"jsonrpc":"2.0","method":"room.explode"}"#,
        r#"{"jsonrpc":"2.0","method":"room.join","params":{"roomId":5}}"#,
        r#"{"jsonrpc":"2.0","method":"room.join","params":{"roomId":"00000000-0000-4000-8000-000000000000"}}"#,
        r#"{"jsonrpc":"2.0","method":"message.send","params":{"roomId":"nope","content":""}}"#,
    ] {
        ctrl.send_text(text).await;
    }
    still_works(&mut ctrl).await;
}

#[tokio::test]
async fn notification_before_auth_gets_no_response() {
    let server = TestServer::start().await;
    let mut client = Client::connect(&server.url()).await;
    client.send_text(r#"{"jsonrpc":"2.0","method":"room.list"}"#).await;
    client.auth(&server.controller_key).await;
    still_works(&mut client).await;
}

// ---- ordering ----

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_with_increasing_seq() {
    let server = TestServer::start().await;
    let mut ctrl = server.controller().await;
    let mut bob = server.participant(&mut ctrl, "Bob").await;
    let lobby = ctrl.lobby_id();
    for i in 0..50 {
        let request = json!({ "jsonrpc": "2.0", "id": 1000 + i, "method": "message.send", "params": { "roomId": lobby, "content": format!("m{i}") } });
        ctrl.send_text(&request.to_string()).await;
    }
    let mut last_seq = i64::MIN;
    let mut seqs = Vec::new();
    for i in 0..50 {
        let response = ctrl.next_response().await;
        assert_eq!(response["id"], 1000 + i, "responses out of order: {response}");
        let seq = response["result"]["seq"].as_i64().unwrap_or_else(|| panic!("no seq: {response}"));
        assert!(seq > last_seq, "seq not increasing: {seq} after {last_seq}");
        last_seq = seq;
        seqs.push(seq);
    }
    // The other member sees them in the same order.
    for (i, seq) in seqs.iter().enumerate() {
        let event = bob.client.event("message").await;
        assert_eq!(event["message"]["content"], format!("m{i}"));
        assert_eq!(event["message"]["seq"], *seq);
    }
    still_works(&mut ctrl).await;
}

// ---- plain HTTP ----

#[tokio::test]
async fn healthz_answers_200_with_status_ok() {
    let server = TestServer::start().await;
    let (status, body) = http_get(&server, "/healthz").await;
    assert_eq!(status, 200, "{body}");
    let json: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("healthz body is not JSON ({e}): {body}"));
    assert_eq!(json["status"], "ok", "{json}");
}

#[tokio::test]
async fn plain_http_get_on_the_websocket_path_gets_426() {
    let server = TestServer::start().await;
    let (status, body) = http_get(&server, "/").await;
    assert_eq!(status, 426, "{body}");
    assert!(body.contains("WebSocket"), "{body}");
    // The server still takes WebSocket connections.
    let mut client = server.controller().await;
    still_works(&mut client).await;
}

#[tokio::test]
async fn a_batch_of_more_than_100_requests_is_refused_whole() {
    let server = TestServer::start().await;
    let mut client = server.controller().await;
    let requests: Vec<serde_json::Value> =
        (0..101).map(|i| json!({ "jsonrpc": "2.0", "id": i, "method": "lobby.getMotd", "params": {} })).collect();
    client.send_text(&serde_json::Value::Array(requests).to_string()).await;
    let response = client.next_response().await;
    assert_eq!(response["error"]["code"], -32600, "{response}");
    assert!(response["error"]["message"].as_str().unwrap().contains("100"), "{response}");
    client.ok("lobby.getMotd", json!({})).await;
}

#[tokio::test]
async fn shutdown_says_goodbye_to_unauthenticated_connections_too() {
    let mut server = TestServer::start().await;
    let mut anonymous = Client::connect(&server.url()).await;
    anonymous.err("room.list", json!({}), 4001).await;
    server.stop().await;
    let events = anonymous.wait_closed().await;
    let goodbye: Vec<_> = events.iter().filter(|e| e["method"] == "disconnected").collect();
    assert_eq!(goodbye.len(), 1, "{events:?}");
    assert_eq!(goodbye[0]["params"], json!({ "reason": "server shutting down", "retry": true }));
}

#[tokio::test]
async fn a_response_over_64_kib_arrives_whole_in_one_frame_and_the_connection_goes_on() {
    // Over 65,535 bytes: the frame needs the 8-byte length form (RFC 6455 §5.2).
    let server = TestServer::start_with(|c| c.limits.unlimited_rates()).await;
    let mut ctrl = server.controller().await;
    let mut alice = server.participant(&mut ctrl, "Alice").await;
    let room = alice.client.ok("room.create", json!({ "name": "long" })).await["room"]["roomId"].clone();
    let content = |i: usize| format!("{i:03} {}é", "x".repeat(995));
    for i in 0..100 {
        alice.client.send_request("message.send", json!({ "roomId": room, "content": content(i) })).await;
    }
    for _ in 0..100 {
        assert!(alice.client.next_response().await["result"]["seq"].is_i64());
    }

    let mut raw = RawSocket::connect(server.addr).await.expect("connects");
    let auth = json!({ "jsonrpc": "2.0", "id": 1, "method": "auth", "params": { "apiKey": alice.key } });
    assert!(raw.call(&auth).await.get("result").is_some());
    let request =
        json!({ "jsonrpc": "2.0", "id": 2, "method": "room.history", "params": { "roomId": room, "limit": 100 } });
    raw.send_text(&request.to_string()).await.expect("send");
    let frame = loop {
        let frame = tokio::time::timeout(TIMEOUT, raw.read_frame()).await.expect("in time").expect("open");
        if frame.json().is_some_and(|json| json["id"] == json!(2)) {
            break frame;
        }
    };
    assert!(frame.fin && frame.opcode == opcode::TEXT, "one whole text frame: {:?}", (frame.fin, frame.opcode));
    assert!(frame.payload.len() > 65_535, "{} bytes", frame.payload.len());
    let response = frame.json().expect("JSON");
    let messages = response["result"]["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 100);
    assert!(messages.iter().enumerate().all(|(i, m)| m["content"] == json!(content(i))));

    // The tungstenite-based client reads it too, and both connections go on.
    let page = alice.client.ok("room.history", json!({ "roomId": room, "limit": 100 })).await;
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(100));
    still_works(&mut alice.client).await;
    let again = json!({ "jsonrpc": "2.0", "id": 3, "method": "room.list" });
    assert!(raw.call(&again).await.get("result").is_some());
}

#[tokio::test]
async fn a_broken_websocket_handshake_is_told_what_is_wrong() {
    let server = TestServer::start().await;
    let handshake = |version: &str, key: &str| {
        format!(
            "GET / HTTP/1.1\r\nHost: {}\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\n\
             Sec-WebSocket-Version: {version}\r\nSec-WebSocket-Key: {key}\r\n\r\n",
            server.addr
        )
    };
    let exchange = |request: String| async move {
        let mut stream = tokio::net::TcpStream::connect(server.addr).await.expect("tcp connects");
        stream.write_all(request.as_bytes()).await.expect("write request");
        let mut bytes = vec![0; 4096];
        let n = tokio::time::timeout(TIMEOUT, stream.read(&mut bytes)).await.expect("in time").expect("read");
        String::from_utf8_lossy(&bytes[..n]).to_lowercase()
    };
    let good_key = "dGhlIHNhbXBsZSBub25jZQ==";
    // RFC 6455's own example key: switched, with its accept value.
    let switched = exchange(handshake("13", good_key)).await;
    assert!(switched.starts_with("http/1.1 101"), "{switched}");
    assert!(switched.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="), "{switched}");
    // Another protocol version: 426, saying which one.
    let old = exchange(handshake("8", good_key)).await;
    assert!(old.starts_with("http/1.1 426"), "{old}");
    assert!(old.contains("sec-websocket-version: 13") && old.contains("must be 13"), "{old}");
    // A key that is not 16 bytes in base64: 400.
    for key in ["", "short==", "dGhlIHNhbXBsZSBub25jZQ"] {
        let bad = exchange(handshake("13", key)).await;
        assert!(bad.starts_with("http/1.1 400"), "key {key:?}: {bad}");
        assert!(bad.contains("sec-websocket-key"), "{bad}");
    }
}
