//! syslog: `--syslog SERVER`, log lines also sent as syslog datagrams in the reference's
//! format: RFC 5424 (`<PRI>1 TIMESTAMP HOST websockify PID - - MSG`) or, with
//! `--legacy-syslog`, RFC 3164 (`<PRI>websockify[PID]: MSG`), to a local datagram socket
//! (`/dev/log`) or a UDP `host:port`. The socket is non-blocking: a slow or absent server
//! loses lines, never delays the process; a local socket that went away is reconnected on the
//! next line.

use std::fmt;
use std::io::{self, Write};
use std::net::{ToSocketAddrs, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// `--syslog SERVER [--legacy-syslog]`: where log lines go besides stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogConfig {
    pub dest: SyslogDest,
    /// `--legacy-syslog`: RFC 3164 (`<PRI>websockify[PID]: `) instead of RFC 5424.
    pub legacy: bool,
    pub facility: Facility,
}

/// Where syslog messages are sent, as the reference reads `--syslog`: with a colon it is a UDP
/// `host:port`, else a local (datagram) socket path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogDest {
    /// An absolute path (made absolute at start-up, as the reference's `os.path.abspath`).
    Unix(PathBuf),
    /// `host:port` (brackets around an IPv6 host already stripped).
    Udp { host: String, port: u16 },
}

impl SyslogDest {
    /// Reads `--syslog SERVER` as the reference does (the last colon splits host and port).
    pub fn parse(server: &str) -> Result<SyslogDest, &'static str> {
        match server.rsplit_once(':') {
            Some((host, port)) => {
                let port = port
                    .trim()
                    .parse::<u16>()
                    .map_err(|_| "Error parsing syslog port")?;
                let host = host
                    .strip_prefix('[')
                    .and_then(|h| h.strip_suffix(']'))
                    .unwrap_or(host);
                Ok(SyslogDest::Udp {
                    host: host.to_owned(),
                    port,
                })
            }
            None => Ok(SyslogDest::Unix(
                std::path::absolute(server).unwrap_or_else(|_| PathBuf::from(server)),
            )),
        }
    }
}

impl fmt::Display for SyslogDest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyslogDest::Unix(path) => write!(f, "{}", path.display()),
            SyslogDest::Udp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            SyslogDest::Udp { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// The syslog facility: as the reference, `daemon` for a daemon (`-D`), `user` otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Facility {
    User,
    Daemon,
}

impl Facility {
    /// The facility of a process that is (`-D`) or is not a daemon.
    pub fn for_process(daemon: bool) -> Facility {
        if daemon {
            Facility::Daemon
        } else {
            Facility::User
        }
    }

    /// The facility's number (RFC 5424 §6.2.1): PRI is this × 8 + severity.
    pub fn code(self) -> u8 {
        match self {
            Facility::User => 1,
            Facility::Daemon => 3,
        }
    }
}

/// The name messages carry (APP-NAME / TAG), as the reference.
const IDENT: &str = "websockify";

/// What one message's header says besides its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    pub legacy: bool,
    pub facility: Facility,
    /// RFC 5424 severity: 3 error, 4 warning, 6 informational, 7 debug.
    pub severity: u8,
    /// Seconds since the Unix epoch (shown in UTC).
    pub time: u64,
    pub hostname: &'a str,
    pub pid: u32,
}

/// The severity of a tracing level, as Python's `SysLogHandler.mapPriority`.
pub fn severity(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// One datagram: the header, then `text` on one line (newlines become spaces, as the
/// reference); plain ASCII as is, anything else as UTF-8 after a byte-order mark (RFC 5424
/// §6.4, and what the reference sends in both formats).
pub fn format(header: &Header<'_>, text: &str) -> Vec<u8> {
    let pri = u16::from(header.facility.code()) * 8 + u16::from(header.severity);
    let mut out = if header.legacy {
        format!("<{pri}>{IDENT}[{}]: ", header.pid)
    } else {
        let hostname: String = header.hostname.chars().take(255).collect();
        let hostname = if hostname.is_empty() { "-" } else { &hostname };
        format!(
            "<{pri}>1 {} {hostname} {IDENT} {} - - ",
            utc_timestamp(header.time),
            header.pid
        )
    }
    .into_bytes();
    let text = text.trim_end_matches('\n');
    if !text.is_ascii() {
        out.extend_from_slice(b"\xEF\xBB\xBF");
    }
    out.extend(text.bytes().map(|b| if b == b'\n' { b' ' } else { b }));
    out
}

/// `YYYY-MM-DDTHH:MM:SSZ` for `secs` since the epoch (Howard Hinnant's civil-from-days).
pub(super) fn utc_timestamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The socket the lines go to.
#[derive(Debug)]
enum Socket {
    Unix(Option<UnixDatagram>),
    Udp(UdpSocket),
}

fn connect_unix(path: &Path) -> io::Result<UnixDatagram> {
    let socket = UnixDatagram::unbound()?;
    socket.connect(path)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// The syslog destination, shared by the log layer's writers.
#[derive(Debug, Clone)]
pub struct Syslog(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    config: SyslogConfig,
    hostname: String,
    socket: Mutex<Socket>,
}

impl Syslog {
    /// Connects to `config.dest` (resolving a UDP host now); the error names what failed.
    pub fn connect(config: &SyslogConfig) -> Result<Syslog, String> {
        let socket = match &config.dest {
            SyslogDest::Unix(path) => Socket::Unix(Some(connect_unix(path).map_err(|err| {
                format!(
                    "cannot connect to the syslog socket {}: {err}",
                    path.display()
                )
            })?)),
            SyslogDest::Udp { host, port } => {
                let addr = (host.as_str(), *port)
                    .to_socket_addrs()
                    .ok()
                    .and_then(|mut addrs| addrs.next())
                    .ok_or_else(|| format!("cannot resolve the syslog host {host}"))?;
                let any: std::net::SocketAddr = if addr.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let udp = UdpSocket::bind(any)
                    .and_then(|s| s.connect(addr).map(|()| s))
                    .and_then(|s| s.set_nonblocking(true).map(|()| s))
                    .map_err(|err| format!("cannot open a UDP socket to {addr}: {err}"))?;
                Socket::Udp(udp)
            }
        };
        let hostname = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        Ok(Syslog(Arc::new(Inner {
            config: config.clone(),
            hostname,
            socket: Mutex::new(socket),
        })))
    }

    /// Sends one line; a failure loses it (after one reconnect of a local socket).
    fn send(&self, severity: u8, text: &str) {
        let inner = &self.0;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let message = format(
            &Header {
                legacy: inner.config.legacy,
                facility: inner.config.facility,
                severity,
                time: now,
                hostname: &inner.hostname,
                // Read per line: a `-D` fork changes it after start-up.
                pid: std::process::id(),
            },
            text,
        );
        let mut socket = inner.socket.lock().unwrap_or_else(PoisonError::into_inner);
        match &mut *socket {
            Socket::Udp(udp) => {
                let _ = udp.send(&message);
            }
            Socket::Unix(unix) => {
                let sent = unix.as_ref().map(|u| u.send(&message));
                let retry = match sent {
                    Some(Ok(_)) => false,
                    // A full receive buffer: the server is slow; losing the line is the bound.
                    Some(Err(err)) if err.kind() == io::ErrorKind::WouldBlock => false,
                    _ => true,
                };
                if retry {
                    if let SyslogDest::Unix(path) = &inner.config.dest {
                        *unix = connect_unix(path).ok();
                        if let Some(u) = unix.as_ref() {
                            let _ = u.send(&message);
                        }
                    }
                }
            }
        }
    }
}

/// One formatted log line on its way to syslog: sent whole when the formatter is done with it.
pub struct Line<'a> {
    sink: &'a Syslog,
    severity: u8,
    buf: Vec<u8>,
}

impl Write for Line<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Line<'_> {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.sink
                .send(self.severity, &String::from_utf8_lossy(&self.buf));
        }
    }
}

impl<'a> MakeWriter<'a> for Syslog {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line {
            sink: self,
            severity: 6,
            buf: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line<'a> {
        Line {
            sink: self,
            severity: severity(meta.level()),
            buf: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(legacy: bool, facility: Facility, severity: u8) -> Header<'static> {
        Header {
            legacy,
            facility,
            severity,
            time: 1_700_000_000,
            hostname: "box",
            pid: 42,
        }
    }

    #[test]
    fn rfc5424_has_the_reference_header_fields() {
        let msg = format(&header(false, Facility::User, 6), "hello\n");
        assert_eq!(
            msg,
            b"<14>1 2023-11-14T22:13:20Z box websockify 42 - - hello".to_vec()
        );
    }

    #[test]
    fn rfc3164_is_tag_and_pid_only() {
        let msg = format(&header(true, Facility::Daemon, 4), "a\nb");
        assert_eq!(msg, b"<28>websockify[42]: a b".to_vec());
    }

    #[test]
    fn non_ascii_text_follows_a_byte_order_mark() {
        let msg = format(&header(true, Facility::User, 3), "caf\u{e9}");
        assert_eq!(msg, b"<11>websockify[42]: \xEF\xBB\xBFcaf\xC3\xA9".to_vec());
    }

    #[test]
    fn the_facility_is_daemon_for_a_daemon_and_user_otherwise() {
        assert_eq!(Facility::for_process(true), Facility::Daemon);
        assert_eq!(Facility::for_process(false), Facility::User);
        assert_eq!(Facility::Daemon.code(), 3);
        assert_eq!(Facility::User.code(), 1);
    }

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_timestamp(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn syslog_servers_are_read_as_the_reference_reads_them() {
        assert_eq!(
            SyslogDest::parse("localhost:514"),
            Ok(SyslogDest::Udp {
                host: "localhost".into(),
                port: 514
            })
        );
        assert_eq!(
            SyslogDest::parse("[::1]:514"),
            Ok(SyslogDest::Udp {
                host: "::1".into(),
                port: 514
            })
        );
        assert_eq!(
            SyslogDest::parse("/dev/log"),
            Ok(SyslogDest::Unix("/dev/log".into()))
        );
        assert!(SyslogDest::parse("host:x").is_err());
    }

    /// Dates either side of the days the civil-from-days arithmetic gets wrong first: the end
    /// of a day, of February in leap and common years (2000 and 2400 leap, 2100 not), of a
    /// year, and far ahead (expected values from Python's `datetime.fromtimestamp(s, UTC)`).
    #[test]
    fn timestamps_are_right_at_every_calendar_edge() {
        for (secs, date) in [
            (86_399, "1970-01-01T23:59:59Z"),
            (86_400, "1970-01-02T00:00:00Z"),
            (68_169_599, "1972-02-28T23:59:59Z"),
            (68_169_600, "1972-02-29T00:00:00Z"),
            (951_868_799, "2000-02-29T23:59:59Z"),
            (951_868_800, "2000-03-01T00:00:00Z"),
            (978_307_199, "2000-12-31T23:59:59Z"),
            (978_307_200, "2001-01-01T00:00:00Z"),
            (1_700_046_861, "2023-11-15T11:14:21Z"),
            (1_709_251_199, "2024-02-29T23:59:59Z"),
            (4_102_444_800, "2100-01-01T00:00:00Z"),
            (4_107_542_399, "2100-02-28T23:59:59Z"),
            (4_107_542_400, "2100-03-01T00:00:00Z"),
            (11_017_555_200, "2319-02-19T00:00:00Z"),
            (13_574_563_200, "2400-02-29T00:00:00Z"),
            (253_402_300_799, "9999-12-31T23:59:59Z"),
        ] {
            assert_eq!(utc_timestamp(secs), date, "{secs}");
        }
    }

    #[test]
    fn severities_are_those_of_pythons_syslog_handler() {
        assert_eq!(severity(&Level::ERROR), 3);
        assert_eq!(severity(&Level::WARN), 4);
        assert_eq!(severity(&Level::INFO), 6);
        assert_eq!(severity(&Level::DEBUG), 7);
        assert_eq!(severity(&Level::TRACE), 7);
    }

    #[test]
    fn destinations_are_shown_as_given_with_an_ipv6_host_in_brackets() {
        for server in ["/dev/log", "localhost:514", "[::1]:514"] {
            assert_eq!(SyslogDest::parse(server).unwrap().to_string(), server);
        }
    }

    /// RFC 5424's HOSTNAME: `-` when unknown, at most 255 characters.
    #[test]
    fn the_hostname_is_a_dash_when_empty_and_cut_at_255_characters() {
        let mut h = header(false, Facility::User, 6);
        h.hostname = "";
        assert_eq!(
            format(&h, "x"),
            b"<14>1 2023-11-14T22:13:20Z - websockify 42 - - x".to_vec()
        );
        let long = "h".repeat(300);
        h.hostname = &long;
        let expected = format!(
            "<14>1 2023-11-14T22:13:20Z {} websockify 42 - - x",
            &long[..255]
        );
        assert_eq!(format(&h, "x"), expected.into_bytes());
    }

    /// A real local socket: each formatted line is one datagram with its level's severity,
    /// an empty line none; a socket that went away and came back gets the next line.
    #[test]
    fn lines_reach_a_local_socket_one_datagram_each_and_after_it_came_back() {
        use tracing_subscriber::fmt::MakeWriter;
        let dir = std::env::temp_dir().join(format!("websockify-syslog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        let bind = || {
            let server = UnixDatagram::bind(&path).unwrap();
            server
                .set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            server
        };
        let received = |server: &UnixDatagram| {
            let mut buf = [0u8; 1024];
            let n = server.recv(&mut buf).unwrap();
            String::from_utf8(buf[..n].to_vec()).unwrap()
        };
        let server = bind();
        let syslog = Syslog::connect(&SyslogConfig {
            dest: SyslogDest::Unix(path.clone()),
            legacy: true,
            facility: Facility::Daemon,
        })
        .unwrap();
        let pid = std::process::id();
        drop(syslog.make_writer());
        let mut line = syslog.make_writer();
        line.write_all(b"in ").unwrap();
        line.write_all(b"two writes\n").unwrap();
        line.flush().unwrap();
        drop(line);
        assert_eq!(
            received(&server),
            format!("<30>websockify[{pid}]: in two writes")
        );
        let subscriber = tracing_subscriber::fmt()
            .with_writer(syslog.clone())
            .without_time()
            .with_ansi(false)
            .with_target(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || tracing::warn!("careful"));
        assert_eq!(
            received(&server),
            format!("<28>websockify[{pid}]:  WARN careful")
        );

        // syslogd restarts: the socket file is replaced by a new one.
        drop(server);
        std::fs::remove_file(&path).unwrap();
        let server = bind();
        let mut line = syslog.make_writer();
        line.write_all(b"found again").unwrap();
        drop(line);
        assert_eq!(
            received(&server),
            format!("<30>websockify[{pid}]: found again")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A server that stops reading loses lines once our socket's send buffer is full: the
    /// line is dropped, not sent again on a new socket, which would queue around that bound
    /// (the server's queue takes `net.unix.max_dgram_qlen` datagrams, whoever sends them) and
    /// cost a reconnect per line while syslog is stuck.
    #[test]
    fn a_server_that_does_not_read_gets_no_more_than_one_send_buffer() {
        let dir =
            std::env::temp_dir().join(format!("websockify-syslog-full-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        let server = UnixDatagram::bind(&path).unwrap();
        let sent = 6;
        let qlen: usize = std::fs::read_to_string("/proc/sys/net/unix/max_dgram_qlen")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            qlen >= sent,
            "net.unix.max_dgram_qlen {qlen}: the test needs {sent}"
        );
        let syslog = Syslog::connect(&SyslogConfig {
            dest: SyslogDest::Unix(path.clone()),
            legacy: true,
            facility: Facility::User,
        })
        .unwrap();
        // Lines of half a send buffer: two fill it, the third finds it full.
        let sndbuf = socket2::SockRef::from(&UnixDatagram::unbound().unwrap())
            .send_buffer_size()
            .unwrap();
        let text = "x".repeat(sndbuf / 2 - 64);
        for _ in 0..sent {
            let mut line = syslog.make_writer();
            line.write_all(text.as_bytes()).unwrap();
        }
        server.set_nonblocking(true).unwrap();
        let mut buf = vec![0u8; sndbuf];
        let mut received = 0;
        loop {
            match server.recv(&mut buf) {
                Ok(n) => {
                    assert!(buf[..n].ends_with(text.as_bytes()));
                    received += 1;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) => panic!("recv: {err}"),
            }
        }
        // What one send buffer holds (the kernel checks before it charges a datagram: one
        // past the buffer's size may go), the rest lost.
        assert!(
            (1..=3).contains(&received),
            "{received} of {sent} lines of {} bytes through a send buffer of {sndbuf}",
            text.len()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
