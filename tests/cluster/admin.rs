//! The chat backend talks to one node (any, behind the load balancer); what
//! it changes — membership, contacts, profiles — and what a user changes
//! about their privacy must reach the caches of every node.

use std::time::Instant;

use presence_e2e::cluster::{Cluster, Node, Options, eventually};
use presence_e2e::*;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{CONVERGE, GRACE, SLACK, typings};

const DIRECTORY_RECEIVED: &str = "presence_cluster_received_total{kind=\"directory\"}";

/// Runs an admin change on `via` and waits until every one of `others` has
/// received a directory message after it: from then on their caches must
/// agree.
async fn change_and_wait(
    via: &Node,
    others: &[&Node],
    method: Method,
    path: &str,
    body: Option<Value>,
) {
    let mut seen = Vec::new();
    for other in others {
        seen.push(other.metric(DIRECTORY_RECEIVED).await);
    }
    via.admin(method, path, body).await;
    let started = Instant::now();
    for (other, seen) in others.iter().zip(seen) {
        eventually(
            &format!(
                "{} receives the directory change {path} made on {}",
                other.id, via.id
            ),
            CONVERGE,
            async || (other.metric(DIRECTORY_RECEIVED).await > seen).then_some(()),
        )
        .await;
    }
    eprintln!(
        "{path} on {} reached the other nodes after {:?}",
        via.id,
        started.elapsed()
    );
}

#[tokio::test]
async fn membership_changed_on_one_node_decides_who_types_and_receives_on_another() {
    let Some(c) = Cluster::start(
        "membership_changed_on_one_node_decides_who_types_and_receives_on_another",
        2,
        Options::default(),
    )
    .await
    else {
        return;
    };
    let (a, b) = (&c[0], &c[1]);
    let (ann, bob, carol) = (
        a.user("Ann").await,
        a.user("Bob").await,
        a.user("Carol").await,
    );
    let conv = a.conversation(&[ann, carol]).await;
    let mut ann_a = a.connect(ann).await;
    let mut bob_b = b.connect(bob).await;
    let mut carol_b = b.connect(carol).await;

    // B has the conversation cached, without Bob.
    ann_a
        .send("typing_start", json!({"conversation_id": conv}))
        .await;
    assert_eq!(carol_b.next_of("user_typing").await["is_typing"], true);
    ann_a
        .send("typing_stop", json!({"conversation_id": conv}))
        .await;
    assert_eq!(carol_b.next_of("user_typing").await["is_typing"], false);
    let got = bob_b.drain().await;
    assert!(typings(&got).is_empty(), "Bob is no member yet: {got:?}");

    // Added through A: B delivers to him and lets him type.
    let bob_member = format!("/api/v1/admin/conversations/{conv}/members/{bob}");
    change_and_wait(a, &[b], Method::POST, &bob_member, None).await;
    ann_a
        .send("typing_start", json!({"conversation_id": conv}))
        .await;
    let t = bob_b.next_of("user_typing").await;
    assert_eq!(
        (t["user_id"].clone(), t["is_typing"].clone()),
        (json!(ann), json!(true)),
        "{t}"
    );
    assert_eq!(carol_b.next_of("user_typing").await["is_typing"], true);
    bob_b
        .send("typing_start", json!({"conversation_id": conv}))
        .await;
    let t = ann_a.next_of("user_typing").await;
    assert_eq!(
        (t["user_id"].clone(), t["is_typing"].clone()),
        (json!(bob), json!(true)),
        "B accepted Bob's typing as a member's: {t}"
    );
    assert_eq!(carol_b.next_of("user_typing").await["user_id"], json!(bob));

    // Removed through A while typing: his typing ends for everyone, and he
    // receives nothing more from the conversation.
    let got = bob_b.drain().await;
    assert!(
        got.iter().all(|f| f["type"] != "error"),
        "Bob's typing was accepted: {got:?}"
    );
    let removed = Instant::now();
    change_and_wait(a, &[b], Method::DELETE, &bob_member, None).await;
    for (who, client) in [("Ann on A", &mut ann_a), ("Carol on B", &mut carol_b)] {
        let t = client.next_of("user_typing").await;
        let after = removed.elapsed();
        assert_eq!(
            (t["user_id"].clone(), t["is_typing"].clone()),
            (json!(bob), json!(false)),
            "{who}: a removed member stops typing: {t}"
        );
        assert!(
            after <= SLACK,
            "{who}: Bob's typing ended {after:?} after his removal, as if only the lease ended it"
        );
    }
    ann_a
        .send("typing_stop", json!({"conversation_id": conv}))
        .await;
    let t = carol_b.next_of("user_typing").await;
    assert_eq!(
        (t["user_id"].clone(), t["is_typing"].clone()),
        (json!(ann), json!(false)),
        "{t}"
    );
    ann_a
        .send("typing_start", json!({"conversation_id": conv}))
        .await;
    let t = carol_b.next_of("user_typing").await;
    assert_eq!(
        (t["user_id"].clone(), t["is_typing"].clone()),
        (json!(ann), json!(true)),
        "{t}"
    );
    let got = bob_b.drain().await;
    assert!(
        typings(&got).is_empty(),
        "Bob, removed through A, still receives the conversation's typing on B: {got:?}"
    );
}

#[tokio::test]
async fn a_profile_changed_on_one_node_names_the_typer_on_another() {
    let Some(c) = Cluster::start(
        "a_profile_changed_on_one_node_names_the_typer_on_another",
        2,
        Options::default(),
    )
    .await
    else {
        return;
    };
    let (a, b) = (&c[0], &c[1]);
    let (ann, carol, dave) = (
        a.user("Ann").await,
        a.user("Carol").await,
        a.user("Dave").await,
    );
    let conv = a.conversation(&[ann, carol, dave]).await;
    let mut ann_a = a.connect(ann).await;
    let mut carol_b = b.connect(carol).await;
    let mut dave_b = b.connect(dave).await;

    // B has Carol's profile cached under her old name.
    carol_b
        .send("typing_start", json!({"conversation_id": conv}))
        .await;
    assert_eq!(
        dave_b.next_of("user_typing").await["text"],
        "Carol is typing…"
    );
    assert_eq!(
        ann_a.next_of("user_typing").await["text"],
        "Carol is typing…"
    );
    carol_b
        .send("typing_stop", json!({"conversation_id": conv}))
        .await;
    dave_b.next_of("user_typing").await;
    ann_a.next_of("user_typing").await;

    change_and_wait(
        a,
        &[b],
        Method::PUT,
        &format!("/api/v1/admin/users/{carol}"),
        Some(json!({"username": "caroline", "display_name": "Caroline"})),
    )
    .await;
    carol_b
        .send("typing_start", json!({"conversation_id": conv}))
        .await;
    for (who, client) in [("Dave on B", &mut dave_b), ("Ann on A", &mut ann_a)] {
        let t = client.next_of("user_typing").await;
        assert_eq!(t["is_typing"], true, "{who}: {t}");
        assert_eq!(t["username"], "caroline", "{who}: {t}");
        assert_eq!(t["display_name"], "Caroline", "{who}: {t}");
        assert_eq!(t["text"], "Caroline is typing…", "{who}: {t}");
    }
}

/// `user`'s status as `viewer` sees it through `node`.
async fn status_seen(node: &Node, viewer: Uuid, user: Uuid) -> Value {
    let (status, body) = node
        .get_as(viewer, &format!("/api/v1/users/{user}/status"))
        .await;
    assert_eq!(status, 200, "{}: {body}", node.id);
    body["data"].clone()
}

#[tokio::test]
async fn privacy_and_contacts_changed_on_one_node_hold_on_another() {
    let Some(c) = Cluster::start(
        "privacy_and_contacts_changed_on_one_node_hold_on_another",
        2,
        Options::default(),
    )
    .await
    else {
        return;
    };
    let (a, b) = (&c[0], &c[1]);
    let (fay, bob, sam) = (
        a.user("Fay").await,
        a.user("Bob").await,
        a.user("Sam").await,
    );

    // Fay was here and left: B shows her last seen to Bob (and caches her).
    a.connect(fay).await.close().await;
    let before = eventually(
        "B shows Fay offline with a last seen",
        GRACE + CONVERGE,
        async || {
            let s = status_seen(b, bob, fay).await;
            (s["status"] == "offline" && s["last_seen"].is_string()).then_some(s)
        },
    )
    .await;
    assert_eq!(before["show_last_seen"], true, "{before}");

    // Fay hides her last seen through A.
    let put_privacy = async |body: Value| {
        let r = a
            .http
            .put(a.url("/api/v1/users/me/privacy"))
            .bearer_auth(token_for(fay, None))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    };
    put_privacy(json!({"show_last_seen": false})).await;
    let started = Instant::now();
    let hidden = eventually(
        "B hides Fay's last seen from Bob after she hid it through A",
        CONVERGE,
        async || {
            let s = status_seen(b, bob, fay).await;
            s["last_seen"].is_null().then_some(s)
        },
    )
    .await;
    eprintln!(
        "a privacy change on A held on B after {:?}",
        started.elapsed()
    );
    assert_eq!(hidden["show_last_seen"], false, "{hidden}");
    assert_eq!(
        status_seen(b, fay, fay).await["last_seen"],
        before["last_seen"],
        "Fay always sees her own"
    );

    // Only her contacts may see it; her contact list is set through A.
    put_privacy(json!({"show_last_seen": true, "last_seen_visibility": "contacts"})).await;
    change_and_wait(
        a,
        &[b],
        Method::PUT,
        &format!("/api/v1/admin/users/{fay}/contacts"),
        Some(json!({"user_ids": [bob]})),
    )
    .await;
    let started = Instant::now();
    let to_bob = eventually(
        "B shows Fay's last seen to Bob, her contact, again",
        CONVERGE,
        async || {
            let s = status_seen(b, bob, fay).await;
            s["last_seen"].is_string().then_some(s)
        },
    )
    .await;
    eprintln!(
        "Fay's contacts-only setting held on B after {:?}",
        started.elapsed()
    );
    assert_eq!(to_bob["last_seen"], before["last_seen"], "{to_bob}");
    let to_sam = status_seen(b, sam, fay).await;
    assert!(
        to_sam["last_seen"].is_null(),
        "Sam is not in Fay's contacts: {to_sam}"
    );
}

#[tokio::test]
async fn a_watcher_added_on_one_node_hears_of_a_user_on_another() {
    let Some(c) = Cluster::start(
        "a_watcher_added_on_one_node_hears_of_a_user_on_another",
        3,
        Options::default(),
    )
    .await
    else {
        return;
    };
    let (a, b, node_c) = (&c[0], &c[1], &c[2]);
    let (gus, bob) = (a.user("Gus").await, a.user("Bob").await);
    let mut bob_b = b.connect(bob).await;
    // A has Gus (and whatever it keeps about his watchers: nobody) cached;
    // he is offline again.
    a.connect(gus).await.close().await;
    eventually(
        "Gus is offline after the grace period",
        GRACE + CONVERGE,
        async || (status_seen(a, bob, gus).await["status"] == "offline").then_some(()),
    )
    .await;

    // Through C, which hosts neither, Bob makes Gus a contact; Gus connects
    // to A, and Bob on B hears of it.
    change_and_wait(
        node_c,
        &[a, b],
        Method::PUT,
        &format!("/api/v1/admin/users/{bob}/contacts"),
        Some(json!({"user_ids": [gus]})),
    )
    .await;
    let _gus_a = a.connect(gus).await;
    let s = bob_b.next_of("user_status").await;
    assert_eq!(
        (s["user_id"].clone(), s["status"].clone()),
        (json!(gus), json!("online")),
        "{s}"
    );
}
