//! The intermediate representation every generator reads: the protocol catalogue
//! (`METHODS`, `EVENTS`, `ErrorCode::ALL`) joined with the JSON Schemas schemars derives
//! for their types, flattened into plain data (names, docs, fields, type references).

use std::collections::BTreeMap;

use broodlink_protocol::{ErrorCode, Permission, EVENTS, METHODS};
use schemars::generate::SchemaSettings;
use schemars::SchemaGenerator;
use serde::Serialize;
use serde_json::{Map, Value};

/// Where shared types live in the OpenRPC document.
pub const COMPONENTS: &str = "/components/schemas";

/// The param that makes a call idempotent: a method whose params include it may be sent
/// again with the same value and the server does it at most once. The generated clients
/// fill it with a fresh UUID when the caller leaves it out, and re-send such a call with
/// the same value after a reconnect instead of failing it.
pub const IDEMPOTENCY_KEY: &str = "clientMsgId";

/// A reference to a type, as used by fields, params and results.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", content = "of", rename_all = "camelCase")]
pub enum TypeRef {
    String,
    Integer,
    Number,
    Boolean,
    /// A named type (an object or a string enum).
    Named(String),
    Array(Box<TypeRef>),
    Nullable(Box<TypeRef>),
    /// Anything (no schema constraint).
    Any,
}

#[derive(Debug, Clone, Serialize)]
pub struct Field {
    /// The wire (camelCase) name.
    pub name: String,
    pub doc: String,
    pub ty: TypeRef,
    pub required: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Variant {
    pub value: String,
    pub doc: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum TypeKind {
    Object { fields: Vec<Field> },
    StringEnum { variants: Vec<Variant> },
}

#[derive(Debug, Clone, Serialize)]
pub struct TypeDef {
    pub name: String,
    pub doc: String,
    #[serde(flatten)]
    pub kind: TypeKind,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorInfo {
    pub code: i32,
    /// Human name, e.g. "Room Not Found".
    pub title: String,
    /// Identifier, e.g. "RoomNotFound".
    pub ident: String,
    pub message: String,
    pub doc: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Method {
    /// Wire name, e.g. `room.join`.
    pub name: String,
    /// snake_case client name, e.g. `join_room`.
    pub client_name: String,
    pub doc: String,
    /// The doc's first sentence, on one line.
    pub summary: String,
    pub permission: Permission,
    pub params_type: String,
    pub params: Vec<Field>,
    pub result_type: String,
    pub errors: Vec<ErrorInfo>,
    /// Whether the params include the optional string [`IDEMPOTENCY_KEY`].
    pub idempotent: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub name: String,
    pub doc: String,
    /// The doc's first sentence, on one line.
    pub summary: String,
    pub recipients: String,
    pub payload_type: String,
}

/// The whole protocol, ready for templates.
#[derive(Debug, Clone, Serialize)]
pub struct Protocol {
    pub version: String,
    pub methods: Vec<Method>,
    pub events: Vec<Event>,
    pub errors: Vec<ErrorInfo>,
    /// Every named type, in first-use order.
    pub types: Vec<TypeDef>,
    /// The raw JSON Schema of every named type (refs point into `COMPONENTS`).
    #[serde(skip)]
    pub schemas: Map<String, Value>,
}

impl Protocol {
    pub fn build() -> Protocol {
        let mut generator = generator(SchemaSettings::draft07());
        let mut refs = Vec::new();
        for method in METHODS {
            refs.push((ref_name(&(method.params)(&mut generator)), ref_name(&(method.result)(&mut generator))));
        }
        let event_refs: Vec<String> = EVENTS.iter().map(|e| ref_name(&(e.payload)(&mut generator))).collect();
        let schemas = generator.definitions().clone();

        let methods = METHODS
            .iter()
            .zip(refs)
            .map(|(spec, (params_type, result_type))| {
                let params = match type_kind(&schemas[&params_type]) {
                    TypeKind::Object { fields } => fields,
                    TypeKind::StringEnum { .. } => panic!("params of {} are not an object", spec.name),
                };
                let idempotent = params.iter().any(|p| is_idempotency_key(spec.name, p));
                Method {
                    idempotent,
                    name: spec.name.into(),
                    client_name: spec.rust_name.into(),
                    doc: clean_doc(spec.doc),
                    summary: summary(spec.doc),
                    permission: spec.permission,
                    params_type,
                    params,
                    result_type,
                    errors: spec.errors.iter().map(|e| error_info(*e)).collect(),
                }
            })
            .collect();
        let events = EVENTS
            .iter()
            .zip(event_refs)
            .map(|(spec, payload_type)| Event {
                name: spec.name.into(),
                doc: clean_doc(spec.doc),
                summary: summary(spec.doc),
                recipients: spec.recipients.into(),
                payload_type,
            })
            .collect();
        let types = schemas
            .iter()
            .map(|(name, schema)| TypeDef { name: name.clone(), doc: doc_of(schema), kind: type_kind(schema) })
            .collect();
        Protocol {
            version: env!("CARGO_PKG_VERSION").into(),
            methods,
            events,
            errors: ErrorCode::ALL.iter().map(|e| error_info(*e)).collect(),
            types,
            schemas,
        }
    }

    pub fn type_def(&self, name: &str) -> Option<&TypeDef> {
        self.types.iter().find(|t| t.name == name)
    }

    /// The wire names of the methods that take an [`IDEMPOTENCY_KEY`], in protocol order.
    pub fn idempotent_methods(&self) -> Vec<String> {
        self.methods.iter().filter(|m| m.idempotent).map(|m| m.name.clone()).collect()
    }
}

/// `a`, `a and b`, `a, b and c`.
pub fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Whether `param` is the idempotency key; panics if it is named so but is not an optional
/// string (the clients fill it in, so the caller must be allowed to leave it out).
fn is_idempotency_key(method: &str, param: &Field) -> bool {
    if param.name != IDEMPOTENCY_KEY {
        return false;
    }
    let string = match &param.ty {
        TypeRef::String => true,
        TypeRef::Nullable(inner) => **inner == TypeRef::String,
        _ => false,
    };
    assert!(
        string && !param.required,
        "`{IDEMPOTENCY_KEY}` of {method} must be an optional string: the generated clients fill it in"
    );
    true
}

/// A schema generator whose shared definitions live at [`COMPONENTS`].
pub fn generator(settings: SchemaSettings) -> SchemaGenerator {
    settings.with(|s| s.definitions_path = COMPONENTS.into()).into_generator()
}

/// Every named type's schema in the given dialect (for the JSON Schema bundle).
pub fn all_schemas(settings: SchemaSettings) -> Map<String, Value> {
    let mut generator = settings.into_generator();
    for method in METHODS {
        (method.params)(&mut generator);
        (method.result)(&mut generator);
    }
    for event in EVENTS {
        (event.payload)(&mut generator);
    }
    generator.definitions().clone()
}

fn error_info(code: ErrorCode) -> ErrorInfo {
    ErrorInfo {
        code: code.code(),
        title: code.title().into(),
        ident: code.ident().into(),
        message: code.message().into(),
        doc: clean_doc(code.doc()),
    }
}

fn ref_name(schema: &schemars::Schema) -> String {
    schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.rsplit('/').next())
        .unwrap_or_else(|| panic!("expected a $ref to a named type, got {schema:?}"))
        .to_owned()
}

/// Doc comments arrive as the lines of `/// text` with their leading space.
pub fn clean_doc(doc: &str) -> String {
    doc.lines().map(|line| line.strip_prefix(' ').unwrap_or(line)).collect::<Vec<_>>().join("\n").trim().to_owned()
}

/// The first sentence of a doc comment, on one line.
pub fn summary(doc: &str) -> String {
    let flat = clean_doc(doc).split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.find(". ") {
        Some(end) => flat[..=end].to_owned(),
        None => flat,
    }
}

fn doc_of(schema: &Value) -> String {
    schema.get("description").and_then(Value::as_str).map(clean_doc).unwrap_or_default()
}

fn type_kind(schema: &Value) -> TypeKind {
    if let Some(variants) = schema.get("oneOf").and_then(Value::as_array) {
        let variants = variants
            .iter()
            .map(|v| Variant {
                value: v.get("const").and_then(Value::as_str).expect("string enum variant").to_owned(),
                doc: doc_of(v),
            })
            .collect();
        return TypeKind::StringEnum { variants };
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let variants = values
            .iter()
            .map(|v| Variant { value: v.as_str().expect("string enum").to_owned(), doc: String::new() })
            .collect();
        return TypeKind::StringEnum { variants };
    }
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let fields = schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|props| {
            props
                .iter()
                .map(|(name, prop)| Field {
                    name: name.clone(),
                    doc: doc_of(prop),
                    ty: type_ref(prop),
                    required: required.contains(&name.as_str()),
                })
                .collect()
        })
        .unwrap_or_default();
    TypeKind::Object { fields }
}

/// The type a property schema describes.
pub fn type_ref(schema: &Value) -> TypeRef {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        return TypeRef::Named(reference.rsplit('/').next().unwrap_or(reference).to_owned());
    }
    if let Some(options) = schema.get("anyOf").and_then(Value::as_array) {
        let non_null: Vec<&Value> = options.iter().filter(|o| o.get("type") != Some(&Value::from("null"))).collect();
        if non_null.len() == 1 && non_null.len() < options.len() {
            return TypeRef::Nullable(Box::new(type_ref(non_null[0])));
        }
        return TypeRef::Any;
    }
    match schema.get("type") {
        Some(Value::String(t)) => simple(t, schema),
        Some(Value::Array(types)) => {
            let names: Vec<&str> = types.iter().filter_map(Value::as_str).collect();
            let non_null: Vec<&str> = names.iter().copied().filter(|t| *t != "null").collect();
            match non_null.as_slice() {
                [one] if names.contains(&"null") => TypeRef::Nullable(Box::new(simple(one, schema))),
                [one] => simple(one, schema),
                _ => TypeRef::Any,
            }
        }
        _ => TypeRef::Any,
    }
}

fn simple(name: &str, schema: &Value) -> TypeRef {
    match name {
        "string" => TypeRef::String,
        "integer" => TypeRef::Integer,
        "number" => TypeRef::Number,
        "boolean" => TypeRef::Boolean,
        "array" => TypeRef::Array(Box::new(schema.get("items").map(type_ref).unwrap_or(TypeRef::Any))),
        _ => TypeRef::Any,
    }
}

/// A plausible example value for a type, for the reference's result examples.
pub fn example(protocol: &Protocol, ty: &TypeRef, field: &str) -> Value {
    match ty {
        TypeRef::String => {
            let lower = field.to_ascii_lowercase();
            if lower.ends_with("id") {
                Value::from("5f0c7a8e-3b9d-4c61-9a2e-1d7b8c9e0f12")
            } else if lower == "apikey" {
                Value::from("bl_k_9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822c")
            } else if lower == "version" {
                Value::from("1.0")
            } else if lower.contains("name") {
                Value::from("Research Agent")
            } else if lower == "status" {
                Value::from("ok")
            } else {
                Value::from("…")
            }
        }
        TypeRef::Integer | TypeRef::Number => match field {
            "seq" => Value::from(42),
            "memberCount" => Value::from(3),
            "disconnected" => Value::from(1),
            _ => Value::from(1_707_868_800_000_i64),
        },
        TypeRef::Boolean => Value::from(matches!(field, "ok" | "online" | "isMember" | "editable")),
        TypeRef::Nullable(inner) => example(protocol, inner, field),
        TypeRef::Array(inner) => Value::Array(vec![example(protocol, inner, field)]),
        TypeRef::Any => Value::Null,
        TypeRef::Named(name) => match protocol.type_def(name).map(|t| &t.kind) {
            Some(TypeKind::StringEnum { variants }) => {
                Value::from(variants.first().map(|v| v.value.clone()).unwrap_or_default())
            }
            Some(TypeKind::Object { fields }) => {
                let object: Map<String, Value> = fields
                    .iter()
                    .filter(|f| f.required || !matches!(f.ty, TypeRef::Nullable(_)) || field_always_sent(f))
                    .map(|f| (f.name.clone(), example(protocol, &f.ty, &f.name)))
                    .collect();
                Value::Object(object)
            }
            None => Value::Null,
        },
    }
}

/// Nullable fields the server always sends (as `null` when empty) are shown in examples.
fn field_always_sent(field: &Field) -> bool {
    matches!(field.name.as_str(), "motd" | "description" | "content" | "reason" | "lastSeen")
}

/// Types in a stable order: by name.
pub fn sorted_types(protocol: &Protocol) -> BTreeMap<&str, &TypeDef> {
    protocol.types.iter().map(|t| (t.name.as_str(), t)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The clients fill in and re-send exactly the sends: the methods declaring `clientMsgId`.
    #[test]
    fn the_sends_are_the_idempotent_methods() {
        assert_eq!(Protocol::build().idempotent_methods(), ["message.send", "message.dm"]);
    }

    #[test]
    fn an_idempotency_key_must_be_an_optional_string() {
        let field =
            |ty: TypeRef, required: bool| Field { name: IDEMPOTENCY_KEY.into(), doc: String::new(), ty, required };
        assert!(is_idempotency_key("m", &field(TypeRef::Nullable(Box::new(TypeRef::String)), false)));
        assert!(!is_idempotency_key("m", &Field { name: "roomId".into(), ..field(TypeRef::String, true) }));
        assert!(std::panic::catch_unwind(|| is_idempotency_key("m", &field(TypeRef::String, true))).is_err());
        assert!(std::panic::catch_unwind(|| is_idempotency_key("m", &field(TypeRef::Integer, false))).is_err());
    }

    #[test]
    fn lists() {
        let items = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(and_list(&items(&[])), "");
        assert_eq!(and_list(&items(&["a"])), "a");
        assert_eq!(and_list(&items(&["a", "b"])), "a and b");
        assert_eq!(and_list(&items(&["a", "b", "c"])), "a, b and c");
    }
}
