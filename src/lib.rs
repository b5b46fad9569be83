//! websockify: a WebSocket-to-TCP bridge, drop-in for the Python reference.
//!
//! A connection's path through the crate: `listen` → `classify` → `tls` / `http` (upgrade)
//! → `target` → `relay` (frames ↔ bytes).

pub mod cli;
pub mod settings;
