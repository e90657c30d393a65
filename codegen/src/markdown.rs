//! `PROTOCOL.md`, the protocol reference, rendered from the IR with tera.

use serde::Serialize;

use crate::ir::{self, ErrorInfo, Protocol, TypeKind, TypeRef};

#[derive(Serialize)]
struct Row {
    name: String,
    ty: String,
    required: bool,
    doc: String,
}

#[derive(Serialize)]
struct MethodPage<'a> {
    method: &'a ir::Method,
    params: Vec<Row>,
    request_example: String,
    result_example: String,
    permission: &'static str,
}

#[derive(Serialize)]
struct TypePage<'a> {
    def: &'a ir::TypeDef,
    rows: Vec<Row>,
}

#[derive(Serialize)]
struct EventPage<'a> {
    event: &'a ir::Event,
    rows: Vec<Row>,
    example: String,
}

pub fn render(protocol: &Protocol, tera: &tera::Tera) -> String {
    let methods: Vec<MethodPage> = protocol
        .methods
        .iter()
        .map(|method| {
            let params: Vec<Row> = method.params.iter().map(row).collect();
            let example_params: serde_json::Map<String, serde_json::Value> = method
                .params
                .iter()
                .filter(|p| p.required)
                .map(|p| (p.name.clone(), ir::example(protocol, &p.ty, &p.name)))
                .collect();
            let request = serde_json::json!({
                "jsonrpc": "2.0", "id": 1, "method": method.name, "params": example_params,
            });
            let result = ir::example(protocol, &TypeRef::Named(method.result_type.clone()), "");
            MethodPage {
                method,
                params,
                request_example: serde_json::to_string(&request).unwrap_or_default(),
                result_example: serde_json::to_string_pretty(&result).unwrap_or_default(),
                permission: permission_text(method.permission),
            }
        })
        .collect();
    let events: Vec<EventPage> = protocol
        .events
        .iter()
        .map(|event| {
            let rows = match protocol.type_def(&event.payload_type).map(|t| &t.kind) {
                Some(TypeKind::Object { fields }) => fields.iter().map(row).collect(),
                _ => Vec::new(),
            };
            let params = ir::example(protocol, &TypeRef::Named(event.payload_type.clone()), "");
            let example = serde_json::json!({ "jsonrpc": "2.0", "method": event.name, "params": params });
            EventPage { event, rows, example: serde_json::to_string(&example).unwrap_or_default() }
        })
        .collect();
    // Shared types: those that are neither params nor results nor event payloads.
    let own: Vec<&str> = protocol
        .methods
        .iter()
        .flat_map(|m| [m.params_type.as_str()])
        .chain(protocol.events.iter().map(|e| e.payload_type.as_str()))
        .collect();
    let types: Vec<TypePage> = ir::sorted_types(protocol)
        .into_values()
        .filter(|t| !own.contains(&t.name.as_str()))
        .map(|def| TypePage {
            def,
            rows: match &def.kind {
                TypeKind::Object { fields } => fields.iter().map(row).collect(),
                TypeKind::StringEnum { .. } => Vec::new(),
            },
        })
        .collect();

    let mut context = tera::Context::new();
    context.insert("version", &protocol.version);
    context.insert("methods", &methods);
    context.insert("events", &events);
    // A table cell is one line.
    let errors: Vec<ErrorInfo> =
        protocol.errors.iter().map(|e| ErrorInfo { doc: one_line(&e.doc), ..e.clone() }).collect();
    context.insert("errors", &errors);
    context.insert("types", &types);
    tera.render("PROTOCOL.md.tera", &context).unwrap_or_else(|e| panic!("rendering PROTOCOL.md: {e:?}"))
}

fn row(field: &ir::Field) -> Row {
    Row { name: field.name.clone(), ty: type_text(&field.ty), required: field.required, doc: one_line(&field.doc) }
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

/// A type as the reference shows it: `string`, `Room[]`, `string | null`.
pub fn type_text(ty: &TypeRef) -> String {
    match ty {
        TypeRef::String => "string".into(),
        TypeRef::Integer => "integer".into(),
        TypeRef::Number => "number".into(),
        TypeRef::Boolean => "boolean".into(),
        TypeRef::Named(name) => format!("[{name}](#{})", name.to_ascii_lowercase()),
        TypeRef::Array(inner) => format!("{}[]", type_text(inner)),
        TypeRef::Nullable(inner) => format!("{} \\| null", type_text(inner)),
        TypeRef::Any => "any".into(),
    }
}

/// Table cells cannot hold line breaks.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").replace('|', "\\|")
}
