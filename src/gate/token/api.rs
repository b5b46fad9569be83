//! api: `BaseTokenAPI` and `JSONTokenApi`: an HTTP(S) API names the target of a token.
//!
//! The source is a URL with one `%s` where the token goes (`%%` is a literal `%`, as in the
//! reference's `source % token`). Unlike the reference, the token is percent-encoded first
//! (every byte but `A-Z a-z 0-9 - . _ ~`), so a token cannot add query parameters or path
//! segments to the API's URL. A GET follows; its answer:
//!
//! - 2xx: the body names the target. `BaseTokenAPI`: `host:port`, split at the LAST colon
//!   (the reference splits at every colon and fails on IPv6). `JSONTokenApi`:
//!   `{"host": ..., "port": ...}`, the port a number or a string of digits. `unix_socket` as
//!   the host makes the port a Unix socket path, as everywhere in the reference.
//! - 404: the token is not known (a 404 to the client).
//! - anything else (another status, a redirect, a body we cannot read): the API answered but
//!   not usefully, a 502 (Bad Gateway: an upstream answered something invalid). The reference
//!   treats every non-2xx as "not found"; an API that is broken is then indistinguishable
//!   from a token that does not exist, which hides outages from the operator.
//! - no answer (refused, unreachable, over [`API_TIMEOUT`]): 503 "token API unavailable".
//!
//! Answers are cached for [`CACHE_TTL`] (targets and "not found" alike, at most
//! [`CACHE_ENTRIES`] of them); errors never are, so the server recovers as soon as the API
//! does. Lookups run on the runtime (hyper's pooled client), never block it, and are bounded
//! by [`API_TIMEOUT`], well inside the gate's `GATE_TIMEOUT`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::{Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tracing::warn;

use super::bad_answer;
use crate::config::TargetSpec;
use crate::error::{Error, Kind, Side, StartError};
use crate::observe::redact::{self, Quoted};
use crate::percent::percent_encode;

/// The longest one call of the API may take: connect, answer and body. Half the gate's
/// `GATE_TIMEOUT`, so a slow API is a 503 with a reason, not a gate time-out.
pub const API_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an answer is reused: a token revoked at the API stops working within this long,
/// and a client that reconnects in a loop (noVNC does, many tabs do) calls the API at most
/// once per token in this long.
pub const CACHE_TTL: Duration = Duration::from_secs(10);
/// At most this many answers are kept (each ≤ [`MAX_CACHED_TOKEN`] bytes of token plus the
/// target: under 1 MiB in all); far more than the distinct tokens one server sees in
/// [`CACHE_TTL`]. A full cache drops its expired answers, then the oldest one.
pub const CACHE_ENTRIES: usize = 1024;
/// Longer tokens are looked up every time, never cached (they would make the cache's memory
/// bound a function of the request head's limit).
pub const MAX_CACHED_TOKEN: usize = 512;
/// The largest answer body read; a larger one is a malformed answer (502).
pub const MAX_BODY: usize = 64 * 1024;

/// What the answer's body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `BaseTokenAPI`: `host:port`.
    Text,
    /// `JSONTokenApi`: `{"host": ..., "port": ...}`.
    Json,
}

/// The source URL split around its `%s`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    before: String,
    after: String,
}

impl Template {
    /// Reads `source`: exactly one `%s`; `%%` is a `%`; any other `%` stays as it is (a
    /// percent-encoded byte of the URL, which the reference would reject at each lookup).
    /// The URL must be `http://` or `https://` with a host.
    pub fn parse(source: &str) -> Result<Template, String> {
        let mut parts = [String::new(), String::new()];
        let mut slot = 0;
        let mut chars = source.chars().peekable();
        while let Some(c) = chars.next() {
            match (c, chars.peek()) {
                ('%', Some('%')) => {
                    chars.next();
                    parts[slot].push('%');
                }
                ('%', Some('s')) => {
                    chars.next();
                    if slot == 1 {
                        return Err("more than one %s in the URL".into());
                    }
                    slot = 1;
                }
                _ => parts[slot].push(c),
            }
        }
        if slot == 0 {
            return Err("the URL has no %s where the token goes".into());
        }
        let [before, after] = parts;
        let template = Template { before, after };
        let uri = template.url("token")?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => return Err("the URL must start with http:// or https://".into()),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err("the URL has no host".into());
        }
        Ok(template)
    }

    /// The URL for `token`, percent-encoded.
    pub fn url(&self, token: &str) -> Result<Uri, String> {
        let url = format!(
            "{}{}{}",
            self.before,
            percent_encode(token.as_bytes()),
            self.after
        );
        url.parse::<Uri>()
            .map_err(|e| format!("not a valid URL: {e}"))
    }

    fn is_https(&self) -> bool {
        self.before.starts_with("https:")
    }
}

/// Reads a target written `host:port` (stripped, split at the last colon, brackets around the
/// host dropped; `unix_socket:/path` is a Unix socket). Shared by the backends that store
/// targets as text.
pub fn parse_target(text: &str) -> Result<TargetSpec, &'static str> {
    let Some((host, port)) = text.trim().rsplit_once(':') else {
        return Err("the target has no ':port'");
    };
    let host = host.trim();
    if host == "unix_socket" {
        let path = port.trim();
        if path.is_empty() {
            return Err("unix_socket: needs a path");
        }
        return Ok(TargetSpec::Unix(path.into()));
    }
    tcp_target(host, port.trim())
}

fn tcp_target(host: &str, port: &str) -> Result<TargetSpec, &'static str> {
    let host = host.trim_matches(['[', ']']);
    if host.is_empty() {
        return Err("the target has no host");
    }
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err("the target's port is not a number");
    }
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok(TargetSpec::Tcp {
            host: host.to_owned(),
            port,
        }),
        _ => Err("the target's port is not in 1-65535"),
    }
}

/// Reads a 2xx answer's body as `format` says.
pub fn parse_answer(format: Format, body: &[u8]) -> Result<TargetSpec, &'static str> {
    let text = std::str::from_utf8(body).map_err(|_| "the answer is not UTF-8")?;
    match format {
        Format::Text => parse_target(text),
        Format::Json => {
            let value: serde_json::Value =
                serde_json::from_str(text).map_err(|_| "the answer is not JSON")?;
            json_target(&value)
        }
    }
}

/// The target of a JSON object's `host` and `port` (a number or a string of digits);
/// `unix_socket` as the host makes the port a Unix socket path. `JSONTokenApi` answers and
/// `JWTTokenApi` claims.
pub fn json_target(value: &serde_json::Value) -> Result<TargetSpec, &'static str> {
    let host = value
        .get("host")
        .ok_or("no \"host\"")?
        .as_str()
        .ok_or("the \"host\" is not a string")?;
    let port = match value.get("port").ok_or("no \"port\"")? {
        serde_json::Value::String(port) => port.trim().to_owned(),
        serde_json::Value::Number(port) if port.is_u64() => port.to_string(),
        _ => return Err("the \"port\" is not a number"),
    };
    if host == "unix_socket" {
        if port.is_empty() {
            return Err("unix_socket: needs a path");
        }
        return Ok(TargetSpec::Unix(port.into()));
    }
    tcp_target(host.trim(), &port)
}

/// An answer as kept in the cache: a target, or `None` for "not found".
type Answer = Option<Arc<TargetSpec>>;

/// A small cache of answers with a time to live.
#[derive(Debug)]
pub struct Cache {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<String, (Instant, Answer)>>,
}

impl Cache {
    pub fn new(ttl: Duration, capacity: usize) -> Cache {
        Cache {
            ttl,
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, token: &str, now: Instant) -> Option<Answer> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(token) {
            Some((expires, answer)) if *expires > now => Some(answer.clone()),
            _ => None,
        }
    }

    fn put(&self, token: &str, answer: Answer, now: Instant) {
        if token.len() > MAX_CACHED_TOKEN || self.capacity == 0 {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity && !entries.contains_key(token) {
            entries.retain(|_, (expires, _)| *expires > now);
            if entries.len() >= self.capacity {
                let oldest = entries
                    .iter()
                    .min_by_key(|(_, (expires, _))| *expires)
                    .map(|(token, _)| token.clone());
                if let Some(oldest) = oldest {
                    entries.remove(&oldest);
                }
            }
        }
        entries.insert(token.to_owned(), (now + self.ttl, answer));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().unwrap().len()
    }
}

/// `BaseTokenAPI` or `JSONTokenApi`.
#[derive(Debug)]
pub struct TokenApi {
    template: Template,
    format: Format,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    cache: Cache,
}

impl TokenApi {
    /// The plugin `name` (`BaseTokenAPI` or `JSONTokenApi`) on `source`.
    pub fn open(name: &str, source: &str) -> Result<Box<TokenApi>, StartError> {
        let format = match name {
            "JSONTokenApi" => Format::Json,
            _ => Format::Text,
        };
        TokenApi::new(source, format).map(Box::new)
    }

    /// Checks `source` now: a URL without `%s`, or not http(s), is a start-up error naming it.
    pub fn new(source: &str, format: Format) -> Result<TokenApi, StartError> {
        let bad = |why: String| StartError::new(format!("--token-source {source}: {why}"));
        let template = Template::parse(source).map_err(bad)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = if template.is_https() {
            builder
                .with_provider_and_native_roots(provider)
                .map_err(|e| bad(format!("no system root certificates for https: {e}")))?
        } else {
            // Plain http: the TLS half is never used.
            let tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| bad(e.to_string()))?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            builder.with_tls_config(tls)
        };
        let connector = builder.https_or_http().enable_http1().build();
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(TokenApi {
            template,
            format,
            client,
            cache: Cache::new(CACHE_TTL, CACHE_ENTRIES),
        })
    }

    pub async fn lookup(&self, token: &str) -> Result<Answer, Error> {
        if let Some(answer) = self.cache.get(token, Instant::now()) {
            return Ok(answer);
        }
        let answer = match tokio::time::timeout(API_TIMEOUT, self.ask(token)).await {
            Ok(answer) => answer?,
            Err(_) => {
                warn!("token API: no answer within {API_TIMEOUT:?}");
                return Err(unavailable());
            }
        };
        self.cache.put(token, answer.clone(), Instant::now());
        Ok(answer)
    }

    /// One call of the API.
    async fn ask(&self, token: &str) -> Result<Answer, Error> {
        let uri = self.template.url(token).map_err(|why| {
            // Only a token that makes the URL invalid gets here; encoding prevents it.
            warn!("token API: {}", Quoted(&why));
            bad_answer("token API URL invalid for this token")
        })?;
        let request = Request::get(uri)
            .header(
                hyper::header::USER_AGENT,
                concat!("websockify-rs/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::new())
            .map_err(|_| bad_answer("token API URL invalid for this token"))?;
        let response = self.client.request(request).await.map_err(|e| {
            warn!("token API unreachable: {e}");
            unavailable()
        })?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            warn!("token API answered {status}");
            return Err(bad_answer("token API answered an error"));
        }
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| {
                warn!("token API answer unreadable: {e}");
                bad_answer("token API answer malformed")
            })?
            .to_bytes();
        match parse_answer(self.format, &body) {
            Ok(target) => Ok(Some(Arc::new(target))),
            Err(why) => {
                warn!("token API answer malformed: {why}");
                Err(bad_answer("token API answer malformed"))
            }
        }
    }

    pub fn describe(&self) -> String {
        let kind = match self.format {
            Format::Text => "BaseTokenAPI",
            Format::Json => "JSONTokenApi",
        };
        // Credentials in the URL stay out of the log.
        let url = format!(
            "{}%s{}",
            self.template.before.replace('%', "%%"),
            self.template.after.replace('%', "%%")
        );
        format!("{kind} {}", redact::url(&url))
    }
}

fn unavailable() -> Error {
    Error::new(Side::Internal, Kind::Unavailable, "token API unavailable")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> TargetSpec {
        TargetSpec::Tcp {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn the_template_has_one_slot_and_the_token_is_percent_encoded() {
        let t = Template::parse("http://api:8080/lookup?t=%s&x=1").unwrap();
        assert_eq!(
            t.url("a&b=c/d e").unwrap().to_string(),
            "http://api:8080/lookup?t=a%26b%3Dc%2Fd%20e&x=1"
        );
        let t = Template::parse("https://api/t/%s/target?p=100%%&q=%2F").unwrap();
        assert_eq!(
            t.url("../x").unwrap().to_string(),
            "https://api/t/..%2Fx/target?p=100%&q=%2F"
        );
        assert_eq!(
            t.url("é").unwrap().to_string(),
            "https://api/t/%C3%A9/target?p=100%&q=%2F"
        );
        for (bad, why) in [
            ("http://api/lookup", "no %s"),
            ("http://api/%s/%s", "more than one"),
            ("ftp://api/%s", "http://"),
            ("api/%s", "URL"),
            ("/lookup/%s", "URL"),
            ("http:///%s", "URL"),
            ("http://a b/%s", "URL"),
        ] {
            let err = Template::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn text_answers_split_at_the_last_colon() {
        let text = |s: &str| parse_answer(Format::Text, s.as_bytes());
        assert_eq!(text("host:5900"), Ok(tcp("host", 5900)));
        assert_eq!(text("  host : 5900\n"), Ok(tcp("host", 5900)));
        assert_eq!(text("::1:5901"), Ok(tcp("::1", 5901)));
        assert_eq!(text("[::1]:5901"), Ok(tcp("::1", 5901)));
        assert_eq!(
            text("unix_socket:/run/vnc.sock"),
            Ok(TargetSpec::Unix("/run/vnc.sock".into()))
        );
        for bad in [
            "",
            "host",
            "host:",
            ":5900",
            "host:x",
            "host:0",
            "host:70000",
            "host:+1",
            "h:-1",
        ] {
            assert!(text(bad).is_err(), "{bad:?}");
        }
        assert!(parse_answer(Format::Text, b"h:\xff").is_err());
    }

    #[test]
    fn json_answers_take_host_and_a_numeric_or_string_port() {
        let json = |s: &str| parse_answer(Format::Json, s.as_bytes());
        assert_eq!(json(r#"{"host": "h", "port": 5900}"#), Ok(tcp("h", 5900)));
        assert_eq!(
            json(r#"{"host": "::1", "port": "5901", "extra": [1]}"#),
            Ok(tcp("::1", 5901))
        );
        assert_eq!(
            json(r#"{"host": "unix_socket", "port": "/run/x.sock"}"#),
            Ok(TargetSpec::Unix("/run/x.sock".into()))
        );
        // Each refusal for its own reason (the reason is what the warning logs): a number
        // that is no port is refused as such, not as text that is not digits.
        for (bad, why) in [
            ("host:5900", "the answer is not JSON"),
            ("[]", "no \"host\""),
            (r#"{"host": "h"}"#, "no \"port\""),
            (r#"{"port": 1}"#, "no \"host\""),
            (r#"{"host": 1, "port": 1}"#, "the \"host\" is not a string"),
            (
                r#"{"host": "h", "port": 1.5}"#,
                "the \"port\" is not a number",
            ),
            (
                r#"{"host": "h", "port": -1}"#,
                "the \"port\" is not a number",
            ),
            (
                r#"{"host": "h", "port": 1e3}"#,
                "the \"port\" is not a number",
            ),
            (
                r#"{"host": "h", "port": null}"#,
                "the \"port\" is not a number",
            ),
            (
                r#"{"host": "h", "port": 65536}"#,
                "the target's port is not in 1-65535",
            ),
            (
                r#"{"host": "h", "port": "vnc"}"#,
                "the target's port is not a number",
            ),
            (r#"{"host": "", "port": 1}"#, "the target has no host"),
        ] {
            assert_eq!(json(bad), Err(why), "{bad:?}");
        }
    }

    #[test]
    fn the_cache_expires_and_stays_bounded() {
        let cache = Cache::new(Duration::from_secs(10), 3);
        let t0 = Instant::now();
        let target = Some(Arc::new(tcp("h", 1)));
        cache.put("a", target.clone(), t0);
        cache.put("b", None, t0 + Duration::from_secs(1));
        assert_eq!(cache.get("a", t0 + Duration::from_secs(9)), Some(target));
        assert_eq!(cache.get("b", t0 + Duration::from_secs(9)), Some(None));
        assert_eq!(cache.get("a", t0 + Duration::from_secs(10)), None);
        cache.put("c", None, t0 + Duration::from_secs(2));
        // Full: the oldest ("a") goes.
        cache.put("d", None, t0 + Duration::from_secs(3));
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get("a", t0 + Duration::from_secs(3)), None);
        assert!(cache.get("b", t0 + Duration::from_secs(3)).is_some());
        // Full again, later: every expired one goes.
        cache.put("e", None, t0 + Duration::from_secs(12));
        assert_eq!(cache.len(), 2);
        // Long tokens are not cached.
        cache.put(&"x".repeat(MAX_CACHED_TOKEN + 1), None, t0);
        assert_eq!(cache.len(), 2);
    }

    /// The edges of what the cache keeps: a token of exactly [`MAX_CACHED_TOKEN`] bytes is
    /// cached; a cache that is not full is not swept (a put stays cheap), and a full one drops
    /// every answer expired by now (one that expires this instant too), not only the oldest.
    #[test]
    fn the_cache_keeps_tokens_up_to_the_limit_and_sweeps_only_when_full() {
        let s = Duration::from_secs;
        let t0 = Instant::now();
        let cache = Cache::new(s(10), 3);
        cache.put(&"x".repeat(MAX_CACHED_TOKEN), None, t0);
        assert_eq!(cache.len(), 1, "a token of MAX_CACHED_TOKEN bytes");
        cache.put("b", None, t0 + s(20));
        assert_eq!(
            cache.len(),
            2,
            "not full: the expired answer stays until then"
        );

        let cache = Cache::new(s(10), 3);
        cache.put("a", None, t0);
        cache.put("b", None, t0);
        cache.put("c", None, t0 + s(5));
        cache.put("d", None, t0 + s(10));
        assert_eq!(cache.len(), 2, "both that expire at the put went");
        assert_eq!(cache.get("c", t0 + s(10)), Some(None));
        assert_eq!(cache.get("d", t0 + s(10)), Some(None));
    }

    /// The start-up line gives the source as it was written (`%%` again, around the one
    /// `%s`), by the plugin's name, without the URL's credentials.
    #[test]
    fn the_description_is_the_source_as_written_without_credentials() {
        let describe = |name: &str, source: &str| TokenApi::open(name, source).unwrap().describe();
        assert_eq!(
            describe("BaseTokenAPI", "http://u:pw@api/100%%/%s?p=5%%"),
            "BaseTokenAPI http://REDACTED@api/100%%/%s?p=5%%"
        );
        assert_eq!(
            describe("JSONTokenApi", "https://api/t?id=%s"),
            "JSONTokenApi https://api/t?id=%s"
        );
    }
}
