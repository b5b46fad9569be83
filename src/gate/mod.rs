//! gate: decides, before the 101, where a request may go and whether it may go there. First
//! the target lookup (today one source: the fixed `host:port` or `--unix-target`; the token
//! plugins add theirs), then authentication (the auth plugins). A refusal is an [`Error`]
//! whose side and kind decide the HTTP status; it never reaches the relay.
//!
//! The gate sees the request head and the [`ConnInfo`], never the body or the socket, and is
//! bounded in time: a slow token backend costs one connection a refusal, not a hang.

use std::sync::Arc;
use std::time::Duration;

use hyper::{HeaderMap, Uri};

use crate::config::{AllowEntry, TargetSpec, Targets};
use crate::conninfo::ConnInfo;
use crate::error::{Error, Kind, Side, StartError};

mod allow;
pub mod token;

/// The longest a gate decision may take (target lookup and authentication together).
pub const GATE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where targets come from. Chosen once at start-up; static dispatch, one variant per source.
#[derive(Debug)]
enum Source {
    /// Every request goes to the same target.
    Fixed(Arc<TargetSpec>),
    /// The request's token names the target.
    Tokens {
        plugin: Arc<token::Plugin>,
        /// `--host-token`: the token is the Host header, not `?token=`.
        host_token: bool,
        /// `--target-allow`: where the tokens' targets may be.
        allow: allow::Allow,
    },
}

/// The gate, configured.
#[derive(Debug)]
pub struct Gate {
    source: Source,
}

impl Gate {
    /// The gate `targets` asks for; a token source is opened (and checked) now. `allow`
    /// (`--target-allow`) bounds the targets of token sources only: a fixed target is the
    /// operator's own choice.
    pub fn new(targets: &Targets, allow: &[AllowEntry]) -> Result<Gate, StartError> {
        let source = match targets {
            Targets::Fixed(target) => Source::Fixed(Arc::new(target.clone())),
            Targets::Tokens(config) => Source::Tokens {
                plugin: Arc::new(token::Plugin::new(config)?),
                host_token: config.host_token,
                allow: allow::Allow::new(allow),
            },
        };
        Ok(Gate { source })
    }

    /// Where this request may go, or why it may not, within [`GATE_TIMEOUT`].
    pub async fn decide(
        &self,
        uri: &Uri,
        headers: &HeaderMap,
        info: &ConnInfo,
    ) -> Result<Arc<TargetSpec>, Error> {
        match tokio::time::timeout(GATE_TIMEOUT, self.lookup(uri, headers, info)).await {
            Ok(decided) => decided,
            Err(_) => Err(Error::new(
                Side::Internal,
                Kind::Timeout,
                "no gate decision in time",
            )),
        }
    }

    async fn lookup(
        &self,
        uri: &Uri,
        headers: &HeaderMap,
        _info: &ConnInfo,
    ) -> Result<Arc<TargetSpec>, Error> {
        match &self.source {
            Source::Fixed(target) => Ok(target.clone()),
            Source::Tokens {
                plugin,
                host_token,
                allow,
            } => {
                let token = if *host_token {
                    token::from_host(headers)
                } else {
                    token::from_query(uri.query())
                };
                // The reference's words; the token itself is never echoed nor logged.
                let Some(token) = token else {
                    return Err(Error::new(
                        Side::Client,
                        Kind::NotFound,
                        "Token not present",
                    ));
                };
                match plugin.lookup(&token).await? {
                    Some(target) => allow.check(target).await,
                    None => Err(Error::new(Side::Client, Kind::NotFound, "Token not found")),
                }
            }
        }
    }

    /// How the start-up lines describe where requests go.
    pub fn describe(&self) -> String {
        match &self.source {
            Source::Fixed(target) => target.to_string(),
            Source::Tokens {
                plugin,
                host_token,
                allow,
            } => {
                let from = if *host_token {
                    "the Host header"
                } else {
                    "?token="
                };
                let only = match allow.describe() {
                    Some(list) => format!(", only to {list}"),
                    None => String::new(),
                };
                format!("targets by token ({from}) from {}{only}", plugin.describe())
            }
        }
    }
}
