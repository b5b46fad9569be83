//! observe: what watches a session without steering it: the log (stderr, `--log-file`,
//! `--syslog`) and the session log lines, `--record`, `--traffic`, redaction and escaping of
//! peer text. Observers are told what happened; they can neither change nor delay a byte: slow
//! output (files, stdout) goes through the writer thread, bounded.
//!
//! The hook: the connection calls [`Observer::open`] once the session is set up and
//! [`Observer::close`] with the relay's [`Report`]; the relay calls [`Observer::bytes`] beside
//! its hot path, and only when [`Observer::wants_bytes`] said so at the start: an observer that
//! does not look at bytes costs the relay nothing.

pub mod json;
pub mod log;
pub mod metrics;
pub mod notify;
pub mod record;
pub mod redact;
pub mod syslog;
pub mod traffic;
pub mod writer;

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

    /// A write of relayed data in `direction` went out, whole (`complete`) or in part (the
    /// rest waits for the peer). Called only when [`Observer::wants_bytes`] said so.
    fn sent(&mut self, _direction: Direction, _complete: bool) {}

    fn close(&mut self, _report: &Report) {}
}

/// Watches nothing, for nothing.
impl Observer for () {}

/// An observer a session may or may not have: one branch per call, no allocation, no dyn.
impl<O: Observer> Observer for Option<O> {
    fn open(&mut self, session: &Session<'_>) {
        if let Some(o) = self {
            o.open(session);
        }
    }

    fn wants_bytes(&self) -> bool {
        self.as_ref().is_some_and(O::wants_bytes)
    }

    fn bytes(&mut self, direction: Direction, data: &[u8]) {
        if let Some(o) = self {
            o.bytes(direction, data);
        }
    }

    fn sent(&mut self, direction: Direction, complete: bool) {
        if let Some(o) = self {
            o.sent(direction, complete);
        }
    }

    fn close(&mut self, report: &Report) {
        if let Some(o) = self {
            o.close(report);
        }
    }
}

/// The observers a session has: the per-session log lines always, `--record` and `--traffic`
/// when asked for, metrics with `--metrics-listen`.
#[derive(Debug, Default)]
pub struct Observers {
    pub log: log::SessionLog,
    pub metrics: Option<metrics::SessionMetrics>,
    pub record: Option<record::Recorder>,
    pub traffic: Option<traffic::Traffic>,
}

impl Observers {
    /// The observers of connection `id`: recording to `record.<id>` when given (`--record`),
    /// printing traffic symbols when `traffic` (`--traffic`).
    pub fn for_session(record: Option<&std::path::Path>, traffic: bool, id: u64) -> Observers {
        Observers {
            log: log::SessionLog::default(),
            metrics: metrics::SessionMetrics::start(),
            record: record.map(|base| record::Recorder::new(base, id)),
            traffic: traffic.then_some(traffic::Traffic),
        }
    }
}

impl Observer for Observers {
    fn open(&mut self, session: &Session<'_>) {
        self.log.open(session);
        self.metrics.open(session);
        self.record.open(session);
        self.traffic.open(session);
    }

    fn wants_bytes(&self) -> bool {
        self.log.wants_bytes() || self.record.wants_bytes() || self.traffic.wants_bytes()
    }

    fn bytes(&mut self, direction: Direction, data: &[u8]) {
        self.log.bytes(direction, data);
        self.record.bytes(direction, data);
        self.traffic.bytes(direction, data);
    }

    fn sent(&mut self, direction: Direction, complete: bool) {
        self.log.sent(direction, complete);
        self.record.sent(direction, complete);
        self.traffic.sent(direction, complete);
    }

    fn close(&mut self, report: &Report) {
        self.log.close(report);
        self.metrics.close(report);
        self.record.close(report);
        self.traffic.close(report);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The log lines and metrics need no bytes: without `--record` and `--traffic` the relay
    /// never hands any over (its hot path stays free of observers); with either it must.
    #[test]
    fn only_a_recorder_or_the_traffic_printer_takes_the_relayed_bytes() {
        let base = std::path::Path::new("/nonexistent/record");
        assert!(!Observers::for_session(None, false, 1).wants_bytes());
        assert!(Observers::for_session(Some(base), false, 1).wants_bytes());
        assert!(Observers::for_session(None, true, 1).wants_bytes());
        assert!(Observers::for_session(Some(base), true, 1).wants_bytes());
        // The pieces: a default observer and an absent one want nothing.
        assert!(!log::SessionLog::default().wants_bytes());
        assert!(!None::<traffic::Traffic>.wants_bytes());
        assert!(Some(traffic::Traffic).wants_bytes());
    }
}
