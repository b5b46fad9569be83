//! config: what the command line decided, validated and typed. Plain data that flows down to
//! every room; no room sees raw arguments. Parsing the command line lives in `cli`.

pub mod cli;

pub use crate::observe::log::LogFormat;
pub use crate::observe::syslog::{Facility, SyslogConfig, SyslogDest};

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Where to accept connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// `[source_addr:]source_port`. An empty host means every interface (as the reference).
    Tcp { host: String, port: u16 },
    /// `--unix-listen FILE`, its permission bits from `--unix-listen-mode` (default 0600).
    Unix { path: PathBuf, mode: u32 },
    /// `--inetd`: the listening socket is standard input (inetd's `wait` mode).
    Inetd,
    /// `--systemd`: the listening sockets systemd passed (socket activation, `LISTEN_FDS`).
    Systemd,
}

/// Where each WebSocket is bridged to. Chosen per request, before connecting, so that token
/// plugins can later pick it from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    /// `target_addr:target_port`; host may be a name, an IPv4 or an IPv6 address (brackets
    /// already stripped).
    Tcp { host: String, port: u16 },
    /// `--unix-target FILE`.
    Unix(PathBuf),
    /// A host name the gate resolved and checked against `--target-allow`: connect to these
    /// addresses only, never resolving the name again (a second answer could differ).
    Resolved {
        host: String,
        addrs: Vec<SocketAddr>,
    },
}

impl fmt::Display for TargetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetSpec::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            TargetSpec::Tcp { host, port } => write!(f, "{host}:{port}"),
            TargetSpec::Unix(path) => write!(f, "unix:{}", path.display()),
            TargetSpec::Resolved { host, addrs } => {
                let port = addrs.first().map_or(0, SocketAddr::port);
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                write!(f, "{host}:{port}")
            }
        }
    }
}

/// Where the WebSockets of this server may go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    /// Every request goes to this one target (`target_addr:target_port`, `--unix-target`).
    Fixed(TargetSpec),
    /// A token in each request names its target (`--token-plugin`, `--target-config`).
    Tokens(TokenConfig),
}

/// `--token-plugin NAME --token-source ARG [--host-token]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenConfig {
    /// The plugin's name as given: bare (`TokenFile`) or dotted
    /// (`websockify.token_plugins.TokenFile`).
    pub plugin: String,
    /// `--token-source`, as given (None when absent or empty).
    pub source: Option<String>,
    /// `--host-token`: the token is the Host header (without its port), not `?token=`.
    pub host_token: bool,
}

/// `--auth-plugin NAME --auth-source ARG`: who may use the proxy, checked before the 101.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// The plugin's name as given: bare (`BasicHTTPAuth`) or dotted
    /// (`websockify.auth_plugins.BasicHTTPAuth`).
    pub plugin: String,
    /// `--auth-source`, as given (None when absent or empty). May hold a password: never
    /// printed, not even by `Debug`.
    pub source: Option<String>,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("plugin", &self.plugin)
            .field("source", &self.source.as_ref().map(|_| "REDACTED"))
            .finish()
    }
}

/// One entry of `--target-allow`: where token sources may send connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowEntry {
    /// An address block: `addr` with the bits past `prefix` zero (a single address is /32 or
    /// /128; an IPv4-mapped IPv6 block is stored as IPv4).
    Net { addr: IpAddr, prefix: u8 },
    /// `unix:/path`: a Unix socket at this path or under it, by components (absolute;
    /// canonical when it exists at start-up).
    Unix(PathBuf),
}

impl AllowEntry {
    /// Reads one entry (`10.0.0.0/8`, `192.0.2.7`, `fd00::/8`, `::1`, `unix:/run/vnc`); the
    /// error says why. Host bits past the prefix are dropped (`10.1.2.3/8` is `10.0.0.0/8`).
    pub fn parse(entry: &str) -> Result<AllowEntry, &'static str> {
        if let Some(path) = entry.strip_prefix("unix:") {
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err("a unix: entry needs an absolute path");
            }
            return Ok(AllowEntry::Unix(
                std::fs::canonicalize(&path).unwrap_or(path),
            ));
        }
        let (addr, prefix) = match entry.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (entry, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| "not an IPv4 or IPv6 address, CIDR block or unix:/path")?;
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= bits)
                .ok_or(if bits == 32 {
                    "an IPv4 prefix length is 0-32"
                } else {
                    "an IPv6 prefix length is 0-128"
                })?,
            Some(_) => return Err("the prefix length is not a number"),
        };
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), prefix - 96),
                None => (addr, prefix),
            },
            other => (other, prefix),
        };
        Ok(AllowEntry::Net {
            addr: mask(addr, prefix),
            prefix,
        })
    }

    /// Whether `ip` (IPv4-mapped IPv6 addresses count as IPv4) is in this entry.
    pub fn contains_ip(&self, ip: IpAddr) -> bool {
        match self {
            AllowEntry::Net { addr, prefix } => {
                let ip = ip.to_canonical();
                ip.is_ipv4() == addr.is_ipv4() && mask(ip, *prefix) == *addr
            }
            AllowEntry::Unix(_) => false,
        }
    }

    /// Whether the canonical `path` is this entry's path or under it, by components.
    pub fn contains_path(&self, path: &std::path::Path) -> bool {
        match self {
            AllowEntry::Unix(prefix) => path.starts_with(prefix),
            AllowEntry::Net { .. } => false,
        }
    }
}

/// `addr` with the bits past `prefix` cleared.
fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let keep = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & keep).into())
        }
        IpAddr::V6(v6) => {
            let keep = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & keep).into())
        }
    }
}

impl fmt::Display for AllowEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllowEntry::Net { addr, prefix } => write!(f, "{addr}/{prefix}"),
            AllowEntry::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// `--ssl-version`: the minimum TLS version accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMinVersion {
    /// `default`: TLS 1.2 (rustls speaks TLS 1.2 and 1.3 only; `tlsv1_1` is refused at
    /// start-up).
    #[default]
    Default,
    Tls12,
    Tls13,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub listen: Listen,
    pub target: Targets,
    /// `-6/--prefer-ipv6`: prefer IPv6 when resolving source_addr (and `::` for "all").
    pub prefer_ipv6: bool,
    /// `-v/--verbose`.
    pub verbose: bool,
    /// `--cert`, or the reference's default `self.pem`.
    pub cert: PathBuf,
    /// Whether `--cert` named `cert`: then it must exist. The default `self.pem` may be missing
    /// (the server then serves plain clients only, and names no file it was never given).
    pub cert_given: bool,
    /// `--key`, when the key is not in the certificate file.
    pub key: Option<PathBuf>,
    /// `--key-password`: decrypts an encrypted PKCS#8 key (`ENCRYPTED PRIVATE KEY`).
    pub key_password: Option<String>,
    /// `--ssl-only`: drop clients that do not start with a TLS handshake.
    pub ssl_only: bool,
    pub ssl_min_version: TlsMinVersion,
    /// `--ssl-ciphers`: the suite names as given (checked by `tls` at start-up).
    pub ssl_ciphers: Option<String>,
    /// `--verify-client`: TLS clients must present a certificate issued by a CA of `cafile`
    /// (or of the system's store when `cafile` is `None`).
    pub verify_client: bool,
    /// `--cafile`: the CAs trusted for client certificates (used only with `verify_client`).
    pub cafile: Option<PathBuf>,
    /// `--ssl-target`: speak TLS to the (TCP) target, verifying its certificate for its host.
    pub ssl_target: bool,
    /// `--target-cafile`: the CAs trusted for the target's certificate instead of the system's.
    pub target_cafile: Option<PathBuf>,
    /// `--target-insecure`: do not verify the target's certificate.
    pub target_insecure: bool,
    /// `--run-once`: serve one WebSocket session, then exit.
    pub run_once: bool,
    /// `--timeout N`: stop accepting N seconds after start (None for 0 / absent).
    pub timeout: Option<Duration>,
    /// `--idle-timeout N`: exit after N seconds with no active connection (None for 0 / absent).
    pub idle_timeout: Option<Duration>,
    /// `--heartbeat N`: ping every WebSocket client every N seconds; one silent for two
    /// intervals is closed (None for 0 / absent).
    pub heartbeat: Option<Duration>,
    /// `--drain-timeout N`: how long sessions get to close after SIGTERM/SIGINT before the
    /// rest are dropped.
    pub drain_timeout: Duration,
    /// `--drain-grace N`: after SIGTERM/SIGINT, keep accepting (while `/healthz` says 503) for
    /// N seconds before the drain, so a load balancer's health check takes the instance out
    /// before its port closes (zero: close at once).
    pub drain_grace: Duration,
    /// `--web DIR`: serve static files from DIR on the same port. The command line makes it an
    /// absolute, canonical path of an existing directory at start-up (so a later chdir does not
    /// matter).
    pub web: Option<PathBuf>,
    /// `--file-only`: no directory listings (404 instead).
    pub file_only: bool,
    /// `--auth-plugin`/`--auth-source`: the auth plugin every WebSocket must pass.
    pub auth: Option<AuthConfig>,
    /// `--web-auth`: the auth plugin guards the `--web` files too.
    pub web_auth: bool,
    /// Time a client gets to send its first byte, to finish the TLS handshake, and to send a
    /// whole request head, each. Not a command-line option (the reference has a fixed one);
    /// tests shorten it.
    pub handshake_timeout: Duration,
    /// How long a response (a `--web` download, an error page) may wait on a client that reads
    /// nothing before the connection is dropped, as nginx's `send_timeout`. Only writes that
    /// cannot proceed are timed: an idle keep-alive connection is not, nor a WebSocket session.
    /// Not a command-line option; tests shorten it.
    pub send_timeout: Duration,
    /// `--target-allow`: the only places a token source may send connections (empty: anywhere).
    /// A fixed target is the operator's own choice and is not checked.
    pub target_allow: Vec<AllowEntry>,
    /// `-D/--daemon`: detach once every start-up check has passed.
    pub daemon: bool,
    /// `-- PROGRAM ARGS`: the program to run and proxy to. `target` is then its loopback port,
    /// filled in at start-up when the port is picked.
    pub wrap: Option<Wrap>,
    /// `--record FILE`: each session's traffic to `FILE.<connection number>` (absolute).
    pub record: Option<PathBuf>,
    /// `--traffic`: the reference's per-frame symbols on stdout.
    pub traffic: bool,
    /// `--log-file FILE`: log lines appended there too (absolute; reopened on SIGUSR1).
    pub log_file: Option<PathBuf>,
    /// `--syslog SERVER`: log lines sent there too.
    pub syslog: Option<SyslogConfig>,
    /// `--log-format`: human text (the default) or one JSON object a line.
    pub log_format: LogFormat,
    /// `--metrics-listen ADDR`: where Prometheus metrics and `/healthz` are served.
    pub metrics_listen: Option<String>,
    /// `--proxy-protocol`: peers in these networks must send a PROXY header first (empty: no
    /// header is read from anyone).
    pub proxy_protocol: Vec<AllowEntry>,
    /// `--trusted-proxies`: peers in these networks may name the client in `X-Forwarded-For` or
    /// `Forwarded` (empty: those headers are ignored).
    pub trusted_proxies: Vec<AllowEntry>,
    /// `--target-proxy-protocol`: the PROXY header each target connection starts with.
    pub target_proxy_protocol: Option<ProxyVersion>,
    /// `--max-connections`: connections served at once, all clients together.
    pub max_connections: Option<usize>,
    /// `--max-connections-per-ip`: connections served at once per client address.
    pub max_connections_per_ip: Option<u32>,
    /// `--handshake-rate`: connections a client address may begin per second (and burst).
    pub handshake_rate: Option<u32>,
}

pub use crate::proxy_header::Version as ProxyVersion;

/// A wrapped program (`websockify PORT -- PROGRAM ARGS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wrap {
    /// The program and its arguments.
    pub command: Vec<String>,
    /// The port the program binds, moved to loopback by the rebind shim: the listen port, or
    /// with `--unix-listen` the port given before `--`.
    pub port: u16,
    pub mode: WrapMode,
}

pub use cli::WrapMode;

/// The certificate file used when `--cert` is not given (the reference's default).
pub const DEFAULT_CERT: &str = "self.pem";

/// The default `handshake_timeout`: generous for a slow mobile link, short enough that
/// connections that never speak do not pile up.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The default `drain_timeout`: a close handshake takes one round trip, so a few seconds let
/// every live client see its 1001 while a stop (systemd's default stop timeout is 90 s) stays
/// quick.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The default `send_timeout`. A write stalls only once the kernel's send buffer (up to a few
/// MiB) is full and the client's window is shut, so any client still reading, however slowly,
/// makes progress well within it; 30 s of none means the client is gone or never meant to read.
/// Half nginx's 60 s: a stalled download holds a file descriptor and a chunk of memory, and a
/// real browser retries a dropped download with a range request anyway.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(30);

impl Settings {
    /// Settings for a plain proxy from `listen` to `target`, everything else at the reference's
    /// defaults. Handy for tests and for using the library directly.
    pub fn new(listen: Listen, target: TargetSpec) -> Self {
        Settings {
            listen,
            target: Targets::Fixed(target),
            prefer_ipv6: false,
            verbose: false,
            cert: PathBuf::from(DEFAULT_CERT),
            cert_given: false,
            key: None,
            key_password: None,
            ssl_only: false,
            ssl_min_version: TlsMinVersion::Default,
            ssl_ciphers: None,
            verify_client: false,
            cafile: None,
            ssl_target: false,
            target_cafile: None,
            target_insecure: false,
            run_once: false,
            timeout: None,
            idle_timeout: None,
            heartbeat: None,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            drain_grace: Duration::ZERO,
            web: None,
            file_only: false,
            auth: None,
            web_auth: false,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            send_timeout: DEFAULT_SEND_TIMEOUT,
            target_allow: Vec::new(),
            daemon: false,
            wrap: None,
            record: None,
            traffic: false,
            log_file: None,
            syslog: None,
            log_format: LogFormat::Human,
            metrics_listen: None,
            proxy_protocol: Vec::new(),
            trusted_proxies: Vec::new(),
            target_proxy_protocol: None,
            max_connections: None,
            max_connections_per_ip: None,
            handshake_rate: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(entry: &str) -> (String, u8) {
        match AllowEntry::parse(entry) {
            Ok(AllowEntry::Net { addr, prefix }) => (addr.to_string(), prefix),
            other => panic!("{entry}: {other:?}"),
        }
    }

    #[test]
    fn allow_entries_parse_to_their_block() {
        assert_eq!(net("10.1.2.3/8"), ("10.0.0.0".into(), 8));
        assert_eq!(net("192.0.2.7"), ("192.0.2.7".into(), 32));
        assert_eq!(net("10.1.2.3/0"), ("0.0.0.0".into(), 0));
        assert_eq!(net("fd00::1/8"), ("fd00::".into(), 8));
        assert_eq!(net("::1"), ("::1".into(), 128));
        // An IPv4-mapped block is stored as IPv4; an unmapped one past /96 stays IPv6.
        assert_eq!(net("::ffff:10.1.2.3/104"), ("10.0.0.0".into(), 8));
        assert_eq!(net("::ffff:0:0/80"), ("::".into(), 80));
        assert_eq!(net("2001:db8::1:2/112"), ("2001:db8::1:0".into(), 112));
        assert_eq!(
            AllowEntry::parse("10.1.2.3/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
    }

    #[test]
    fn allow_entry_errors_say_why() {
        let err = |e| AllowEntry::parse(e).unwrap_err();
        assert_eq!(err("10.0.0.0/33"), "an IPv4 prefix length is 0-32");
        assert_eq!(err("::/129"), "an IPv6 prefix length is 0-128");
        assert_eq!(err("10.0.0.0/"), "the prefix length is not a number");
        assert_eq!(err("10.0.0.0/+8"), "the prefix length is not a number");
        assert_eq!(err("10.0.0.0/x"), "the prefix length is not a number");
        assert!(err("example.com").starts_with("not an IPv4 or IPv6 address"));
        assert_eq!(err("unix:run/vnc"), "a unix: entry needs an absolute path");
        let path = "/nonexistent/websockify-test/vnc";
        assert_eq!(
            AllowEntry::parse(&format!("unix:{path}")),
            Ok(AllowEntry::Unix(PathBuf::from(path)))
        );
    }

    #[test]
    fn allow_entries_contain_what_they_should() {
        let v4 = AllowEntry::parse("10.0.0.0/8").unwrap();
        assert!(v4.contains_ip("10.255.0.1".parse().unwrap()));
        assert!(v4.contains_ip("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!v4.contains_ip("11.0.0.1".parse().unwrap()));
        assert!(!v4.contains_path(std::path::Path::new("/run")));
        let v6 = AllowEntry::parse("fd00::/8").unwrap();
        assert!(v6.contains_ip("fd12::1".parse().unwrap()));
        assert!(!v6.contains_ip("fe80::1".parse().unwrap()));
        assert!(!v6.contains_ip("10.0.0.1".parse().unwrap()));
        let all6 = AllowEntry::parse("::/0").unwrap();
        assert!(!all6.contains_ip("10.0.0.1".parse().unwrap()));
        let unix = AllowEntry::Unix(PathBuf::from("/run/vnc"));
        assert!(unix.contains_path(std::path::Path::new("/run/vnc/a.sock")));
        assert!(!unix.contains_path(std::path::Path::new("/run/vncx")));
        assert!(!unix.contains_ip("10.0.0.1".parse().unwrap()));
        assert_eq!(unix.to_string(), "unix:/run/vnc");
    }

    #[test]
    fn targets_display_as_the_reference_logs_them() {
        let tcp = |host: &str| TargetSpec::Tcp {
            host: host.into(),
            port: 5900,
        };
        assert_eq!(tcp("vnc.example").to_string(), "vnc.example:5900");
        assert_eq!(tcp("::1").to_string(), "[::1]:5900");
        assert_eq!(
            TargetSpec::Unix(PathBuf::from("/run/vnc.sock")).to_string(),
            "unix:/run/vnc.sock"
        );
        let resolved = |host: &str, addrs: Vec<SocketAddr>| TargetSpec::Resolved {
            host: host.into(),
            addrs,
        };
        let addr: SocketAddr = "[::1]:5901".parse().unwrap();
        assert_eq!(resolved("::1", vec![addr]).to_string(), "[::1]:5901");
        assert_eq!(
            resolved("localhost", vec![addr]).to_string(),
            "localhost:5901"
        );
        assert_eq!(resolved("localhost", vec![]).to_string(), "localhost:0");
    }

    #[test]
    fn auth_source_never_printed() {
        let auth = AuthConfig {
            plugin: "BasicHTTPAuth".into(),
            source: Some("user:s3cret".into()),
        };
        let debug = format!("{auth:?}");
        assert!(
            debug.contains("BasicHTTPAuth") && debug.contains("REDACTED"),
            "{debug}"
        );
        assert!(!debug.contains("s3cret"), "{debug}");
    }
}
