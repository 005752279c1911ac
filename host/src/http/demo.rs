//! `presence serve --demo`: a page to try presence with nothing but a
//! browser. Three demo users (alice, bob, carol) share one conversation and
//! have each other as contacts; `/demo?user=alice` signs in as alice with a
//! token minted here, which only demo mode does.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::AppState;
use crate::auth::Auth;
use crate::error::{ApiError, ok};
use crate::presence::Presence;

/// The demo users: name, display name, id.
pub const USERS: [(&str, &str, Uuid); 3] = [
    (
        "alice",
        "Alice",
        Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_a11c),
    ),
    (
        "bob",
        "Bob",
        Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0b0b),
    ),
    (
        "carol",
        "Carol",
        Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_ca01),
    ),
];
/// The conversation they share.
pub const CONVERSATION: Uuid = Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_00de_3000);
/// How long a demo token lasts (the page renews it before then).
pub const TOKEN_TTL: Duration = Duration::from_secs(15 * 60);

const PAGE: &str = include_str!("demo.html");

/// Registers the demo users, their conversation and contacts, as a chat
/// backend would.
pub async fn seed(presence: &Presence) -> anyhow::Result<()> {
    let ids: Vec<Uuid> = USERS.iter().map(|u| u.2).collect();
    for (name, display, id) in USERS {
        presence.set_profile(id, name, display).await?;
        let others: Vec<Uuid> = ids.iter().copied().filter(|o| *o != id).collect();
        presence.replace_contacts(id, &others).await?;
    }
    presence.replace_members(CONVERSATION, &ids).await?;
    Ok(())
}

/// Fails unless tokens can be minted here (an HS256 secret).
pub fn check(auth: &Auth) -> anyhow::Result<()> {
    auth.mint(USERS[0].2, None, TOKEN_TTL)
        .map(drop)
        .map_err(|_| anyhow::anyhow!("--demo mints tokens, which needs an HS256 secret (no jwt_public_key or jwt_jwks_url)"))
}

/// `GET /demo`: the page.
pub async fn page(State(state): State<AppState>) -> Response {
    if !state.demo {
        return ApiError::NotFound.into_response();
    }
    ([(header::CACHE_CONTROL, "no-cache")], Html(PAGE)).into_response()
}

#[derive(Deserialize)]
pub struct Who {
    user: String,
}

#[derive(Serialize)]
struct DemoUser {
    name: &'static str,
    display_name: &'static str,
    user_id: Uuid,
}

#[derive(Serialize)]
struct Session {
    token: String,
    user_id: Uuid,
    conversation_id: Uuid,
    users: Vec<DemoUser>,
}

/// `GET /demo/token?user=alice`: a token for a demo user, and who is who.
pub async fn token(State(state): State<AppState>, uri: axum::http::Uri) -> Response {
    if !state.demo {
        return ApiError::NotFound.into_response();
    }
    let Ok(Query(who)) = Query::<Who>::try_from_uri(&uri) else {
        return ApiError::BadRequest("?user= alice, bob or carol".into()).into_response();
    };
    let Some((_, display, id)) = USERS.iter().find(|u| u.0 == who.user) else {
        return ApiError::BadRequest(format!(
            "{:?} is not a demo user: alice, bob or carol",
            who.user
        ))
        .into_response();
    };
    let token = match state.auth.mint(*id, Some((*display).to_owned()), TOKEN_TTL) {
        Ok(t) => t,
        Err(e) => return ApiError::Internal(e).into_response(),
    };
    ok(Session {
        token,
        user_id: *id,
        conversation_id: CONVERSATION,
        users: USERS
            .iter()
            .map(|(name, display_name, user_id)| DemoUser {
                name,
                display_name,
                user_id: *user_id,
            })
            .collect(),
    })
    .into_response()
}
