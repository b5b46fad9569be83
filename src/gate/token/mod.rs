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

/// A runtime whose blocking pool has one thread: a test keeps it busy to see which work a
/// lookup does in place and which it sends to the pool.
#[cfg(test)]
pub(crate) fn one_blocking_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(1)
        .enable_time()
        .build()
        .unwrap()
}

/// What `work` logs on this thread, as the log lines read: for the tests of what a plugin
/// warns about.
#[cfg(test)]
pub(crate) fn logged<T>(work: impl FnOnce() -> T) -> (T, String) {
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Log {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let log = Log::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let result = tracing::subscriber::with_default(subscriber, work);
    let text = String::from_utf8_lossy(&log.0.lock().unwrap()).into_owned();
    (result, text)
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

    /// Every plugin is built from its class name (bare or in the reference's module),
    /// describes its source, and counts its lookups under the `plugin` label that
    /// docs/operations.md documents (the metric's table lists them in this order).
    #[tokio::test]
    async fn each_plugin_is_built_by_name_describes_its_source_and_has_its_documented_label() {
        let dir = std::env::temp_dir().join(format!("websockify-plugins-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("names")).unwrap();
        std::fs::create_dir_all(dir.join("sockets")).unwrap();
        let file = dir.join("tokens");
        std::fs::write(&file, "desk: host:5900\n").unwrap();
        std::fs::write(dir.join("names/desk"), "other:5901\n").unwrap();
        let socket = dir.join("sockets/desk.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let key = dir.join("jwt.key");
        std::fs::write(&key, "c2VjcmV0LWtleQ").unwrap();
        let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
        let build = |plugin: &str, source: String| {
            Plugin::new(&TokenConfig {
                plugin: plugin.into(),
                source: Some(source),
                host_token: false,
            })
            .unwrap()
        };
        let tcp = |host: &str, port| {
            Some(Arc::new(TargetSpec::Tcp {
                host: host.into(),
                port,
            }))
        };
        let names = path(&dir.join("names"));
        let sockets = path(&dir.join("sockets"));

        let plugins = [
            (
                build("TokenFile", path(&file)),
                format!("TokenFile {}", path(&file)),
            ),
            (
                build("websockify.token_plugins.ReadOnlyTokenFile", path(&file)),
                format!("ReadOnlyTokenFile {}", path(&file)),
            ),
            (
                build("TokenFileName", names.clone()),
                format!("TokenFileName {names}"),
            ),
            (
                build("UnixDomainSocketDirectory", sockets.clone()),
                format!("UnixDomainSocketDirectory {sockets}"),
            ),
            (
                build("BaseTokenAPI", "http://127.0.0.1:9/t/%s".into()),
                "BaseTokenAPI http://127.0.0.1:9/t/%s".into(),
            ),
            (
                build("JSONTokenApi", "http://127.0.0.1:9/j?t=%s".into()),
                "JSONTokenApi http://127.0.0.1:9/j?t=%s".into(),
            ),
            (
                build("TokenRedis", "127.0.0.1:9".into()),
                "TokenRedis 127.0.0.1:9 db 0".into(),
            ),
            (
                build("JWTTokenApi", path(&key)),
                format!("JWTTokenApi {} (symmetric key)", path(&key)),
            ),
        ];
        for (plugin, description) in &plugins {
            assert_eq!(&plugin.describe(), description);
        }

        // The file plugins answer through `lookup`: found, and unknown.
        assert_eq!(
            plugins[0].0.lookup("desk").await.unwrap(),
            tcp("host", 5900)
        );
        assert_eq!(
            plugins[1].0.lookup("desk").await.unwrap(),
            tcp("host", 5900)
        );
        assert_eq!(
            plugins[2].0.lookup("desk").await.unwrap(),
            tcp("other", 5901)
        );
        assert_eq!(
            plugins[3].0.lookup("desk.sock").await.unwrap(),
            Some(Arc::new(TargetSpec::Unix(socket.canonicalize().unwrap())))
        );
        for (plugin, _) in &plugins[..4] {
            assert_eq!(plugin.lookup("nobody").await.unwrap(), None, "{plugin:?}");
        }

        let operations = include_str!("../../../docs/operations.md");
        let row = operations
            .lines()
            .find(|line| line.starts_with("| `websockify_token_lookups_total`"))
            .unwrap();
        let mut labels: Vec<&str> = plugins.iter().map(|(plugin, _)| plugin.name()).collect();
        labels.dedup(); // TokenFile and ReadOnlyTokenFile are both `file`
        let listed: Vec<String> = labels.iter().map(|label| format!("`{label}`")).collect();
        assert!(
            row.contains(&format!("`plugin` ({})", listed.join(", "))),
            "{labels:?} against {row}"
        );
    }
}
