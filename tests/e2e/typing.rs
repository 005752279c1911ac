//! Typing indicators as members see them.

use presence_e2e::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn typing_reaches_the_other_members_but_never_the_sender() {
    let app = spawn_app().await;
    let (john, sarah, mike) = (
        app.user("John").await,
        app.user("Sarah").await,
        app.user("Mike").await,
    );
    let outsider = app.user("Eve").await;
    let conv = app.conversation(&[john, sarah, mike]).await;
    let mut j = app.connect(john).await;
    let mut s = app.connect(sarah).await;
    let mut m = app.connect(mike).await;
    let mut e = app.connect(outsider).await;

    j.send(
        "typing_start",
        json!({"conversation_id": conv, "user_id": john}),
    )
    .await;
    for c in [&mut s, &mut m] {
        let t = c.next_of("user_typing").await;
        assert_eq!(t["conversation_id"], json!(conv));
        assert_eq!(t["user_id"], json!(john));
        assert_eq!(t["username"], "john");
        assert_eq!(t["display_name"], "John");
        assert_eq!(t["is_typing"], true);
        assert_eq!(t["typing_user_ids"], json!([john]));
        assert_eq!(t["text"], "John is typing…");
    }
    assert!(
        j.drain().await.iter().all(|f| f["type"] != "user_typing"),
        "sender gets nothing"
    );
    assert!(e.drain().await.is_empty(), "non-members get nothing");

    j.send("typing_stop", json!({"conversation_id": conv}))
        .await;
    let t = s.next_of("user_typing").await;
    assert_eq!(t["is_typing"], false);
    assert_eq!(t["typing_user_ids"], json!([]));
    assert_eq!(t["text"], "");
}

#[tokio::test]
async fn renewing_a_typing_state_broadcasts_nothing() {
    let app = spawn_app().await;
    let Pair {
        conversation: conv,
        a: mut ca,
        b: mut cb,
        ..
    } = app.pair().await;
    ca.send("typing_start", json!({"conversation_id": conv}))
        .await;
    assert_eq!(cb.next_of("user_typing").await["is_typing"], true);
    for _ in 0..3 {
        ca.send("typing_start", json!({"conversation_id": conv}))
            .await;
    }
    ca.drain().await;
    assert!(cb.drain().await.is_empty(), "renewals are silent");
}

#[tokio::test]
async fn typing_ends_by_itself_when_the_lease_runs_out() {
    let app = spawn_app().await;
    let Pair {
        ann: a,
        conversation: conv,
        a: mut ca,
        b: mut cb,
        ..
    } = app.pair().await;
    let started = std::time::Instant::now();
    ca.send("typing_start", json!({"conversation_id": conv}))
        .await;
    assert_eq!(cb.next_of("user_typing").await["is_typing"], true);
    let stop = cb.next_of("user_typing").await;
    assert_eq!(stop["is_typing"], false);
    assert_eq!(stop["user_id"], json!(a));
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(4_900),
        "not before the 5 s lease"
    );
}

#[tokio::test]
async fn a_stop_inside_the_rate_window_is_coalesced_never_lost() {
    let app = spawn_app().await;
    let Pair {
        conversation: conv,
        a: mut ca,
        b: mut cb,
        ..
    } = app.pair().await;
    // A burst of transitions inside one rate window.
    ca.send("typing_start", json!({"conversation_id": conv}))
        .await;
    ca.send("typing_stop", json!({"conversation_id": conv}))
        .await;
    ca.send("typing_start", json!({"conversation_id": conv}))
        .await;
    ca.send("typing_stop", json!({"conversation_id": conv}))
        .await;
    assert_eq!(cb.next_of("user_typing").await["is_typing"], true);
    // The latest state arrives when the window opens; nothing in between.
    let started = std::time::Instant::now();
    assert_eq!(cb.next_of("user_typing").await["is_typing"], false);
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(500),
        "held until the window opened"
    );
    ca.drain().await;
    let rest = cb.drain().await;
    assert!(
        rest.iter().all(|f| f["type"] != "user_typing"),
        "exactly one start and one stop: {rest:?}"
    );
}

#[tokio::test]
async fn only_members_may_type_and_only_as_themselves() {
    let app = spawn_app().await;
    let (a, b, c) = (
        app.user("Ann").await,
        app.user("Bob").await,
        app.user("Cid").await,
    );
    let conv = app.conversation(&[a, b]).await;
    let mut cc = app.connect(c).await;
    cc.send("typing_start", json!({"conversation_id": conv}))
        .await;
    let e = cc.next_of("error").await;
    assert_eq!(e["code"], "not_member");
    assert_eq!(e["ref_type"], "typing_start");

    let mut ca = app.connect(a).await;
    ca.send(
        "typing_start",
        json!({"conversation_id": conv, "user_id": b}),
    )
    .await;
    let e = ca.next_of("error").await;
    assert_eq!(e["code"], "forbidden");
    // Still open and usable.
    assert!(ca.drain().await.is_empty());
}

#[tokio::test]
async fn group_summaries_are_worded_for_each_recipients_locale() {
    let app = spawn_app().await;
    let names = ["John", "Sarah", "Mike", "Ann", "Zoe"];
    let mut ids = Vec::new();
    for n in names {
        ids.push(app.user(n).await);
    }
    let conv = app.conversation(&ids).await;
    let mut typers = Vec::new();
    for id in &ids[..4] {
        typers.push(app.connect(*id).await);
    }
    let mut thai = app.connect_with(&token_for(ids[4], None), Some("th")).await;
    let mut expected = [
        "John กำลังพิมพ์...",
        "John และ Sarah กำลังพิมพ์...",
        "John, Sarah และอีก 1 คนกำลังพิมพ์...",
        "John, Sarah และอีก 2 คนกำลังพิมพ์...",
    ]
    .into_iter();
    for t in typers.iter_mut() {
        t.send("typing_start", json!({"conversation_id": conv}))
            .await;
        let f = thai.next_of("user_typing").await;
        assert_eq!(f["text"], expected.next().unwrap());
    }
    // John, a typer himself, is excluded from his own summary: the third
    // event he gets (Ann starting) lists the other three.
    typers[0].next_of("user_typing").await;
    typers[0].next_of("user_typing").await;
    let f = typers[0].next_of("user_typing").await;
    assert_eq!(f["typing_user_ids"], json!([ids[1], ids[2], ids[3]]));
    assert_eq!(f["text"], "Sarah, Mike and 1 other are typing…");
}

/// A regional tag is worded as its language; a made-up one, in English.
#[tokio::test]
async fn regional_and_unknown_locales_are_worded_as_the_policy_words_them() {
    let app = spawn_app().await;
    let (ann, tam, zed) = (
        app.user("Ann").await,
        app.user("Tam").await,
        app.user("Zed").await,
    );
    let conv = app.conversation(&[ann, tam, zed]).await;
    let mut a = app.connect(ann).await;
    let mut t = app.connect_with(&token_for(tam, None), Some("th-TH")).await;
    let mut z = app
        .connect_with(&token_for(zed, None), Some("qaa-Fake-ZZ"))
        .await;
    a.send("typing_start", json!({"conversation_id": conv}))
        .await;
    assert_eq!(t.next_of("user_typing").await["text"], "Ann กำลังพิมพ์...");
    assert_eq!(z.next_of("user_typing").await["text"], "Ann is typing…");
}

#[tokio::test]
async fn typing_stops_when_the_last_connection_closes() {
    let app = spawn_app().await;
    let (a, b) = (app.user("Ann").await, app.user("Bob").await);
    let conv = app.conversation(&[a, b]).await;
    let ca = {
        let mut c = app.connect(a).await;
        c.send("typing_start", json!({"conversation_id": conv}))
            .await;
        c
    };
    let mut cb = app.connect(b).await;
    // Bob joined after Ann started: the snapshot or the event tells him.
    let started = cb.ready["typing"] == json!([{"conversation_id": conv, "user_ids": [a]}]);
    if !started {
        assert_eq!(cb.next_of("user_typing").await["is_typing"], true);
    }
    ca.close().await;
    let f = cb.next_of("user_typing").await;
    assert_eq!(f["is_typing"], false);
    assert_eq!(f["user_id"], json!(a));
}

#[tokio::test]
async fn removing_a_member_stops_their_typing() {
    let app = spawn_app().await;
    let Pair {
        ann: a,
        conversation: conv,
        a: mut ca,
        b: mut cb,
        ..
    } = app.pair().await;
    ca.send("typing_start", json!({"conversation_id": conv}))
        .await;
    assert_eq!(cb.next_of("user_typing").await["is_typing"], true);
    app.admin(
        Method::DELETE,
        &format!("/api/v1/admin/conversations/{conv}/members/{a}"),
        None,
    )
    .await;
    let f = cb.next_of("user_typing").await;
    assert_eq!(
        (f["user_id"].clone(), f["is_typing"].clone()),
        (json!(a), json!(false))
    );
    ca.send("typing_start", json!({"conversation_id": conv}))
        .await;
    assert_eq!(ca.next_of("error").await["code"], "not_member");
}

#[tokio::test]
async fn sending_a_message_stops_typing_there() {
    let app = spawn_app().await;
    let Pair {
        ann: a,
        conversation: conv,
        a: mut ca,
        b: mut cb,
        ..
    } = app.pair().await;
    ca.send("typing_start", json!({"conversation_id": conv}))
        .await;
    assert_eq!(cb.next_of("user_typing").await["is_typing"], true);
    app.admin(
        Method::POST,
        "/api/v1/admin/activity",
        Some(json!({"user_id": a, "kind": "message_sent", "conversation_id": conv})),
    )
    .await;
    assert_eq!(cb.next_of("user_typing").await["is_typing"], false);
}

#[tokio::test]
async fn typing_state_does_not_accumulate_after_many_cycles() {
    let app = spawn_app().await;
    let (a, b) = (app.user("Ann").await, app.user("Bob").await);
    let mut convs = Vec::new();
    for _ in 0..20 {
        convs.push(app.conversation(&[a, b]).await);
    }
    let mut ca = app.connect(a).await;
    for round in 0..4 {
        for c in &convs {
            let kind = if round % 2 == 0 {
                "typing_start"
            } else {
                "typing_stop"
            };
            ca.send(kind, json!({"conversation_id": c})).await;
        }
        ca.drain().await;
    }
    assert!(app.presence.typing.entries() <= convs.len());
    ca.close().await;
    // After the last rate window every entry is gone.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.presence.typing.entries() > 0 {
        assert!(std::time::Instant::now() < deadline, "typing state leaked");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
