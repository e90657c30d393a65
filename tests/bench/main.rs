//! Smoke run of every `broodlink bench` scenario at tiny sizes against an in-process
//! server: the correctness checks must pass (the speed is not asserted), and the run
//! must clean up after itself.

#[path = "../server/harness.rs"]
mod harness;

use std::time::Duration;

use broodlink::bench::connections::{self, ConnectionsArgs};
use broodlink::bench::fanout::{self, FanoutArgs};
use broodlink::bench::history::{self, HistoryArgs};
use broodlink::bench::roundtrip::{self, RoundtripArgs};
use broodlink::bench::send::{self, SendArgs};
use broodlink::bench::stats::Checks;
use broodlink::bench::Target;
use harness::TestServer;
use serde_json::json;

/// A server without rate limits: the bench sends as fast as it can.
async fn bench_server() -> TestServer {
    TestServer::start_with(|config| config.limits.unlimited_rates()).await
}

fn target(server: &TestServer) -> Target {
    Target { url: server.url(), controller_key: server.controller_key.clone(), keep: false }
}

fn assert_passed(scenario: &str, checks: &Checks) {
    assert!(checks.passed, "{scenario}: correctness checks failed: {:#?}", checks.failures);
}

/// Only the controller is left: the run revoked every agent it invited and deleted its rooms.
async fn assert_cleaned_up(server: &TestServer) {
    let mut ctrl = server.controller().await;
    let agents = ctrl.ok("agent.list", json!({})).await;
    let names: Vec<&str> = agents["agents"]
        .as_array()
        .map(|a| a.iter().filter_map(|agent| agent["displayName"].as_str()).collect())
        .unwrap_or_default();
    assert!(names.iter().all(|n| !n.starts_with("bench-")), "agents left behind: {names:?}");
    let rooms = ctrl.ok("room.list", json!({})).await;
    let rooms = rooms["rooms"].as_array().map(Vec::len).unwrap_or_default();
    assert_eq!(rooms, 1, "only the lobby should be listed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_closed_loop_delivers_every_message_once_in_order() {
    let server = bench_server().await;
    let args =
        SendArgs { agents: 4, duration: Duration::from_secs(1), rate: None, rooms: 1, size: 64, client_msg_ids: false };
    let report = send::run(&target(&server), &args).await.expect("send runs");
    assert_passed("send", &report.checks);
    assert!(report.acked > 0, "{report:?}");
    assert_eq!(report.deliveries.expected, report.acked * 3);
    assert_eq!(report.deliveries.delivered, report.deliveries.expected);
    assert_eq!(report.ack_latency.count, report.acked);
    assert_cleaned_up(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_open_loop_over_two_rooms_passes() {
    let server = bench_server().await;
    // With a clientMsgId on every message, as the generated clients send them.
    let args = SendArgs {
        agents: 4,
        duration: Duration::from_secs(1),
        rate: Some(200.0),
        rooms: 2,
        size: 100,
        client_msg_ids: true,
    };
    let report = send::run(&target(&server), &args).await.expect("send runs");
    assert_passed("send --rate", &report.checks);
    assert_eq!(report.acked, 200, "{report:?}");
    // Two rooms of two: each message has one other recipient.
    assert_eq!(report.deliveries.delivered, 200);
    assert_cleaned_up(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_reaches_every_member() {
    let server = bench_server().await;
    let args = FanoutArgs { members: 5, senders: 2, rate: 100.0, duration: Duration::from_secs(1), size: 64 };
    let report = fanout::run(&target(&server), &args).await.expect("fanout runs");
    assert_passed("fanout", &report.checks);
    assert_eq!(report.acked, 100, "{report:?}");
    assert_eq!(report.deliveries.delivered, 400);
    assert_eq!(report.first_recipient.count, 100);
    assert!(report.last_recipient.max_ms >= report.first_recipient.max_ms);
    assert_cleaned_up(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_open_and_stay_open() {
    let server = bench_server().await;
    let own_pid = i32::try_from(std::process::id()).expect("pid fits");
    let args = ConnectionsArgs {
        count: 20,
        agents: None,
        concurrency: 8,
        server_pid: Some(own_pid), // the server runs in this process
        hold: Duration::from_millis(100),
    };
    let report = connections::run(&target(&server), &args).await.expect("connections runs");
    assert_passed("connections", &report.checks);
    assert_eq!(report.opened, 20, "{report:?}");
    assert_eq!(report.connect_latency.count, 20);
    assert!(report.memory.is_some_and(|m| m.pid == own_pid && m.before_kib > 0));
    assert_cleaned_up(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_can_share_agents() {
    let server = bench_server().await;
    let args = ConnectionsArgs { count: 12, agents: Some(3), concurrency: 4, server_pid: None, hold: Duration::ZERO };
    let report = connections::run(&target(&server), &args).await.expect("connections runs");
    assert_passed("connections --agents", &report.checks);
    assert_eq!(report.opened, 12);
    assert!(report.memory.is_none());
    assert_cleaned_up(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_hold_exactly_the_acked_messages() {
    let server = bench_server().await;
    let args = HistoryArgs { messages: 200, senders: 4, window: 8, queries: 10, page: 50, catch_up: 500, size: 64 };
    let report = history::run(&target(&server), &args).await.expect("history runs");
    assert_passed("history", &report.checks);
    assert_eq!(report.newest.count, 10, "{report:?}");
    assert_eq!(report.deep_before.as_ref().map(|l| l.count), Some(10));
    assert_eq!(report.after_seq.count, 10);
    assert_cleaned_up(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roundtrip_gets_every_ping_answered() {
    let server = bench_server().await;
    let args = RoundtripArgs { agents: 4, duration: Duration::from_millis(500) };
    let report = roundtrip::run(&target(&server), &args).await.expect("roundtrip runs");
    assert_passed("roundtrip", &report.checks);
    assert!(report.calls > 0 && report.errors == 0, "{report:?}");
    assert_cleaned_up(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_an_error_not_a_report() {
    let server = bench_server().await;
    let target = Target { url: server.url(), controller_key: "bl_k_ctrl_wrong".into(), keep: false };
    let args = SendArgs {
        agents: 2,
        duration: Duration::from_millis(100),
        rate: None,
        rooms: 1,
        size: 64,
        client_msg_ids: false,
    };
    let error = send::run(&target, &args).await.expect_err("a wrong key cannot run");
    assert_eq!(error.rpc_code(), Some(4002), "{error}");
}

#[tokio::test]
async fn impossible_arguments_are_refused_before_connecting() {
    // Nothing listens here: the arguments must be rejected first.
    let target = Target { url: "ws://127.0.0.1:9".into(), controller_key: "bl_k_ctrl_unused".into(), keep: false };
    let lonely =
        SendArgs { agents: 1, duration: Duration::from_secs(1), rate: None, rooms: 1, size: 64, client_msg_ids: false };
    let error = send::run(&target, &lonely).await.expect_err("one agent cannot be delivered to");
    assert!(matches!(error, broodlink::bench::BenchError::InvalidArgs(_)), "{error}");
    let no_rate = FanoutArgs { members: 3, senders: 1, rate: 0.0, duration: Duration::from_secs(1), size: 64 };
    let error = fanout::run(&target, &no_rate).await.expect_err("a zero rate sends nothing");
    assert!(matches!(error, broodlink::bench::BenchError::InvalidArgs(_)), "{error}");
    let nobody = RoundtripArgs { agents: 0, duration: Duration::from_secs(1) };
    let error = roundtrip::run(&target, &nobody).await.expect_err("no agent makes no call");
    assert!(matches!(error, broodlink::bench::BenchError::InvalidArgs(_)), "{error}");
}
