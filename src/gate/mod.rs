//! gate: decides, before the 101, where a request may go and whether it may go there. First
//! the target lookup (the fixed `host:port` or `--unix-target`, or a token plugin, `token/`),
//! then authentication (an auth plugin, `auth/`). A refusal is an [`Error`] whose side and kind
//! decide the HTTP status; it never reaches the relay.
//!
//! The gate sees the request head and the [`ConnInfo`], never the body or the socket, and is
//! bounded in time: a slow token backend costs one connection a refusal, not a hang.

use std::sync::Arc;
use std::time::Duration;

use hyper::{HeaderMap, Uri};

use crate::config::{Settings, TargetSpec, Targets};
use crate::conninfo::ConnInfo;
use crate::error::{Error, Kind, Side, StartError};

mod allow;
pub mod auth;
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
        plugin: token::Plugin,
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
    /// `--auth-plugin`: checked after the lookup, before the 101.
    auth: Option<auth::Plugin>,
    /// `--web-auth`: the auth plugin guards the `--web` files too.
    web_auth: bool,
}

impl Gate {
    /// The gate `settings` ask for; a token source is opened (and checked) now, and so is the
    /// auth plugin's source.
    pub fn new(settings: &Settings) -> Result<Gate, StartError> {
        let source = match &settings.target {
            Targets::Fixed(target) => Source::Fixed(Arc::new(target.clone())),
            Targets::Tokens(config) => Source::Tokens {
                plugin: token::Plugin::new(config)?,
                host_token: config.host_token,
                allow: allow::Allow::new(&settings.target_allow),
            },
        };
        let auth = settings.auth.as_ref().map(auth::Plugin::new).transpose()?;
        // Without --verify-client no client certificate is ever asked for: the plugin could let
        // nobody in, which is a configuration mistake to say at start-up, not per connection.
        if matches!(auth, Some(auth::Plugin::ClientCert(_))) && !settings.verify_client {
            return Err(StartError::new(
                "--auth-plugin ClientCertCNAuth needs --verify-client (and a certificate, \
                 --cert): without it no client certificate is asked for",
            ));
        }
        Ok(Gate {
            source,
            auth,
            web_auth: settings.web_auth,
        })
    }

    /// Where this request may go, or why it may not, within [`GATE_TIMEOUT`].
    pub async fn decide(
        &self,
        uri: &Uri,
        headers: &HeaderMap,
        info: &ConnInfo,
    ) -> Result<Arc<TargetSpec>, Error> {
        let decide = async {
            let target = self.lookup(uri, headers, info).await?;
            // As the reference: the token first, then the credentials (so a token's existence
            // shows before authentication, there as here).
            if let Some(auth) = &self.auth {
                auth.authenticate(headers, info, Some(&target))?;
            }
            Ok(target)
        };
        match tokio::time::timeout(GATE_TIMEOUT, decide).await {
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

    /// `--web-auth`: whether this GET or HEAD of a `--web` file may be answered. The plugin
    /// gets the fixed target, or none with a token source, as the reference passes its server's
    /// `target_host`/`target_port` (there is no token lookup for a file).
    pub fn authorize_web(&self, headers: &HeaderMap, info: &ConnInfo) -> Result<(), Error> {
        match &self.auth {
            Some(auth) if self.web_auth => {
                let target = match &self.source {
                    Source::Fixed(target) => Some(&**target),
                    Source::Tokens { .. } => None,
                };
                auth.authenticate(headers, info, target)
            }
            _ => Ok(()),
        }
    }

    /// How the start-up lines describe where requests go (and who may).
    pub fn describe(&self) -> String {
        let targets = self.describe_targets();
        match &self.auth {
            Some(auth) if self.web_auth => {
                format!("{targets}, auth by {} (web files too)", auth.describe())
            }
            Some(auth) => format!("{targets}, auth by {}", auth.describe()),
            None => targets,
        }
    }

    fn describe_targets(&self) -> String {
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
