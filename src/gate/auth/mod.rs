//! auth: whether a request may use the proxy, decided by the auth plugin `--auth-plugin`
//! names (with `--auth-source` as its argument). Run by the gate after the target lookup and
//! before the 101 (and, with `--web-auth`, before a `--web` file is served), as the reference's
//! `auth_connection`. One file per plugin; plugins are an enum (static dispatch).
//!
//! A plugin sees what the reference's `authenticate(headers, target_host, target_port)` sees,
//! plus the [`ConnInfo`], from which alone the client certificate's CN is read: no header a
//! client sends can stand in for it. A refusal is an [`Error`] on the client's side:
//! [`Kind::Unauthorized`](crate::error::Kind::Unauthorized) (401, with its challenge) or
//! [`Kind::Forbidden`](crate::error::Kind::Forbidden) (403). Its context is fixed text: no
//! credential, header or CN a client sent reaches a log line or an answer.

pub mod basic;
pub mod client_cert;
pub mod origin;

use hyper::HeaderMap;

use crate::config::{AuthConfig, TargetSpec};
use crate::conninfo::ConnInfo;
use crate::error::{Error, StartError};

/// An auth plugin, ready to check requests.
#[derive(Debug)]
pub enum Plugin {
    /// `BasicHTTPAuth`: `Authorization: Basic` with the one `USER:PASSWORD`.
    Basic(basic::BasicHttpAuth),
    /// `ExpectOrigin`: an `Origin` from the list.
    Origin(origin::ExpectOrigin),
    /// `ClientCertCNAuth`: a verified client certificate whose CN is in the list.
    ClientCert(client_cert::ClientCertCnAuth),
}

impl Plugin {
    /// Builds the plugin `config` names, checking its source now: a source that cannot let
    /// anyone in is a start-up error naming the flag (never a server that refuses everyone, nor
    /// one that lets everyone in).
    pub fn new(config: &AuthConfig) -> Result<Plugin, StartError> {
        let name = plugin_name(&config.plugin)?;
        let source = config.source.as_deref();
        match name {
            "BasicHTTPAuth" => Ok(Plugin::Basic(basic::BasicHttpAuth::new(source)?)),
            "ExpectOrigin" => Ok(Plugin::Origin(origin::ExpectOrigin::new(source)?)),
            "ClientCertCNAuth" => Ok(Plugin::ClientCert(client_cert::ClientCertCnAuth::new(
                source,
            )?)),
            _ => Err(StartError::new(format!(
                "--auth-plugin {:?}: unknown auth plugin (known: {})",
                config.plugin,
                KNOWN.join(", ")
            ))),
        }
    }

    /// Whether this request may go on to `target` (`None` where the reference passes no
    /// target: a `--web-auth` request without a fixed target). No plugin here reads `target`;
    /// it is the reference's `target_host`/`target_port`, for plugins that would.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        info: &ConnInfo,
        _target: Option<&TargetSpec>,
    ) -> Result<(), Error> {
        match self {
            Plugin::Basic(plugin) => plugin.authenticate(headers),
            Plugin::Origin(plugin) => plugin.authenticate(headers),
            Plugin::ClientCert(plugin) => plugin.authenticate(info),
        }
    }

    /// How the start-up lines describe the plugin (never its source's secrets).
    pub fn describe(&self) -> String {
        match self {
            Plugin::Basic(_) => "BasicHTTPAuth".to_owned(),
            Plugin::Origin(plugin) => format!("ExpectOrigin ({})", plugin.describe()),
            Plugin::ClientCert(plugin) => format!("ClientCertCNAuth ({})", plugin.describe()),
        }
    }
}

/// The plugins this websockify knows, by the reference's class names.
pub const KNOWN: &[&str] = &["BasicHTTPAuth", "ExpectOrigin", "ClientCertCNAuth"];

/// The plugin's class name from `--auth-plugin`: bare, or dotted with the reference's module
/// (`websockify.auth_plugins.BasicHTTPAuth`); another module names Python code we cannot run.
fn plugin_name(given: &str) -> Result<&str, StartError> {
    match given.rsplit_once('.') {
        Some(("websockify.auth_plugins", name)) => Ok(name),
        Some(_) => Err(StartError::new(format!(
            "--auth-plugin {given}: only the plugins of websockify.auth_plugins exist here \
             (known: {})",
            KNOWN.join(", ")
        ))),
        None => Ok(given),
    }
}

/// The words of a list source (`src.split()` in the reference: any whitespace); a missing or
/// blank source is a start-up error, since it would refuse everyone.
fn words(source: Option<&str>, plugin: &str, what: &str) -> Result<Vec<String>, StartError> {
    let words: Vec<String> = source
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    if words.is_empty() {
        return Err(StartError::new(format!(
            "--auth-plugin {plugin} needs --auth-source with the {what}, space-separated \
             (without any, every connection would be refused)"
        )));
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(plugin: &str, source: Option<&str>) -> AuthConfig {
        AuthConfig {
            plugin: plugin.into(),
            source: source.map(Into::into),
        }
    }

    #[test]
    fn plugin_names_are_bare_or_in_the_references_module() {
        assert_eq!(plugin_name("BasicHTTPAuth").unwrap(), "BasicHTTPAuth");
        assert_eq!(
            plugin_name("websockify.auth_plugins.ExpectOrigin").unwrap(),
            "ExpectOrigin"
        );
        let err = plugin_name("mymodule.MyAuth").unwrap_err();
        assert!(err.message.contains("mymodule.MyAuth"), "{err}");
        for bad in ["NoSuchAuth", "", "websockify.token_plugins.TokenFile"] {
            let err = Plugin::new(&config(bad, Some("u:p"))).unwrap_err();
            assert!(
                err.message.starts_with("websockify: --auth-plugin"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_source_that_lets_nobody_in_is_a_start_up_error_naming_the_flags() {
        for (plugin, source) in [
            ("BasicHTTPAuth", None),
            ("BasicHTTPAuth", Some("no-colon-secret")),
            ("ExpectOrigin", None),
            ("ExpectOrigin", Some(" \t ")),
            ("ClientCertCNAuth", None),
        ] {
            let err = Plugin::new(&config(plugin, source)).unwrap_err();
            assert!(
                err.message.contains("--auth-source") && err.message.contains(plugin),
                "{plugin} {source:?}: {err}"
            );
            assert_eq!(err.code, 1);
            // The source may be a password: never echoed.
            if let Some(source) = source.filter(|s| !s.trim().is_empty()) {
                assert!(!err.message.contains(source), "{err}");
            }
        }
    }

    #[test]
    fn the_description_never_shows_the_password() {
        let plugin = Plugin::new(&config("BasicHTTPAuth", Some("user:s3cret"))).unwrap();
        assert!(!plugin.describe().contains("s3cret"));
        assert!(!format!("{plugin:?}").contains("s3cret"));
        assert_eq!(format!("{plugin:?}"), "Basic(BasicHttpAuth { .. })");
        assert!(!format!("{:?}", config("BasicHTTPAuth", Some("user:s3cret"))).contains("s3cret"));
    }

    /// Each plugin is built from its name, describes itself (the lists as read, never a
    /// password) and checks requests with its own rule: credentials, Origin, certificate.
    #[test]
    fn each_plugin_is_built_by_name_describes_itself_and_applies_its_own_check() {
        use crate::conninfo::{Addr, TlsInfo};
        use base64::Engine;
        use hyper::header::{AUTHORIZATION, ORIGIN};

        let conn = |cn: Option<&str>| ConnInfo {
            id: 1,
            peer: Addr::Tcp("127.0.0.1:40000".parse().unwrap()),
            via: None,
            local: Addr::Tcp("127.0.0.1:6080".parse().unwrap()),
            tls: Some(TlsInfo {
                sni: None,
                client_cn: cn.map(Into::into),
            }),
        };
        let credentials = base64::engine::general_purpose::STANDARD.encode("u:p");
        let mut good = HeaderMap::new();
        good.insert(
            AUTHORIZATION,
            format!("Basic {credentials}").parse().unwrap(),
        );
        good.insert(ORIGIN, "https://b.example".parse().unwrap());
        let none = HeaderMap::new();
        let status = |result: Result<(), Error>| result.map_or_else(|err| err.status(), |()| 101);

        let basic = Plugin::new(&config(
            "websockify.auth_plugins.BasicHTTPAuth",
            Some("u:p"),
        ))
        .unwrap();
        assert_eq!(basic.describe(), "BasicHTTPAuth");
        assert_eq!(status(basic.authenticate(&good, &conn(None), None)), 101);
        assert_eq!(
            status(basic.authenticate(&none, &conn(Some("alice")), None)),
            401
        );

        let origin = Plugin::new(&config(
            "ExpectOrigin",
            Some(" https://a.example\thttps://b.example "),
        ))
        .unwrap();
        assert_eq!(
            origin.describe(),
            "ExpectOrigin (https://a.example https://b.example)"
        );
        assert_eq!(status(origin.authenticate(&good, &conn(None), None)), 101);
        assert_eq!(
            status(origin.authenticate(&none, &conn(Some("alice")), None)),
            403
        );

        let cert = Plugin::new(&config("ClientCertCNAuth", Some("alice\nbob"))).unwrap();
        assert_eq!(cert.describe(), "ClientCertCNAuth (alice bob)");
        assert_eq!(
            status(cert.authenticate(&none, &conn(Some("bob")), None)),
            101
        );
        assert_eq!(status(cert.authenticate(&good, &conn(None), None)), 403);
    }
}
