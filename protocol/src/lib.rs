//! The BroodLink wire protocol, declared once.
//!
//! Everything a client can send or receive is defined in this crate: every JSON-RPC
//! method (in [`methods`], which emits the jsonrpsee [`BroodLinkApiServer`] /
//! [`BroodLinkApiClient`] traits, one params struct per method and the [`METHODS`]
//! catalogue from a single declaration per method), every event ([`events`]), every
//! error code ([`errors`]) and the data types they carry ([`types`]). The server, the
//! dispatcher's permission gate, the generated documentation and the client libraries
//! all read these declarations, so they cannot drift apart.

#[macro_use]
mod declare;
pub mod errors;
pub mod events;
pub mod methods;
pub mod types;

pub use declare::{EventSpec, MethodSpec, Permission, SchemaFn};
pub use errors::ErrorCode;
pub use events::*;
pub use methods::*;
pub use types::*;

/// Looks a method up in the catalogue by its wire name (e.g. `"room.join"`).
pub fn method_spec(name: &str) -> Option<&'static MethodSpec> {
    METHODS.iter().find(|m| m.name == name)
}
