//! The catalogue is consistent with the types it was declared with.

use broodlink_protocol::{ErrorCode, Event, EVENTS, METHODS};
use schemars::SchemaGenerator;

#[test]
fn every_methods_params_schema_lists_exactly_its_declared_names() {
    for method in METHODS {
        let mut generator = SchemaGenerator::default();
        let schema = (method.params)(&mut generator);
        // The params struct is a named definition; resolve the reference.
        let reference = schema.get("$ref").and_then(|r| r.as_str()).expect("params schema is a $ref");
        let name = reference.rsplit('/').next().unwrap();
        let definition = &generator.definitions()[name];
        let mut properties: Vec<&str> = definition
            .get("properties")
            .and_then(|p| p.as_object())
            .map(|p| p.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let mut declared = method.param_names.to_vec();
        properties.sort_unstable();
        declared.sort_unstable();
        assert_eq!(properties, declared, "{}", method.name);
    }
}

#[test]
fn method_and_event_names_are_unique() {
    let mut names: Vec<&str> = METHODS.iter().map(|m| m.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), METHODS.len());
    let mut events: Vec<&str> = EVENTS.iter().map(|e| e.name).collect();
    events.sort_unstable();
    events.dedup();
    assert_eq!(events.len(), EVENTS.len());
}

#[test]
fn events_serialize_as_method_and_params() {
    let event = Event::Disconnected(broodlink_protocol::DisconnectedEvent { reason: "bye".into(), retry: false });
    let value = serde_json::to_value(&event).unwrap();
    assert_eq!(value, serde_json::json!({ "method": "disconnected", "params": { "reason": "bye", "retry": false } }));
    assert_eq!(event.name(), "disconnected");
}

#[test]
fn error_codes_round_trip_and_match_the_spec() {
    for code in ErrorCode::ALL {
        assert_eq!(ErrorCode::from_code(code.code()), Some(*code));
    }
    assert_eq!(ErrorCode::AuthRequired.code(), 4001);
    assert_eq!(ErrorCode::ReadOnlyDocument.code(), 4071);
}
