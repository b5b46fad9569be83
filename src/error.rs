//! error: one error type for a connection's failures, saying which side failed and what kind
//! of failure it was. That pair alone decides the WebSocket close code and reason, the HTTP
//! status of a refusal, the log level and the label (later: the metric label). Nothing else in
//! the crate picks those, and nothing re-derives them from a message string.

use std::fmt;
use std::io;

use crate::ws::close::close_code;
use crate::ws::Violation;

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

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Target => "target",
            Side::Internal => "internal",
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
    /// The client's HTTP request cannot become a WebSocket (malformed upgrade).
    BadRequest,
    /// Connecting to the target failed (refused, unreachable, no such name or socket).
    Connect,
    /// The request names no target we know (a missing or unknown token).
    NotFound,
    /// What decides targets cannot answer now (a token source that cannot be read).
    Unavailable,
    /// The request lacks credentials, or its credentials are wrong (an auth plugin said so);
    /// carries the challenge to send in `WWW-Authenticate`, which a 401 must have (RFC 9110
    /// §15.5.2), so one cannot be made without the other.
    Unauthorized(&'static str),
    /// The request may not go there, whatever credentials it brings (an auth plugin said so:
    /// a malformed `Authorization`, a foreign `Origin`, no allowed client certificate), or it
    /// names a target outside `--target-allow`.
    Forbidden,
    /// What decides targets answered, but uselessly (a token API's error status or garbage,
    /// a malformed stored target): a 502, as a gateway reports an invalid upstream answer.
    BadAnswer,
    /// The server is shutting down (SIGTERM/SIGINT): sessions are told 1001 "Going away".
    GoingAway,
    /// A connection over one of the server's limits (`--max-connections`,
    /// `--max-connections-per-ip`, `--handshake-rate`): a 503 with `Retry-After`.
    Limited(Limit),
}

/// Which limit a connection hit. Its label is where a metric counts the hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `--max-connections`: the server is full.
    Connections,
    /// `--max-connections-per-ip`: this client address has its share open.
    PerClient,
    /// `--handshake-rate`: this client address begins connections too fast.
    Rate,
    /// The table of client addresses the per-client limits keep is full (see `server::limits`).
    Clients,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Connections => "limit_connections",
            Limit::PerClient => "limit_per_ip",
            Limit::Rate => "limit_rate",
            Limit::Clients => "limit_clients",
        }
    }

    /// Seconds a refused client is asked to wait (`Retry-After`): a token comes back within
    /// one second; open connections take longer to end.
    pub fn retry_after(self) -> u32 {
        match self {
            Limit::Rate => 1,
            _ => 5,
        }
    }
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Closed => "closed",
            Kind::Io => "io",
            Kind::Protocol(_) => "protocol",
            Kind::Timeout => "timeout",
            Kind::BadRequest => "bad_request",
            Kind::Connect => "connect",
            Kind::NotFound => "not_found",
            Kind::Unavailable => "unavailable",
            Kind::Unauthorized(_) => "unauthorized",
            Kind::Forbidden => "forbidden",
            Kind::BadAnswer => "bad_answer",
            Kind::GoingAway => "going_away",
            Kind::Limited(limit) => limit.as_str(),
        }
    }
}

/// How loudly an event is logged; mapped onto `tracing` levels by the logger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Debug)]
pub struct Error {
    pub side: Side,
    pub kind: Kind,
    /// A short, fixed description (never attacker-controlled text).
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

    /// Connecting to the target failed; a time-out stays a time-out (504, not 502).
    pub fn connect(err: io::Error) -> Self {
        let kind = match err.kind() {
            io::ErrorKind::TimedOut => Kind::Timeout,
            _ => Kind::Connect,
        };
        Error {
            side: Side::Target,
            kind,
            context: "connecting to the target",
            source: Some(err),
        }
    }

    /// The target ended its side of a session: the normal end of most sessions.
    pub fn target_closed() -> Self {
        Error::new(Side::Target, Kind::Closed, "Target closed")
    }

    /// The server is shutting down: the end of every session still open when it began.
    pub fn going_away() -> Self {
        Error::new(Side::Internal, Kind::GoingAway, "server shutting down")
    }

    /// The WebSocket close code this failure is reported to the client with. A client that
    /// went silent (the heartbeat's bound) gets 1001 as well: it is not our failure (1011
    /// would say so), and 1001 is what Jetty and Tomcat send on an idle time-out; noVNC shows
    /// any code other than 1000 the same way, as a disconnect with the code and reason.
    pub fn close_code(&self) -> u16 {
        match (self.side, self.kind) {
            (_, Kind::Protocol(code)) => code,
            (Side::Target, Kind::Closed) => close_code::NORMAL,
            (_, Kind::GoingAway) | (Side::Client, Kind::Timeout) => close_code::GOING_AWAY,
            _ => close_code::INTERNAL_ERROR,
        }
    }

    /// The reason sent with [`Error::close_code`]; the reference's wording where it has one.
    pub fn close_reason(&self) -> &'static str {
        match (self.side, self.kind) {
            (_, Kind::Protocol(_)) => self.context,
            (Side::Target, Kind::Closed) => "Target closed",
            (_, Kind::GoingAway) => "Going away",
            (Side::Client, Kind::Timeout) => "Client silent",
            (Side::Target, _) => "Target error",
            _ => "Internal error",
        }
    }

    /// The HTTP status a request failing this way is answered with, before any upgrade.
    pub fn status(&self) -> u16 {
        match (self.side, self.kind) {
            (Side::Client, Kind::BadRequest | Kind::Protocol(_)) => 400,
            (Side::Client, Kind::Timeout) => 408,
            (Side::Client, Kind::NotFound) => 404,
            (Side::Client, Kind::Unauthorized(_)) => 401,
            (Side::Client, Kind::Forbidden) => 403,
            (_, Kind::Unavailable | Kind::Limited(_)) => 503,
            (_, Kind::BadAnswer) => 502,
            (Side::Target, Kind::Timeout) => 504,
            (Side::Target, _) => 502,
            _ => 500,
        }
    }

    /// The `WWW-Authenticate` challenge a refusal carries (a 401's), if any.
    pub fn challenge(&self) -> Option<&'static str> {
        match (self.side, self.kind) {
            (Side::Client, Kind::Unauthorized(challenge)) => Some(challenge),
            _ => None,
        }
    }

    /// How loudly this failure is logged. A client that goes away is routine; a client that
    /// misbehaves is worth a line; a target that fails is the operator's business; our own
    /// failures are errors.
    pub fn level(&self) -> Level {
        match (self.side, self.kind) {
            (Side::Client, Kind::Closed | Kind::Timeout) => Level::Debug,
            (_, Kind::GoingAway) => Level::Info,
            // A flood over its rate would otherwise write a line per attempt; the operator
            // wants to hear of a full server.
            (_, Kind::Limited(Limit::Rate)) => Level::Debug,
            (_, Kind::Limited(Limit::Connections | Limit::Clients)) => Level::Warn,
            (Side::Client, _) => Level::Info,
            (Side::Target, Kind::Closed) => Level::Info,
            (Side::Target, _) => Level::Warn,
            (Side::Internal, _) => Level::Error,
        }
    }

    /// A stable `side_kind` label for logs and metrics, e.g. `target_connect`.
    pub fn label(&self) -> String {
        format!("{}_{}", self.side.as_str(), self.kind.as_str())
    }
}

impl From<Violation> for Error {
    fn from(v: Violation) -> Self {
        Error::new(Side::Client, Kind::Protocol(v.code), v.reason)
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

/// Why the process cannot start: the whole message for the user (one line naming the flag or
/// file, or the help text that was asked for) and the exit status. Every start-up failure
/// becomes one of these, and `main` has one way out for all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartError {
    pub message: String,
    /// 0 after help, 2 for a usage error (as optparse), 1 otherwise.
    pub code: u8,
}

impl StartError {
    /// A failure to start (exit status 1); `message` is prefixed with the program's name.
    pub fn new(message: impl fmt::Display) -> Self {
        StartError {
            message: format!("websockify: {message}"),
            code: 1,
        }
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StartError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_ending_has_one_close_code_and_reason() {
        let closed = Error::target_closed();
        assert_eq!(
            (closed.close_code(), closed.close_reason()),
            (1000, "Target closed")
        );
        let refused = Error::connect(io::ErrorKind::ConnectionRefused.into());
        assert_eq!(
            (refused.close_code(), refused.close_reason()),
            (1011, "Target error")
        );
        let violation = Error::from(Violation::new(1007, "text message is not UTF-8"));
        assert_eq!(
            (violation.close_code(), violation.close_reason()),
            (1007, "text message is not UTF-8")
        );
        let away = Error::going_away();
        assert_eq!(
            (away.close_code(), away.close_reason()),
            (1001, "Going away")
        );
        assert_eq!(away.level(), Level::Info);
        let silent = Error::new(Side::Client, Kind::Timeout, "x");
        assert_eq!(
            (silent.close_code(), silent.close_reason()),
            (1001, "Client silent")
        );
        let ours = Error::new(Side::Internal, Kind::Io, "x");
        assert_eq!(
            (ours.close_code(), ours.close_reason()),
            (1011, "Internal error")
        );
    }

    #[test]
    fn refusals_get_their_http_status_from_side_and_kind() {
        assert_eq!(
            Error::new(Side::Client, Kind::BadRequest, "x").status(),
            400
        );
        assert_eq!(
            Error::connect(io::ErrorKind::ConnectionRefused.into()).status(),
            502
        );
        assert_eq!(Error::connect(io::ErrorKind::NotFound.into()).status(), 502);
        assert_eq!(Error::connect(io::ErrorKind::TimedOut.into()).status(), 504);
        assert_eq!(Error::new(Side::Internal, Kind::Io, "x").status(), 500);
        assert_eq!(Error::new(Side::Client, Kind::NotFound, "x").status(), 404);
        assert_eq!(Error::new(Side::Client, Kind::Forbidden, "x").status(), 403);
        assert_eq!(
            Error::new(Side::Internal, Kind::Unavailable, "x").status(),
            503
        );
        let unauthorized = Error::new(Side::Client, Kind::Unauthorized("Basic realm=\"x\""), "x");
        assert_eq!(unauthorized.status(), 401);
        assert_eq!(unauthorized.challenge(), Some("Basic realm=\"x\""));
        assert_eq!(unauthorized.label(), "client_unauthorized");
        let forbidden = Error::new(Side::Client, Kind::Forbidden, "x");
        assert_eq!((forbidden.status(), forbidden.challenge()), (403, None));
        assert_eq!(forbidden.level(), Level::Info);
        assert_eq!(
            Error::new(Side::Internal, Kind::BadAnswer, "x").status(),
            502
        );
    }

    #[test]
    fn levels_and_labels() {
        assert_eq!(
            Error::new(Side::Client, Kind::Closed, "x").level(),
            Level::Debug
        );
        assert_eq!(
            Error::new(Side::Client, Kind::BadRequest, "x").level(),
            Level::Info
        );
        let refused = Error::connect(io::ErrorKind::ConnectionRefused.into());
        assert_eq!(refused.level(), Level::Warn);
        assert_eq!(refused.label(), "target_connect");
        assert_eq!(
            Error::new(Side::Internal, Kind::Io, "x").level(),
            Level::Error
        );
    }
    #[test]
    fn each_limit_has_its_label_and_retry_after() {
        let limited = |limit| Error::new(Side::Client, Kind::Limited(limit), "x");
        let seen: Vec<(String, u16, u32)> = [
            Limit::Connections,
            Limit::PerClient,
            Limit::Rate,
            Limit::Clients,
        ]
        .into_iter()
        .map(|limit| {
            let err = limited(limit);
            (err.label(), err.status(), limit.retry_after())
        })
        .collect();
        assert_eq!(
            seen,
            [
                ("client_limit_connections".to_owned(), 503, 5),
                ("client_limit_per_ip".to_owned(), 503, 5),
                ("client_limit_rate".to_owned(), 503, 1),
                ("client_limit_clients".to_owned(), 503, 5),
            ]
        );
    }

    #[test]
    fn io_errors_are_classified_by_kind() {
        let kind = |k: io::ErrorKind| Error::io(Side::Client, "x", k.into()).kind;
        for closed in [
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::ConnectionAborted,
            io::ErrorKind::BrokenPipe,
            io::ErrorKind::UnexpectedEof,
        ] {
            assert_eq!(kind(closed), Kind::Closed, "{closed:?}");
        }
        assert_eq!(kind(io::ErrorKind::TimedOut), Kind::Timeout);
        assert_eq!(kind(io::ErrorKind::PermissionDenied), Kind::Io);
        // A client that timed out mid-request is told 408, and logged quietly.
        let slow = Error::io(
            Side::Client,
            "reading the request",
            io::ErrorKind::TimedOut.into(),
        );
        assert_eq!((slow.status(), slow.level()), (408, Level::Debug));
    }

    #[test]
    fn messages_name_the_side_the_context_and_the_cause() {
        let err = Error::io(
            Side::Target,
            "writing to target",
            io::Error::new(io::ErrorKind::BrokenPipe, "pipe gone"),
        );
        assert_eq!(err.to_string(), "target: writing to target: pipe gone");
        assert_eq!(
            std::error::Error::source(&err).map(|e| e.to_string()),
            Some("pipe gone".to_owned())
        );
        let bare = Error::new(Side::Client, Kind::BadRequest, "not a WebSocket upgrade");
        assert_eq!(bare.to_string(), "client: not a WebSocket upgrade");
        assert!(std::error::Error::source(&bare).is_none());
        let start = StartError::new("--cert: no such file");
        assert_eq!(start.to_string(), "websockify: --cert: no such file");
        assert_eq!(start.code, 1);
    }
}
