//! What a browser page meets: CORS on the user API (and never on the admin
//! API), the `Origin` check of `/ws`, close replies that echo the client's
//! code, the client library and the API documents.

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use presence_e2e::*;
use reqwest::StatusCode;
use reqwest::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, ORIGIN,
};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

const CHAT: &str = "https://chat.example.com";

async fn app_for(origins: &[&str]) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let url = format!("sqlite://{}", dir.path().join("p.db").display());
    let origins: Vec<String> = origins.iter().map(|o| o.to_string()).collect();
    spawn_app_on(url, dir, |c| c.cors_origins = origins).await
}

async fn preflight(app: &TestApp, path: &str, origin: &str) -> reqwest::Response {
    app.http
        .request(reqwest::Method::OPTIONS, app.url(path))
        .header(ORIGIN, origin)
        .header(ACCESS_CONTROL_REQUEST_METHOD, "GET")
        .header(ACCESS_CONTROL_REQUEST_HEADERS, "authorization")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_user_api_answers_an_allowed_origins_preflight_and_the_admin_api_never_does() {
    let app = app_for(&[CHAT]).await;
    let user = app.user("Ann").await;
    let ok = preflight(&app, &format!("/api/v1/users/{user}/status"), CHAT).await;
    assert!(ok.status().is_success(), "{}", ok.status());
    assert_eq!(ok.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], CHAT);
    let allowed = ok.headers()[ACCESS_CONTROL_ALLOW_HEADERS]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(
        allowed.contains("authorization") && allowed.contains("content-type"),
        "{allowed}"
    );

    let get = app
        .http
        .get(app.url(&format!("/api/v1/users/{user}/status")))
        .header(ORIGIN, CHAT)
        .bearer_auth(token_for(user, None))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), StatusCode::OK);
    assert_eq!(get.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], CHAT);

    let other = preflight(&app, "/api/v1/users/me/status", "https://evil.example.com").await;
    assert!(other.headers().get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    for path in ["/api/v1/admin/plugins", "/metrics"] {
        let r = app
            .http
            .get(app.url(path))
            .header(ORIGIN, CHAT)
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}");
        assert!(
            r.headers().get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none(),
            "{path}"
        );
        let p = preflight(&app, path, CHAT).await;
        assert!(
            p.headers().get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none(),
            "{path}"
        );
    }
}

#[tokio::test]
async fn without_configured_origins_nothing_carries_cors_headers() {
    let app = app_for(&[]).await;
    let r = app
        .http
        .get(app.url("/sdk/presence-client.js"))
        .header(ORIGIN, CHAT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("export class PresenceClient")
    );
}

async fn upgrade_from(app: &TestApp, token: &str, origin: Option<&str>) -> Result<(), u16> {
    let mut req = app.ws_url(token, None).into_client_request().unwrap();
    if let Some(o) = origin {
        req.headers_mut().insert("origin", o.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok(_) => Ok(()),
        Err(tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn a_browser_websocket_from_another_origin_is_refused_with_403() {
    let app = app_for(&[CHAT]).await;
    let token = token_for(app.user("Ann").await, None);
    assert_eq!(upgrade_from(&app, &token, Some(CHAT)).await, Ok(()));
    assert_eq!(
        upgrade_from(&app, &token, None).await,
        Ok(()),
        "not a browser"
    );
    assert_eq!(
        upgrade_from(&app, &token, Some("https://evil.example.com")).await,
        Err(403)
    );
    let own = format!("http://{}", app.addr);
    assert_eq!(
        upgrade_from(&app, &token, Some(&own)).await,
        Ok(()),
        "a page this server served, such as the demo"
    );
    let open = app_for(&[]).await;
    let token = token_for(open.user("Ann").await, None);
    assert_eq!(
        upgrade_from(&open, &token, Some("https://evil.example.com")).await,
        Ok(()),
        "unset: any origin"
    );
}

#[tokio::test]
async fn the_close_reply_echoes_the_clients_code_and_a_bad_one_is_a_protocol_error() {
    let app = spawn_app().await;
    let user = app.user("Ann").await;
    for (sent, echoed) in [(1000u16, 1000u16), (4000, 4000), (3001, 3001), (1004, 1002)] {
        let mut c = app.connect(user).await;
        c.send_raw(Message::Close(Some(CloseFrame {
            code: CloseCode::from(sent),
            reason: "".into(),
        })))
        .await;
        let code = loop {
            match c.ws.next().await {
                Some(Ok(Message::Close(Some(f)))) => break u16::from(f.code),
                Some(Ok(Message::Close(None))) => panic!("a close without a code for {sent}"),
                Some(Ok(_)) => continue,
                other => panic!("no close frame for {sent}: {other:?}"),
            }
        };
        assert_eq!(code, echoed, "sent {sent}");
        let _ = c.ws.close(None).await;
    }
}

#[tokio::test]
async fn the_api_documents_are_served_without_credentials() {
    let app = spawn_app().await;
    for (path, field, version) in [
        ("/api/v1/openapi.json", "openapi", "3.1.0"),
        ("/api/v1/asyncapi.json", "asyncapi", "3.0.0"),
    ] {
        let r = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let doc: serde_json::Value = r.json().await.unwrap();
        assert_eq!(doc[field], version);
    }
    let mut sink = app.connect(app.user("Bob").await).await;
    sink.ws
        .send(Message::text("{\"type\":\"ping\"}"))
        .await
        .unwrap();
    sink.next_of("pong").await;
}
