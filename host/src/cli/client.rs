//! The admin API's client, for `presence plugin install|list|rollback`
//! against a running server.

use anyhow::Context;

use super::{Server, existing_admin_key};
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
    let data = call(server, config, reqwest::Method::PUT, &path, Some(bytes)).await?;
    if data["already_active"] == true {
        println!(
            "already active: {slot} runs this component (sha256 {}); nothing changed",
            data["sha256"].as_str().unwrap_or("?")
        );
    } else {
        println!("{}", serde_json::to_string_pretty(&data)?);
    }
    Ok(())
}

/// `GET /api/v1/admin/plugins`, as a table (or the JSON answer).
pub async fn list(server: &Server, config: &Config, json: bool) -> anyhow::Result<()> {
    let data = call(
        server,
        config,
        reqwest::Method::GET,
        "/api/v1/admin/plugins",
        None,
    )
    .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&data)?);
    } else {
        print!("{}", table(&data));
    }
    Ok(())
}

/// One row per slot: what serves it, how it does, and its latest failure.
fn table(data: &serde_json::Value) -> String {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".to_owned(),
        v => v.to_string(),
    };
    let mut rows = vec![
        [
            "SLOT",
            "SOURCE",
            "SHA256",
            "CALLS",
            "FAILURES",
            "P99",
            "LAST FAILURE",
        ]
        .map(String::from),
    ];
    for s in data.as_array().into_iter().flatten() {
        let sha = text(&s["sha256"]);
        let p99 = s["latency_p99_us"]
            .as_f64()
            .map_or("-".to_owned(), |us| format!("{us:.0} µs"));
        let failure = match &s["last_failure"] {
            serde_json::Value::Null => "-".to_owned(),
            f => format!("{}: {}", text(&f["function"]), text(&f["message"])),
        };
        rows.push([
            text(&s["slot"]),
            text(&s["source"]),
            sha.chars().take(12).collect(),
            text(&s["calls"]),
            text(&s["failures"]),
            p99,
            failure,
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `POST /api/v1/admin/plugins/{slot}/rollback`.
pub async fn rollback(server: &Server, config: &Config, slot: Slot) -> anyhow::Result<()> {
    let path = format!("/api/v1/admin/plugins/{slot}/rollback");
    let data = call(server, config, reqwest::Method::POST, &path, None).await?;
    println!("{}", serde_json::to_string_pretty(&data)?);
    Ok(())
}

/// Sends one admin request and returns the answer's `data`, or fails with
/// the server's reason and, where it helps, what to try.
async fn call(
    server: &Server,
    config: &Config,
    method: reqwest::Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> anyhow::Result<serde_json::Value> {
    let base = server
        .server
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.listen));
    let key = match &server.admin_key {
        Some(k) => k.clone(),
        None => existing_admin_key(config)?,
    };
    let mut request = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .bearer_auth(key);
    if let Some(bytes) = body {
        request = request
            .header("content-type", "application/wasm")
            .body(bytes);
    }
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) if e.is_connect() => anyhow::bail!(
            "cannot reach a server at {base}: is it running? Name it with --server \
             (by default the configured listen address, PRESENCE_LISTEN)"
        ),
        Err(e) => return Err(e).with_context(|| format!("reaching {base}")),
    };
    let status = response.status();
    let mut body: serde_json::Value = response.json().await.context("reading the answer")?;
    if status == reqwest::StatusCode::UNAUTHORIZED {
        anyhow::bail!(
            "{base} refused the admin key: pass the server's with --admin-key or \
             PRESENCE_ADMIN_KEY, or point PRESENCE_DATA_DIR at the server's data directory"
        );
    }
    if !status.is_success() {
        anyhow::bail!(
            "{status}: {}",
            body["error"]["message"]
                .as_str()
                .unwrap_or("no reason given")
        );
    }
    Ok(body["data"].take())
}
