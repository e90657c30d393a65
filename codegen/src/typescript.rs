//! The TypeScript client (`clients/typescript/`). Filled in by the TypeScript generator.

use crate::ir::Protocol;
use crate::Output;

pub fn add_templates(_tera: &mut tera::Tera) {}

pub fn generate(_protocol: &Protocol, _tera: &tera::Tera) -> Vec<Output> {
    Vec::new()
}
