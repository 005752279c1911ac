//! presence: real-time presence for chat products — who is online, away or
//! offline, when they were last seen (within their privacy settings), and who
//! is typing — over WebSocket and REST, with its rules in WebAssembly policies.
//!
//! # Layout
//! In the order a `typing_start` travels to the other members. Calls go
//! down this list, never back up (the cluster hands what arrives up through
//! a channel):
//! - [`app`]: builds the server from the [`config`] and runs it until shutdown.
//! - [`http`]: the accept loop and the routes; `/ws` authenticates ([`auth`])
//!   and upgrades; the REST APIs make one presence call per request and
//!   answer errors through [`error`], the one API error type.
//! - [`ws`]: RFC 6455 — handshake, frames, the socket, and `session`, one
//!   connection, which makes one presence call per client event.
//! - [`protocol`]: the JSON events and status objects on the wire.
//! - [`presence`]: the node's state — `actions` (what a client does) →
//!   `typing` leases and rate windows → `registry` (fan-out), and `status`,
//!   `view` (privacy per viewer), `directory` caches, `timers`, `flush`,
//!   `admin` (the chat backend's changes), `plugins`, `remote` (what
//!   crosses nodes).
//! - [`cluster`]: Redis fan-out, leases and live presence, beneath presence;
//!   what arrives goes up as events.
//! - [`policy`]: the wasmtime engine and the typing/status/privacy slots.
//! - [`webhook`]: status transitions POSTed to the chat backend, from an
//!   outbox in the store.
//! - [`store`]: SQLite or PostgreSQL through sqlx.
//! - [`model`]: domain types shared by every layer; [`metrics`].
//! - [`cli`]: the command line around the server.

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
pub mod webhook;
pub mod ws;
