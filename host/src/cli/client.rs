//! The admin API's client, for `presence plugin install|list|rollback`
//! against a running server.

use anyhow::Context;

use super::{Server, admin_key};
use crate::config::Config;
use crate::policy::Slot;

/// `PUT /api/v1/admin/plugins/{slot}` with the component's bytes.
pub async fn install(
    server: &Server,
    config: &Config,
    slot: Slot,
    bytes: Vec<u8>,
) -> anyhow::Result<()> {
    let path = format!("/api/v1/admin/plugins/{slot}");
    call(server, config, reqwest::Method::PUT, &path, Some(bytes)).await
}

/// `GET /api/v1/admin/plugins`.
pub async fn list(server: &Server, config: &Config) -> anyhow::Result<()> {
    call(
        server,
        config,
        reqwest::Method::GET,
        "/api/v1/admin/plugins",
        None,
    )
    .await
}

/// `POST /api/v1/admin/plugins/{slot}/rollback`.
pub async fn rollback(server: &Server, config: &Config, slot: Slot) -> anyhow::Result<()> {
    let path = format!("/api/v1/admin/plugins/{slot}/rollback");
    call(server, config, reqwest::Method::POST, &path, None).await
}

/// Sends one admin request and prints the answer's `data`, or fails with
/// the server's reason.
async fn call(
    server: &Server,
    config: &Config,
    method: reqwest::Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> anyhow::Result<()> {
    let base = server
        .server
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.listen));
    let key = match &server.admin_key {
        Some(k) => k.clone(),
        None => admin_key(config)?,
    };
    let mut request = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .bearer_auth(key);
    if let Some(bytes) = body {
        request = request
            .header("content-type", "application/wasm")
            .body(bytes);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("reaching {base}"))?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.context("reading the answer")?;
    if !status.is_success() {
        anyhow::bail!(
            "{status}: {}",
            body["error"]["message"]
                .as_str()
                .unwrap_or("no reason given")
        );
    }
    println!("{}", serde_json::to_string_pretty(&body["data"])?);
    Ok(())
}
