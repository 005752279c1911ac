//! The machine-readable API: `GET /api/v1/openapi.json` (OpenAPI 3.1 of every
//! REST route) and `GET /api/v1/asyncapi.json` (AsyncAPI 3 of every
//! WebSocket event, both ways). Both are generated from the handlers' and
//! the protocol's own types, so they cannot drift from what is served.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{admin, service, users};
use crate::error::{Refused, RefusedBody};
use crate::protocol::{
    AuthData, AuthOk, ErrorData, ManualStatus, Ready, StatusData, StatusObject, TypingData,
    TypingSnapshot, UserStatus, UserTyping,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "presence",
        description = "Real-time presence for chat products: who is online, away or offline, \
            when they were last seen, and who is typing. The user API takes a user's JWT; \
            the admin API, through which the chat backend keeps presence in sync, takes the \
            admin key. Every answer is the envelope `{\"success\": true, \"data\": …}` or \
            `{\"success\": false, \"error\": {\"code\", \"message\"}}`. The WebSocket events \
            (`GET /ws?token=JWT`) are described in `/api/v1/asyncapi.json`.",
        license(name = "Apache-2.0")
    ),
    paths(
        users::status, users::my_status, users::batch_status, users::get_privacy,
        users::put_privacy, users::put_status,
        admin::put_user, admin::put_members, admin::add_member, admin::remove_member,
        admin::put_contacts, admin::activity, admin::plugins, admin::install_plugin,
        admin::rollback_plugin,
        service::healthz, service::metrics, service::client_js, websocket, openapi, asyncapi,
    ),
    components(schemas(Refused, RefusedBody, admin::SlotName)),
    modifiers(&Security),
    tags(
        (name = "users", description = "For the chat's clients, with the user's JWT."),
        (name = "admin", description = "For the chat backend and operators, with the admin key."),
        (name = "service", description = "Health, metrics and the client library."),
    )
)]
pub struct RestApi;

/// The two bearer schemes.
struct Security;

impl Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "user_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A user's JWT, issued by the chat backend or its identity provider",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "metrics_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The read-only metrics token (PRESENCE_METRICS_TOKEN): opens /metrics alone",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "admin_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The admin key (PRESENCE_ADMIN_KEY)"))
                    .build(),
            ),
        );
    }
}

/// The WebSocket events' data types, as schema components.
#[derive(OpenApi)]
#[openapi(components(schemas(
    TypingData,
    StatusData,
    AuthData,
    ManualStatus,
    Ready,
    StatusObject,
    TypingSnapshot,
    UserStatus,
    UserTyping,
    ErrorData,
    AuthOk
)))]
struct EventSchemas;

/// An event, both ways: its `type`, who sends it, what it does, and the
/// schema component of its `data` (`None`: an empty object).
pub struct EventDoc {
    pub kind: &'static str,
    pub from_client: bool,
    pub summary: &'static str,
    pub data: Option<&'static str>,
    pub example: fn() -> Value,
}

/// Every WebSocket event.
pub const EVENTS: &[EventDoc] = &[
    EventDoc {
        kind: "typing_start",
        from_client: true,
        summary: "Start or renew typing in a conversation you are a member of.",
        data: Some("TypingData"),
        example: || json!({"conversation_id": "5b2e8f0a-7c1d-4e9a-b3f2-9d8c7e6a5b44"}),
    },
    EventDoc {
        kind: "typing_stop",
        from_client: true,
        summary: "Stop typing there.",
        data: Some("TypingData"),
        example: || json!({"conversation_id": "5b2e8f0a-7c1d-4e9a-b3f2-9d8c7e6a5b44"}),
    },
    EventDoc {
        kind: "set_status",
        from_client: true,
        summary: "Away by hand, or back online.",
        data: Some("StatusData"),
        example: || json!({"status": "away"}),
    },
    EventDoc {
        kind: "activity",
        from_client: true,
        summary: "You did something: resets the idle timer. `data` may be left out.",
        data: None,
        example: || json!({}),
    },
    EventDoc {
        kind: "ping",
        from_client: true,
        summary: "Answered with `pong` (browsers cannot send WebSocket pings). `data` may be left out.",
        data: None,
        example: || json!({}),
    },
    EventDoc {
        kind: "auth",
        from_client: true,
        summary: "Renew this connection's token before it expires; answered with `auth_ok`, \
            or `error` (`forbidden` for another user's token, `unauthorized` for an invalid one).",
        data: Some("AuthData"),
        example: || json!({"token": "eyJhbGciOiJIUzI1NiJ9…"}),
    },
    EventDoc {
        kind: "ready",
        from_client: false,
        summary: "Sent first: the statuses of the users you watch and who is typing where.",
        data: Some("Ready"),
        example: || {
            json!({"user_id": "1c9f6a64-2f6e-4b8e-8f5b-0a3f3c1b5d22",
                "session_id": "e0b7ac1e-7e6f-4c4a-9d0a-3f6f2b8d9c11", "heartbeat_interval_ms": 20000,
                "contacts": [{"user_id": "7d3b0b7e-3c39-4a58-9a0c-6a8d1f0d2c11", "status": "online",
                    "is_online": true, "last_seen": null, "show_last_seen": true}],
                "typing": []})
        },
    },
    EventDoc {
        kind: "user_status",
        from_client: false,
        summary: "A user you watch went online, away or offline (as privacy lets you see it).",
        data: Some("UserStatus"),
        example: || {
            json!({"user_id": "7d3b0b7e-3c39-4a58-9a0c-6a8d1f0d2c11", "status": "offline",
                "last_seen": "2025-01-29T10:30:00.123Z"})
        },
    },
    EventDoc {
        kind: "user_typing",
        from_client: false,
        summary: "Someone started or stopped typing in one of your conversations.",
        data: Some("UserTyping"),
        example: || {
            json!({"conversation_id": "5b2e8f0a-7c1d-4e9a-b3f2-9d8c7e6a5b44",
                "user_id": "7d3b0b7e-3c39-4a58-9a0c-6a8d1f0d2c11", "username": "john",
                "display_name": "John", "is_typing": true,
                "typing_user_ids": ["7d3b0b7e-3c39-4a58-9a0c-6a8d1f0d2c11"], "text": "John is typing…"})
        },
    },
    EventDoc {
        kind: "error",
        from_client: false,
        summary: "A client event was refused; the connection stays open \
            (but for `token_expired`, which is followed by close 4001).",
        data: Some("ErrorData"),
        example: || {
            json!({"code": "not_member", "message": "you are not a member of this conversation",
                "ref_type": "typing_start"})
        },
    },
    EventDoc {
        kind: "pong",
        from_client: false,
        summary: "The answer to `ping`.",
        data: None,
        example: || json!({}),
    },
    EventDoc {
        kind: "auth_ok",
        from_client: false,
        summary: "The renewed token is in force until `expires_at`.",
        data: Some("AuthOk"),
        example: || json!({"expires_at": "2026-12-06T16:00:00.000Z"}),
    },
];

/// The OpenAPI document.
pub fn openapi_document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut api = RestApi::openapi();
        api.info.version = env!("CARGO_PKG_VERSION").to_owned();
        api.to_pretty_json()
            .expect("the OpenAPI document serializes")
    })
}

/// The AsyncAPI document.
pub fn asyncapi_document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(build_asyncapi)
}

fn build_asyncapi() -> Value {
    let schemas = EventSchemas::openapi()
        .components
        .map(|c| serde_json::to_value(c.schemas).expect("schemas serialize"))
        .unwrap_or_else(|| json!({}));
    let mut messages = serde_json::Map::new();
    let mut channel_messages = serde_json::Map::new();
    let mut operations = serde_json::Map::new();
    for e in EVENTS {
        let data = match e.data {
            Some(name) => json!({"$ref": format!("#/components/schemas/{name}")}),
            None => json!({"type": "object"}),
        };
        let required = if e.data.is_some() {
            json!(["type", "data"])
        } else {
            json!(["type"])
        };
        messages.insert(
            e.kind.to_owned(),
            json!({
                "name": e.kind,
                "title": e.kind,
                "summary": e.summary,
                "contentType": "application/json",
                "payload": {
                    "type": "object",
                    "required": required,
                    "properties": {"type": {"const": e.kind}, "data": data},
                },
                "examples": [{"payload": {"type": e.kind, "data": (e.example)()}}],
            }),
        );
        channel_messages.insert(
            e.kind.to_owned(),
            json!({"$ref": format!("#/components/messages/{}", e.kind)}),
        );
        // The server's view: it receives what clients send.
        let action = if e.from_client { "receive" } else { "send" };
        operations.insert(
            format!("{action}_{}", e.kind),
            json!({
                "action": action,
                "channel": {"$ref": "#/channels/ws"},
                "summary": e.summary,
                "messages": [{"$ref": format!("#/channels/ws/messages/{}", e.kind)}],
            }),
        );
    }
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "presence WebSocket events",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Every frame is JSON text `{\"type\": \"...\", \"data\": {...}}`; \
                timestamps are ISO 8601 UTC with `Z`, ids UUID strings. Connect with \
                `GET /ws?token=JWT[&locale=th]` or an `Authorization: Bearer` header. Bad \
                input gets `error{code: bad_request}`; oversized frames close 1009, floods \
                1008, an expired token 4001.",
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {"host": "127.0.0.1:8080", "protocol": "ws", "pathname": "/"},
        },
        "channels": {
            "ws": {
                "address": "/ws",
                "title": "One client connection",
                "messages": channel_messages,
                "bindings": {"ws": {
                    "method": "GET",
                    "query": {"type": "object", "properties": {
                        "token": {"type": "string", "description": "The user's JWT"},
                        "locale": {"type": "string", "description": "BCP 47 tag for typing summaries; default en"},
                    }},
                }},
            },
        },
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    })
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "service",
    responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json", body = Object)))]
pub async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi_document(),
    )
}

/// The WebSocket events, both ways, as AsyncAPI 3.
#[utoipa::path(get, path = "/api/v1/asyncapi.json", tag = "service",
    responses((status = 200, description = "AsyncAPI 3", content_type = "application/json", body = Object)))]
pub async fn asyncapi() -> impl IntoResponse {
    axum::Json(asyncapi_document())
}

/// The WebSocket (documented here, served by `http::ws::upgrade`): its events
/// are in `/api/v1/asyncapi.json`.
#[utoipa::path(get, path = "/ws", tag = "users",
    params(
        ("token" = Option<String>, Query, description = "The user's JWT (or an `Authorization: Bearer` header)"),
        ("locale" = Option<String>, Query, description = "BCP 47 tag for typing summaries; default `en`. Reduced to what the typing policy words (`th-TH` → `th`); a tag it words as English, or a malformed one, is `en`"),
    ),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol; the first event is `ready`"),
        (status = 400, description = "`bad_request`: not a valid RFC 6455 handshake (not HTTP/1.1; no `Connection: upgrade`, `Upgrade: websocket` or `Host`; a `Sec-WebSocket-Key` missing or not 16 bytes in base64)", body = Refused),
        (status = 401, description = "No valid token", body = Refused),
        (status = 403, description = "`origin_not_allowed`: a browser page of an origin PRESENCE_CORS_ORIGINS does not list", body = Refused),
        (status = 426, description = "`upgrade_required`: a `Sec-WebSocket-Version` other than 13, or none; the answer carries `Sec-WebSocket-Version: 13` and `Upgrade: websocket`", body = Refused),
        (status = 429, description = "`too_many_connections`: the user already holds `limits.connections_per_user` connections on this node", body = Refused),
    ))]
#[allow(dead_code)] // documentation only
async fn websocket() {}

/// `docs/events.md`: every event as a reader wants it.
pub fn events_markdown() -> String {
    let doc = asyncapi_document();
    let schemas = &doc["components"]["schemas"];
    let mut out = String::from(
        "# WebSocket events\n\n\
         Generated from the server's own types (`GET /api/v1/asyncapi.json` serves the same as \
         an AsyncAPI 3 document); `cargo test -p presence --test api_docs` fails when this file \
         is stale, and `UPDATE_DOCS=1` rewrites it.\n\n\
         Every frame is JSON text `{\"type\": \"...\", \"data\": {...}}`. Timestamps are ISO 8601 \
         UTC with `Z`; ids are UUID strings.\n",
    );
    for (title, from_client) in [("Client → server", true), ("Server → client", false)] {
        out.push_str(&format!("\n## {title}\n"));
        for e in EVENTS.iter().filter(|e| e.from_client == from_client) {
            out.push_str(&format!("\n### `{}`\n\n{}\n\n", e.kind, e.summary));
            let data = serde_json::to_string(&(e.example)()).expect("json");
            out.push_str(&format!(
                "```json\n{{\"type\":\"{}\",\"data\":{data}}}\n```\n",
                e.kind
            ));
            if let Some(name) = e.data {
                out.push_str(&format!(
                    "\n`data` ({name}):\n\n```json\n{}\n```\n",
                    serde_json::to_string_pretty(&schemas[name]).expect("json")
                ));
            }
        }
    }
    out
}

/// The `payload` schema of one event, with the document's components, for
/// a JSON Schema validator.
pub fn event_schema(kind: &str) -> Option<Value> {
    let doc = asyncapi_document();
    let payload = doc["components"]["messages"].get(kind)?["payload"].clone();
    let mut schema = payload;
    schema["components"] = json!({"schemas": doc["components"]["schemas"].clone()});
    Some(schema)
}
