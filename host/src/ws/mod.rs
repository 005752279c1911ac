//! The client WebSocket: `protocol` is the wire format, `frame` the RFC 6455
//! framing, `socket` the readiness-driven I/O, and `session` runs one
//! connection from upgrade to close.

pub mod frame;
pub mod protocol;
pub mod session;
pub mod socket;
