//! End-to-end: the real server on 127.0.0.1:0, real WebSocket and HTTP clients.

mod attach;
mod autobahn;
mod bad_input;
mod containment;
mod frontend;
mod identity;
mod lifecycle;
mod outage;
mod plugins;
mod rest;
mod status;
mod timings;
mod typing;
mod webhooks;
