//! The Autobahn|Testsuite server cases 1–7 and 9, and the RFC 6455 §4
//! opening handshake, ported to raw TCP: a hand-made client writes masked
//! frames byte by byte as Autobahn's fuzzing client does, and every test is
//! named after the Autobahn case it ports (`case_5_19_…`).
//!
//! Autobahn's client expects an echo server; presence is not one, so:
//! - a text message the case wants echoed is the app-level
//!   `{"type":"ping","data":{"pad":"…"}}` padded to the case's length, and the
//!   `pong` event stands for the echo; text too short to be an event (and
//!   any other valid UTF-8 that is not an event) is answered with
//!   `error{code:"bad_request"}` and the connection stays open (SPEC §8);
//! - a binary message is answered with `error{code:"bad_request"}`.
//!
//! Grading follows Autobahn's: the events received must equal the case's
//! `OK` list exactly (its `NON-STRICT` list is never accepted here), the
//! connection must be failed by the right side with the right close code,
//! and a clean close is a close frame each way followed by the server
//! ending the TCP connection. Where Autobahn accepts a dropped connection
//! instead of a close frame, these tests still want the close frame.
//!
//! Every read is bounded by [`presence_e2e::FRAME_TIMEOUT`]: a stuck server
//! fails a test instead of hanging it. Nothing sleeps to synchronise; where
//! Autobahn waits a second to see that the server did not fail a
//! connection, these tests send a WebSocket ping and await its pong.
//!
//! Tests share two servers started once per test binary (see [`Server`]), each
//! case on its own connection of a fresh user. `client` is the raw client;
//! one file per Autobahn group: `framing` (1), `ping` (2), `reserved` (3),
//! `opcodes` (4), `fragments` (5), `utf8` (6), `close` (7), `limits` (9,
//! scaled down: see there), and `handshake` (RFC 6455 §4). A few checks
//! Autobahn lacks sit beside the cases they extend, named by RFC section.
//!
//! Run them with `cargo test -p presence-e2e --test e2e autobahn`.

mod client;
mod close;
mod fragments;
mod framing;
mod handshake;
mod limits;
mod opcodes;
mod ping;
mod reserved;
mod utf8;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use presence_e2e::{ADMIN_KEY, spawn_app_on, token_for};
use serde_json::json;
use uuid::Uuid;

pub use client::*;

/// The message size the roomy server accepts: the 64 KiB framing cases and
/// the scaled-down limits cases (9.x) fit under it.
pub const ROOMY_MAX_MESSAGE: usize = 1024 * 1024;

/// The two shared servers.
#[derive(Clone, Copy)]
pub enum Server {
    /// Default configuration: 16 KiB messages, 50 frames/s (burst 100).
    Default,
    /// Messages up to [`ROOMY_MAX_MESSAGE`], everything else default.
    Roomy,
}

impl Server {
    /// The server's address; it is started on first use and runs, on a
    /// thread and runtime of its own, until the test binary exits.
    pub fn addr(self) -> SocketAddr {
        static DEFAULT: OnceLock<SocketAddr> = OnceLock::new();
        static ROOMY: OnceLock<SocketAddr> = OnceLock::new();
        match self {
            Server::Default => *DEFAULT.get_or_init(|| start(|_| {})),
            Server::Roomy => {
                *ROOMY.get_or_init(|| start(|c| c.limits.max_frame_bytes = ROOMY_MAX_MESSAGE))
            }
        }
    }
}

fn start(tweak: fn(&mut presence::config::Config)) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        rt.block_on(async move {
            let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
            let url = format!("sqlite://{}", dir.path().join("presence.db").display());
            let app = spawn_app_on(url, dir, tweak).await;
            tx.send(app.addr).expect("the test waits");
            // Keeps the app (and its shutdown sender) alive for good.
            std::future::pending::<()>().await;
            drop(app);
        });
    });
    rx.recv().expect("the server starts")
}

/// A user the server knows, and a token for them.
pub async fn user_token(addr: SocketAddr) -> String {
    let id = Uuid::new_v4();
    let status = reqwest::Client::new()
        .put(format!("http://{addr}/api/v1/admin/users/{id}"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"username": "autobahn", "display_name": "Autobahn"}))
        .send()
        .await
        .expect("admin request")
        .status();
    assert!(status.is_success(), "user created: {status}");
    token_for(id, None)
}
