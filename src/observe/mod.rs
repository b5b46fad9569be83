//! observe: what watches a session without steering it: the session log lines, redaction and
//! escaping of peer text (later: syslog, recording, metrics). Observers are told what happened;
//! they can neither change nor delay a byte.
//!
//! The hook: the connection calls [`Observer::open`] once the session is set up and
//! [`Observer::close`] with the relay's [`Report`]; the relay calls [`Observer::bytes`] beside
//! its hot path, and only when [`Observer::wants_bytes`] said so at the start: an observer that
//! does not look at bytes costs the relay nothing.

pub mod log;
pub mod redact;

use std::fmt;

use crate::conninfo::ConnInfo;
use crate::error::Error;
use crate::ws::close::CloseInfo;
use crate::ws::Mode;

/// Which way bytes went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Payload from the client, on its way to the target.
    ClientToTarget,
    /// Bytes from the target, on their way to the client.
    TargetToClient,
}

/// A session that has just been set up (the 101 is sent, the target is connected).
#[derive(Debug, Clone, Copy)]
pub struct Session<'a> {
    pub info: &'a ConnInfo,
    /// The request target (path and query) as the client sent it: log it redacted.
    pub path: &'a str,
    /// Where the session goes, as it is shown to people.
    pub target: &'a str,
    pub mode: Mode,
}

/// Why a relay ended.
#[derive(Debug)]
pub enum Ended {
    /// The client sent a close frame (echoed back).
    ClientClosed(CloseInfo),
    /// The target ended its side; the client got 1000 "Target closed".
    TargetClosed,
    /// Either side failed; the error says which, and the close code the client got.
    Failed(Error),
}

impl fmt::Display for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ended::ClientClosed(info) => match info.code {
                Some(code) => write!(f, "client closed ({code} {})", redact::Quoted(&info.reason)),
                None => f.write_str("client closed"),
            },
            Ended::TargetClosed => f.write_str("target closed"),
            Ended::Failed(err) => write!(f, "{err}"),
        }
    }
}

/// What a relay did: for the log line at its end (and, later, metrics).
#[derive(Debug)]
pub struct Report {
    /// Payload bytes forwarded from the client to the target.
    pub client_to_target: u64,
    /// Payload bytes forwarded from the target to the client.
    pub target_to_client: u64,
    pub ended: Ended,
}

/// Watches one session. Every method has a do-nothing default.
pub trait Observer {
    fn open(&mut self, _session: &Session<'_>) {}

    /// Asked once, when the relay starts: whether [`Observer::bytes`] should be called.
    fn wants_bytes(&self) -> bool {
        false
    }

    /// A piece of payload, in the order it was relayed in its direction. Client payload is
    /// shown unmasked (and base64-decoded), as the target gets it; target bytes as they were
    /// read, before framing.
    fn bytes(&mut self, _direction: Direction, _data: &[u8]) {}

    fn close(&mut self, _report: &Report) {}
}

/// Watches nothing, for nothing.
impl Observer for () {}

/// The observers a session has: the per-session log lines always; recording and metrics join
/// here as fields when they land.
#[derive(Debug, Default)]
pub struct Observers {
    pub log: log::SessionLog,
}

impl Observer for Observers {
    fn open(&mut self, session: &Session<'_>) {
        self.log.open(session);
    }

    fn wants_bytes(&self) -> bool {
        self.log.wants_bytes()
    }

    fn bytes(&mut self, direction: Direction, data: &[u8]) {
        self.log.bytes(direction, data);
    }

    fn close(&mut self, report: &Report) {
        self.log.close(report);
    }
}
