//! The TypeScript client (`clients/typescript/`): an npm package on `ws` in Node and the
//! global `WebSocket` in browsers. `src/broodlink_client.ts` (types, the event map, error
//! classes, one method per RPC method) and the README are rendered from the IR with tera;
//! `src/runtime.ts`, the hand-written connection machinery, is copied verbatim.

use serde::Serialize;

use crate::ir::{self, Protocol, TypeKind, TypeRef};
use crate::Output;

const DIR: &str = "clients/typescript";

const CLIENT_TEMPLATE: &str = "typescript/broodlink_client.ts.tera";
const README_TEMPLATE: &str = "typescript/README.md.tera";
const PACKAGE_TEMPLATE: &str = "typescript/package.json.tera";
const RUNTIME: &str = include_str!("../templates/typescript/runtime.ts");
const TSCONFIG: &str = include_str!("../templates/typescript/tsconfig.json");

pub fn add_templates(tera: &mut tera::Tera) {
    tera.add_raw_templates(vec![
        (CLIENT_TEMPLATE, include_str!("../templates/typescript/broodlink_client.ts.tera")),
        (README_TEMPLATE, include_str!("../templates/typescript/README.md.tera")),
        (PACKAGE_TEMPLATE, include_str!("../templates/typescript/package.json.tera")),
    ])
    .expect("TypeScript templates parse");
}

pub fn generate(protocol: &Protocol, tera: &tera::Tera) -> Vec<Output> {
    let context = tera::Context::from_serialize(Context::build(protocol)).expect("TypeScript context serializes");
    let render = |name: &str| tera.render(name, &context).unwrap_or_else(|e| panic!("rendering {name}: {e:?}"));
    vec![
        Output::new(format!("{DIR}/package.json"), render(PACKAGE_TEMPLATE)),
        Output::new(format!("{DIR}/tsconfig.json"), TSCONFIG),
        Output::new(format!("{DIR}/README.md"), render(README_TEMPLATE)),
        Output::new(format!("{DIR}/src/broodlink_client.ts"), render(CLIENT_TEMPLATE)),
        Output::new(format!("{DIR}/src/runtime.ts"), RUNTIME),
    ]
}

/// What the templates see: the IR with every name, type and doc comment already in
/// TypeScript form.
#[derive(Serialize)]
struct Context {
    version: String,
    types: Vec<TsType>,
    events: Vec<TsEvent>,
    errors: Vec<TsError>,
    methods: Vec<TsMethod>,
    /// The param that makes a call idempotent (`clientMsgId`).
    idempotency_key: &'static str,
    /// The wire names of the methods that take it.
    idempotent_methods: Vec<String>,
    /// For the README: "`sendMessage` (`message.send`) and `sendDm` (`message.dm`)".
    idempotent_calls: String,
}

#[derive(Serialize)]
struct TsType {
    name: String,
    /// `object`, `empty` (an object without fields) or `enum`.
    kind: &'static str,
    jsdoc: String,
    fields: Vec<TsField>,
    /// For `enum`: the union, e.g. `"public" | "private"`.
    union: String,
}

#[derive(Serialize)]
struct TsField {
    name: String,
    ty: String,
    optional: bool,
    jsdoc: String,
}

#[derive(Serialize)]
struct TsEvent {
    name: String,
    payload: String,
    summary: String,
    recipients: String,
    jsdoc: String,
}

#[derive(Serialize)]
struct TsError {
    code: i32,
    ident: String,
    class: String,
    title: String,
    message: String,
    doc: String,
    jsdoc: String,
}

#[derive(Serialize)]
struct TsParam {
    name: String,
    ty: String,
    optional: bool,
    wire: String,
}

#[derive(Serialize)]
struct TsMethod {
    wire: String,
    name: String,
    summary: String,
    permission: &'static str,
    jsdoc: String,
    params: Vec<TsParam>,
    /// `name: string, visibility?: Visibility | null`
    signature: String,
    /// The signature for a Markdown table cell (pipes escaped).
    signature_cell: String,
    /// `{ name, visibility }`
    object: String,
    result: String,
}

impl Context {
    fn build(protocol: &Protocol) -> Context {
        let types = protocol.types.iter().map(ts_type).collect();
        let events = protocol
            .events
            .iter()
            .map(|e| TsEvent {
                name: e.name.clone(),
                payload: e.payload_type.clone(),
                summary: cell(&e.summary),
                recipients: cell(&e.recipients),
                jsdoc: jsdoc(&format!("{}\n\nReceived by: {}.", e.doc, e.recipients), "    "),
            })
            .collect();
        let errors = protocol
            .errors
            .iter()
            .map(|e| TsError {
                code: e.code,
                ident: e.ident.clone(),
                class: error_class(&e.ident),
                title: e.title.clone(),
                message: e.message.clone(),
                doc: cell(&e.doc),
                jsdoc: jsdoc(&format!("`{}` {}: {}", e.code, e.title, e.doc), ""),
            })
            .collect();
        let methods: Vec<TsMethod> = protocol.methods.iter().map(ts_method).collect();
        let idempotent_calls: Vec<String> = methods
            .iter()
            .filter(|m| protocol.idempotent_methods().contains(&m.wire))
            .map(|m| format!("`{}` (`{}`)", m.name, m.wire))
            .collect();
        Context {
            version: protocol.version.clone(),
            types,
            events,
            errors,
            methods,
            idempotency_key: ir::IDEMPOTENCY_KEY,
            idempotent_methods: protocol.idempotent_methods(),
            idempotent_calls: ir::and_list(&idempotent_calls),
        }
    }
}

fn ts_type(def: &ir::TypeDef) -> TsType {
    match &def.kind {
        TypeKind::StringEnum { variants } => {
            let mut doc = def.doc.clone();
            for v in variants.iter().filter(|v| !v.doc.is_empty()) {
                doc.push_str(&format!("\n- `\"{}\"`: {}", v.value, v.doc));
            }
            TsType {
                name: def.name.clone(),
                kind: "enum",
                jsdoc: jsdoc(&doc, ""),
                fields: Vec::new(),
                union: variants.iter().map(|v| format!("{:?}", v.value)).collect::<Vec<_>>().join(" | "),
            }
        }
        TypeKind::Object { fields } => TsType {
            name: def.name.clone(),
            kind: if fields.is_empty() { "empty" } else { "object" },
            jsdoc: jsdoc(&def.doc, ""),
            fields: fields
                .iter()
                .map(|f| TsField {
                    name: property_name(&f.name),
                    ty: ts_type_ref(&f.ty),
                    optional: !f.required,
                    jsdoc: jsdoc(&f.doc, "    "),
                })
                .collect(),
            union: String::new(),
        },
    }
}

fn ts_method(method: &ir::Method) -> TsMethod {
    // Required params first, then optional ones, each in declaration order.
    let ordered: Vec<&ir::Field> =
        method.params.iter().filter(|p| p.required).chain(method.params.iter().filter(|p| !p.required)).collect();
    let params: Vec<TsParam> = ordered
        .iter()
        .map(|p| TsParam {
            name: identifier(&p.name),
            ty: ts_type_ref(&p.ty),
            optional: !p.required,
            wire: p.name.clone(),
        })
        .collect();
    let signature = params
        .iter()
        .map(|p| format!("{}{}: {}", p.name, if p.optional { "?" } else { "" }, p.ty))
        .collect::<Vec<_>>()
        .join(", ");
    let object = if params.is_empty() {
        "{}".to_owned()
    } else {
        let members: Vec<String> = params
            .iter()
            .map(|p| if p.name == p.wire { p.name.clone() } else { format!("{:?}: {}", p.wire, p.name) })
            .collect();
        format!("{{ {} }}", members.join(", "))
    };

    let mut doc = method.doc.clone();
    if method.idempotent {
        doc.push_str(&format!(
            "\n\nWithout `{key}` the client sets a fresh UUID. If the connection drops before the\n\
             answer, the client re-sends the call with the same `{key}` once it has reconnected,\n\
             so it is done once (within `requestTimeout`).",
            key = identifier(ir::IDEMPOTENCY_KEY)
        ));
    }
    doc.push_str(&format!("\n\nCalls `{}`. Permission: {}.", method.name, permission_text(method.permission)));
    doc.push('\n');
    for p in &ordered {
        doc.push_str(&format!("\n@param {} {}", identifier(&p.name), one_line(&p.doc)));
    }
    doc.push_str(&format!("\n@returns The `{}`.", method.result_type));
    for e in &method.errors {
        doc.push_str(&format!("\n@throws {{{}}} `{}` {}.", error_class(&e.ident), e.code, e.title));
    }
    doc.push_str("\n@throws {InvalidParamsError} `-32602` when a param is invalid.");
    doc.push_str("\n@throws {BroodLinkConnectionError} when not connected, and {BroodLinkTimeoutError} when no answer comes in time.");

    TsMethod {
        wire: method.name.clone(),
        name: crate::camel(&method.client_name),
        summary: cell(&method.summary),
        permission: permission_text(method.permission),
        jsdoc: jsdoc(&doc, "    "),
        params,
        signature_cell: cell(&signature),
        signature,
        object,
        result: method.result_type.clone(),
    }
}

/// A type as TypeScript writes it.
fn ts_type_ref(ty: &TypeRef) -> String {
    match ty {
        TypeRef::String => "string".into(),
        TypeRef::Integer | TypeRef::Number => "number".into(),
        TypeRef::Boolean => "boolean".into(),
        TypeRef::Named(name) => name.clone(),
        TypeRef::Array(inner) => match inner.as_ref() {
            TypeRef::Nullable(_) => format!("({})[]", ts_type_ref(inner)),
            _ => format!("{}[]", ts_type_ref(inner)),
        },
        TypeRef::Nullable(inner) => format!("{} | null", ts_type_ref(inner)),
        TypeRef::Any => "unknown".into(),
    }
}

/// `AuthFailed` → `AuthFailedError`; `ParseError` stays.
fn error_class(ident: &str) -> String {
    if ident.ends_with("Error") {
        ident.to_owned()
    } else {
        format!("{ident}Error")
    }
}

fn permission_text(permission: broodlink_protocol::Permission) -> &'static str {
    use broodlink_protocol::Permission::*;
    match permission {
        Public => "anyone (before authentication)",
        Agent => "any authenticated agent",
        RoomOwner => "the room's owner, or the controller",
        Controller => "the controller only",
    }
}

const RESERVED: &[&str] = &[
    "break",
    "case",
    "catch",
    "class",
    "const",
    "continue",
    "debugger",
    "default",
    "delete",
    "do",
    "else",
    "enum",
    "export",
    "extends",
    "false",
    "finally",
    "for",
    "function",
    "if",
    "import",
    "in",
    "instanceof",
    "new",
    "null",
    "return",
    "super",
    "switch",
    "this",
    "throw",
    "true",
    "try",
    "typeof",
    "var",
    "void",
    "while",
    "with",
    "yield",
    "let",
    "static",
    "implements",
    "interface",
    "package",
    "private",
    "protected",
    "public",
    "await",
    "arguments",
    "eval",
];

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

/// A param name usable as a TypeScript parameter.
fn identifier(name: &str) -> String {
    let cleaned: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '$' { c } else { '_' }).collect();
    if RESERVED.contains(&cleaned.as_str()) || !is_identifier(&cleaned) {
        format!("{cleaned}_")
    } else {
        cleaned
    }
}

/// A property name, quoted when it is not an identifier.
fn property_name(name: &str) -> String {
    if is_identifier(name) {
        name.to_owned()
    } else {
        format!("{name:?}")
    }
}

/// A JSDoc block indented by `indent`; empty when there is no doc.
fn jsdoc(doc: &str, indent: &str) -> String {
    let doc = doc.trim();
    if doc.is_empty() {
        return String::new();
    }
    let doc = doc.replace("*/", "*\\/");
    if !doc.contains('\n') {
        return format!("{indent}/** {doc} */\n");
    }
    let mut out = format!("{indent}/**\n");
    for line in doc.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            out.push_str(&format!("{indent} *\n"));
        } else {
            out.push_str(&format!("{indent} * {line}\n"));
        }
    }
    out.push_str(&format!("{indent} */\n"));
    out
}

/// Text for a Markdown table cell: one line, pipes escaped.
fn cell(text: &str) -> String {
    one_line(text).replace('|', "\\|")
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_event_and_error_is_in_the_client() {
        let protocol = Protocol::build();
        let outputs = generate(&protocol, &crate::templates());
        let client = &outputs.iter().find(|o| o.path.ends_with("broodlink_client.ts")).expect("client").contents;
        for method in &protocol.methods {
            let name = crate::camel(&method.client_name);
            assert!(client.contains(&format!("    async {name}(")), "method {name} missing");
            assert!(client.contains(&format!("this.call<{}>({:?}", method.result_type, method.name)));
        }
        for event in &protocol.events {
            assert!(client.contains(&format!("    {:?}: {};", event.name, event.payload_type)), "event {}", event.name);
        }
        let idempotent: Vec<String> = protocol.idempotent_methods().iter().map(|m| format!("{m:?}")).collect();
        assert!(!idempotent.is_empty());
        assert!(
            client.contains(&format!("new Set<string>([{}])", idempotent.join(", "))),
            "the idempotent methods are not handed to the runtime"
        );
        for error in &protocol.errors {
            assert!(client.contains(&format!("export class {} extends BroodLinkError", error_class(&error.ident))));
            assert!(client.contains(&format!("{}: {},", error.ident, error.code)));
        }
        for def in &protocol.types {
            assert!(
                client.contains(&format!("export interface {} ", def.name))
                    || client.contains(&format!("export type {} =", def.name)),
                "type {} missing",
                def.name
            );
        }
    }

    #[test]
    fn type_refs() {
        assert_eq!(ts_type_ref(&TypeRef::Nullable(Box::new(TypeRef::Named("Visibility".into())))), "Visibility | null");
        assert_eq!(ts_type_ref(&TypeRef::Array(Box::new(TypeRef::Named("Room".into())))), "Room[]");
        assert_eq!(
            ts_type_ref(&TypeRef::Array(Box::new(TypeRef::Nullable(Box::new(TypeRef::String))))),
            "(string | null)[]"
        );
        assert_eq!(identifier("default"), "default_");
        assert_eq!(error_class("ParseError"), "ParseError");
        assert_eq!(error_class("RoomNotFound"), "RoomNotFoundError");
    }
}
