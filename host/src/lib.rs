//! presence: real-time presence for chat products — who is online, away or
//! offline, when they were last seen (within their privacy settings), and who
//! is typing — over WebSocket and REST, with its rules in WebAssembly policies.
//!
//! # Layout
//! In the order a `typing_start` travels to the other members:
//! - `app`: builds the server from the [`config`] and runs it until shutdown.
//! - `http`: routes; `/ws` authenticates ([`auth`]) and upgrades.
//! - `ws::session`: one connection (reader + writer); `ws::protocol`: wire types.
//! - `presence`: the node's state — `typing` leases and rate windows,
//!   `status` online/away/offline, `view` privacy per viewer, `registry`
//!   of connections for fan-out, `directory` caches, `timers`, `flush`.
//! - `policy`: the wasmtime engine and the typing/status/privacy slots.
//! - `store`: SQLite or PostgreSQL through sqlx.
//! - `error`: the one API error type; `model`: shared domain types.

pub mod app;
pub mod auth;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod error;
pub mod http;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod presence;
pub mod protocol;
pub mod store;
pub mod ws;
