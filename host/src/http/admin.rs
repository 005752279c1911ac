//! The admin API (SPEC §6): how the chat backend keeps profiles, membership,
//! contacts and activity in sync. Every change updates the store first, then
//! invalidates the caches, then applies its live effect (typing stops).

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Json;
use serde::Deserialize;
use uuid::Uuid;

use super::AppState;
use super::extract::{Admin, Body, Path, parse_uuid};
use crate::cluster::wire::DirectoryChange;
use crate::error::{ApiError, ok};
use crate::policy::{Slot, SlotInfo, UPLOAD_SOURCE};

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
    let d = &state.presence.directory;
    let record = d
        .store()
        .upsert_profile(id, &body.username, &body.display_name)
        .await?;
    let p = d.put_profile(record);
    state
        .presence
        .directory_changed(DirectoryChange::Profile { user: id })
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
    let p = &state.presence;
    let previous = p.store().replace_members(conversation, &users).await?;
    let mut changed: Vec<Uuid> = previous.into_iter().chain(users).collect();
    changed.sort_unstable();
    changed.dedup();
    members_changed(&state, conversation, changed).await?;
    Ok(ok(
        serde_json::json!({"conversation_id": conversation, "members": p.directory.members(conversation).await?.len()}),
    ))
}

pub async fn add_member(
    State(state): State<AppState>,
    _: Admin,
    Path((id, user)): Path<(String, String)>,
) -> Reply {
    let (conversation, user) = (parse_uuid(&id)?, parse_uuid(&user)?);
    let added = state
        .presence
        .store()
        .add_member(conversation, user)
        .await?;
    members_changed(&state, conversation, vec![user]).await?;
    Ok(ok(serde_json::json!({"added": added})))
}

pub async fn remove_member(
    State(state): State<AppState>,
    _: Admin,
    Path((id, user)): Path<(String, String)>,
) -> Reply {
    let (conversation, user) = (parse_uuid(&id)?, parse_uuid(&user)?);
    let removed = state
        .presence
        .store()
        .remove_member(conversation, user)
        .await?;
    members_changed(&state, conversation, vec![user]).await?;
    Ok(ok(serde_json::json!({"removed": removed})))
}

/// Reloads the member set on every node and stops the typing of anyone
/// who left; `users` joined or left.
async fn members_changed(
    state: &AppState,
    conversation: Uuid,
    users: Vec<Uuid>,
) -> Result<(), ApiError> {
    state
        .presence
        .directory_changed(DirectoryChange::Members {
            conversation,
            users,
        })
        .await?;
    Ok(())
}

pub async fn put_contacts(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    Body(body): Body<IdList>,
) -> Reply {
    let user = parse_uuid(&id)?;
    let contacts = body.checked()?;
    let d = &state.presence.directory;
    let previous = d.store().replace_contacts(user, &contacts).await?;
    let mut affected: Vec<Uuid> = previous.into_iter().chain(contacts).collect();
    affected.sort_unstable();
    affected.dedup();
    state
        .presence
        .directory_changed(DirectoryChange::Contacts { user, affected })
        .await?;
    Ok(ok(
        serde_json::json!({"user_id": user, "contacts": d.contacts_of(user).await?.len()}),
    ))
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
    let p = &state.presence;
    p.backend_activity(body.user_id).await;
    if let (ActivityKind::MessageSent, Some(c)) = (body.kind, body.conversation_id) {
        p.typing_stop(c, body.user_id);
    }
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
    let policies = state.presence.policies.clone();
    let bytes = body.clone();
    let installed = tokio::task::spawn_blocking(move || {
        policies.install(slot, &bytes, UPLOAD_SOURCE.to_owned())
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))?;
    match installed {
        Ok(info) => {
            state
                .presence
                .plugin_changed(slot, &info.sha256, Some(&body))
                .await?;
            Ok(ok(slot_json(&info)))
        }
        Err(rejected) => Err(ApiError::PluginRejected(format!(
            "the {slot} plugin was refused: {rejected}"
        ))),
    }
}

/// `POST /api/v1/admin/plugins/{slot}/rollback`.
pub async fn rollback_plugin(
    State(state): State<AppState>,
    _: Admin,
    Path(slot): Path<String>,
) -> Reply {
    let slot = parse_slot(&slot)?;
    match state.presence.policies.rollback(slot) {
        Some(info) => {
            state
                .presence
                .plugin_changed(slot, &info.sha256, None)
                .await?;
            Ok(ok(slot_json(&info)))
        }
        None => Err(ApiError::Conflict(format!(
            "the {slot} slot has no previous plugin to roll back to"
        ))),
    }
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
        "loaded_at": crate::ws::protocol::timestamp(&s.loaded_at),
        "calls": s.calls,
        "failures": s.failures,
        "latency_p50_us": s.latency_p50.map(|d| d.as_secs_f64() * 1e6),
        "latency_p99_us": s.latency_p99.map(|d| d.as_secs_f64() * 1e6),
        "peak_memory_bytes": s.peak_memory,
    })
}
