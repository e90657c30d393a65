//! The Python client (`clients/python/`). Filled in by the Python generator.

use crate::ir::Protocol;
use crate::Output;

pub fn add_templates(_tera: &mut tera::Tera) {}

pub fn generate(_protocol: &Protocol, _tera: &tera::Tera) -> Vec<Output> {
    Vec::new()
}
