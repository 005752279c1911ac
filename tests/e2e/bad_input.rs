//! Every row of SPEC §8: what bad input gets, and that the connection
//! stays open (or closes) as the table says.

use presence_e2e::*;
use reqwest::StatusCode;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use uuid::Uuid;

async fn expect_bad_request(c: &mut Client, frame: Message) {
    c.send_raw(frame).await;
    let e = c.next_of("error").await;
    assert_eq!(e["code"], "bad_request", "{e}");
    assert!(
        c.drain().await.is_empty(),
        "the connection stays open and usable"
    );
}

#[tokio::test]
async fn malformed_frames_get_bad_request_and_the_connection_stays_open() {
    let app = spawn_app().await;
    let me = app.user("Me").await;
    let mut c = app.connect(me).await;
    expect_bad_request(&mut c, Message::text("not json")).await;
    expect_bad_request(&mut c, Message::binary(vec![1u8, 2, 3])).await;
    expect_bad_request(&mut c, Message::text(r#"{"type":"dance","data":{}}"#)).await;
    expect_bad_request(
        &mut c,
        Message::text(r#"{"type":"typing_start","data":{}}"#),
    )
    .await;
    expect_bad_request(
        &mut c,
        Message::text(r#"{"type":"typing_start","data":{"conversation_id":42}}"#),
    )
    .await;
    expect_bad_request(
        &mut c,
        Message::text(r#"{"type":"typing_start","data":{"conversation_id":"not-a-uuid"}}"#),
    )
    .await;
    expect_bad_request(
        &mut c,
        Message::text(r#"{"type":"set_status","data":{"status":"offline"}}"#),
    )
    .await;
    // An array is not an event, nor is it an event's data.
    expect_bad_request(&mut c, Message::text(r#"["ping"]"#)).await;
    expect_bad_request(
        &mut c,
        Message::text(r#"{"type":"set_status","data":["away"]}"#),
    )
    .await;
    c.send("ping", serde_json::json!({})).await;
    assert_eq!(c.next().await["type"], "pong", "still open");
}

#[tokio::test]
async fn a_frame_over_the_size_limit_closes_with_1009() {
    let app = spawn_app().await;
    let me = app.user("Me").await;
    let mut c = app.connect(me).await;
    let huge = format!(
        r#"{{"type":"ping","data":{{"pad":"{}"}}}}"#,
        "x".repeat(17 * 1024)
    );
    c.send_raw(Message::text(huge)).await;
    assert_eq!(c.closed().await, Some(1009));
}

#[tokio::test]
async fn fragmented_frames_are_joined_and_bad_utf8_closes_with_1007() {
    let app = spawn_app().await;
    let me = app.user("Me").await;
    let mut c = app.connect(me).await;
    // A browser may fragment a message; control frames may come in between.
    c.send_raw(Message::Frame(Frame::message(
        &b"{\"type\":"[..],
        OpCode::Data(Data::Text),
        false,
    )))
    .await;
    c.send_raw(Message::Ping(b"hi"[..].into())).await;
    c.send_raw(Message::Frame(Frame::message(
        &b"\"ping\"}"[..],
        OpCode::Data(Data::Continue),
        true,
    )))
    .await;
    c.next_of("pong").await;
    c.send_raw(Message::Frame(Frame::message(
        &[0xFFu8, 0xFE][..],
        OpCode::Data(Data::Text),
        true,
    )))
    .await;
    assert_eq!(c.closed().await, Some(1007));
}

#[tokio::test]
async fn a_forged_user_id_is_forbidden_and_a_non_member_is_refused() {
    let app = spawn_app().await;
    let (me, other) = (app.user("Me").await, app.user("Other").await);
    let conv = app.conversation(&[me, other]).await;
    let mut c = app.connect(me).await;
    c.send(
        "typing_stop",
        json!({"conversation_id": conv, "user_id": other}),
    )
    .await;
    assert_eq!(c.next_of("error").await["code"], "forbidden");
    let made_up = Uuid::new_v4();
    c.send("typing_start", json!({"conversation_id": made_up}))
        .await;
    assert_eq!(c.next_of("error").await["code"], "not_member");
    assert!(c.drain().await.is_empty());
    assert!(
        app.presence.directory.cached_members(&made_up).is_none(),
        "a made-up conversation leaves nothing behind in memory"
    );
}

#[tokio::test]
async fn a_flood_is_rate_limited_then_closed_with_1008() {
    let app = spawn_app().await;
    let me = app.user("Me").await;
    let mut c = app.connect(me).await;
    for _ in 0..300 {
        c.send("activity", json!({})).await;
    }
    let mut saw_rate_limited = false;
    let code = loop {
        match tokio::time::timeout(FRAME_TIMEOUT, futures_util::StreamExt::next(&mut c.ws))
            .await
            .unwrap()
        {
            Some(Ok(Message::Text(t))) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "error" && v["data"]["code"] == "rate_limited" {
                    saw_rate_limited = true;
                }
            }
            Some(Ok(Message::Close(f))) => break f.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert!(saw_rate_limited);
    assert_eq!(code, Some(1008));
}

#[tokio::test]
async fn bad_tokens_are_refused_at_the_upgrade() {
    let app = spawn_app().await;
    let me = Uuid::new_v4();
    let expired = sign(
        &json!({"sub": me, "exp": jsonwebtoken_exp(-3600)}),
        JWT_SECRET,
    );
    let forged = sign(
        &json!({"sub": me, "exp": jsonwebtoken_exp(3600)}),
        "not-the-secret",
    );
    let no_sub = sign(&json!({"exp": jsonwebtoken_exp(3600)}), JWT_SECRET);
    for token in ["", "garbage", &expired, &forged, &no_sub] {
        let err = tokio_tungstenite::connect_async(app.ws_url(token, None))
            .await
            .unwrap_err();
        match err {
            tokio_tungstenite::tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 401),
            other => panic!("expected 401, got {other:?}"),
        }
    }
    let r = app
        .http
        .get(app.url(&format!("/api/v1/users/{me}/status")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = app
        .http
        .get(app.url(&format!("/api/v1/users/{me}/status")))
        .bearer_auth(&expired)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn malformed_rest_input_gets_400_with_the_envelope() {
    let app = spawn_app().await;
    let me = app.user("Me").await;
    for path in [
        "/api/v1/users/not-a-uuid/status",
        "/api/v1/users/status?user_ids=zzz",
        "/api/v1/users/status",
    ] {
        let (status, body) = app.get_as(me, path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(body["success"], false);
        assert_eq!(body["error"]["code"], "bad_request");
    }
    let r = app
        .http
        .put(app.url("/api/v1/users/me/privacy"))
        .bearer_auth(token_for(me, None))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "bad_request");
    let (status, body) = app
        .admin_raw(
            reqwest::Method::POST,
            "/api/v1/admin/activity",
            Some(json!({"user_id": me, "kind": "dance"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "bad_request");
}

/// A body trickled a byte at a time is cut off once its deadline passes,
/// with 408 and the envelope; the trickle does not keep it alive.
#[tokio::test]
async fn a_trickled_body_gets_408_at_its_deadline() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let url = format!("sqlite://{}", dir.path().join("p.db").display());
    let app = spawn_app_on(url, dir, |c| c.limits.body_read_timeout_ms = 500).await;
    let id = Uuid::new_v4();
    let tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let (mut read, mut write) = tcp.into_split();
    let head = format!(
        "PUT /api/v1/admin/users/{id} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ADMIN_KEY}\r\n\
         content-type: application/json\r\ncontent-length: 1000\r\n\r\n{{"
    );
    write.write_all(head.as_bytes()).await.unwrap();
    // One byte every 100 ms would take 100 s to finish the body.
    let trickle = tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            if write.write_all(b" ").await.is_err() {
                break;
            }
        }
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let bounded = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while !String::from_utf8_lossy(&answer).contains("}}") {
            let n = read.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed without an answer");
            answer.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    trickle.abort();
    bounded.expect("the trickled request was never answered");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"request_timeout""#), "{answer}");
    let closed =
        tokio::time::timeout(std::time::Duration::from_secs(20), read.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the connection is closed after the answer"
    );
}

/// One account cannot open connections without end: over the cap the
/// upgrade is refused with 429, and a closed connection gives its place back.
#[tokio::test]
async fn connections_over_the_per_user_cap_are_refused_with_429() {
    use tokio_tungstenite::tungstenite;
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let url = format!("sqlite://{}", dir.path().join("p.db").display());
    let app = spawn_app_on(url, dir, |c| c.limits.connections_per_user = 3).await;
    let (ann, bob) = (app.user("Ann").await, app.user("Bob").await);
    let token = token_for(ann, None);
    let url = format!("ws://{}/ws?token={token}", app.addr);
    let mut open = Vec::new();
    for locale in ["en", "th", "qaa"] {
        open.push(app.connect_with(&token, Some(locale)).await);
    }
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(tungstenite::Error::Http(r)) => {
            assert_eq!(r.status().as_u16(), 429);
            let body: serde_json::Value =
                serde_json::from_slice(r.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["error"]["code"], "too_many_connections", "{body}");
        }
        other => panic!(
            "a fourth connection was not refused: {:?}",
            other.map(|_| ())
        ),
    }
    let _bob = app.connect(bob).await;

    open.pop().unwrap().close().await;
    // The session ends just after its close; bounded, so a leak fails.
    let deadline = std::time::Instant::now() + FRAME_TIMEOUT;
    loop {
        match tokio_tungstenite::connect_async(url.as_str()).await {
            Ok(_) => break,
            Err(tungstenite::Error::Http(r)) if r.status().as_u16() == 429 => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the place was never given back"
                );
                tokio::task::yield_now().await;
            }
            Err(e) => panic!("{e}"),
        }
    }
}
