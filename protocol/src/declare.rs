//! The declarative macros that turn one declaration per method, event and error code
//! into every Rust item that needs it. Keeping the declarations in macro input (and not
//! in several hand-kept lists) is what keeps the `#[rpc]` trait, the params structs, the
//! permission gate and the generated documents in step.

use schemars::{JsonSchema, Schema, SchemaGenerator};

/// Produces the JSON Schema of a type inside a generator (so shared types become
/// `$ref`s into the generator's definitions).
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

pub(crate) fn schema_of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// Explains why a `params` object does not fit a method, naming the offending field
/// (`roomId: invalid type: integer `5`, expected a string`). `None` if it fits, or if the
/// params are positional (an array), which this does not diagnose.
pub(crate) fn diagnose_params<T: serde::de::DeserializeOwned>(params: Option<&str>) -> Option<String> {
    let text = match params.map(str::trim) {
        None | Some("null") => "{}",
        Some(text) if text.starts_with('[') => return None,
        Some(text) => text,
    };
    let de = &mut serde_json::Deserializer::from_str(text);
    let err = serde_path_to_error::deserialize::<_, T>(de).err()?;
    let path = err.path().to_string();
    let inner = err.into_inner();
    // serde_json appends a position that means nothing to a caller who sent an object.
    let detail = inner.to_string();
    let detail = detail.split(" at line ").next().unwrap_or(&detail).to_owned();
    Some(if path == "." { detail } else { format!("{path}: {detail}") })
}

/// Who may call a method. The dispatcher enforces `Public`, `Agent` and `Controller`
/// before the params are parsed; `RoomOwner` depends on the room named in the params,
/// so its handler checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Permission {
    /// Callable before authentication (only `auth`).
    Public,
    /// Any authenticated agent.
    Agent,
    /// The room's owner, or the controller.
    RoomOwner,
    /// Only the controller.
    Controller,
}

impl Permission {
    /// Whether the caller must have authenticated first.
    pub fn requires_auth(self) -> bool {
        self != Permission::Public
    }
}

/// One method of the protocol, as declared in [`crate::methods`].
#[derive(Debug)]
pub struct MethodSpec {
    /// The wire name, e.g. `room.join`.
    pub name: &'static str,
    /// The method name in the generated Rust traits and clients, e.g. `join_room`
    /// (Python uses it as is, TypeScript in camelCase: `joinRoom`).
    pub rust_name: &'static str,
    /// The doc comment, for documentation and client docstrings.
    pub doc: &'static str,
    /// Who may call it.
    pub permission: Permission,
    /// The protocol errors this method can return (besides the JSON-RPC ones).
    pub errors: &'static [crate::ErrorCode],
    /// The params' wire names, in declaration order.
    pub param_names: &'static [&'static str],
    /// The schema of the params object.
    pub params: SchemaFn,
    /// The schema of the result.
    pub result: SchemaFn,
    /// Names what is wrong with a `params` object (see [`diagnose_params`]).
    pub diagnose_params: fn(Option<&str>) -> Option<String>,
}

/// One server-pushed event, as declared in [`crate::events`].
#[derive(Debug)]
pub struct EventSpec {
    /// The event name, sent as the notification's `method`.
    pub name: &'static str,
    /// The doc comment.
    pub doc: &'static str,
    /// Who receives it.
    pub recipients: &'static str,
    /// The schema of the payload (the notification's `params`).
    pub payload: SchemaFn,
}

/// Declares every method once. For each it emits a params struct (the schema-facing
/// shape of the `params` object), a method of the `#[rpc]` trait whose arguments are
/// the same fields under the same wire names, and an entry of `METHODS`.
///
/// Names and literals are matched as `tt` so they reach the `#[rpc]` proc macro as
/// plain tokens.
macro_rules! declare_methods {
    (
        $(
            $(#[doc = $doc:tt])*
            #[method(name = $name:tt, permission = $perm:ident, errors = [$($err:ident),* $(,)?])]
            fn $fn_name:ident(
                $( $(#[doc = $pdoc:tt])* $arg:ident as $wire:tt : $ty:ty ),* $(,)?
            ) -> $result:ty as $params:ident;
        )*
    ) => {
        $(
            #[doc = concat!("Params of `", $name, "`.")]
            #[doc = ""]
            $(#[doc = $doc])*
            #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
            pub struct $params {
                $(
                    $(#[doc = $pdoc])*
                    #[serde(rename = $wire)]
                    pub $arg: $ty,
                )*
            }
        )*

        /// The BroodLink JSON-RPC API. Params are sent as a JSON object with the
        /// camelCase names shown; the server implements [`BroodLinkApiServer`] and a
        /// Rust client can use [`BroodLinkApiClient`] over jsonrpsee's WebSocket client.
        #[jsonrpsee::proc_macros::rpc(server, client)]
        pub trait BroodLinkApi {
            $(
                $(#[doc = $doc])*
                #[method(name = $name, with_extensions, param_kind = map)]
                async fn $fn_name(&self, $( #[argument(rename = $wire)] $arg: $ty ),*)
                    -> jsonrpsee::core::RpcResult<$result>;
            )*
        }

        /// Every method of the protocol, in declaration order.
        pub const METHODS: &[$crate::MethodSpec] = &[
            $(
                $crate::MethodSpec {
                    name: $name,
                    rust_name: stringify!($fn_name),
                    doc: concat!($($doc, "\n"),*),
                    permission: $crate::Permission::$perm,
                    errors: &[$($crate::ErrorCode::$err),*],
                    param_names: &[$($wire),*],
                    params: $crate::declare::schema_of::<$params>,
                    result: $crate::declare::schema_of::<$result>,
                    diagnose_params: $crate::declare::diagnose_params::<$params>,
                },
            )*
        ];
    };
}

/// Declares every event once: the [`Event`](crate::Event) enum (serialized as
/// `{"method": name, "params": payload}`) and the `EVENTS` catalogue.
macro_rules! declare_events {
    (
        $(
            $(#[doc = $doc:tt])*
            #[event(name = $name:tt, recipients = $recipients:tt)]
            $variant:ident($payload:ty),
        )*
    ) => {
        /// A server-pushed event. On the wire it is a JSON-RPC notification whose
        /// `method` is the event name and whose `params` is the payload.
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
        #[serde(tag = "method", content = "params")]
        pub enum Event {
            $(
                $(#[doc = $doc])*
                #[serde(rename = $name)]
                $variant($payload),
            )*
        }

        impl Event {
            /// The event's wire name.
            pub fn name(&self) -> &'static str {
                match self {
                    $(Event::$variant(_) => $name,)*
                }
            }
        }

        /// Every event of the protocol, in declaration order.
        pub const EVENTS: &[$crate::EventSpec] = &[
            $(
                $crate::EventSpec {
                    name: $name,
                    doc: concat!($($doc, "\n"),*),
                    recipients: $recipients,
                    payload: $crate::declare::schema_of::<$payload>,
                },
            )*
        ];
    };
}

/// Declares every error code once: the [`ErrorCode`](crate::ErrorCode) enum with its
/// number, name and default message.
macro_rules! declare_errors {
    (
        $(
            $(#[doc = $doc:tt])*
            $variant:ident = $code:literal, $title:literal, $message:literal;
        )*
    ) => {
        /// Every error code the server can return, JSON-RPC's own and BroodLink's.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl ErrorCode {
            /// Every error code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The numeric code sent in `error.code`.
            pub fn code(self) -> i32 {
                match self { $(ErrorCode::$variant => $code,)* }
            }

            /// The human name, e.g. "Room Not Found".
            pub fn title(self) -> &'static str {
                match self { $(ErrorCode::$variant => $title,)* }
            }

            /// The Rust variant name, e.g. "RoomNotFound" (for generated constants).
            pub fn ident(self) -> &'static str {
                match self { $(ErrorCode::$variant => stringify!($variant),)* }
            }

            /// The default `error.message`.
            pub fn message(self) -> &'static str {
                match self { $(ErrorCode::$variant => $message,)* }
            }

            /// The doc comment.
            pub fn doc(self) -> &'static str {
                match self { $(ErrorCode::$variant => concat!($($doc, "\n"),*),)* }
            }

            /// The error code with this number, if any.
            pub fn from_code(code: i32) -> Option<ErrorCode> {
                match code { $($code => Some(ErrorCode::$variant),)* _ => None }
            }
        }
    };
}
