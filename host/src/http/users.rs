//! The user REST API (SPEC §5): status of one or many users as the caller
//! may see them, the caller's privacy settings, and manual away. Its types
//! and `#[utoipa::path]` are the OpenAPI document (`docs`).

use axum::extract::{RawQuery, State};
use axum::response::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::extract::{Body, CurrentUser, Path, parse_uuid};
use crate::error::{ApiError, Okay, Refused, ok};
use crate::model::{PrivacySettings, Visibility};
use crate::presence::directory::Profile;
use crate::protocol::{ManualStatus, StatusObject};

type Reply<T> = Result<Json<Okay<T>>, ApiError>;

/// One user's status, as the caller may see it (`me` for the caller).
#[utoipa::path(get, path = "/api/v1/users/{id}/status", tag = "users",
    security(("user_token" = [])),
    params(("id" = Uuid, Path, description = "The user (`/api/v1/users/me/status` for yourself)")),
    responses(
        (status = 200, body = Okay<StatusObject>),
        (status = 400, description = "Not a UUID", body = Refused),
        (status = 401, description = "No valid user token", body = Refused),
        (status = 404, description = "`user_not_found`", body = Refused),
    ))]
pub async fn status(
    State(state): State<AppState>,
    CurrentUser(me): CurrentUser,
    Path(id): Path<String>,
) -> Reply<StatusObject> {
    let id = parse_uuid(&id)?;
    let d = &state.presence.directory;
    let viewer = d.ensure_profile(&me).await?;
    let subject = d.profile(id).await?.ok_or(ApiError::UserNotFound)?;
    Ok(ok(state.presence.status_object(&viewer, &subject).await?))
}

/// The caller's own status, as others would be told it but with last seen
/// always visible.
#[utoipa::path(get, path = "/api/v1/users/me/status", tag = "users",
    security(("user_token" = [])),
    responses(
        (status = 200, body = Okay<StatusObject>),
        (status = 401, description = "No valid user token", body = Refused),
    ))]
pub async fn my_status(
    State(state): State<AppState>,
    CurrentUser(me): CurrentUser,
) -> Reply<StatusObject> {
    let me = state.presence.directory.ensure_profile(&me).await?;
    Ok(ok(state.presence.status_object(&me, &me).await?))
}

/// Many users' statuses: in request order, unknown ids omitted, duplicates once.
#[utoipa::path(get, path = "/api/v1/users/status", tag = "users",
    security(("user_token" = [])),
    params(("user_ids" = Vec<Uuid>, Query, style = Form, explode = false, max_items = 100,
        min_items = 1, description = "Comma-separated user ids, at most 100")),
    responses(
        (status = 200, body = Okay<Vec<StatusObject>>),
        (status = 400, description = "Missing or malformed ids, or `too_many_ids`", body = Refused),
        (status = 401, description = "No valid user token", body = Refused),
    ))]
pub async fn batch_status(
    State(state): State<AppState>,
    CurrentUser(me): CurrentUser,
    RawQuery(query): RawQuery,
) -> Reply<Vec<StatusObject>> {
    let max = state.presence.limits.max_batch_ids;
    let ids = parse_id_list(query.as_deref().unwrap_or(""), max)?;
    let d = &state.presence.directory;
    let viewer = d.ensure_profile(&me).await?;
    let profiles = d.profiles(&ids).await?;
    let subjects: Vec<&Profile> = ids
        .iter()
        .filter_map(|id| profiles.get(id).map(|p| &**p))
        .collect();
    Ok(ok(state
        .presence
        .status_objects(&viewer, &subjects)
        .await?))
}

/// Parses `user_ids=` from a raw query string.
fn parse_id_list(query: &str, max: usize) -> Result<Vec<Uuid>, ApiError> {
    let mut list = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == "user_ids" {
            list = Some(v.replace("%2C", ",").replace("%2c", ","));
        }
    }
    let list = list.ok_or_else(|| ApiError::BadRequest("user_ids is required".to_owned()))?;
    // Every entry is an id, as the OpenAPI document says: `a,,b` and a
    // trailing comma are refused rather than guessed at.
    let raw: Vec<&str> = list.split(',').map(str::trim).collect();
    if raw.len() > max {
        return Err(ApiError::TooManyIds(max));
    }
    let mut ids: Vec<Uuid> = Vec::with_capacity(raw.len());
    for s in raw {
        let id = parse_uuid(s)?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// Who may see the caller's last seen.
#[derive(Serialize, ToSchema)]
pub struct Privacy {
    /// False means the same as visibility `nobody`.
    show_last_seen: bool,
    last_seen_visibility: Visibility,
}

impl From<PrivacySettings> for Privacy {
    fn from(p: PrivacySettings) -> Privacy {
        Privacy {
            show_last_seen: p.show_last_seen,
            last_seen_visibility: p.last_seen_visibility,
        }
    }
}

/// The caller's privacy settings.
#[utoipa::path(get, path = "/api/v1/users/me/privacy", tag = "users",
    security(("user_token" = [])),
    responses(
        (status = 200, body = Okay<Privacy>),
        (status = 401, description = "No valid user token", body = Refused),
    ))]
pub async fn get_privacy(
    State(state): State<AppState>,
    CurrentUser(me): CurrentUser,
) -> Reply<Privacy> {
    let profile = state.presence.directory.ensure_profile(&me).await?;
    Ok(ok(profile.privacy.into()))
}

/// The settings to change; absent ones stay as they are.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"last_seen_visibility": "contacts"}))]
pub struct PrivacyUpdate {
    show_last_seen: Option<bool>,
    last_seen_visibility: Option<Visibility>,
}

/// Changes the caller's privacy settings; they hold for every later answer
/// and event.
#[utoipa::path(put, path = "/api/v1/users/me/privacy", tag = "users",
    security(("user_token" = [])),
    request_body = PrivacyUpdate,
    responses(
        (status = 200, body = Okay<Privacy>),
        (status = 400, description = "Malformed body", body = Refused),
        (status = 401, description = "No valid user token", body = Refused),
    ))]
pub async fn put_privacy(
    State(state): State<AppState>,
    CurrentUser(me): CurrentUser,
    Body(update): Body<PrivacyUpdate>,
) -> Reply<Privacy> {
    let profile = state
        .presence
        .set_privacy(&me, update.show_last_seen, update.last_seen_visibility)
        .await?
        .ok_or(ApiError::UserNotFound)?;
    Ok(ok(profile.privacy.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"status": "away"}))]
pub struct StatusUpdate {
    status: ManualStatus,
}

/// Away by hand, or back online: the same as WebSocket `set_status`, on
/// whichever node the caller is connected to.
#[utoipa::path(put, path = "/api/v1/users/me/status", tag = "users",
    security(("user_token" = [])),
    request_body = StatusUpdate,
    responses(
        (status = 200, body = Okay<StatusObject>),
        (status = 400, description = "Malformed body", body = Refused),
        (status = 401, description = "No valid user token", body = Refused),
    ))]
pub async fn put_status(
    State(state): State<AppState>,
    CurrentUser(me): CurrentUser,
    Body(update): Body<StatusUpdate>,
) -> Reply<StatusObject> {
    let p = &state.presence;
    p.set_status_everywhere(me.id, update.status).await;
    let viewer = p.directory.ensure_profile(&me).await?;
    Ok(ok(p.status_object(&viewer, &viewer).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_lists_keep_order_drop_duplicates_and_cap_length() {
        let a = Uuid::new_v4();
        let b = Uuid::new_v4();
        let q = format!("user_ids={b},{a},{b}");
        assert_eq!(parse_id_list(&q, 100).unwrap(), vec![b, a]);
        let many = (0..101)
            .map(|_| Uuid::new_v4().to_string())
            .collect::<Vec<_>>()
            .join(",");
        assert!(matches!(
            parse_id_list(&format!("user_ids={many}"), 100),
            Err(ApiError::TooManyIds(100))
        ));
        assert!(matches!(
            parse_id_list("user_ids=nope", 100),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            parse_id_list("", 100),
            Err(ApiError::BadRequest(_))
        ));
        for empty in [
            "user_ids=",
            &format!("user_ids={a},"),
            &format!("user_ids={a},,{b}"),
        ] {
            assert!(
                matches!(parse_id_list(empty, 100), Err(ApiError::BadRequest(_))),
                "{empty}"
            );
        }
    }
}
