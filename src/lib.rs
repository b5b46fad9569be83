//! websockify: a WebSocket-to-TCP bridge, drop-in for the Python reference.
//!
//! The rooms follow a connection's path; `docs/architecture.md` has the map, the seams and
//! where each coming feature goes. Each room imports only the rooms below it in this list:
//!
//! `server` (accept loop; `conn`: one connection's walk) · `process` → `listen` → `sniff` →
//! `tls` → `http` (routing, `upgrade`, `web`) → `gate` → `target` → `relay` → `config` →
//! `observe` → `conninfo` → `error` → `ws` · `percent` · `net` · `proxy_header` (pure leaves).
//!
//! The public surface is what `main`, the tests, the fuzz targets and the benchmarks use.

mod config;
mod conninfo;
mod error;
mod gate;
mod http;
mod listen;
mod net;
mod observe;
mod percent;
mod process;
mod proxy_header;
mod relay;
mod server;
mod sniff;
mod target;
mod tls;
mod ws;

pub use config::cli::{self, CliError};
pub use config::{
    AllowEntry, AuthConfig, Facility, Listen, LogFormat, ProxyVersion, Settings, SyslogConfig,
    SyslogDest, TargetSpec, Targets, TlsMinVersion, TokenConfig, Wrap, WrapMode,
    DEFAULT_DRAIN_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT,
};
pub use conninfo::{Addr, ConnInfo, TlsInfo};
pub use error::{Error, Kind, Side, StartError};
/// The plugin class names `--auth-plugin` and `--token-plugin` know (the man page lists them).
pub use gate::auth::KNOWN as AUTH_PLUGINS;
pub use gate::token::KNOWN as TOKEN_PLUGINS;
pub use http::{MAX_HEAD_BYTES, MAX_REQUESTS};
pub use listen::{
    bind, bind_addr, resolve, Bound, Inetd as InetdListener, Listener, Prepared,
    Systemd as SystemdListener, Tcp as TcpListener, Unix as UnixListener,
};
pub use observe::log::init as init_logging;
pub use observe::metrics;
pub use observe::notify::init as init_notify;
pub use observe::writer::flush as flush_observers;
pub use observe::{Direction, Ended, Observer, Report};
pub use process::daemon::daemonize;
pub use process::wrap::{Program, Supervisor};
pub use process::{exit, reload_signal, reopen_log_on_sigusr1, shutdown_signal, take_over_signals};
pub use relay::CLOSE_TIMEOUT;
pub use server::Server;
pub use target::CONNECT_TIMEOUT;
pub use tls::reload::CERT_POLL_INTERVAL;

/// The pure pieces, public for the fuzz targets and the tests that drive them directly.
pub mod codec {
    pub use crate::gate::token::file::{parse_line, Line};
    pub use crate::gate::token::jose::{
        decode as decode_jose, Key as JoseKey, Refusal as JoseRefusal, MAX_TOKEN as MAX_JOSE_TOKEN,
    };
    pub use crate::gate::token::redis::{
        parse_source as parse_redis_source, split_source, RedisSource,
    };
    pub use crate::http::upgrade::{self, Refusal};
    pub use crate::proxy_header::{
        encode_v1 as encode_proxy_v1, encode_v2 as encode_proxy_v2, parse as parse_proxy_header,
        Addrs as ProxyAddrs, Header as ProxyHeader, Step as ProxyStep,
        MIN_HEADER as PROXY_MIN_HEADER,
    };
    pub use crate::relay::run as relay;
    pub use crate::sniff::{
        check_policy_request, classify, PolicyCheck, Protocol, POLICY_REQUEST, POLICY_RESPONSE,
    };
    pub use crate::ws::{base64, close, frame, utf8, Mode, Violation};
}
