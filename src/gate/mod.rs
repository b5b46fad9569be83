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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AllowEntry, AuthConfig, Listen, TokenConfig};
    use crate::conninfo::Addr;
    use hyper::header::{HeaderValue, AUTHORIZATION, HOST};

    const TARGET: &str = "127.0.0.1:5900";

    fn conn() -> ConnInfo {
        ConnInfo {
            id: 1,
            peer: Addr::Tcp("127.0.0.1:40000".parse().unwrap()),
            via: None,
            local: Addr::Tcp("127.0.0.1:6080".parse().unwrap()),
            tls: None,
        }
    }

    fn fixed(auth: bool, web_auth: bool) -> Gate {
        let listen = Listen::Tcp {
            host: String::new(),
            port: 6080,
        };
        let target = TargetSpec::Tcp {
            host: "127.0.0.1".into(),
            port: 5900,
        };
        let mut settings = Settings::new(listen, target);
        settings.auth = auth.then(|| AuthConfig {
            plugin: "BasicHTTPAuth".into(),
            source: Some("user:pass".into()),
        });
        settings.web_auth = web_auth;
        Gate::new(&settings).unwrap()
    }

    fn credentials() -> HeaderMap {
        let mut headers = HeaderMap::new();
        // user:pass
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Basic dXNlcjpwYXNz"),
        );
        headers
    }

    async fn decide(
        gate: &Gate,
        uri: &str,
        headers: &HeaderMap,
    ) -> Result<String, (u16, &'static str)> {
        let uri: Uri = uri.parse().unwrap();
        match gate.decide(&uri, headers, &conn()).await {
            Ok(target) => Ok(target.to_string()),
            Err(err) => Err((err.status(), err.context)),
        }
    }

    #[tokio::test]
    async fn a_fixed_target_is_decided_after_the_credentials() {
        let open = fixed(false, false);
        assert_eq!(open.describe(), TARGET);
        assert_eq!(
            decide(&open, "/", &HeaderMap::new()).await,
            Ok(TARGET.into())
        );
        let guarded = fixed(true, false);
        assert_eq!(
            guarded.describe(),
            format!("{TARGET}, auth by BasicHTTPAuth")
        );
        assert_eq!(
            decide(&guarded, "/", &HeaderMap::new())
                .await
                .unwrap_err()
                .0,
            401
        );
        assert_eq!(
            decide(&guarded, "/", &credentials()).await,
            Ok(TARGET.into())
        );
    }

    /// `--web-auth` and only it puts the files behind the plugin.
    #[test]
    fn web_files_need_credentials_only_with_web_auth() {
        let none = HeaderMap::new();
        assert!(fixed(false, false).authorize_web(&none, &conn()).is_ok());
        assert!(fixed(true, false).authorize_web(&none, &conn()).is_ok());
        let web = fixed(true, true);
        assert_eq!(
            web.describe(),
            format!("{TARGET}, auth by BasicHTTPAuth (web files too)")
        );
        assert_eq!(web.authorize_web(&none, &conn()).unwrap_err().status(), 401);
        assert!(web.authorize_web(&credentials(), &conn()).is_ok());
    }

    #[tokio::test]
    async fn tokens_pick_the_target_from_the_query_or_the_host() {
        let dir = std::env::temp_dir().join(format!("websockify-gate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("tokens");
        std::fs::write(&file, "tok: 127.0.0.1:5901\n").unwrap();
        let gate = |host_token| {
            let mut settings = Settings::new(
                Listen::Tcp {
                    host: String::new(),
                    port: 6080,
                },
                TargetSpec::Unix("/unused".into()),
            );
            settings.target = Targets::Tokens(TokenConfig {
                plugin: "TokenFile".into(),
                source: Some(file.display().to_string()),
                host_token,
            });
            settings.target_allow = vec![AllowEntry::parse("127.0.0.0/8").unwrap()];
            Gate::new(&settings).unwrap()
        };
        let by_query = gate(false);
        let described = by_query.describe();
        assert!(
            described.starts_with("targets by token (?token=) from "),
            "{described}"
        );
        assert!(described.ends_with(", only to 127.0.0.0/8"), "{described}");
        let none = HeaderMap::new();
        assert_eq!(
            decide(&by_query, "/?token=tok", &none).await,
            Ok("127.0.0.1:5901".into())
        );
        assert_eq!(
            decide(&by_query, "/?token=nope", &none).await,
            Err((404, "Token not found"))
        );
        assert_eq!(
            decide(&by_query, "/", &none).await,
            Err((404, "Token not present"))
        );
        let by_host = gate(true);
        assert!(by_host
            .describe()
            .starts_with("targets by token (the Host header) from "));
        let mut host = HeaderMap::new();
        host.insert(HOST, HeaderValue::from_static("tok:6080"));
        assert_eq!(
            decide(&by_host, "/?token=nope", &host).await,
            Ok("127.0.0.1:5901".into())
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
