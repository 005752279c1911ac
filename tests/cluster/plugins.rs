//! A policy plugin installed or rolled back through one node serves on
//! every node, and a node that (re)joins serves what the cluster runs.

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
