//! cli: the reference's command line, parsed with clap into `Settings`.
//!
//! Three stages, in the reference's order, so that error messages match it:
//! 1. clap reads every option of the reference into [`Cli`] (optparse spellings: `--opt=value`,
//!    `--opt value`, unique prefixes, options mixed with positionals);
//! 2. [`Cli::validate`] applies the reference's cross-option rules;
//! 3. [`Cli::positionals`] reads source, target and wrapped command like the reference.
//!
//! Then everything becomes [`Settings`]: every option of the reference is implemented.

use std::ffi::{OsStr, OsString};
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::builder::{OsStringValueParser, TypedValueParser};
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, Parser, ValueEnum};

use super::{
    AllowEntry, AuthConfig, Facility, Listen, Settings, SyslogConfig, SyslogDest, TargetSpec,
    Targets, TlsMinVersion, TokenConfig,
};

/// Why parsing stopped. main.rs prints it (help on stdout, errors on stderr) and exits with
/// [`CliError::exit_code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CliError {
    /// `-h/--help` was asked for: the text to show, then exit successfully.
    #[error("{0}")]
    Help(String),
    /// Bad command line: the complete message to print (starts with `error: `). Shown after
    /// the usage forms when it is [`TOO_FEW`].
    #[error("{}", with_usage(.0))]
    Usage(String),
}

impl CliError {
    /// The process exit status, as optparse: 0 after help, 2 for a usage error.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Help(_) => 0,
            CliError::Usage(_) => 2,
        }
    }

    /// One of our own errors, formatted like clap's so every error looks alike.
    fn usage(msg: impl Display) -> Self {
        CliError::Usage(format!("error: {msg}"))
    }

    fn from_clap(err: clap::Error) -> Self {
        match err.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                CliError::Help(err.render().to_string())
            }
            _ => match unknown_option(&err) {
                Some(msg) => CliError::usage(msg),
                None => CliError::Usage(err.render().to_string().trim_end().to_owned()),
            },
        }
    }
}

/// The error for a command line without its source or target.
const TOO_FEW: &str = "error: Too few arguments";

/// As optparse does, "Too few arguments" comes after the usage forms: whoever runs
/// `websockify` bare, or with the port alone, is told what the command line looks like. Other
/// errors name their problem and stay one line.
fn with_usage(msg: &str) -> std::borrow::Cow<'_, str> {
    if msg == TOO_FEW {
        format!("Usage: {USAGE}\n\n{msg}").into()
    } else {
        msg.into()
    }
}

impl From<CliError> for crate::error::StartError {
    fn from(err: CliError) -> Self {
        crate::error::StartError {
            code: err.exit_code() as u8,
            message: err.to_string(),
        }
    }
}

/// Rewords clap's unknown-option error the way optparse does. clap reports an ambiguous
/// abbreviation (`--ssl`) as unknown with a tip naming one candidate, and suggests `-- --opt`,
/// which here would start a wrapped command; optparse lists every candidate instead.
fn unknown_option(err: &clap::Error) -> Option<String> {
    if err.kind() != ErrorKind::UnknownArgument {
        return None;
    }
    let Some(ContextValue::String(arg)) = err.get(ContextKind::InvalidArg) else {
        return None;
    };
    let Some(prefix) = arg.strip_prefix("--").and_then(|a| a.split('=').next()) else {
        return Some(format!("no such option: {arg}"));
    };
    let cmd = Cli::command();
    let mut candidates: Vec<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_long())
        .filter(|long| !prefix.is_empty() && long.starts_with(prefix))
        .map(|long| format!("--{long}"))
        .collect();
    candidates.sort();
    if candidates.len() > 1 {
        return Some(format!(
            "ambiguous option: --{prefix} ({}?)",
            candidates.join(", ")
        ));
    }
    match err.get(ContextKind::SuggestedArg) {
        Some(ContextValue::String(similar)) => Some(format!(
            "no such option: --{prefix} (did you mean {similar}?)"
        )),
        _ => Some(format!("no such option: --{prefix}")),
    }
}

/// The reference's long options. optparse takes any unique prefix of them, so a command line
/// written for the reference may say `--sys` for `--syslog`, or `--log` for `--log-file`.
const REFERENCE_OPTIONS: &[&str] = &[
    "help",
    "verbose",
    "traffic",
    "record",
    "daemon",
    "run-once",
    "timeout",
    "idle-timeout",
    "cert",
    "key",
    "key-password",
    "ssl-only",
    "ssl-target",
    "verify-client",
    "cafile",
    "ssl-version",
    "ssl-ciphers",
    "unix-listen",
    "unix-listen-mode",
    "unix-target",
    "inetd",
    "web",
    "web-auth",
    "wrap-mode",
    "prefer-ipv6",
    "libserver",
    "target-config",
    "token-plugin",
    "token-source",
    "host-token",
    "auth-plugin",
    "auth-source",
    "heartbeat",
    "log-file",
    "syslog",
    "legacy-syslog",
    "file-only",
];

/// A prefix that names one of the reference's options, but that our own options (`--systemd`,
/// `--log-format`, ...) made ambiguous, is spelled out as the reference's option: a command line
/// means here what it meant to the reference. Option values (the word after an option that
/// takes one) and everything after `--` are left alone.
fn prefer_the_reference(cmd: &clap::Command, args: Vec<OsString>) -> Vec<OsString> {
    let takes_value = |long: &str| {
        cmd.get_arguments()
            .find(|a| a.get_long() == Some(long))
            .is_some_and(|a| a.get_action().takes_values())
    };
    let mut value_next = false;
    let mut out = Vec::with_capacity(args.len());
    let mut args = args.into_iter();
    if let Some(program) = args.next() {
        out.push(program);
    }
    for arg in args.by_ref() {
        let Some(word) = arg.to_str().filter(|_| !value_next) else {
            value_next = false;
            out.push(arg);
            continue;
        };
        if word == "--" {
            out.push(arg);
            break;
        }
        let Some((name, value)) = word
            .strip_prefix("--")
            .map(|rest| rest.split_once('=').unwrap_or((rest, "")))
        else {
            out.push(arg);
            continue;
        };
        let ours: Vec<&str> = cmd
            .get_arguments()
            .filter_map(|a| a.get_long())
            .filter(|long| long.starts_with(name))
            .collect();
        let exact = ours.contains(&name);
        let theirs: Vec<&&str> = REFERENCE_OPTIONS
            .iter()
            .filter(|long| long.starts_with(name))
            .collect();
        let long = match (exact, ours.len(), theirs.as_slice()) {
            (false, 2.., [one]) => **one,
            (true, _, _) => name,
            (false, 1, _) => ours[0],
            _ => {
                out.push(arg);
                continue;
            }
        };
        value_next = !word.contains('=') && takes_value(long);
        if long == name {
            out.push(arg);
        } else if word.contains('=') {
            out.push(format!("--{long}={value}").into());
        } else {
            out.push(format!("--{long}").into());
        }
    }
    out.extend(args);
    out
}

/// `--ssl-version`: the minimum TLS version, spelled as the reference spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum SslVersion {
    #[default]
    #[value(name = "default")]
    Default,
    #[value(name = "tlsv1_1")]
    Tlsv1_1,
    #[value(name = "tlsv1_2")]
    Tlsv1_2,
    #[value(name = "tlsv1_3")]
    Tlsv1_3,
}

impl SslVersion {
    /// The minimum version rustls can honour. rustls speaks TLS 1.2 and 1.3 only: asking for
    /// TLS 1.1 is refused at start-up rather than quietly raised to 1.2, so that nobody
    /// believes old clients will be served.
    fn min_version(self) -> Result<TlsMinVersion, CliError> {
        match self {
            SslVersion::Default => Ok(TlsMinVersion::Default),
            SslVersion::Tlsv1_1 => Err(CliError::usage(
                "--ssl-version tlsv1_1: TLS 1.1 is not supported (rustls speaks TLS 1.2 and \
                 1.3); use tlsv1_2 or default",
            )),
            SslVersion::Tlsv1_2 => Ok(TlsMinVersion::Tls12),
            SslVersion::Tlsv1_3 => Ok(TlsMinVersion::Tls13),
        }
    }
}

/// `--wrap-mode`: what to do when the wrapped program exits.
/// `--target-proxy-protocol`: which PROXY header the target gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProxyVersion {
    /// The text header (`PROXY TCP4 ...`)
    V1,
    /// The binary header
    V2,
}

/// `--log-format`: how log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Plain text
    Human,
    /// One JSON object per line (fields: docs/operations.md)
    Json,
}

/// `--handshake-rate`: `N` or `N/s`.
fn parse_rate(arg: &str) -> Result<u32, String> {
    let n = arg.strip_suffix("/s").unwrap_or(arg);
    n.parse()
        .map_err(|_| format!("{arg:?} is not a rate such as 20 or 20/s (connections per second)"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum WrapMode {
    /// Stop serving and exit with the program's status (the default)
    #[default]
    Exit,
    /// Keep serving (for programs that daemonize, such as vncserver)
    Ignore,
    /// Start the program again (at most 3 starts in 10 seconds; a warning when it dies faster)
    Respawn,
}

const USAGE: &str = "\
websockify [options] [source_addr:]source_port target_addr:target_port
       websockify [options] --token-plugin=CLASS [source_addr:]source_port
       websockify [options] --unix-target=FILE [source_addr:]source_port
       websockify [options] [source_addr:]source_port -- WRAP_COMMAND_LINE
       websockify [options] --inetd|--unix-listen=FILE target_addr:target_port
       websockify [options] --unix-listen=FILE PORT -- WRAP_COMMAND_LINE
       websockify [options] --systemd target_addr:target_port";

/// What `--version` prints after the name: the package version and the commit it was built
/// from (build.rs; "unknown" for a build from a tarball that did not say), so that a running
/// binary, an installed package and a bug report can be matched to the source.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("WEBSOCKIFY_COMMIT"),
    ")"
);

/// Every option of the reference (0.13.0), parsed but not yet judged. Options this websockify
/// does not implement yet are kept here too, so the code that implements them finds them parsed.
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(
    name = "websockify",
    about = "WebSocket-to-TCP bridge (drop-in for the Python websockify 0.13.0)",
    override_usage = USAGE,
    infer_long_args = true,
    // optparse lets an option repeat (`-v -v`); the last value wins.
    args_override_self = true,
    // `--version` only (below): optparse would add no `-V`, and `-V` is too close to `-v`.
    version = VERSION,
    disable_version_flag = true,
    max_term_width = 100
)]
pub struct Cli {
    // ---- Listening ----
    /// Listen to unix socket
    #[arg(
        long,
        value_parser = path_value(),
        value_name = "FILE",
        allow_hyphen_values = true,
        help_heading = "Listening"
    )]
    pub unix_listen: Option<PathBuf>,

    /// Specify mode for unix socket, in octal (defaults to 0600)
    #[arg(
        long,
        value_name = "OCTAL",
        allow_hyphen_values = true,
        help_heading = "Listening"
    )]
    pub unix_listen_mode: Option<String>,

    /// Inetd mode, receive listening socket from stdin
    #[arg(long, help_heading = "Listening")]
    pub inetd: bool,

    /// Serve the listening sockets systemd passes (socket activation: LISTEN_FDS, LISTEN_PID,
    /// LISTEN_FDNAMES; every TCP and Unix stream socket passed is served) instead of
    /// source_addr; not with -D. With a wrapped program, give the port it binds before `--`
    /// [not in the reference]
    #[arg(long, help_heading = "Listening")]
    pub systemd: bool,

    /// Prefer IPv6 when resolving source_addr
    #[arg(short = '6', long, help_heading = "Listening")]
    pub prefer_ipv6: bool,

    // ---- TLS ----
    /// SSL certificate file [default: self.pem, if there is one]
    #[arg(
        long,
        value_parser = path_value(),
        value_name = "FILE",
        allow_hyphen_values = true,
        help_heading = "TLS"
    )]
    pub cert: Option<PathBuf>,

    /// SSL key file (if separate from cert)
    #[arg(
        long,
        value_parser = path_value(),
        value_name = "FILE",
        allow_hyphen_values = true,
        help_heading = "TLS"
    )]
    pub key: Option<PathBuf>,

    /// Password of an encrypted PKCS#8 key (BEGIN ENCRYPTED PRIVATE KEY); convert a legacy
    /// encrypted PEM key with `openssl pkcs8 -topk8 -v2 aes-256-cbc`. Visible to other local
    /// users in the process list
    #[arg(
        long,
        value_name = "PASSWORD",
        allow_hyphen_values = true,
        help_heading = "TLS"
    )]
    pub key_password: Option<String>,

    /// Disallow non-encrypted client connections
    #[arg(long, help_heading = "TLS")]
    pub ssl_only: bool,

    /// Connect to SSL target as SSL client: the target's certificate is verified for its host
    /// name against the system's CAs (or --target-cafile)
    #[arg(long, help_heading = "TLS")]
    pub ssl_target: bool,

    /// With --ssl-target: trust the CAs in FILE (PEM) for the target's certificate instead of
    /// the system's (for a private CA or a self-signed target) [not in the reference]
    #[arg(
        long,
        value_parser = path_value(),
        value_name = "FILE",
        allow_hyphen_values = true,
        help_heading = "TLS"
    )]
    pub target_cafile: Option<PathBuf>,

    /// With --ssl-target: do not verify the target's certificate at all (anyone between here
    /// and the target can read and change the traffic; a warning is logged at start-up) [not
    /// in the reference]
    #[arg(long, help_heading = "TLS")]
    pub target_insecure: bool,

    /// Require encrypted client to present a valid certificate (its subject CN is what
    /// ClientCertCNAuth checks). Plain ws:// clients are still served unless --ssl-only
    #[arg(long, help_heading = "TLS")]
    pub verify_client: bool,

    /// File of concatenated certificates of authorities trusted for validating clients (only
    /// effective with --verify-client; a warning otherwise). If omitted, system default list of
    /// CAs is used (/etc/ssl/certs, or SSL_CERT_FILE / SSL_CERT_DIR)
    #[arg(
        long,
        value_parser = path_value(),
        value_name = "FILE",
        allow_hyphen_values = true,
        help_heading = "TLS"
    )]
    pub cafile: Option<PathBuf>,

    /// Minimum TLS version to use (default: TLS 1.2; tlsv1_1 is refused: only TLS 1.2 and
    /// 1.3 are spoken)
    #[arg(
        long,
        value_name = "VERSION",
        value_enum,
        default_value_t = SslVersion::Default,
        allow_hyphen_values = true,
        help_heading = "TLS"
    )]
    pub ssl_version: SslVersion,

    /// Cipher suites allowed, colon-separated, OpenSSL or IANA names: ECDHE-RSA-AES128-GCM-SHA256,
    /// ECDHE-RSA-AES256-GCM-SHA384, ECDHE-RSA-CHACHA20-POLY1305, the same with ECDSA,
    /// TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256. As with
    /// OpenSSL, it restricts TLS 1.2; TLS 1.3 suites stay enabled unless some are named.
    /// Keywords (HIGH, !aNULL) are refused
    #[arg(
        long,
        value_name = "CIPHERS",
        allow_hyphen_values = true,
        help_heading = "TLS"
    )]
    pub ssl_ciphers: Option<String>,

    // ---- Targets and tokens ----
    /// Connect to unix socket target
    #[arg(
        long,
        value_parser = path_value(),
        value_name = "FILE",
        allow_hyphen_values = true,
        help_heading = "Targets and tokens"
    )]
    pub unix_target: Option<PathBuf>,

    /// Configuration file containing valid targets in the form 'token: host:port' or,
    /// alternatively, a directory containing configuration files of this form (DEPRECATED: use
    /// `--token-plugin TokenFile --token-source path/to/token/file` instead)
    #[arg(
        long,
        value_parser = path_value(),
        value_name = "FILE",
        allow_hyphen_values = true,
        help_heading = "Targets and tokens"
    )]
    pub target_config: Option<PathBuf>,

    /// Token plugin, such as TokenFile, to process tokens into host:port pairs
    #[arg(
        long,
        value_name = "CLASS",
        allow_hyphen_values = true,
        help_heading = "Targets and tokens"
    )]
    pub token_plugin: Option<String>,

    /// An argument to be passed to the token plugin on instantiation
    #[arg(
        long,
        value_name = "ARG",
        allow_hyphen_values = true,
        help_heading = "Targets and tokens"
    )]
    pub token_source: Option<String>,

    /// Use the host HTTP header as token instead of the token URL query parameter
    #[arg(long, help_heading = "Targets and tokens")]
    pub host_token: bool,

    /// Only let token plugins send connections to these targets (not in the reference): IPv4
    /// or IPv6 addresses or CIDR blocks, and unix:/path for Unix sockets at or under a path.
    /// Comma-separated or repeated. A host name is resolved and every address it has must be
    /// allowed; the connection goes to those checked addresses. Other targets are refused with
    /// 403. A fixed target (target_addr:target_port, --unix-target) is not checked
    #[arg(
        long,
        value_name = "CIDR,...",
        value_delimiter = ',',
        action = clap::ArgAction::Append,
        help_heading = "Targets and tokens"
    )]
    pub target_allow: Vec<String>,

    /// Send a ping to the client every INTERVAL seconds (0: never); a client that sends
    /// nothing at all (no pong, no data) for two intervals is closed with 1001, at the next
    /// ping time (so within three intervals of its last byte)
    #[arg(
        long,
        value_name = "INTERVAL",
        default_value_t = 0,
        allow_hyphen_values = true,
        hide_default_value = true,
        help_heading = "Process"
    )]
    pub heartbeat: u64,

    // ---- Authentication ----
    /// Auth plugin deciding whether a connection is allowed: BasicHTTPAuth, ExpectOrigin or
    /// ClientCertCNAuth
    #[arg(
        long,
        value_name = "CLASS",
        allow_hyphen_values = true,
        help_heading = "Authentication"
    )]
    pub auth_plugin: Option<String>,

    /// An argument to be passed to the auth plugin on instantiation: USER:PASSWORD, or the
    /// allowed origins or client-certificate CNs, space-separated
    #[arg(
        long,
        value_name = "ARG",
        allow_hyphen_values = true,
        help_heading = "Authentication"
    )]
    pub auth_source: Option<String>,

    // ---- Web server ----
    /// Run webserver on same port. Serve files from DIR
    #[arg(
        long,
        value_parser = path_value(),
        value_name = "DIR",
        allow_hyphen_values = true,
        help_heading = "Web server"
    )]
    pub web: Option<PathBuf>,

    /// Require authentication to access webserver
    #[arg(long, help_heading = "Web server")]
    pub web_auth: bool,

    /// Disable directory listings in web server
    #[arg(long, help_heading = "Web server")]
    pub file_only: bool,

    // ---- Recording and logging ----
    /// Verbose messages
    #[arg(short = 'v', long, help_heading = "Recording and logging")]
    pub verbose: bool,

    /// Per frame traffic (the reference's symbols, on stdout)
    #[arg(long, help_heading = "Recording and logging")]
    pub traffic: bool,

    #[arg(
        long,
        help = "Record sessions to FILE.[session_number] (noVNC's playback format; mode 0600)",
        value_parser = path_value(),
        value_name = "FILE",
        allow_hyphen_values = true,
        help_heading = "Recording and logging"
    )]
    pub record: Option<PathBuf>,

    /// File where logs will be saved (appended; reopened on SIGUSR1, for logrotate)
    #[arg(
        long,
        value_parser = path_value(),
        value_name = "FILE",
        allow_hyphen_values = true,
        help_heading = "Recording and logging"
    )]
    pub log_file: Option<PathBuf>,

    /// Log to syslog server. SERVER can be local socket, such as /dev/log, or a UDP host:port
    /// pair (RFC 5424; facility daemon with -D, user otherwise)
    #[arg(
        long,
        value_name = "SERVER",
        allow_hyphen_values = true,
        help_heading = "Recording and logging"
    )]
    pub syslog: Option<String>,

    /// Use the old (BSD) syslog protocol instead of RFC 5424
    #[arg(long, help_heading = "Recording and logging")]
    pub legacy_syslog: bool,

    /// How log lines are written to stderr, --log-file and --syslog: human (plain text) or json
    /// (one object per line, with the connection id and the client on every line of a
    /// connection; field names in docs/operations.md)
    #[arg(
        long,
        value_name = "FORMAT",
        value_enum,
        default_value_t = LogFormat::Human,
        help_heading = "Recording and logging"
    )]
    pub log_format: LogFormat,

    /// Serve Prometheus metrics (GET /metrics) and a health check (GET /healthz: 200 while
    /// the listener accepts, 503 once it stopped) on ADDR (HOST:PORT), apart from the proxy
    #[arg(long, value_name = "ADDR", help_heading = "Recording and logging")]
    pub metrics_listen: Option<String>,

    // ---- Process ----
    /// Become a daemon (background process): detach after every start-up check (listening
    /// socket, certificate, token source) has passed, so failures still reach the terminal
    /// and the exit status; then cwd is / (the --web directory with --web) and stdio /dev/null
    #[arg(short = 'D', long, help_heading = "Process")]
    pub daemon: bool,

    /// Handle a single WebSocket connection and exit
    #[arg(long, help_heading = "Process")]
    pub run_once: bool,

    /// After SECONDS seconds exit when not connected (0: never)
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 0,
        allow_hyphen_values = true,
        hide_default_value = true,
        help_heading = "Process"
    )]
    pub timeout: u64,

    /// Server exits after SECONDS seconds if there are no active connections (0: never)
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 0,
        allow_hyphen_values = true,
        hide_default_value = true,
        help_heading = "Process"
    )]
    pub idle_timeout: u64,

    /// On SIGTERM/SIGINT, stop accepting, send every WebSocket client a 1001 "Going away"
    /// close and shut its target down, wait up to SECONDS for the sessions to end, then drop
    /// the rest and exit 0. A second signal ends at once. SIGHUP reloads the certificate and
    /// the token and auth sources
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 5,
        allow_hyphen_values = true,
        help_heading = "Process"
    )]
    pub drain_timeout: u64,

    /// On SIGTERM/SIGINT, first keep accepting for SECONDS while /healthz (--metrics-listen)
    /// already answers 503, so that a load balancer checking it stops sending new clients
    /// before the port closes; then drain as --drain-timeout says. A second signal ends the
    /// grace at once [default: 0]
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 0,
        allow_hyphen_values = true,
        hide_default_value = true,
        help_heading = "Process"
    )]
    pub drain_grace: u64,

    /// Action to take when the wrapped program exits or daemonizes: exit (with its status;
    /// 128+N after signal N), ignore (keep serving), respawn (start it again; at most 3
    /// starts in 10 s) [default: exit]
    #[arg(
        long,
        value_name = "MODE",
        value_enum,
        allow_hyphen_values = true,
        help_heading = "Process"
    )]
    pub wrap_mode: Option<WrapMode>,

    /// Accepted for compatibility; ignored (there is only one server engine)
    #[arg(long, help_heading = "Process")]
    pub libserver: bool,

    // ---- Load balancers and limits (not in the reference) ----
    /// Connections from these networks (IPv4 or IPv6 addresses or CIDR blocks, comma-separated
    /// or repeated) must start with a PROXY protocol header (v1 or v2, as HAProxy's send-proxy
    /// and send-proxy-v2), which names the real client for logs, limits and auth. A header from
    /// any other peer, or a malformed or late one, closes the connection with a log line
    #[arg(
        long,
        value_name = "CIDR,...",
        value_delimiter = ',',
        action = clap::ArgAction::Append,
        help_heading = "Load balancers and limits"
    )]
    pub proxy_protocol: Vec<String>,

    /// Reverse proxies (addresses or CIDR blocks) whose X-Forwarded-For or Forwarded header
    /// names the client: read from the right, the first address not in this list is the client
    /// (Forwarded wins when both are sent). Ignored from any other peer
    #[arg(
        long,
        value_name = "CIDR,...",
        value_delimiter = ',',
        action = clap::ArgAction::Append,
        help_heading = "Load balancers and limits"
    )]
    pub trusted_proxies: Vec<String>,

    /// Start each target connection with a PROXY protocol header (v1 text or v2 binary) naming
    /// the real client, for a target behind us that reads one (HAProxy's accept-proxy, a VNC
    /// server that speaks it)
    #[arg(
        long,
        value_name = "VERSION",
        value_enum,
        help_heading = "Load balancers and limits"
    )]
    pub target_proxy_protocol: Option<ProxyVersion>,

    /// Serve at most N connections at once (0: no limit); more get HTTP 503 (plain HTTP) or are
    /// closed before the TLS handshake
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        allow_hyphen_values = true,
        hide_default_value = true,
        help_heading = "Load balancers and limits"
    )]
    pub max_connections: usize,

    /// Serve at most N connections at once from one client address (an IPv6 client: its /64;
    /// behind --proxy-protocol, the real client's) (0: no limit)
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        allow_hyphen_values = true,
        hide_default_value = true,
        help_heading = "Load balancers and limits"
    )]
    pub max_connections_per_ip: u32,

    /// Let one client address (as above) begin at most N connections per second, in bursts of
    /// up to N ("N" or "N/s"; 0: no limit); faster ones get HTTP 503 with Retry-After: 1
    #[arg(
        long,
        value_name = "N/s",
        value_parser = parse_rate,
        default_value = "0",
        allow_hyphen_values = true,
        hide_default_value = true,
        help_heading = "Load balancers and limits"
    )]
    pub handshake_rate: u32,

    /// Print the version and exit
    #[arg(long, action = clap::ArgAction::Version)]
    pub version: (),

    // ---- Positionals ----
    #[arg(
        value_name = "ARGS",
        help = "[source_addr:]source_port, then target_addr:target_port (unless --token-plugin, \
                --unix-target or a wrapped command decides the target)"
    )]
    pub args: Vec<String>,

    /// Program (with its arguments) to run and proxy to; it comes after `--`. Its bind() of the
    /// listen port (IPv4 or IPv6) is moved to a free loopback port by an LD_PRELOAD shim built
    /// into websockify (REBIND_OLD_PORT/REBIND_NEW_PORT; an existing LD_PRELOAD is kept). It
    /// gets SIGTERM when websockify stops. With --unix-listen, PORT before `--` is the port the
    /// program binds
    #[arg(value_name = "WRAP_COMMAND_LINE", last = true)]
    pub wrap_command_line: Vec<String>,
}

/// Where the listening socket comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenArg {
    /// `[source_addr:]source_port`; empty host = every interface.
    Tcp { host: String, port: u16 },
    /// `--unix-listen FILE` with its `--unix-listen-mode` (default 0o600).
    Unix { path: PathBuf, mode: u32 },
    /// `--inetd`: the listening socket is stdin.
    Inetd,
    /// `--systemd`: the sockets systemd passed.
    Systemd,
}

/// The positional arguments, read as the reference reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Positionals {
    pub listen: ListenArg,
    /// `target_addr:target_port` (brackets stripped); None when `--unix-target`, a token
    /// plugin or a wrapped command decides the target.
    pub target: Option<(String, u16)>,
    /// The command after `--`, when there is one.
    pub wrap_cmd: Option<Vec<String>>,
    /// With `--unix-listen` and a command: the port the program binds, given before `--`.
    pub wrap_port: Option<u16>,
}

/// Python truthiness: the reference ignores an option given an empty value (`--web=`).
fn given<T: AsRef<OsStr>>(opt: &Option<T>) -> bool {
    opt.as_ref().is_some_and(|v| !v.as_ref().is_empty())
}

/// Which positional an address is, for the error messages (the reference's wording).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressKind {
    /// `[source_addr:]source_port`: the host may be left out.
    Listen,
    /// `target_addr:target_port`: both parts are required.
    Target,
}

impl AddressKind {
    fn name(self) -> &'static str {
        match self {
            AddressKind::Listen => "listen",
            AddressKind::Target => "target",
        }
    }
}

/// Reads a `host:port` positional as the reference does: split on the LAST colon (so a bare
/// IPv6 address works), strip brackets from both ends of the host (`strip('[]')`), port an
/// integer (surrounding whitespace allowed, as Python's `int()`). A listen address without a
/// colon is a bare port on every interface (empty host). Stricter than the reference where it
/// would only fail later at bind or connect time: the port must be 0-65535 and no bracket may
/// stay inside the host. Pure, so the fuzzer can drive it millions of times a minute.
pub fn parse_address(arg: &str, kind: AddressKind) -> Result<(String, u16), CliError> {
    let what = kind.name();
    let Some((host, port)) = arg.rsplit_once(':') else {
        return match kind {
            AddressKind::Listen => Ok((String::new(), parse_port(arg, what)?)),
            AddressKind::Target => Err(CliError::usage(format!(
                "Error parsing target: '{arg}' (expected target_addr:target_port)"
            ))),
        };
    };
    let port = parse_port(port, what)?;
    let host = host.trim_matches(['[', ']']);
    // `[::1]6:080` leaves `::1]6`: no name or address has a bracket inside.
    if host.contains(['[', ']']) {
        return Err(CliError::usage(format!(
            "Error parsing {what} address: '{host}' is not a host name or address"
        )));
    }
    Ok((host.to_owned(), port))
}

/// A port number; the reference's int() accepts anything, but only 0-65535 can be bound or
/// connected to, so a larger number is an error here rather than at bind time.
fn parse_port(port: &str, what: &str) -> Result<u16, CliError> {
    port.trim().parse::<u16>().map_err(|_| {
        CliError::usage(format!(
            "Error parsing {what} port: '{port}' is not a port number (0-65535)"
        ))
    })
}

/// `--unix-listen-mode`: octal as Python's `int(s, 8)` (an optional `0o` prefix is allowed),
/// limited to the permission bits.
fn parse_mode(mode: &str) -> Result<u32, CliError> {
    let s = mode.trim();
    let digits = s
        .strip_prefix("0o")
        .or_else(|| s.strip_prefix("0O"))
        .unwrap_or(s);
    let ok = !digits.is_empty() && digits.bytes().all(|b| (b'0'..=b'7').contains(&b));
    match u32::from_str_radix(digits, 8) {
        Ok(m) if ok && m <= 0o7777 => Ok(m),
        _ => Err(CliError::usage("Error parsing listen unix socket mode")),
    }
}

/// Paths keep empty values (`--web=`), which optparse accepts and the reference then ignores;
/// clap's own path parser would refuse them.
fn path_value() -> impl TypedValueParser<Value = PathBuf> {
    OsStringValueParser::new().map(PathBuf::from)
}

fn seconds(n: u64) -> Option<Duration> {
    (n > 0).then(|| Duration::from_secs(n))
}

impl Cli {
    /// The reference's cross-option rules, checked before anything else (as it does).
    pub fn validate(&self) -> Result<(), CliError> {
        let rules = [
            (
                given(&self.token_source) && !given(&self.token_plugin),
                "You must use --token-plugin to use --token-source",
            ),
            (
                self.host_token && !given(&self.token_plugin),
                "You must use --token-plugin to use --host-token",
            ),
            (
                given(&self.auth_source) && !given(&self.auth_plugin),
                "You must use --auth-plugin to use --auth-source",
            ),
            (
                self.web_auth && !given(&self.auth_plugin),
                "You must use --auth-plugin to use --web-auth",
            ),
            (
                self.web_auth && !given(&self.web),
                "You must use --web to use --web-auth",
            ),
            (
                self.legacy_syslog && !given(&self.syslog),
                "You must use --syslog to use --legacy-syslog",
            ),
            (
                self.systemd && (self.inetd || given(&self.unix_listen)),
                "--systemd: the sockets come from systemd, not --inetd or --unix-listen",
            ),
            (
                self.systemd && self.daemon,
                "--systemd: not with -D (systemd runs the service in the foreground)",
            ),
        ];
        match rules.into_iter().find(|(broken, _)| *broken) {
            Some((_, msg)) => Err(CliError::usage(msg)),
            None => Ok(()),
        }
    }

    /// Reads source, target and wrapped command from the positional words.
    ///
    /// As in the reference, all words (before and after `--`) form one list: the source comes
    /// first unless `--inetd`/`--unix-listen` supply the listener; with `--` the remaining words
    /// are the command, otherwise the target follows unless `--unix-target`, `--token-plugin` or
    /// `--target-config` decide it. Deliberately stricter than the reference: words between
    /// the source and `--` are "too many" (the reference would run them as the command).
    pub fn positionals(&self) -> Result<Positionals, CliError> {
        let n_before = self.args.len();
        let words: Vec<&str> = self
            .args
            .iter()
            .chain(&self.wrap_command_line)
            .map(String::as_str)
            .collect();
        let mut next = 0;

        let listen = if self.inetd {
            ListenArg::Inetd
        } else if self.systemd {
            ListenArg::Systemd
        } else if let Some(path) = self
            .unix_listen
            .as_ref()
            .filter(|p| !p.as_os_str().is_empty())
        {
            let mode = match self.unix_listen_mode.as_deref().filter(|m| !m.is_empty()) {
                Some(m) => parse_mode(m)?,
                None => 0o600,
            };
            ListenArg::Unix {
                path: path.clone(),
                mode,
            }
        } else {
            let arg = words
                .first()
                .ok_or_else(|| CliError::Usage(TOO_FEW.to_owned()))?;
            next = 1;
            let (host, port) = parse_address(arg, AddressKind::Listen)?;
            ListenArg::Tcp { host, port }
        };

        // A `--` followed by no command is no wrap at all (the reference: `wrap_cmd = []`).
        if !self.wrap_command_line.is_empty() && words.len() > next {
            let mut wrap_port = None;
            if matches!(listen, ListenArg::Unix { .. } | ListenArg::Systemd) && n_before == 1 {
                wrap_port = Some(parse_port(words[0], "wrapped program")?);
                next = 1;
            }
            if n_before > next {
                return Err(CliError::usage(format!(
                    "Too many arguments: '{}' before --",
                    words[next]
                )));
            }
            return Ok(Positionals {
                listen,
                target: None,
                wrap_cmd: Some(words[next..].iter().map(|w| (*w).to_owned()).collect()),
                wrap_port,
            });
        }

        let target_from_option =
            given(&self.unix_target) || given(&self.token_plugin) || given(&self.target_config);
        let target = if target_from_option {
            None
        } else {
            let arg = words
                .get(next)
                .ok_or_else(|| CliError::Usage(TOO_FEW.to_owned()))?;
            next += 1;
            Some(parse_address(arg, AddressKind::Target)?)
        };

        if let Some(extra) = words.get(next) {
            return Err(CliError::usage(format!("Too many arguments: '{extra}'")));
        }
        Ok(Positionals {
            listen,
            target,
            wrap_cmd: None,
            wrap_port: None,
        })
    }

    /// Validates and converts to the server's `Settings`.
    pub fn settings(&self) -> Result<Settings, CliError> {
        self.validate()?;
        let pos = self.positionals()?;

        let wrap = match (&pos.wrap_cmd, &pos.listen) {
            (None, _) => None,
            (Some(command), listen) => Some(super::Wrap {
                command: command.clone(),
                port: wrap_port(listen, pos.wrap_port)?,
                mode: self.wrap_mode.unwrap_or_default(),
            }),
        };
        let listen = match pos.listen {
            ListenArg::Tcp { host, port } => Listen::Tcp { host, port },
            ListenArg::Unix { path, mode } => Listen::Unix { path, mode },
            ListenArg::Inetd => Listen::Inetd,
            ListenArg::Systemd => Listen::Systemd,
        };
        let target = match (&self.unix_target, pos.target) {
            (Some(path), _) if given(&self.unix_target) => {
                Targets::Fixed(TargetSpec::Unix(path.clone()))
            }
            (_, Some((host, port))) => Targets::Fixed(TargetSpec::Tcp { host, port }),
            // A placeholder until start-up picks the program's loopback port.
            _ if wrap.is_some() => Targets::Fixed(TargetSpec::Tcp {
                host: "127.0.0.1".into(),
                port: 0,
            }),
            // As the reference: `--target-config PATH` is `--token-plugin TokenFile
            // --token-source PATH` (and wins over them).
            _ if given(&self.target_config) => Targets::Tokens(TokenConfig {
                plugin: "TokenFile".into(),
                source: self
                    .target_config
                    .as_ref()
                    .map(|p| p.to_string_lossy().into_owned()),
                host_token: self.host_token,
            }),
            _ => Targets::Tokens(TokenConfig {
                plugin: self.token_plugin.clone().unwrap_or_default(),
                source: self.token_source.clone().filter(|s| !s.is_empty()),
                host_token: self.host_token,
            }),
        };

        let ssl_min_version = self.ssl_version.min_version()?;
        let target_cafile = self
            .target_cafile
            .clone()
            .filter(|c| !c.as_os_str().is_empty());
        if !self.ssl_target && (target_cafile.is_some() || self.target_insecure) {
            let option = if self.target_insecure {
                "--target-insecure"
            } else {
                "--target-cafile"
            };
            return Err(CliError::usage(format!(
                "You must use --ssl-target to use {option}"
            )));
        }
        if self.target_insecure && target_cafile.is_some() {
            return Err(CliError::usage(
                "--target-insecure and --target-cafile exclude each other (insecure verifies \
                 nothing)",
            ));
        }
        if self.ssl_target && matches!(target, Targets::Fixed(TargetSpec::Unix(_))) {
            return Err(CliError::usage(
                "--ssl-target: not supported with --unix-target (TLS is for TCP targets)",
            ));
        }

        // An empty `--cert=` is no `--cert`, as for the other paths.
        let cert = self.cert.clone().filter(|c| !c.as_os_str().is_empty());
        let cert_given = cert.is_some();

        let web = match self.web.as_ref().filter(|w| !w.as_os_str().is_empty()) {
            Some(dir) => Some(web_root(dir)?),
            None => None,
        };

        let target_allow = self
            .target_allow
            .iter()
            .map(|entry| {
                AllowEntry::parse(entry.trim())
                    .map_err(|why| CliError::usage(format!("--target-allow {entry}: {why}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !target_allow.is_empty() && matches!(target, Targets::Fixed(_)) {
            // Silently ignored, it would suggest the fixed target is checked.
            return Err(CliError::usage(
                "--target-allow applies to the targets of token plugins only \
                 (--token-plugin, --target-config)",
            ));
        }

        let syslog = match self.syslog.as_deref().filter(|s| !s.is_empty()) {
            Some(server) => Some(SyslogConfig {
                dest: SyslogDest::parse(server)
                    .map_err(|why| CliError::usage(format!("--syslog {server}: {why}")))?,
                legacy: self.legacy_syslog,
                facility: Facility::for_process(self.daemon),
            }),
            None => None,
        };
        let networks = |option: &str, entries: &[String]| {
            entries
                .iter()
                .map(|entry| match AllowEntry::parse(entry.trim()) {
                    Ok(AllowEntry::Unix(_)) => Err(CliError::usage(format!(
                        "{option} {entry}: only IP addresses and CIDR blocks"
                    ))),
                    Ok(net) => Ok(net),
                    Err(why) => Err(CliError::usage(format!("{option} {entry}: {why}"))),
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let proxy_protocol = networks("--proxy-protocol", &self.proxy_protocol)?;
        let trusted_proxies = networks("--trusted-proxies", &self.trusted_proxies)?;

        Ok(Settings {
            listen,
            target,
            prefer_ipv6: self.prefer_ipv6,
            verbose: self.verbose,
            cert: cert.unwrap_or_else(|| super::DEFAULT_CERT.into()),
            cert_given,
            key: self.key.clone().filter(|k| !k.as_os_str().is_empty()),
            key_password: self.key_password.clone().filter(|p| !p.is_empty()),
            ssl_only: self.ssl_only,
            ssl_min_version,
            ssl_ciphers: self.ssl_ciphers.clone().filter(|c| !c.is_empty()),
            verify_client: self.verify_client,
            cafile: self.cafile.clone().filter(|c| !c.as_os_str().is_empty()),
            ssl_target: self.ssl_target,
            target_cafile,
            target_insecure: self.target_insecure,
            run_once: self.run_once,
            timeout: seconds(self.timeout),
            idle_timeout: seconds(self.idle_timeout),
            heartbeat: seconds(self.heartbeat),
            drain_timeout: Duration::from_secs(self.drain_timeout),
            drain_grace: Duration::from_secs(self.drain_grace),
            web,
            file_only: self.file_only,
            // An empty `--auth-plugin=` stays (and fails to start as an unknown plugin): a
            // typo or an empty variable must never turn authentication off.
            auth: self.auth_plugin.clone().map(|plugin| AuthConfig {
                plugin,
                source: self.auth_source.clone().filter(|s| !s.is_empty()),
            }),
            web_auth: self.web_auth,
            handshake_timeout: super::DEFAULT_HANDSHAKE_TIMEOUT,
            send_timeout: super::DEFAULT_SEND_TIMEOUT,
            target_allow,
            daemon: self.daemon,
            wrap,
            record: given(&self.record)
                .then(|| self.record.as_deref().map(absolute))
                .flatten(),
            traffic: self.traffic,
            log_file: given(&self.log_file)
                .then(|| self.log_file.as_deref().map(absolute))
                .flatten(),
            syslog,
            log_format: match self.log_format {
                LogFormat::Human => super::LogFormat::Human,
                LogFormat::Json => super::LogFormat::Json,
            },
            metrics_listen: self.metrics_listen.clone().filter(|a| !a.is_empty()),
            proxy_protocol,
            trusted_proxies,
            target_proxy_protocol: self.target_proxy_protocol.map(|v| match v {
                ProxyVersion::V1 => super::ProxyVersion::V1,
                ProxyVersion::V2 => super::ProxyVersion::V2,
            }),
            max_connections: (self.max_connections > 0).then_some(self.max_connections),
            max_connections_per_ip: (self.max_connections_per_ip > 0)
                .then_some(self.max_connections_per_ip),
            handshake_rate: (self.handshake_rate > 0).then_some(self.handshake_rate),
        })
    }
}

/// The port a wrapped program binds (and the shim moves): the listen port, or the one given
/// before `--` with `--unix-listen`. Port 0 cannot work: the program would bind a port
/// nobody knows.
fn wrap_port(listen: &ListenArg, given: Option<u16>) -> Result<u16, CliError> {
    let port =
        match (listen, given) {
            (ListenArg::Tcp { port, .. }, _) => *port,
            (ListenArg::Unix { .. }, Some(port)) => port,
            (ListenArg::Unix { .. }, None) => {
                return Err(CliError::usage(
                    "--unix-listen with a wrapped program: give the port the program binds before \
                 `--` (websockify --unix-listen=FILE PORT -- PROGRAM ARGS)",
                ))
            }
            (ListenArg::Systemd, Some(port)) => port,
            (ListenArg::Systemd, None) => return Err(CliError::usage(
                "--systemd with a wrapped program: give the port the program binds before `--` \
                 (websockify --systemd PORT -- PROGRAM ARGS)",
            )),
            (ListenArg::Inetd, _) => {
                return Err(CliError::usage(
                    "--inetd: not supported with a wrapped program (-- WRAP_COMMAND_LINE)",
                ))
            }
        };
    if port == 0 {
        return Err(CliError::usage(
            "-- WRAP_COMMAND_LINE: the listen port must not be 0 (the program binds that port)",
        ));
    }
    Ok(port)
}

/// `path` made absolute against the current directory (as the reference's `os.path.abspath`):
/// a later chdir (`-D`) must not move where recordings and logs go.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// `--web DIR` as an absolute, canonical path, checked to be a directory now: a later chdir
/// (`-D`) must not change what is served, and a typo must fail at start-up, not per request.
fn web_root(dir: &Path) -> Result<PathBuf, CliError> {
    let shown = dir.display();
    match std::fs::canonicalize(dir) {
        Ok(root) if root.is_dir() => Ok(root),
        Ok(_) => Err(CliError::usage(format!("--web {shown}: not a directory"))),
        Err(err) => Err(CliError::usage(format!("--web {shown}: {err}"))),
    }
}

/// Parses `args` (including the program name in position 0).
pub fn parse_from<I, T>(args: I) -> Result<Settings, CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    parse_with(command(), args)
}

/// The clap command behind [`parse_from`] (and the man page and completions).
pub fn command() -> clap::Command {
    Cli::command()
}

/// [`parse_from`] with a given [`command`]: one built once (`Command::build`) and cloned per
/// call skips clap's per-build checks, which is what lets the `cli_address` fuzz target run
/// millions of command lines.
pub fn parse_with<I, T>(cmd: clap::Command, args: I) -> Result<Settings, CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    use clap::FromArgMatches;
    let args = prefer_the_reference(&cmd, args.into_iter().map(Into::into).collect());
    let mut matches = cmd
        .try_get_matches_from(args)
        .map_err(CliError::from_clap)?;
    Cli::from_arg_matches_mut(&mut matches)
        .map_err(CliError::from_clap)?
        .settings()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Result<Settings, CliError> {
        parse_from(std::iter::once("websockify").chain(words.iter().copied()))
    }

    #[test]
    fn addresses_are_read_like_the_reference() {
        use AddressKind::{Listen, Target};
        let ok = |arg: &str, kind, host: &str, port| {
            assert_eq!(
                parse_address(arg, kind),
                Ok((host.to_owned(), port)),
                "{arg:?}"
            );
        };
        ok("6080", Listen, "", 6080);
        ok(":6080", Listen, "", 6080);
        ok(" +6080\t", Listen, "", 6080);
        ok("[::1]:6080", Listen, "::1", 6080);
        ok("::1:5900", Target, "::1", 5900);
        ok("[fe80::1%eth0]:5900", Target, "fe80::1%eth0", 5900);
        ok("localhost:0", Target, "localhost", 0);
        for (arg, kind, start) in [
            ("localhost", Target, "error: Error parsing target: "),
            ("host:65536", Target, "error: Error parsing target port: "),
            ("host:", Target, "error: Error parsing target port: "),
            ("x6080", Listen, "error: Error parsing listen port: "),
            ("host:1_0", Listen, "error: Error parsing listen port: "),
        ] {
            match parse_address(arg, kind) {
                Err(CliError::Usage(msg)) => assert!(msg.starts_with(start), "{arg:?}: {msg}"),
                other => panic!("{arg:?}: {other:?}"),
            }
        }
    }

    /// Found by the `cli_address` fuzz target: a bracket inside the host survived the
    /// stripping of the outer ones and was taken for a host (`listen host "::1]6"`).
    #[test]
    fn a_bracket_left_inside_a_host_is_refused() {
        for (words, what) in [
            (&["[::1]6:080", "host:5900"], "listen"),
            (&["6080", "a[b:5900"], "target"),
            (&["6080", "[::1]]x:5900"], "target"),
        ] {
            match parse(words) {
                Err(CliError::Usage(msg)) => assert!(
                    msg.starts_with(&format!("error: Error parsing {what} address:")),
                    "{words:?}: {msg}"
                ),
                other => panic!("{words:?}: {other:?}"),
            }
        }
        // Brackets around the host are still stripped.
        let settings = parse(&["[::1]:6080", "[fe80::1]:5900"]).expect("valid");
        assert_eq!(
            settings.listen,
            Listen::Tcp {
                host: "::1".into(),
                port: 6080
            }
        );
        assert_eq!(
            settings.target,
            Targets::Fixed(TargetSpec::Tcp {
                host: "fe80::1".into(),
                port: 5900
            })
        );
    }

    /// A mode is octal digits (after an optional `0o`): `+7`, which `u32::from_str_radix`
    /// alone would take, is refused like any other mode that is not.
    #[test]
    fn a_unix_listen_mode_is_octal_digits_only() {
        assert_eq!(parse_mode("0o755"), Ok(0o755));
        assert_eq!(parse_mode(" 0O7777 "), Ok(0o7777));
        for bad in ["+7", "-7", "0o", "", "8", "0o10000"] {
            assert!(parse_mode(bad).is_err(), "{bad:?}");
        }
    }
}
