//! error: one error type for the data path that says which side failed and how. That one fact
//! picks the close code, the log level and (later) the metric label; nothing re-derives it from
//! a message string.

use std::fmt;
use std::io;

/// Who caused a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The WebSocket (browser) side.
    Client,
    /// The TCP (or Unix) service we bridge to.
    Target,
    /// Ourselves: a bug, a resource limit, a configuration problem.
    Internal,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Client => "client",
            Side::Target => "target",
            Side::Internal => "internal",
        })
    }
}

/// What kind of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The peer ended the connection (EOF, reset, broken pipe).
    Closed,
    /// Any other I/O failure.
    Io,
    /// The peer broke the WebSocket protocol; carries the close code to send.
    Protocol(u16),
    /// The peer did not act within a time limit.
    Timeout,
    /// Connecting to the target failed.
    Connect,
    /// The TLS handshake failed.
    Tls,
}

#[derive(Debug)]
pub struct Error {
    pub side: Side,
    pub kind: Kind,
    pub context: &'static str,
    pub source: Option<io::Error>,
}

impl Error {
    pub fn new(side: Side, kind: Kind, context: &'static str) -> Self {
        Error {
            side,
            kind,
            context,
            source: None,
        }
    }

    /// An I/O error on `side`; resets and broken pipes count as the peer closing.
    pub fn io(side: Side, context: &'static str, err: io::Error) -> Self {
        let kind = match err.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof => Kind::Closed,
            io::ErrorKind::TimedOut => Kind::Timeout,
            _ => Kind::Io,
        };
        Error {
            side,
            kind,
            context,
            source: Some(err),
        }
    }

    pub fn protocol(code: u16, context: &'static str) -> Self {
        Error::new(Side::Client, Kind::Protocol(code), context)
    }

    /// The WebSocket close code this failure is reported to the client with.
    pub fn close_code(&self) -> u16 {
        match (self.side, self.kind) {
            (_, Kind::Protocol(code)) => code,
            (Side::Target, Kind::Closed) => crate::frame::close_code::NORMAL,
            _ => crate::frame::close_code::INTERNAL_ERROR,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.side, self.context)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
