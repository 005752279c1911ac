//! The WebSocket transport, RFC 6455 alone: `handshake` decides which
//! requests become a WebSocket, `frame` reads and writes frames (close
//! codes are tungstenite's [`CloseCode`]), `socket` does the
//! readiness-driven I/O, and `session` runs one connection from upgrade to
//! close, handing each client event to the presence state.

pub mod frame;
pub mod handshake;
pub mod session;
pub mod socket;

pub use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
