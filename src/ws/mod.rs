//! ws: the RFC 6455 pieces that are pure functions over bytes: the frame codec, close codes,
//! streaming UTF-8 validation and the `base64` subprotocol's codec. No sockets, no I/O, and no
//! import from the rest of the crate: everything else builds on this room.

pub mod base64;
pub mod close;
pub mod frame;
pub mod utf8;

/// How messages are carried, as the negotiated subprotocol says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Binary frames each way; text frames from the client are forwarded as their UTF-8 bytes.
    Binary,
    /// The seed's `base64` subprotocol: every message is base64 text, both ways.
    Base64,
}

/// The peer broke RFC 6455: the close code to answer with, and why (sent as the close reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation {
    pub code: u16,
    pub reason: &'static str,
}

impl Violation {
    pub fn new(code: u16, reason: &'static str) -> Self {
        Violation { code, reason }
    }
}
