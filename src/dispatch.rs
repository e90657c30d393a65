//! Frame → JSON-RPC request(s) → permission gate → method → response.
//!
//! jsonrpsee's `RpcModule` (built from our `#[rpc]` trait) parses params and runs the
//! handler; everything jsonrpsee's own server would do around it is done here: batches,
//! notifications, `-32700` vs `-32600`, the size limit, the auth gate (before params
//! are parsed, so an unauthenticated call with bad params still gets 4001), the
//! declared-permission gate, and turning a handler panic into `-32603`.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use broodlink_protocol::{ErrorCode, MethodSpec, Permission, Role, METHODS};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use jsonrpsee::types::{ErrorObjectOwned, Id, Params};
use jsonrpsee::{ConnectionId, Extensions, MethodCallback, Methods, RpcModule};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::config::LimitsConfig;
use crate::error::ServiceError;
use crate::limits::Limiter;
use crate::service::Enqueued;
use crate::session::Session;

/// Responses larger than this are replaced by an error (a full history page of
/// 1000 messages of 8192 characters, JSON-escaped, stays below it).
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// Requests in one batch, and bytes of responses one batch may produce: beyond them the
/// remaining requests are answered with an error instead of growing memory.
const MAX_BATCH: usize = 100;
const MAX_BATCH_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

pub struct Dispatcher {
    methods: Methods,
    /// The catalogue entry of every method, by wire name.
    specs: HashMap<&'static str, &'static MethodSpec>,
    max_request_bytes: usize,
    /// Every call of an agent, and its sends, by agent id.
    calls: Limiter<String>,
    sends: Limiter<String>,
}

/// A request as read off the wire, borrowing from the frame.
#[derive(Deserialize)]
struct RawRequest<'a> {
    /// A `Cow`, so an escaped `"2\u002e0"` is still `"2.0"`.
    #[serde(borrow)]
    jsonrpc: Option<std::borrow::Cow<'a, str>>,
    /// `None` when absent (a notification); `Some("null")` when `"id": null`.
    #[serde(default, borrow, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    method: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    params: Option<&'a RawValue>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

impl Dispatcher {
    pub fn new<T: Send + Sync + 'static>(
        module: RpcModule<T>,
        max_request_bytes: usize,
        limits: &LimitsConfig,
    ) -> Dispatcher {
        let specs = METHODS.iter().map(|m| (m.name, m)).collect();
        Dispatcher {
            methods: module.into(),
            specs,
            max_request_bytes,
            calls: Limiter::new(limits.calls_per_second, limits.call_burst),
            sends: Limiter::new(limits.sends_per_second, limits.send_burst),
        }
    }

    /// Handles one text frame to the end; returns the response frame, if any is due.
    pub async fn frame(&self, session: &Arc<Session>, text: &str) -> Option<String> {
        match self.begin(session, text).await {
            Begun::Queued(response) => response.await,
            Begun::InOrder(next) => self.finish(session, text, next).await,
        }
    }

    /// Starts handling one text frame. A single `message.send` or `message.dm` is
    /// queued for commit and runs on: its response follows when the returned future ends,
    /// and the connection may read its next frame meanwhile (a sender keeps many
    /// messages in flight instead of one per commit). Anything else comes back as
    /// [`Begun::InOrder`], to be [`finish`](Self::finish)ed once everything queued before
    /// it is answered, so requests still take effect in the order they were sent.
    pub async fn begin(&self, session: &Arc<Session>, text: &str) -> Begun {
        if text.len() > self.max_request_bytes {
            let message = format!("request too large: {} bytes (limit {})", text.len(), self.max_request_bytes);
            return Begun::InOrder(Next::Ready(Some(error_response(None, ErrorCode::InvalidRequest, &message))));
        }
        if text.trim_start().starts_with('[') {
            return Begun::InOrder(Next::Batch);
        }
        match self.prepare(session, text) {
            Ok(mut call) if PIPELINED.contains(&call.spec.name) => {
                let (enqueued, mut queued) = Enqueued::new();
                call.extensions.insert(enqueued);
                let mut run = call.run().boxed();
                // Run it until the message has its place in the commit queue (or the
                // handler ended early, failing); the rest runs when the caller polls it.
                tokio::select! {
                    response = &mut run => Begun::Queued(std::future::ready(response).boxed()),
                    _ = &mut queued => Begun::Queued(run),
                }
            }
            Ok(call) => Begun::InOrder(Next::Call(call)),
            Err(response) => Begun::InOrder(Next::Ready(response)),
        }
    }

    /// Completes what [`begin`](Self::begin) left in order; `text` is the same frame.
    pub async fn finish(&self, session: &Arc<Session>, text: &str, next: Next) -> Option<String> {
        match next {
            Next::Ready(response) => response,
            Next::Call(call) => call.run().await,
            Next::Batch => self.batch(session, text).await,
        }
    }

    async fn batch(&self, session: &Arc<Session>, text: &str) -> Option<String> {
        let batch: Vec<&RawValue> = match serde_json::from_str(text) {
            Ok(batch) => batch,
            Err(e) if e.is_syntax() || e.is_eof() => return Some(parse_error(&e)),
            Err(_) => {
                return Some(error_response(None, ErrorCode::InvalidRequest, "batch must be an array of requests"))
            }
        };
        if batch.is_empty() {
            return Some(error_response(None, ErrorCode::InvalidRequest, "empty batch"));
        }
        if batch.len() > MAX_BATCH {
            let message = format!("batch of {} requests; at most {MAX_BATCH} per batch", batch.len());
            return Some(error_response(None, ErrorCode::InvalidRequest, &message));
        }
        let mut responses = Vec::new();
        let mut bytes = 0;
        for request in batch {
            if bytes > MAX_BATCH_RESPONSE_BYTES {
                // Not run: each remaining request (with an id) is told so.
                let id = serde_json::from_str::<RawRequest<'_>>(request.get()).ok().and_then(|r| r.id);
                if let Some(id) = id.filter(|id| parse_id(id).is_ok()) {
                    let message = "batch responses too large: send this request again on its own";
                    responses.push(error_response(Some(id), ErrorCode::InvalidRequest, message));
                }
                continue;
            }
            let response = match self.prepare(session, request.get()) {
                Ok(call) => call.run().await,
                Err(response) => response,
            };
            if let Some(response) = response {
                bytes += response.len();
                responses.push(response);
            }
        }
        // A batch of only notifications gets no response at all.
        (!responses.is_empty()).then(|| format!("[{}]", responses.join(",")))
    }

    /// Parses one request and runs the gates (before any params are parsed). `Err`
    /// holds the response already due (an error, or nothing for a notification).
    fn prepare(&self, session: &Arc<Session>, text: &str) -> Result<Call, Option<String>> {
        let request: RawRequest<'_> = match serde_json::from_str(text) {
            Ok(request) => request,
            Err(e) if e.is_syntax() || e.is_eof() => return Err(Some(parse_error(&e))),
            Err(e) => {
                let message = format!("not a JSON-RPC request: {e}");
                return Err(Some(error_response(None, ErrorCode::InvalidRequest, &message)));
            }
        };
        // The id first: no response may echo an id that is not a valid one.
        let raw_id = request.id;
        let id = match raw_id.map(parse_id).transpose() {
            Ok(id) => id,
            Err(()) => {
                let message = "`id` must be a string, a non-negative integer or null";
                return Err(Some(error_response(None, ErrorCode::InvalidRequest, message)));
            }
        };
        let reply = |code: ErrorCode, message: &str| Err(raw_id.map(|id| error_response(Some(id), code, message)));

        if request.jsonrpc.as_deref() != Some("2.0") {
            return Err(Some(error_response(raw_id, ErrorCode::InvalidRequest, "`jsonrpc` must be \"2.0\"")));
        }
        let Some(method) = request.method else {
            return Err(Some(error_response(raw_id, ErrorCode::InvalidRequest, "`method` is missing")));
        };
        let (Some(callback), Some(spec)) =
            (self.methods.method_with_name(&method).map(|(_, cb)| cb), self.specs.get(method.as_ref()))
        else {
            return reply(ErrorCode::MethodNotFound, &format!("Method not found: {method}"));
        };

        if session.is_closed() {
            return Err(None);
        }
        if spec.permission.requires_auth() {
            match session.identity() {
                None => return reply(ErrorCode::AuthRequired, "Authentication required: call auth first"),
                Some(who) if spec.permission == Permission::Controller && who.role != Role::Controller => {
                    return reply(ErrorCode::Forbidden, &format!("Forbidden: only the controller may call {method}"));
                }
                Some(_) => {}
            }
        }
        if let Some(who) = session.identity() {
            let allowed = self.calls.take(who.agent_id.as_str()).and_then(|()| {
                if PIPELINED.contains(&spec.name) {
                    self.sends.take(who.agent_id.as_str())
                } else {
                    Ok(())
                }
            });
            if let Err(wait) = allowed {
                return Err(raw_id.map(|id| service_error(id, ServiceError::RateLimited(wait))));
            }
        }

        let mut extensions = Extensions::new();
        extensions.insert(session.clone());
        Ok(Call {
            callback: callback.clone(),
            spec,
            id,
            raw_id: raw_id.map(ToOwned::to_owned),
            params: request.params.map(ToOwned::to_owned),
            extensions,
            connection: session.id,
        })
    }
}

/// Methods whose handler hands the message to the group committer: a connection may
/// have several of them in flight (see [`Dispatcher::begin`]).
const PIPELINED: [&str; 2] = ["message.send", "message.dm"];

/// What [`Dispatcher::begin`] made of a frame.
pub enum Begun {
    /// A message queued for commit; the future yields its response. It must be
    /// polled to the end (never dropped half-way), as [`Call::run`] says.
    Queued(BoxFuture<'static, Option<String>>),
    /// To finish after every earlier request of the connection is answered.
    InOrder(Next),
}

/// The rest of a frame that is handled in order.
pub enum Next {
    /// Nothing left to run: the response (if any) is known.
    Ready(Option<String>),
    Call(Call),
    Batch,
}

/// A request that passed the gates. It owns all it needs, so it can run on a task of
/// its own.
pub struct Call {
    callback: MethodCallback,
    spec: &'static MethodSpec,
    /// `None` for a notification.
    id: Option<Id<'static>>,
    raw_id: Option<Box<RawValue>>,
    params: Option<Box<RawValue>>,
    extensions: Extensions,
    connection: u64,
}

impl Call {
    /// Runs the handler to the end (it is never cancelled half-way: a handler stopped
    /// mid-change could leave the database and the hub disagreeing).
    pub async fn run(self) -> Option<String> {
        let Call { callback, spec, id, raw_id, params, extensions, connection } = self;
        let method = spec.name;
        let call_params = Params::new(params.as_deref().map(RawValue::get)).into_owned();
        let call_id = id.clone().unwrap_or(Id::Null);
        let response = match callback {
            MethodCallback::Async(call) => {
                let future =
                    call(call_id, call_params, ConnectionId(connection as usize), MAX_RESPONSE_BYTES, extensions);
                AssertUnwindSafe(future).catch_unwind().await
            }
            MethodCallback::Sync(call) => std::panic::catch_unwind(AssertUnwindSafe(|| {
                call(call_id, call_params, MAX_RESPONSE_BYTES, extensions)
            })),
            // The protocol declares no subscriptions.
            MethodCallback::Subscription(_) | MethodCallback::Unsubscription(_) => {
                let message = format!("Method not found: {method}");
                return raw_id.map(|id| error_response(Some(&id), ErrorCode::MethodNotFound, &message));
            }
        };
        let response = match response {
            Ok(response) => response,
            Err(_) => {
                tracing::error!(%method, conn = connection, "handler panicked");
                return raw_id.map(|id| error_response(Some(&id), ErrorCode::InternalError, "Internal error"));
            }
        };
        id?;
        if response.as_error_code() == Some(ErrorCode::InvalidParams.code()) {
            // jsonrpsee's own params errors do not name the field; ours (from the
            // handlers, for params that parse but are invalid) already do.
            if let Some(detail) = (spec.diagnose_params)(params.as_deref().map(RawValue::get)) {
                return raw_id.map(|id| invalid_params(&id, &detail));
            }
        }
        Some(response.into_json().get().to_owned())
    }
}

/// A request id as JSON-RPC allows it (a string, a non-negative integer or null). Read
/// by its first byte rather than through `Id`'s untagged `Deserialize`, which formats an
/// error message for each variant it tries before the right one — on every request.
fn parse_id(raw: &RawValue) -> Result<Id<'static>, ()> {
    let text = raw.get().trim_start();
    match text.as_bytes().first() {
        Some(b'n') => serde_json::from_str::<()>(text).map(|()| Id::Null).map_err(|_| ()),
        Some(b'"') => serde_json::from_str::<String>(text).map(|id| Id::Str(id.into())).map_err(|_| ()),
        _ => serde_json::from_str::<u64>(text).map(Id::Number).map_err(|_| ()),
    }
}

fn parse_error(e: &serde_json::Error) -> String {
    error_response(None, ErrorCode::ParseError, &format!("Parse error: {e}"))
}

/// An error response; `id` is echoed as sent (`null` when unknown).
fn error_response(id: Option<&RawValue>, code: ErrorCode, message: &str) -> String {
    #[derive(serde::Serialize)]
    struct ErrorBody<'a> {
        code: i32,
        message: &'a str,
    }
    #[derive(serde::Serialize)]
    struct ErrorResponse<'a> {
        jsonrpc: &'static str,
        id: Option<&'a RawValue>,
        error: ErrorBody<'a>,
    }
    let body = ErrorResponse { jsonrpc: "2.0", id, error: ErrorBody { code: code.code(), message } };
    serde_json::to_string(&body).unwrap_or_default()
}

/// The response for an error a service would give.
fn service_error(id: &RawValue, error: ServiceError) -> String {
    let error = ErrorObjectOwned::from(error);
    serde_json::json!({ "jsonrpc": "2.0", "id": id, "error": error }).to_string()
}

/// A -32602 response whose message names the field, with the same detail in `data`.
fn invalid_params(id: &RawValue, detail: &str) -> String {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": { "code": ErrorCode::InvalidParams.code(), "message": format!("Invalid params: {detail}"), "data": detail },
    });
    body.to_string()
}
