//! The client WebSocket: `protocol` is the wire format, `session` runs one
//! connection from upgrade to close.

pub mod protocol;
pub mod session;
