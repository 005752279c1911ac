//! The admin API (SPEC §6): how the chat backend keeps profiles, membership,
//! contacts and activity in sync, and how operators swap plugins. Each
//! handler checks its input and makes one call into the presence state.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Json;
use serde::Deserialize;
use uuid::Uuid;

use super::AppState;
use super::extract::{Admin, Body, Path, parse_uuid};
use crate::error::{ApiError, ok};
use crate::policy::{Slot, SlotInfo};

type Reply = Result<Json<serde_json::Value>, ApiError>;

/// Longest username or display name accepted.
pub const MAX_NAME_LEN: usize = 256;
/// Most ids in one member or contact list.
pub const MAX_LIST_IDS: usize = 100_000;

#[derive(Deserialize)]
pub struct ProfileBody {
    username: String,
    display_name: String,
}

pub async fn put_user(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    Body(body): Body<ProfileBody>,
) -> Reply {
    let id = parse_uuid(&id)?;
    if body.username.len() > MAX_NAME_LEN || body.display_name.len() > MAX_NAME_LEN {
        return Err(ApiError::BadRequest(format!(
            "names are limited to {MAX_NAME_LEN} bytes"
        )));
    }
    let p = state
        .presence
        .set_profile(id, &body.username, &body.display_name)
        .await?;
    Ok(ok(
        serde_json::json!({"id": p.id, "username": p.username, "display_name": p.display_name}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdList {
    user_ids: Vec<Uuid>,
}

impl IdList {
    fn checked(self) -> Result<Vec<Uuid>, ApiError> {
        if self.user_ids.len() > MAX_LIST_IDS {
            return Err(ApiError::TooManyIds(MAX_LIST_IDS));
        }
        Ok(self.user_ids)
    }
}

pub async fn put_members(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    Body(body): Body<IdList>,
) -> Reply {
    let conversation = parse_uuid(&id)?;
    let users = body.checked()?;
    let members = state.presence.replace_members(conversation, &users).await?;
    Ok(ok(
        serde_json::json!({"conversation_id": conversation, "members": members}),
    ))
}

pub async fn add_member(
    State(state): State<AppState>,
    _: Admin,
    Path((id, user)): Path<(String, String)>,
) -> Reply {
    let (conversation, user) = (parse_uuid(&id)?, parse_uuid(&user)?);
    let added = state.presence.add_member(conversation, user).await?;
    Ok(ok(serde_json::json!({"added": added})))
}

pub async fn remove_member(
    State(state): State<AppState>,
    _: Admin,
    Path((id, user)): Path<(String, String)>,
) -> Reply {
    let (conversation, user) = (parse_uuid(&id)?, parse_uuid(&user)?);
    let removed = state.presence.remove_member(conversation, user).await?;
    Ok(ok(serde_json::json!({"removed": removed})))
}

pub async fn put_contacts(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    Body(body): Body<IdList>,
) -> Reply {
    let user = parse_uuid(&id)?;
    let contacts = body.checked()?;
    let count = state.presence.replace_contacts(user, &contacts).await?;
    Ok(ok(serde_json::json!({"user_id": user, "contacts": count})))
}

#[derive(Deserialize, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum ActivityKind {
    MessageSent,
    MessageRead,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivityBody {
    user_id: Uuid,
    kind: ActivityKind,
    #[serde(default)]
    conversation_id: Option<Uuid>,
}

/// Activity seen by the chat backend: resets the idle clock (or moves an
/// offline user's last seen); `message_sent` stops typing there.
pub async fn activity(
    State(state): State<AppState>,
    _: Admin,
    Body(body): Body<ActivityBody>,
) -> Reply {
    let sent_in = match body.kind {
        ActivityKind::MessageSent => body.conversation_id,
        ActivityKind::MessageRead => None,
    };
    state.presence.backend_activity(body.user_id, sent_in).await;
    Ok(ok(serde_json::json!({"user_id": body.user_id})))
}

/// `GET /api/v1/admin/plugins`: what runs in each policy slot.
pub async fn plugins(State(state): State<AppState>, _: Admin) -> Reply {
    let slots: Vec<_> = state
        .presence
        .policies
        .slots()
        .iter()
        .map(slot_json)
        .collect();
    Ok(ok(slots))
}

/// `PUT /api/v1/admin/plugins/{slot}` with the component's bytes: validated,
/// then swapped in; a refused component leaves the old one serving.
pub async fn install_plugin(
    State(state): State<AppState>,
    _: Admin,
    Path(slot): Path<String>,
    body: Bytes,
) -> Reply {
    let slot = parse_slot(&slot)?;
    let info = state.presence.install_plugin(slot, body).await?;
    Ok(ok(slot_json(&info)))
}

/// `POST /api/v1/admin/plugins/{slot}/rollback`.
pub async fn rollback_plugin(
    State(state): State<AppState>,
    _: Admin,
    Path(slot): Path<String>,
) -> Reply {
    let slot = parse_slot(&slot)?;
    let info = state.presence.rollback_plugin(slot).await?;
    Ok(ok(slot_json(&info)))
}

fn parse_slot(s: &str) -> Result<Slot, ApiError> {
    s.parse()
        .map_err(|e: crate::policy::UnknownSlot| ApiError::BadRequest(e.to_string()))
}

fn slot_json(s: &SlotInfo) -> serde_json::Value {
    serde_json::json!({
        "slot": s.slot.as_str(),
        "world": s.world,
        "source": s.source,
        "sha256": s.sha256,
        "loaded_at": crate::protocol::timestamp(&s.loaded_at),
        "calls": s.calls,
        "failures": s.failures,
        "latency_p50_us": s.latency_p50.map(|d| d.as_secs_f64() * 1e6),
        "latency_p99_us": s.latency_p99.map(|d| d.as_secs_f64() * 1e6),
        "peak_memory_bytes": s.peak_memory,
    })
}
