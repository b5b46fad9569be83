//! token: turning the token a request carries into its target. The token comes from the
//! request (`?token=` on any path, or the Host header with `--host-token`); a plugin, chosen by
//! name at start-up, looks it up. One file per plugin; this file holds what they share.
//!
//! Plugins are an enum (static dispatch): a lookup is one `match`, and each plugin owns its
//! state (a parsed file, a connection pool). Lookups are async and never block the runtime.

pub mod api;
pub mod file;
pub mod file_name;
pub mod jose;
pub mod jwt;
pub mod redis;
pub mod unix_dir;

use std::sync::Arc;

use hyper::header::HOST;
use hyper::HeaderMap;

use crate::config::{TargetSpec, TokenConfig};
use crate::error::{Error, Kind, Side, StartError};
use crate::observe::metrics;
use crate::percent::percent_decode;

/// A token plugin, ready to look tokens up.
#[derive(Debug)]
pub enum Plugin {
    /// `TokenFile`, `ReadOnlyTokenFile` (and `--target-config`).
    File(file::TokenFile),
    FileName(file_name::TokenFileName),
    UnixDir(unix_dir::SocketDirectory),
    /// `BaseTokenAPI`, `JSONTokenApi`.
    Api(Box<api::TokenApi>),
    /// `TokenRedis`.
    Redis(Box<redis::TokenRedis>),
    /// `JWTTokenApi`.
    Jwt(jwt::JwtTokenApi),
}

impl Plugin {
    /// Builds the plugin `config` names, checking its source now: a missing file or a
    /// malformed source is a start-up error naming it.
    pub fn new(config: &TokenConfig) -> Result<Plugin, StartError> {
        let name = plugin_name(&config.plugin)?;
        let source = || {
            config.source.as_deref().ok_or_else(|| {
                StartError::new(format!("--token-plugin {name} needs --token-source"))
            })
        };
        match name {
            "TokenFile" => Ok(Plugin::File(file::TokenFile::open(source()?, true)?)),
            "ReadOnlyTokenFile" => Ok(Plugin::File(file::TokenFile::open(source()?, false)?)),
            "TokenFileName" => Ok(Plugin::FileName(file_name::TokenFileName::open(source()?)?)),
            "UnixDomainSocketDirectory" => {
                Ok(Plugin::UnixDir(unix_dir::SocketDirectory::open(source()?)?))
            }
            "BaseTokenAPI" | "JSONTokenApi" => {
                Ok(Plugin::Api(api::TokenApi::open(name, source()?)?))
            }
            "TokenRedis" => Ok(Plugin::Redis(redis::TokenRedis::open(source()?)?)),
            "JWTTokenApi" => Ok(Plugin::Jwt(jwt::JwtTokenApi::open(source()?)?)),
            _ => Err(StartError::new(format!(
                "--token-plugin {}: unknown token plugin (known: {})",
                config.plugin,
                KNOWN.join(", ")
            ))),
        }
    }

    /// The target `token` names, `Ok(None)` for a token the source does not know.
    pub async fn lookup(&self, token: &str) -> Result<Option<Arc<TargetSpec>>, Error> {
        let found = self.ask(token).await;
        metrics::token_lookup(self.name(), found.as_ref().map(Option::is_some));
        found
    }

    /// The plugin's name in metric labels.
    fn name(&self) -> &'static str {
        match self {
            Plugin::File(_) => "file",
            Plugin::FileName(_) => "file_name",
            Plugin::UnixDir(_) => "unix_dir",
            Plugin::Api(_) => "api",
            Plugin::Redis(_) => "redis",
            Plugin::Jwt(_) => "jwt",
        }
    }

    async fn ask(&self, token: &str) -> Result<Option<Arc<TargetSpec>>, Error> {
        match self {
            Plugin::File(plugin) => plugin.lookup(token).await,
            Plugin::FileName(plugin) => plugin.lookup(token).await,
            Plugin::UnixDir(plugin) => plugin.lookup(token).await,
            Plugin::Api(plugin) => plugin.lookup(token).await,
            Plugin::Redis(plugin) => plugin.lookup(token).await,
            Plugin::Jwt(plugin) => plugin.lookup(token).await,
        }
    }

    /// How the start-up lines describe the plugin.
    pub fn describe(&self) -> String {
        match self {
            Plugin::File(plugin) => plugin.describe(),
            Plugin::FileName(plugin) => plugin.describe(),
            Plugin::UnixDir(plugin) => plugin.describe(),
            Plugin::Api(plugin) => plugin.describe(),
            Plugin::Redis(plugin) => plugin.describe(),
            Plugin::Jwt(plugin) => plugin.describe(),
        }
    }
}

/// The plugins this websockify knows, by the reference's class names.
pub const KNOWN: &[&str] = &[
    "TokenFile",
    "ReadOnlyTokenFile",
    "TokenFileName",
    "UnixDomainSocketDirectory",
    "BaseTokenAPI",
    "JSONTokenApi",
    "TokenRedis",
    "JWTTokenApi",
];

/// The plugin's class name from `--token-plugin`: bare, or dotted with the reference's module
/// (`websockify.token_plugins.TokenFile`); another module names Python code we cannot run.
fn plugin_name(given: &str) -> Result<&str, StartError> {
    let name = match given.rsplit_once('.') {
        Some(("websockify.token_plugins", name)) => name,
        Some(_) => {
            return Err(StartError::new(format!(
                "--token-plugin {given}: only the plugins of websockify.token_plugins exist here \
                 (known: {})",
                KNOWN.join(", ")
            )))
        }
        None => given,
    };
    Ok(name)
}

/// The token of a request from its query, as the reference reads it (`parse_qs`): the first
/// non-empty `token` value, percent-decoded (`+` is a space), trailing newlines stripped;
/// parameters are separated by `&` only.
pub fn from_query(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(name, _)| form_decode(name) == "token")
        .map(|(_, value)| form_decode(value))
        .find(|value| !value.is_empty())
        .map(|value| value.trim_end_matches('\n').to_owned())
}

/// The token with `--host-token`: the Host header up to its first `:` (the port).
pub fn from_host(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(HOST)?.to_str().ok()?;
    let token = host.split(':').next().unwrap_or_default();
    Some(token.to_owned())
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, then `%XX`; invalid UTF-8
/// becomes U+FFFD (as Python's `unquote`).
fn form_decode(s: &str) -> String {
    String::from_utf8_lossy(&percent_decode(&s.replace('+', " "))).into_owned()
}

/// What decides targets answered, but uselessly (a token API's error status or garbage, a
/// malformed stored target): a 502.
pub(super) fn bad_answer(context: &'static str) -> Error {
    Error::new(Side::Internal, Kind::BadAnswer, context)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_the_first_non_empty_token_parameter_decoded() {
        assert_eq!(from_query(Some("token=abc")).as_deref(), Some("abc"));
        assert_eq!(
            from_query(Some("a=1&token=x%20y&token=z")).as_deref(),
            Some("x y")
        );
        assert_eq!(
            from_query(Some("token=&token=second")).as_deref(),
            Some("second")
        );
        assert_eq!(from_query(Some("token=a+b%2Bc")).as_deref(), Some("a b+c"));
        assert_eq!(from_query(Some("tok%65n=enc")).as_deref(), Some("enc"));
        assert_eq!(from_query(Some("token=abc%0A%0A")).as_deref(), Some("abc"));
        // Python 3.10's parse_qs no longer splits on `;`.
        assert_eq!(from_query(Some("x=1;token=semi")), None);
        assert_eq!(from_query(Some("token")), None);
        assert_eq!(from_query(Some("token=")), None);
        assert_eq!(from_query(Some("tokens=abc")), None);
        assert_eq!(from_query(None), None);
    }

    #[test]
    fn the_host_token_is_the_host_without_its_port() {
        let mut headers = HeaderMap::new();
        assert_eq!(from_host(&headers), None);
        headers.insert(HOST, "vnc1.example.com:6080".parse().unwrap());
        assert_eq!(from_host(&headers).as_deref(), Some("vnc1.example.com"));
        headers.insert(HOST, "desk".parse().unwrap());
        assert_eq!(from_host(&headers).as_deref(), Some("desk"));
    }

    #[test]
    fn plugin_names_are_bare_or_in_the_references_module() {
        assert_eq!(plugin_name("TokenFile").unwrap(), "TokenFile");
        assert_eq!(
            plugin_name("websockify.token_plugins.TokenFile").unwrap(),
            "TokenFile"
        );
        let err = plugin_name("mymodule.MyPlugin").unwrap_err();
        assert!(err.message.contains("mymodule.MyPlugin"), "{err}");
    }
}
