//! The machine-readable API documents: complete, self-consistent, with
//! examples that pass their own schemas, and `docs/events.md` up to date.

use presence::http::docs::{
    EVENTS, asyncapi_document, event_schema, events_markdown, openapi_document,
};
use serde_json::{Value, json};

fn validator(kind: &str) -> jsonschema::Validator {
    let schema = event_schema(kind).unwrap_or_else(|| panic!("{kind} has a schema"));
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{kind}'s schema compiles: {e}"))
}

/// Every `$ref` in `doc` names something that is there.
fn refs_resolve(doc: &Value, node: &Value) {
    match node {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                let pointer = r.strip_prefix('#').expect("a local ref");
                assert!(doc.pointer(pointer).is_some(), "{r} resolves");
            }
            map.values().for_each(|v| refs_resolve(doc, v));
        }
        Value::Array(items) => items.iter().for_each(|v| refs_resolve(doc, v)),
        _ => {}
    }
}

#[test]
fn every_event_has_a_schema_its_example_passes_and_a_wrong_one_fails() {
    let doc = asyncapi_document();
    assert_eq!(doc["asyncapi"], "3.0.0");
    refs_resolve(doc, doc);
    for e in EVENTS {
        let v = validator(e.kind);
        let example = json!({"type": e.kind, "data": (e.example)()});
        assert!(v.is_valid(&example), "{}: {example}", e.kind);
        assert!(
            !v.is_valid(&json!({"type": "other", "data": {}})),
            "{}",
            e.kind
        );
    }
    let status = validator("user_status");
    let busy = json!({"type": "user_status", "data": {"user_id": "7d3b0b7e-3c39-4a58-9a0c-6a8d1f0d2c11", "status": "busy"}});
    assert!(
        !status.is_valid(&busy),
        "an unknown status is not a user_status"
    );
    let typing = validator("typing_start");
    assert!(
        !typing.is_valid(&json!({"type": "typing_start", "data": {"conversation_id": "nope"}}))
    );
    let ready = validator("ready");
    assert!(!ready.is_valid(
        &json!({"type": "ready", "data": {"user_id": "7d3b0b7e-3c39-4a58-9a0c-6a8d1f0d2c11"}})
    ));
}

#[test]
fn the_openapi_document_names_every_route_and_both_credentials() {
    let doc: Value = serde_json::from_str(openapi_document()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    refs_resolve(&doc, &doc);
    let mut paths: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        [
            "/api/v1/admin/activity",
            "/api/v1/admin/conversations/{id}/members",
            "/api/v1/admin/conversations/{id}/members/{user_id}",
            "/api/v1/admin/plugins",
            "/api/v1/admin/plugins/{slot}",
            "/api/v1/admin/plugins/{slot}/rollback",
            "/api/v1/admin/users/{id}",
            "/api/v1/admin/users/{id}/contacts",
            "/api/v1/asyncapi.json",
            "/api/v1/openapi.json",
            "/api/v1/users/me/privacy",
            "/api/v1/users/me/status",
            "/api/v1/users/status",
            "/api/v1/users/{id}/status",
            "/healthz",
            "/metrics",
            "/sdk/presence-client.js",
            "/ws",
        ]
    );
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["user_token"]["bearerFormat"], "JWT");
    assert_eq!(schemes["admin_key"]["scheme"], "bearer");
    assert_eq!(
        doc["paths"]["/api/v1/admin/plugins"]["get"]["security"][0]["admin_key"],
        json!([])
    );
}

#[test]
fn docs_events_md_is_the_asyncapi_document_rendered() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/events.md");
    let rendered = events_markdown();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(path, &rendered).unwrap();
    }
    let on_disk = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        on_disk == rendered,
        "docs/events.md is stale: run `UPDATE_DOCS=1 cargo test -p presence --test api_docs`"
    );
}
