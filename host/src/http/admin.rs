//! The admin API (SPEC §6): how the chat backend keeps profiles, membership,
//! contacts and activity in sync, and how operators swap plugins. Each
//! handler checks its input and makes one call into the presence state; its
//! types and `#[utoipa::path]` are the OpenAPI document (`docs`).

use axum::extract::State;
use axum::response::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::extract::{Admin, Body, Path, Upload, parse_uuid};
use crate::error::{ApiError, Okay, Refused, ok};
use crate::policy::{Failure, Slot, SlotInfo};
use crate::protocol::ser_time;

type Reply<T> = Result<Json<Okay<T>>, ApiError>;

/// Longest username or display name accepted.
pub const MAX_NAME_LEN: usize = 256;
/// Most ids in one member or contact list.
pub const MAX_LIST_IDS: usize = 100_000;

#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"username": "john", "display_name": "John Doe"}))]
pub struct ProfileBody {
    /// At most 256 bytes.
    username: String,
    /// At most 256 bytes.
    display_name: String,
}

/// A profile as stored.
#[derive(Serialize, ToSchema)]
pub struct Profile {
    id: Uuid,
    username: Option<String>,
    display_name: Option<String>,
}

/// Create or update a user's profile.
#[utoipa::path(put, path = "/api/v1/admin/users/{id}", tag = "admin",
    security(("admin_key" = [])),
    params(("id" = Uuid, Path, description = "The user")),
    request_body = ProfileBody,
    responses(
        (status = 200, body = Okay<Profile>),
        (status = 400, description = "Malformed id or body, or a name too long", body = Refused),
        (status = 401, description = "No admin key", body = Refused),
    ))]
pub async fn put_user(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    Body(body): Body<ProfileBody>,
) -> Reply<Profile> {
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
    Ok(ok(Profile {
        id: p.id,
        username: p.username.clone(),
        display_name: p.display_name.clone(),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdList {
    /// At most 100,000; repeats count once.
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

#[derive(Serialize, ToSchema)]
pub struct Members {
    conversation_id: Uuid,
    /// How many members it has now.
    members: usize,
}

/// Replace a conversation's member set (members who left stop typing).
#[utoipa::path(put, path = "/api/v1/admin/conversations/{id}/members", tag = "admin",
    security(("admin_key" = [])),
    params(("id" = Uuid, Path, description = "The conversation")),
    request_body = IdList,
    responses(
        (status = 200, body = Okay<Members>),
        (status = 400, description = "Malformed id or body, or too many ids", body = Refused),
        (status = 401, description = "No admin key", body = Refused),
    ))]
pub async fn put_members(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    Body(body): Body<IdList>,
) -> Reply<Members> {
    let conversation = parse_uuid(&id)?;
    let users = body.checked()?;
    let members = state.presence.replace_members(conversation, &users).await?;
    Ok(ok(Members {
        conversation_id: conversation,
        members,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct Added {
    /// False if they were a member already.
    added: bool,
}

/// Add one member.
#[utoipa::path(post, path = "/api/v1/admin/conversations/{id}/members/{user_id}", tag = "admin",
    security(("admin_key" = [])),
    params(("id" = Uuid, Path, description = "The conversation"), ("user_id" = Uuid, Path)),
    responses(
        (status = 200, body = Okay<Added>),
        (status = 400, description = "Malformed id", body = Refused),
        (status = 401, description = "No admin key", body = Refused),
    ))]
pub async fn add_member(
    State(state): State<AppState>,
    _: Admin,
    Path((id, user)): Path<(String, String)>,
) -> Reply<Added> {
    let (conversation, user) = (parse_uuid(&id)?, parse_uuid(&user)?);
    let added = state.presence.add_member(conversation, user).await?;
    Ok(ok(Added { added }))
}

#[derive(Serialize, ToSchema)]
pub struct Removed {
    /// False if they were not a member.
    removed: bool,
}

/// Remove one member (their typing there stops).
#[utoipa::path(delete, path = "/api/v1/admin/conversations/{id}/members/{user_id}", tag = "admin",
    security(("admin_key" = [])),
    params(("id" = Uuid, Path, description = "The conversation"), ("user_id" = Uuid, Path)),
    responses(
        (status = 200, body = Okay<Removed>),
        (status = 400, description = "Malformed id", body = Refused),
        (status = 401, description = "No admin key", body = Refused),
    ))]
pub async fn remove_member(
    State(state): State<AppState>,
    _: Admin,
    Path((id, user)): Path<(String, String)>,
) -> Reply<Removed> {
    let (conversation, user) = (parse_uuid(&id)?, parse_uuid(&user)?);
    let removed = state.presence.remove_member(conversation, user).await?;
    Ok(ok(Removed { removed }))
}

#[derive(Serialize, ToSchema)]
pub struct Contacts {
    user_id: Uuid,
    /// How many contacts they have now.
    contacts: usize,
}

/// Replace a user's contact list; a user's watchers are the users who have
/// them as a contact.
#[utoipa::path(put, path = "/api/v1/admin/users/{id}/contacts", tag = "admin",
    security(("admin_key" = [])),
    params(("id" = Uuid, Path, description = "The user")),
    request_body = IdList,
    responses(
        (status = 200, body = Okay<Contacts>),
        (status = 400, description = "Malformed id or body, or too many ids", body = Refused),
        (status = 401, description = "No admin key", body = Refused),
    ))]
pub async fn put_contacts(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    Body(body): Body<IdList>,
) -> Reply<Contacts> {
    let user = parse_uuid(&id)?;
    let contacts = body.checked()?;
    let count = state.presence.replace_contacts(user, &contacts).await?;
    Ok(ok(Contacts {
        user_id: user,
        contacts: count,
    }))
}

#[derive(Deserialize, PartialEq, Eq, Clone, Copy, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActivityKind {
    MessageSent,
    MessageRead,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivityBody {
    user_id: Uuid,
    kind: ActivityKind,
    /// With `message_sent`: the user's typing there stops.
    #[serde(default)]
    conversation_id: Option<Uuid>,
}

#[derive(Serialize, ToSchema)]
pub struct Activity {
    user_id: Uuid,
}

/// Activity seen by the chat backend: resets the idle clock (or moves an
/// offline user's last seen); `message_sent` stops typing there.
#[utoipa::path(post, path = "/api/v1/admin/activity", tag = "admin",
    security(("admin_key" = [])),
    request_body = ActivityBody,
    responses(
        (status = 200, body = Okay<Activity>),
        (status = 400, description = "Malformed body", body = Refused),
        (status = 401, description = "No admin key", body = Refused),
    ))]
pub async fn activity(
    State(state): State<AppState>,
    _: Admin,
    Body(body): Body<ActivityBody>,
) -> Reply<Activity> {
    let sent_in = match body.kind {
        ActivityKind::MessageSent => body.conversation_id,
        ActivityKind::MessageRead => None,
    };
    state.presence.backend_activity(body.user_id, sent_in).await;
    Ok(ok(Activity {
        user_id: body.user_id,
    }))
}

/// What serves one policy slot.
#[derive(Serialize, ToSchema)]
pub struct PluginSlot {
    /// `typing`, `status` or `privacy`.
    slot: &'static str,
    world: String,
    /// `builtin`, `upload`, `directory`, `cluster`, …
    source: String,
    sha256: String,
    #[serde(serialize_with = "ser_time")]
    #[schema(value_type = String, format = DateTime)]
    loaded_at: DateTime<Utc>,
    calls: u64,
    failures: u64,
    latency_p50_us: Option<f64>,
    latency_p99_us: Option<f64>,
    peak_memory_bytes: u64,
    /// The latest failed call of this component; `null` if none failed.
    last_failure: Option<PluginFailure>,
    /// Components this node rolled back automatically because they kept
    /// failing, most recent last (up to 8).
    rolled_back: Vec<PluginRolledBack>,
}

/// A component rolled back automatically, as it stood then.
#[derive(Serialize, ToSchema)]
pub struct PluginRolledBack {
    #[serde(serialize_with = "ser_time")]
    #[schema(value_type = String, format = DateTime)]
    at: DateTime<Utc>,
    /// The rule it broke: `5 failed calls in a row of format-typers`, or
    /// `20 of its last 100 calls failed`.
    reason: String,
    sha256: String,
    source: String,
    calls: u64,
    failures: u64,
    last_failure: Option<PluginFailure>,
}

/// A failed plugin call.
#[derive(Serialize, ToSchema)]
pub struct PluginFailure {
    #[serde(serialize_with = "ser_time")]
    #[schema(value_type = String, format = DateTime)]
    at: DateTime<Utc>,
    /// The export called, e.g. `format-typers`.
    function: &'static str,
    /// Why: the plugin's panic message (`panicked at src/lib.rs:9:9: boom`),
    /// the WASI call it is not given, or the limit it hit.
    message: String,
}

impl From<&SlotInfo> for PluginSlot {
    fn from(s: &SlotInfo) -> PluginSlot {
        PluginSlot {
            slot: s.slot.as_str(),
            world: s.world.to_string(),
            source: s.source.clone(),
            sha256: s.sha256.clone(),
            loaded_at: s.loaded_at,
            calls: s.calls,
            failures: s.failures,
            latency_p50_us: s.latency_p50.map(|d| d.as_secs_f64() * 1e6),
            latency_p99_us: s.latency_p99.map(|d| d.as_secs_f64() * 1e6),
            peak_memory_bytes: s.peak_memory as u64,
            last_failure: s.last_failure.as_ref().map(PluginFailure::from),
            rolled_back: s
                .rolled_back
                .iter()
                .map(|r| PluginRolledBack {
                    at: r.at,
                    reason: r.reason.clone(),
                    sha256: r.component.sha256.clone(),
                    source: r.component.source.clone(),
                    calls: r.component.calls,
                    failures: r.component.failures,
                    last_failure: r.component.last_failure.as_ref().map(PluginFailure::from),
                })
                .collect(),
        }
    }
}

impl From<&Failure> for PluginFailure {
    fn from(f: &Failure) -> PluginFailure {
        PluginFailure {
            at: f.at,
            function: f.function,
            message: f.message.clone(),
        }
    }
}

/// What runs in each policy slot.
#[utoipa::path(get, path = "/api/v1/admin/plugins", tag = "admin",
    security(("admin_key" = [])),
    responses(
        (status = 200, body = Okay<Vec<PluginSlot>>),
        (status = 401, description = "No admin key", body = Refused),
    ))]
pub async fn plugins(State(state): State<AppState>, _: Admin) -> Reply<Vec<PluginSlot>> {
    let slots = state.presence.policies.slots();
    Ok(ok(slots.iter().map(PluginSlot::from).collect()))
}

/// Upload a component for a slot: validated, then swapped in; a refused
/// component leaves the old one serving.
#[utoipa::path(put, path = "/api/v1/admin/plugins/{slot}", tag = "admin",
    security(("admin_key" = [])),
    params(("slot" = SlotName, Path)),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "The component (any content type, such as application/wasm), at most 16 MiB"),
    responses(
        (status = 200, body = Okay<InstalledPlugin>),
        (status = 400, description = "Unknown slot", body = Refused),
        (status = 401, description = "No admin key", body = Refused),
        (status = 413, description = "Over 16 MiB"),
        (status = 422, description = "Refused component, and why", body = Refused),
    ))]
pub async fn install_plugin(
    State(state): State<AppState>,
    _: Admin,
    Path(slot): Path<String>,
    Upload(body): Upload,
) -> Reply<InstalledPlugin> {
    let slot = parse_slot(&slot)?;
    let installed = state.presence.install_plugin(slot, body).await?;
    Ok(ok(InstalledPlugin {
        already_active: installed.already_active,
        slot: PluginSlot::from(&installed.info),
    }))
}

/// What an upload did to its slot.
#[derive(Serialize, ToSchema)]
pub struct InstalledPlugin {
    /// The upload was the component already serving the slot: nothing
    /// changed, and no rollback history was added.
    already_active: bool,
    #[serde(flatten)]
    slot: PluginSlot,
}

/// Return a slot to its previous component.
#[utoipa::path(post, path = "/api/v1/admin/plugins/{slot}/rollback", tag = "admin",
    security(("admin_key" = [])),
    params(("slot" = SlotName, Path)),
    responses(
        (status = 200, body = Okay<PluginSlot>),
        (status = 400, description = "Unknown slot", body = Refused),
        (status = 401, description = "No admin key", body = Refused),
        (status = 409, description = "No previous component", body = Refused),
    ))]
pub async fn rollback_plugin(
    State(state): State<AppState>,
    _: Admin,
    Path(slot): Path<String>,
) -> Reply<PluginSlot> {
    let slot = parse_slot(&slot)?;
    let info = state.presence.rollback_plugin(slot).await?;
    Ok(ok(PluginSlot::from(&info)))
}

/// A policy slot, as paths name it.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // documentation only: paths are parsed into `Slot`
pub(crate) enum SlotName {
    Typing,
    Status,
    Privacy,
}

fn parse_slot(s: &str) -> Result<Slot, ApiError> {
    s.parse()
        .map_err(|e: crate::policy::UnknownSlot| ApiError::BadRequest(e.to_string()))
}
