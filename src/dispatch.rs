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
use futures_util::FutureExt;
use jsonrpsee::types::{Id, Params};
use jsonrpsee::{ConnectionId, Extensions, MethodCallback, Methods, RpcModule};
use serde::Deserialize;
use serde_json::value::RawValue;

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
}

/// A request as read off the wire, borrowing from the frame.
#[derive(Deserialize)]
struct RawRequest<'a> {
    jsonrpc: Option<&'a str>,
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
    pub fn new<T: Send + Sync + 'static>(module: RpcModule<T>, max_request_bytes: usize) -> Dispatcher {
        let specs = METHODS.iter().map(|m| (m.name, m)).collect();
        Dispatcher { methods: module.into(), specs, max_request_bytes }
    }

    /// Handles one text frame; returns the response frame, if any is due.
    pub async fn frame(&self, session: &Arc<Session>, text: &str) -> Option<String> {
        if text.len() > self.max_request_bytes {
            let message = format!("request too large: {} bytes (limit {})", text.len(), self.max_request_bytes);
            return Some(error_response(None, ErrorCode::InvalidRequest, &message));
        }
        if !text.trim_start().starts_with('[') {
            return self.request(session, text).await;
        }
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
                if let Some(id) = id {
                    let message = "batch responses too large: send this request again on its own";
                    responses.push(error_response(Some(id), ErrorCode::InvalidRequest, message));
                }
                continue;
            }
            if let Some(response) = self.request(session, request.get()).await {
                bytes += response.len();
                responses.push(response);
            }
        }
        // A batch of only notifications gets no response at all.
        (!responses.is_empty()).then(|| format!("[{}]", responses.join(",")))
    }

    async fn request(&self, session: &Arc<Session>, text: &str) -> Option<String> {
        let request: RawRequest<'_> = match serde_json::from_str(text) {
            Ok(request) => request,
            Err(e) if e.is_syntax() || e.is_eof() => return Some(parse_error(&e)),
            Err(e) => {
                let message = format!("not a JSON-RPC request: {e}");
                return Some(error_response(None, ErrorCode::InvalidRequest, &message));
            }
        };
        let raw_id = request.id;
        let reply = |code: ErrorCode, message: &str| raw_id.map(|id| error_response(Some(id), code, message));

        if request.jsonrpc != Some("2.0") {
            return Some(error_response(raw_id, ErrorCode::InvalidRequest, "`jsonrpc` must be \"2.0\""));
        }
        let id = match raw_id.map(|raw| serde_json::from_str::<Id<'_>>(raw.get())).transpose() {
            Ok(id) => id.map(Id::into_owned),
            Err(_) => {
                let message = "`id` must be a string, a non-negative integer or null";
                return Some(error_response(None, ErrorCode::InvalidRequest, message));
            }
        };
        let Some(method) = request.method else {
            return Some(error_response(raw_id, ErrorCode::InvalidRequest, "`method` is missing"));
        };
        let (Some(callback), Some(spec)) =
            (self.methods.method_with_name(&method).map(|(_, cb)| cb), self.specs.get(method.as_ref()))
        else {
            return reply(ErrorCode::MethodNotFound, &format!("Method not found: {method}"));
        };

        // The gates, before any params are parsed.
        if session.is_closed() {
            return None;
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

        let params = Params::new(request.params.map(RawValue::get)).into_owned();
        let mut extensions = Extensions::new();
        extensions.insert(session.clone());
        let call_id = id.clone().unwrap_or(Id::Null);
        let response = match callback {
            MethodCallback::Async(call) => {
                let future = call(call_id, params, ConnectionId(session.id as usize), MAX_RESPONSE_BYTES, extensions);
                AssertUnwindSafe(future).catch_unwind().await
            }
            MethodCallback::Sync(call) => {
                std::panic::catch_unwind(AssertUnwindSafe(|| call(call_id, params, MAX_RESPONSE_BYTES, extensions)))
            }
            // The protocol declares no subscriptions.
            MethodCallback::Subscription(_) | MethodCallback::Unsubscription(_) => {
                return reply(ErrorCode::MethodNotFound, &format!("Method not found: {method}"));
            }
        };
        let response = match response {
            Ok(response) => response,
            Err(_) => {
                tracing::error!(%method, conn = session.id, "handler panicked");
                return reply(ErrorCode::InternalError, "Internal error");
            }
        };
        id?;
        if response.as_error_code() == Some(ErrorCode::InvalidParams.code()) {
            // jsonrpsee's own params errors do not name the field; ours (from the
            // handlers, for params that parse but are invalid) already do.
            if let Some(detail) = (spec.diagnose_params)(request.params.map(RawValue::get)) {
                return raw_id.map(|id| invalid_params(id, &detail));
            }
        }
        Some(response.into_json().get().to_owned())
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

/// A -32602 response whose message names the field, with the same detail in `data`.
fn invalid_params(id: &RawValue, detail: &str) -> String {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": { "code": ErrorCode::InvalidParams.code(), "message": format!("Invalid params: {detail}"), "data": detail },
    });
    body.to_string()
}
