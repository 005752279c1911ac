//! The user REST API and the admin API's auth boundary.

use presence_e2e::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn batch_status_keeps_request_order_omits_unknown_and_dedupes() {
    let app = spawn_app().await;
    let (a, b, me) = (
        app.user("Ann").await,
        app.user("Bob").await,
        app.user("Me").await,
    );
    let _online = app.connect(b).await;
    let unknown = Uuid::new_v4();
    let (status, body) = app
        .get_as(
            me,
            &format!("/api/v1/users/status?user_ids={b},{unknown},{a},{b}"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["success"], true);
    let list = body["data"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["user_id"], json!(b));
    assert_eq!(list[0]["status"], "online");
    assert_eq!(list[0]["is_online"], true);
    assert_eq!(list[1]["user_id"], json!(a));
    assert_eq!(list[1]["status"], "offline");
    assert_eq!(list[1]["is_online"], false);
    assert!(list[1].get("show_last_seen").is_some());
}

#[tokio::test]
async fn more_than_a_hundred_ids_are_refused() {
    let app = spawn_app().await;
    let me = app.user("Me").await;
    let ids: Vec<String> = (0..101).map(|_| Uuid::new_v4().to_string()).collect();
    let (status, body) = app
        .get_as(
            me,
            &format!("/api/v1/users/status?user_ids={}", ids.join(",")),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["success"], false);
    assert_eq!(body["error"]["code"], "too_many_ids");
}

#[tokio::test]
async fn unknown_users_are_404_user_not_found() {
    let app = spawn_app().await;
    let me = app.user("Me").await;
    let (status, body) = app
        .get_as(me, &format!("/api/v1/users/{}/status", Uuid::new_v4()))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "user_not_found");
}

#[tokio::test]
async fn privacy_settings_round_trip_and_validate() {
    let app = spawn_app().await;
    let me = app.user("Me").await;
    let (_, body) = app.get_as(me, "/api/v1/users/me/privacy").await;
    assert_eq!(
        body["data"],
        json!({"show_last_seen": true, "last_seen_visibility": "everyone"})
    );
    let put = |body: serde_json::Value| {
        app.http
            .put(app.url("/api/v1/users/me/privacy"))
            .bearer_auth(token_for(me, None))
            .json(&body)
            .send()
    };
    let r = put(json!({"show_last_seen": false, "last_seen_visibility": "nobody"}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (_, body) = app.get_as(me, "/api/v1/users/me/privacy").await;
    assert_eq!(
        body["data"],
        json!({"show_last_seen": false, "last_seen_visibility": "nobody"})
    );
    let r = put(json!({"last_seen_visibility": "friends"}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "bad_request");
}

#[tokio::test]
async fn rest_set_status_is_the_same_as_the_websocket_one() {
    let app = spawn_app().await;
    let Watching { ann, mut b, .. } = app.bob_watching_ann().await;
    let _a = app.connect(ann).await;
    assert_eq!(b.next_of("user_status").await["status"], "online");
    let r = app
        .http
        .put(app.url("/api/v1/users/me/status"))
        .bearer_auth(token_for(ann, None))
        .json(&json!({"status": "away"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(b.next_of("user_status").await["status"], "away");
}

#[tokio::test]
async fn user_tokens_never_open_admin_routes_and_the_admin_key_never_opens_user_routes() {
    let app = spawn_app().await;
    let me = app.user("Me").await;
    let r = app
        .http
        .put(app.url(&format!("/api/v1/admin/users/{me}")))
        .bearer_auth(token_for(me, None))
        .json(&json!({"username": "x", "display_name": "X"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = app
        .http
        .get(app.url("/api/v1/users/me/privacy"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["success"], false);
}

#[tokio::test]
async fn health_reports_ok_and_admin_lists_the_loaded_plugins() {
    let app = spawn_app().await;
    let r = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let plugins = app.admin(Method::GET, "/api/v1/admin/plugins", None).await;
    let slots: Vec<&str> = plugins["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["slot"].as_str().unwrap())
        .collect();
    assert_eq!(slots, ["typing", "status", "privacy"]);
    assert_eq!(plugins["data"][0]["sha256"].as_str().unwrap().len(), 64);
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

#[tokio::test]
async fn metrics_are_exported_for_prometheus_behind_the_admin_key() {
    let app = spawn_app().await;
    let r = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let scrape = || async {
        let r = app
            .http
            .get(app.url("/metrics"))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.text().await.unwrap()
    };
    let before = scrape().await;
    let Pair {
        conversation,
        mut a,
        mut b,
        ..
    } = app.pair().await;
    a.send("typing_start", json!({"conversation_id": conversation}))
        .await;
    b.next_of("user_typing").await;
    let after = scrape().await;
    assert_eq!(metric(&after, "presence_connections "), 2.0);
    let typed = "presence_events_in_total{type=\"typing_start\"} ";
    assert!(metric(&after, typed) >= metric(&before, typed) + 1.0);
    let delivered = "presence_deliveries_total{type=\"user_typing\"} ";
    assert!(metric(&after, delivered) >= metric(&before, delivered) + 1.0);
    assert!(metric(&after, "presence_typing_fanout_seconds_count ") >= 1.0);
    assert!(after.contains("presence_plugin_calls_total{slot=\"typing\""));
}

#[tokio::test]
async fn a_metrics_token_opens_metrics_and_nothing_else() {
    const SCRAPER: &str = "scraper-token-0123456789";
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let url = format!("sqlite://{}", dir.path().join("p.db").display());
    let app = spawn_app_on(url, dir, |c| c.metrics_token = Some(SCRAPER.into())).await;
    let get = |path: &'static str, key: &'static str| {
        let r = app.http.get(app.url(path)).bearer_auth(key).send();
        async move { r.await.unwrap().status() }
    };
    assert_eq!(get("/metrics", SCRAPER).await, StatusCode::OK);
    assert_eq!(
        get("/metrics", ADMIN_KEY).await,
        StatusCode::OK,
        "the admin key too"
    );
    assert_eq!(
        get("/metrics", "scraper-token-wrong").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get("/api/v1/admin/plugins", SCRAPER).await,
        StatusCode::UNAUTHORIZED,
        "it is read-only: no admin route"
    );
    let install = app
        .http
        .put(app.url("/api/v1/admin/plugins/typing"))
        .bearer_auth(SCRAPER)
        .body(vec![0u8; 8])
        .send()
        .await
        .unwrap();
    assert_eq!(install.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn my_own_status_wrong_methods_and_undecodable_paths_answer_with_the_envelope() {
    let app = spawn_app().await;
    let me = app.user("Me").await;
    let _online = app.connect(me).await;
    let (status, body) = app.get_as(me, "/api/v1/users/me/status").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            body["data"]["user_id"].clone(),
            body["data"]["status"].clone()
        ),
        (json!(me), json!("online"))
    );

    let (status, body) = app.get_as(me, "/api/v1/users/%FF/status").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "bad_request");

    let r = app
        .http
        .delete(app.url("/api/v1/users/me/privacy"))
        .bearer_auth(token_for(me, None))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "method_not_allowed");
}
