//! A policy plugin installed or rolled back through one node (by the admin
//! API, its plugin directory, or an automatic rollback) serves on every
//! node, and a node that (re)joins serves what the cluster runs.

use std::time::Instant;

use presence_e2e::cluster::{Cluster, Node, Options, eventually};
use presence_e2e::*;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::CONVERGE;

fn quick_status() -> Vec<u8> {
    std::fs::read(env!("PRESENCE_TEST_QUICK_STATUS_WASM")).unwrap()
}

/// The `sha256` `GET /api/v1/admin/plugins` shows for `slot` on `node`.
async fn sha256(node: &Node, slot: &str) -> Value {
    let list = node.admin(Method::GET, "/api/v1/admin/plugins", None).await;
    list["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{}: plugin list {list}", node.id))
        .iter()
        .find(|s| s["slot"] == slot)
        .unwrap_or_else(|| panic!("{}: no {slot} slot in {list}", node.id))["sha256"]
        .clone()
}

/// Waits until `node` shows `want` for `slot`; returns how long it took.
async fn until_serving(node: &Node, slot: &str, want: &Value) -> std::time::Duration {
    let started = Instant::now();
    eventually(
        &format!("{} shows {slot} plugin {want}", node.id),
        CONVERGE,
        async || (sha256(node, slot).await == *want).then_some(()),
    )
    .await;
    started.elapsed()
}

/// The heartbeat a new connection to `node` is told: 1000 under the quick
/// status policy, 20000 under the default one.
async fn heartbeat_told(node: &Node) -> Value {
    let me = node.user("Me").await;
    let client = node.connect(me).await;
    let told = client.ready["heartbeat_interval_ms"].clone();
    client.close().await;
    told
}

#[tokio::test]
async fn a_plugin_installed_or_rolled_back_on_one_node_serves_on_every_node() {
    let Some(c) = Cluster::start(
        "a_plugin_installed_or_rolled_back_on_one_node_serves_on_every_node",
        2,
        Options::default(),
    )
    .await
    else {
        return;
    };
    let (a, b) = (&c[0], &c[1]);
    let builtin = sha256(a, "status").await;
    assert_eq!(sha256(b, "status").await, builtin);

    let (status, body) = a.upload_plugin("status", quick_status()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let uploaded = body["data"]["sha256"].clone();
    assert_ne!(uploaded, builtin);
    let took = until_serving(b, "status", &uploaded).await;
    eprintln!("an upload on A showed on B after {took:?}");
    assert_eq!(sha256(a, "status").await, uploaded);
    assert_eq!(heartbeat_told(b).await, 1000, "B runs the uploaded policy");

    let back = b
        .admin(Method::POST, "/api/v1/admin/plugins/status/rollback", None)
        .await;
    assert_eq!(back["data"]["sha256"], builtin, "{back}");
    let took = until_serving(a, "status", &builtin).await;
    eprintln!("a rollback on B showed on A after {took:?}");
    assert_eq!(sha256(b, "status").await, builtin);
    assert_eq!(
        heartbeat_told(a).await,
        20000,
        "A runs the built-in policy again"
    );
}

#[tokio::test]
async fn a_node_that_restarts_serves_the_plugins_the_cluster_runs() {
    let Some(c) = Cluster::start(
        "a_node_that_restarts_serves_the_plugins_the_cluster_runs",
        2,
        Options::default(),
    )
    .await
    else {
        return;
    };
    let (a, b) = (&c[0], &c[1]);
    let (status, body) = a.upload_plugin("status", quick_status()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let uploaded = body["data"]["sha256"].clone();
    until_serving(b, "status", &uploaded).await;

    let exit = b.terminate().await;
    assert!(exit.success(), "B stops cleanly: {exit:?}");
    b.restart().await;
    assert_eq!(
        sha256(b, "status").await,
        uploaded,
        "B came back serving what A and the cluster run, not its built-in"
    );
    assert_eq!(heartbeat_told(b).await, 1000);
}

#[tokio::test]
async fn a_plugin_file_dropped_on_one_node_serves_on_every_node() {
    let Some(c) = Cluster::start(
        "a_plugin_file_dropped_on_one_node_serves_on_every_node",
        2,
        Options {
            plugin_dir: true,
            ..Options::default()
        },
    )
    .await
    else {
        return;
    };
    let (a, b) = (&c[0], &c[1]);
    let bytes = quick_status();
    let dropped = serde_json::json!(hex_sha256(&bytes));
    // As deploy tools do: written aside, renamed over.
    let part = a.plugin_dir().join("status.wasm.part");
    std::fs::write(&part, &bytes).unwrap();
    std::fs::rename(&part, a.plugin_dir().join("status.wasm")).unwrap();
    until_serving(a, "status", &dropped).await;
    let took = until_serving(b, "status", &dropped).await;
    eprintln!("a file dropped on A showed on B after {took:?}");
    assert_eq!(heartbeat_told(b).await, 1000, "B runs the dropped policy");
}

#[tokio::test]
async fn a_plugin_rolled_back_automatically_on_one_node_is_rolled_back_everywhere() {
    let Some(c) = Cluster::start(
        "a_plugin_rolled_back_automatically_on_one_node_is_rolled_back_everywhere",
        2,
        Options::default(),
    )
    .await
    else {
        return;
    };
    let (a, b) = (&c[0], &c[1]);
    let builtin = sha256(a, "typing").await;
    let hostile = std::fs::read(env!("PRESENCE_TEST_HOSTILE_TYPING_WASM")).unwrap();
    let (status, body) = a.upload_plugin("typing", hostile).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let uploaded = body["data"]["sha256"].clone();
    until_serving(b, "typing", &uploaded).await;

    // A recipient on A whose locale (`qga`) the hostile policy answers with
    // garbage: every broadcast to them is a failure, on A alone.
    let (ann, vic) = (a.user("Ann").await, a.user("Vic").await);
    let mut typer = a.connect(ann).await;
    let mut victim = a.connect_with(&token_for(vic, None), Some("qga")).await;
    for _ in 0..presence::policy::AUTO_ROLLBACK_AFTER {
        let conversation = a.conversation(&[ann, vic]).await;
        typer
            .send(
                "typing_start",
                serde_json::json!({"conversation_id": conversation}),
            )
            .await;
        victim.next_of("user_typing").await;
    }
    until_serving(a, "typing", &builtin).await;
    let took = until_serving(b, "typing", &builtin).await;
    eprintln!("A's automatic rollback showed on B after {took:?}");
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
