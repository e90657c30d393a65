//! `cargo xtask codegen [--check]`: regenerates every file derived from the protocol
//! crate, or (with `--check`) fails naming each one that is stale.

mod ir;
mod markdown;
mod openrpc;
mod python;
mod typescript;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// One generated file: its path from the repository root and its contents.
pub struct Output {
    pub path: PathBuf,
    pub contents: String,
}

impl Output {
    pub fn new(path: impl Into<PathBuf>, contents: impl Into<String>) -> Output {
        Output { path: path.into(), contents: contents.into() }
    }
}

/// The templates, embedded so the generator runs from anywhere.
fn templates() -> tera::Tera {
    let mut tera = tera::Tera::default();
    tera.add_raw_templates(vec![("PROTOCOL.md.tera", include_str!("../templates/PROTOCOL.md.tera"))])
        .expect("PROTOCOL.md template parses");
    python::add_templates(&mut tera);
    typescript::add_templates(&mut tera);
    tera.register_filter("camel", |value: &tera::Value, _: &std::collections::HashMap<String, tera::Value>| {
        Ok(tera::Value::from(camel(value.as_str().unwrap_or_default())))
    });
    tera
}

/// `join_room` → `joinRoom`.
pub fn camel(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Every generated file.
pub fn generate() -> Vec<Output> {
    let protocol = ir::Protocol::build();
    let tera = templates();
    let mut outputs = vec![
        Output::new("openrpc.json", openrpc::openrpc(&protocol)),
        Output::new("schema/broodlink.schema.json", openrpc::schema_bundle()),
        Output::new("PROTOCOL.md", markdown::render(&protocol, &tera)),
    ];
    outputs.extend(python::generate(&protocol, &tera));
    outputs.extend(typescript::generate(&protocol, &tera));
    outputs
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("codegen/ sits in the repository root").to_owned()
}

/// The generated files whose contents on disk differ (or that are missing).
pub fn stale(root: &Path) -> Vec<PathBuf> {
    generate()
        .into_iter()
        .filter(|out| std::fs::read_to_string(root.join(&out.path)).ok().as_deref() != Some(out.contents.as_str()))
        .map(|out| out.path)
        .collect()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = repo_root();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["codegen"] => {
            for out in generate() {
                let path = root.join(&out.path);
                if std::fs::read_to_string(&path).ok().as_deref() == Some(out.contents.as_str()) {
                    continue;
                }
                if let Some(parent) = path.parent() {
                    if let Err(e) = std::fs::create_dir_all(parent) {
                        eprintln!("error: cannot create {}: {e}", parent.display());
                        return ExitCode::FAILURE;
                    }
                }
                if let Err(e) = std::fs::write(&path, &out.contents) {
                    eprintln!("error: cannot write {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
                println!("wrote {}", out.path.display());
            }
            ExitCode::SUCCESS
        }
        ["codegen", "--check"] => {
            let stale = stale(&root);
            if stale.is_empty() {
                println!("generated files are up to date");
                return ExitCode::SUCCESS;
            }
            for path in &stale {
                eprintln!("stale: {}", path.display());
            }
            eprintln!("error: {} generated file(s) are out of date; run `cargo xtask codegen` and commit", stale.len());
            ExitCode::FAILURE
        }
        _ => {
            eprintln!("usage: cargo xtask codegen [--check]");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    /// A plain `cargo test` catches a stale generated file too.
    #[test]
    fn generated_files_are_up_to_date() {
        let stale = super::stale(&super::repo_root());
        assert!(stale.is_empty(), "stale generated files {stale:?}: run `cargo xtask codegen`");
    }

    #[test]
    fn generation_is_deterministic() {
        let first: Vec<String> = super::generate().into_iter().map(|o| o.contents).collect();
        let second: Vec<String> = super::generate().into_iter().map(|o| o.contents).collect();
        assert_eq!(first, second);
    }
}
