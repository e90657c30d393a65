//! Micro-benchmarks of the hot paths: frame → dispatch → response, event
//! serialization, and the group-commit writer. Run with `cargo bench --bench hot_paths`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use broodlink::config::Config;
use broodlink::dispatch::Dispatcher;
use broodlink::rpc::Rpc;
use broodlink::service::{Linkspace, Opened};
use broodlink::session::Session;
use broodlink::store::Store;
use broodlink_protocol::{BroodLinkApiServer, Event, Message, MessageEvent};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tokio::runtime::Runtime;

/// A linkspace on `database`, a dispatcher over it, and an authenticated controller
/// session whose outbound queue is drained in the background.
async fn setup(database: &Path) -> (Arc<Linkspace>, Dispatcher, Arc<Session>, String) {
    let store = Store::open(database, Default::default()).await.expect("store");
    // Measured without rate limits: they would refuse most of a tight loop's calls.
    let mut config = Config::default();
    config.limits.unlimited_rates();
    let limits = config.limits.clone();
    let Opened { linkspace, new_controller_key } = Linkspace::open(config, store, None, None).await.expect("linkspace");
    let key = new_controller_key.expect("fresh database");
    let dispatcher = Dispatcher::new(Rpc::new(linkspace.clone()).into_rpc(), 1 << 20, &limits);
    let session = connect(&dispatcher, &key).await;
    let lobby = lobby_id(&dispatcher, &session).await;
    (linkspace, dispatcher, session, lobby)
}

async fn connect(dispatcher: &Dispatcher, key: &str) -> Arc<Session> {
    let session = Arc::new(Session::new(1, SocketAddr::from(([127, 0, 0, 1], 1)), 1 << 16));
    let drained = session.clone();
    tokio::spawn(async move { while drained.outbox().take(usize::MAX).await.is_some() {} });
    let auth = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"auth","params":{{"apiKey":"{key}"}}}}"#);
    let response = dispatcher.frame(&session, &auth).await.expect("auth response");
    assert!(response.contains("\"result\""), "{response}");
    session.release_held().await;
    session
}

async fn lobby_id(dispatcher: &Dispatcher, session: &Arc<Session>) -> String {
    let response = dispatcher
        .frame(session, r#"{"jsonrpc":"2.0","id":2,"method":"room.list","params":{}}"#)
        .await
        .expect("room.list response");
    let value: serde_json::Value = serde_json::from_str(&response).expect("json");
    value["result"]["rooms"][0]["roomId"].as_str().expect("lobby id").to_owned()
}

fn dispatch(c: &mut Criterion) {
    let runtime = Runtime::new().expect("runtime");
    let (_linkspace, dispatcher, session, _) = runtime.block_on(setup(Path::new(":memory:")));
    let mut group = c.benchmark_group("dispatch");
    group.throughput(Throughput::Elements(1));
    group.bench_function("unknown method (envelope only)", |b| {
        b.to_async(&runtime).iter(|| dispatcher.frame(&session, r#"{"jsonrpc":"2.0","id":7,"method":"nope"}"#))
    });
    group.bench_function("invalid params (-32602 naming the field)", |b| {
        b.to_async(&runtime).iter(|| {
            dispatcher.frame(&session, r#"{"jsonrpc":"2.0","id":7,"method":"room.join","params":{"roomId":5}}"#)
        })
    });
    group.bench_function("lobby.getMotd (one indexed read)", |b| {
        b.to_async(&runtime)
            .iter(|| dispatcher.frame(&session, r#"{"jsonrpc":"2.0","id":7,"method":"lobby.getMotd","params":{}}"#))
    });
    group.finish();
}

fn serialize_event(c: &mut Criterion) {
    let event = Event::Message(MessageEvent {
        room_id: "5f0c7a8e-3b9d-4c61-9a2e-1d7b8c9e0f12".into(),
        message: Message {
            message_id: "0a1b2c3d-3b9d-4c61-9a2e-1d7b8c9e0f12".into(),
            room_id: "5f0c7a8e-3b9d-4c61-9a2e-1d7b8c9e0f12".into(),
            sender_id: "9e8d7c6b-3b9d-4c61-9a2e-1d7b8c9e0f12".into(),
            sender_name: "Research Agent".into(),
            content: "The results are in: the hypothesis holds for 94% of the sample.".into(),
            timestamp: 1_707_868_800_000,
            seq: 123_456,
            to_agent_id: None,
            removed: false,
            removed_by: None,
            reason: None,
        },
    });
    let mut group = c.benchmark_group("event");
    group.throughput(Throughput::Elements(1));
    group.bench_function("serialize message event once", |b| b.iter(|| broodlink::hub::frame(&event)));
    group.finish();
}

fn group_commit(c: &mut Criterion) {
    let runtime = Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let (_linkspace, dispatcher, session, lobby) = runtime.block_on(setup(&dir.path().join("bench.db")));
    let dispatcher = Arc::new(dispatcher);
    let mut group = c.benchmark_group("group commit");
    for senders in [1usize, 64] {
        group.throughput(Throughput::Elements(senders as u64));
        group.bench_function(format!("{senders} concurrent message.send (synchronous=FULL)"), |b| {
            b.to_async(&runtime).iter_batched(
                || {
                    let frame = format!(
                        r#"{{"jsonrpc":"2.0","id":9,"method":"message.send","params":{{"roomId":"{lobby}","content":"benchmark message"}}}}"#
                    );
                    (0..senders).map(|_| frame.clone()).collect::<Vec<_>>()
                },
                |frames| {
                    let dispatcher = dispatcher.clone();
                    let session = session.clone();
                    async move {
                        let calls = frames.into_iter().map(|frame| {
                            let dispatcher = dispatcher.clone();
                            let session = session.clone();
                            tokio::spawn(async move { dispatcher.frame(&session, &frame).await })
                        });
                        for call in calls.collect::<Vec<_>>() {
                            let response = call.await.expect("task").expect("response");
                            debug_assert!(response.contains("\"seq\""));
                        }
                    }
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, dispatch, serialize_event, group_commit);
criterion_main!(benches);
