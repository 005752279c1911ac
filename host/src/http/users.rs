//! The user REST API (SPEC §5): status of one or many users as the caller
//! may see them, the caller's privacy settings, and manual away.

use axum::extract::{RawQuery, State};
use axum::response::Json;
use serde::Deserialize;
use uuid::Uuid;

use super::AppState;
use super::extract::{Body, CurrentUser, Path, parse_uuid};
use crate::error::{ApiError, ok};
use crate::model::{PrivacySettings, Visibility};
use crate::presence::directory::Profile;
use crate::protocol::ManualStatus;

type Reply = Result<Json<serde_json::Value>, ApiError>;

/// `GET /api/v1/users/{id}/status`.
pub async fn status(
    State(state): State<AppState>,
    CurrentUser(me): CurrentUser,
    Path(id): Path<String>,
) -> Reply {
    let id = parse_uuid(&id)?;
    let d = &state.presence.directory;
    let viewer = d.ensure_profile(&me).await?;
    let subject = d.profile(id).await?.ok_or(ApiError::UserNotFound)?;
    Ok(ok(state.presence.status_object(&viewer, &subject).await?))
}

/// `GET /api/v1/users/me/status`: the caller's own, as others would be
/// told it but with last seen always visible.
pub async fn my_status(State(state): State<AppState>, CurrentUser(me): CurrentUser) -> Reply {
    let me = state.presence.directory.ensure_profile(&me).await?;
    Ok(ok(state.presence.status_object(&me, &me).await?))
}

/// `GET /api/v1/users/status?user_ids=a,b,c`: request order, unknown ids
/// omitted, duplicates once.
pub async fn batch_status(
    State(state): State<AppState>,
    CurrentUser(me): CurrentUser,
    RawQuery(query): RawQuery,
) -> Reply {
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
    let raw: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
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

fn privacy_json(p: PrivacySettings) -> serde_json::Value {
    serde_json::json!({
        "show_last_seen": p.show_last_seen,
        "last_seen_visibility": p.last_seen_visibility,
    })
}

pub async fn get_privacy(State(state): State<AppState>, CurrentUser(me): CurrentUser) -> Reply {
    let profile = state.presence.directory.ensure_profile(&me).await?;
    Ok(ok(privacy_json(profile.privacy)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyUpdate {
    show_last_seen: Option<bool>,
    last_seen_visibility: Option<Visibility>,
}

pub async fn put_privacy(
    State(state): State<AppState>,
    CurrentUser(me): CurrentUser,
    Body(update): Body<PrivacyUpdate>,
) -> Reply {
    let profile = state
        .presence
        .set_privacy(&me, update.show_last_seen, update.last_seen_visibility)
        .await?
        .ok_or(ApiError::UserNotFound)?;
    Ok(ok(privacy_json(profile.privacy)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusUpdate {
    status: ManualStatus,
}

/// `PUT /api/v1/users/me/status`: the same as WebSocket `set_status`.
pub async fn put_status(
    State(state): State<AppState>,
    CurrentUser(me): CurrentUser,
    Body(update): Body<StatusUpdate>,
) -> Reply {
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
    }
}
