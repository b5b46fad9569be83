//! redis: `TokenRedis`: the target of a token is the value of the key `namespace:token` in a
//! Redis database.
//!
//! The source is the reference's `host[:port[:db[:password[:namespace]]]]` ([`parse_source`]);
//! the value is JSON `{"host": "host:port"}` or plain `host:port`, stripped, split at the LAST
//! colon (the reference splits at every colon and fails on IPv6).
//!
//! Unlike the reference, which opens a new connection for every lookup, one multiplexed
//! connection serves every lookup (`redis`' `ConnectionManager`); it is opened at the first
//! lookup, not at start-up (as the reference, a Redis that is down does not stop the server),
//! and reopened by itself after Redis goes away. A lookup takes at most [`REDIS_TIMEOUT`]:
//! Redis down or silent is a 503 for that connection, and lookups work again as soon as Redis
//! is back. A missing key is "not found" (404); a value that names no target, or an error
//! answer of Redis (a key of another type, a refused password), is a 502. Nothing is cached:
//! a key deleted in Redis stops working at once.

use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};
use tokio::sync::OnceCell;
use tracing::warn;

use super::api::parse_target;
use super::bad_answer;
use crate::config::TargetSpec;
use crate::error::{Error, Kind, Side, StartError};

/// The longest one lookup may take, connecting included. Redis answers in a millisecond or
/// two; one that has not answered in this long is down for the client waiting on it.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest one connection attempt (TCP and handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// What `--token-source` says for `TokenRedis`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSource {
    pub host: String,
    pub port: u16,
    pub db: i64,
    pub password: Option<String>,
    /// The prefix of every key: `namespace:`, or empty without a namespace.
    pub prefix: String,
}

const FORMAT: &str = "expected <host>[:<port>[:<db>[:<password>[:<namespace>]]]]";

/// Splits `src` at its colons as the reference's `parse_source_args` does: a field that
/// starts with `"` and whose next `"` is followed by `:` or the end is the text between the
/// quotes (which may hold `:`), provided that text is not empty; any other field runs to the
/// next colon, quotes included.
pub fn split_source(src: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut rest = src;
    loop {
        if let Some(after) = rest.strip_prefix('"') {
            if let Some(q) = after.find('"') {
                let tail = &after[q + 1..];
                if q > 0 && (tail.is_empty() || tail.starts_with(':')) {
                    fields.push(after[..q].to_owned());
                    match tail.strip_prefix(':') {
                        Some(next) => {
                            rest = next;
                            continue;
                        }
                        None => return fields,
                    }
                }
            }
        }
        match rest.split_once(':') {
            Some((field, next)) => {
                fields.push(field.to_owned());
                rest = next;
            }
            None => {
                fields.push(rest.to_owned());
                return fields;
            }
        }
    }
}

/// Reads a `TokenRedis` source as the reference does: one to five fields; an empty port, db
/// or password means 6379, 0, none; a namespace `ns` makes the keys `ns:token`. Stricter than
/// the reference where it would only fail later: the host must not be empty, the port is
/// 1-65535 and the db a non-negative number (digits, an optional `+`, surrounding whitespace,
/// as Python's `int`, without its `_` separators).
pub fn parse_source(src: &str) -> Result<RedisSource, String> {
    let fields = split_source(src);
    if fields.len() > 5 {
        return Err(format!("more than five fields; {FORMAT}"));
    }
    let field = |i: usize| fields.get(i).map(String::as_str).unwrap_or("");
    let host = field(0);
    if host.is_empty() {
        return Err(format!("no host; {FORMAT}"));
    }
    let port = match number(field(1)) {
        None => 6379,
        Some(Some(port)) if (1..=65535).contains(&port) => port as u16,
        Some(_) => return Err(format!("the port is not a number in 1-65535; {FORMAT}")),
    };
    let db = match number(field(2)) {
        None => 0,
        Some(Some(db)) if db <= i64::MAX as u64 => db as i64,
        Some(_) => return Err(format!("the db is not a number; {FORMAT}")),
    };
    let password = Some(field(3)).filter(|p| !p.is_empty()).map(str::to_owned);
    let prefix = match field(4) {
        "" => String::new(),
        namespace => format!("{namespace}:"),
    };
    Ok(RedisSource {
        host: host.to_owned(),
        port,
        db,
        password,
        prefix,
    })
}

/// `None` for an empty field, `Some(None)` for one that is not a number.
fn number(field: &str) -> Option<Option<u64>> {
    if field.is_empty() {
        return None;
    }
    let digits = field.trim();
    let digits = digits.strip_prefix('+').unwrap_or(digits);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Some(None);
    }
    Some(digits.parse().ok())
}

/// Reads a stored value: JSON `{"host": "host:port"}` or plain `host:port`, stripped.
pub fn parse_value(value: &[u8]) -> Result<TargetSpec, &'static str> {
    let text = std::str::from_utf8(value).map_err(|_| "the value is not UTF-8")?;
    let text = text.trim();
    if text.starts_with('{') {
        let json: serde_json::Value =
            serde_json::from_str(text).map_err(|_| "the value is not JSON")?;
        let host = json
            .get("host")
            .ok_or("the value has no \"host\"")?
            .as_str()
            .ok_or("the value's \"host\" is not a string")?;
        parse_target(host)
    } else {
        parse_target(text)
    }
}

/// `TokenRedis`.
#[derive(Debug)]
pub struct TokenRedis {
    source: RedisSource,
    client: ::redis::Client,
    /// Made at the first lookup (it needs the runtime); reconnects by itself.
    connection: OnceCell<ConnectionManager>,
}

impl TokenRedis {
    /// Reads `source` now: a malformed one is a start-up error naming it. Redis itself is not
    /// asked until the first lookup.
    pub fn open(source: &str) -> Result<Box<TokenRedis>, StartError> {
        let bad = |why: String| StartError::new(format!("--token-source {source}: {why}"));
        let parsed = parse_source(source).map_err(bad)?;
        let mut redis = RedisConnectionInfo::default().set_db(parsed.db);
        if let Some(password) = &parsed.password {
            redis = redis.set_password(password);
        }
        let info = ConnectionAddr::Tcp(parsed.host.clone(), parsed.port)
            .into_connection_info()
            .map_err(|e| bad(e.to_string()))?
            .set_redis_settings(redis);
        let client = ::redis::Client::open(info).map_err(|e| bad(e.to_string()))?;
        Ok(Box::new(TokenRedis {
            source: parsed,
            client,
            connection: OnceCell::new(),
        }))
    }

    pub async fn lookup(&self, token: &str) -> Result<Option<Arc<TargetSpec>>, Error> {
        let key = format!("{}{token}", self.source.prefix);
        let value = match tokio::time::timeout(REDIS_TIMEOUT, self.get(&key)).await {
            Ok(Ok(value)) => value,
            Ok(Err(err)) if is_down(&err) => {
                warn!("token Redis unavailable: {err}");
                return Err(unavailable());
            }
            Ok(Err(err)) => {
                warn!("token Redis answered an error: {err}");
                return Err(bad_answer("token Redis answered an error"));
            }
            Err(_) => {
                warn!("token Redis: no answer within {REDIS_TIMEOUT:?}");
                return Err(unavailable());
            }
        };
        let Some(value) = value else {
            return Ok(None);
        };
        match parse_value(&value) {
            Ok(target) => Ok(Some(Arc::new(target))),
            Err(why) => {
                warn!("token Redis value malformed: {why}");
                Err(bad_answer("token Redis value malformed"))
            }
        }
    }

    /// `GET key` on the shared connection. A connection found broken is replaced by the
    /// manager; the command is then tried once more on the new one, so the first lookup after
    /// Redis comes back succeeds.
    async fn get(&self, key: &str) -> ::redis::RedisResult<Option<Vec<u8>>> {
        let manager = self
            .connection
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(REDIS_TIMEOUT))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(200));
                ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            })
            .await?;
        let command = ::redis::cmd("GET").arg(key).to_owned();
        match command.query_async(&mut manager.clone()).await {
            Err(err) if is_down(&err) => command.query_async(&mut manager.clone()).await,
            done => done,
        }
    }

    pub fn describe(&self) -> String {
        let RedisSource {
            host,
            port,
            db,
            prefix,
            ..
        } = &self.source;
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        let mut text = format!("TokenRedis {host}:{port} db {db}");
        if !prefix.is_empty() {
            text.push_str(&format!(" keys {prefix}<token>"));
        }
        text
    }
}

/// Redis could not be reached or went away (as opposed to Redis answering an error).
fn is_down(err: &::redis::RedisError) -> bool {
    err.is_io_error()
        || err.is_timeout()
        || err.is_connection_refusal()
        || err.is_connection_dropped()
        || err.is_unrecoverable_error()
}

fn unavailable() -> Error {
    Error::new(Side::Internal, Kind::Unavailable, "token Redis unavailable")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Vec<String> {
        split_source(s)
    }

    #[test]
    fn fields_split_at_colons_and_quotes_protect_them() {
        assert_eq!(split("a:b:c:d"), ["a", "b", "c", "d"]);
        assert_eq!(split("a:\"b:c\":d"), ["a", "b:c", "d"]);
        assert_eq!(split("h::::\"ns1:ns2\""), ["h", "", "", "", "ns1:ns2"]);
        assert_eq!(split(""), [""]);
        assert_eq!(split(":"), ["", ""]);
        assert_eq!(split("a:"), ["a", ""]);
        // Not a quoted field: the quotes stay, the colons split.
        assert_eq!(split("\"a:b"), ["\"a", "b"]);
        assert_eq!(split("a:\"b:c\"d:e"), ["a", "\"b", "c\"d", "e"]);
        assert_eq!(split("h:\"\":x"), ["h", "\"\"", "x"]);
        assert_eq!(split("x\"a:b\":c"), ["x\"a", "b\"", "c"]);
        assert_eq!(split("\"a\"\"b\":c"), ["\"a\"\"b\"", "c"]);
        assert_eq!(split("\"a\""), ["a"]);
    }

    #[test]
    fn sources_read_as_the_reference_reads_them() {
        let ok = |s: &str| parse_source(s).unwrap();
        assert_eq!(
            ok("my-redis"),
            RedisSource {
                host: "my-redis".into(),
                port: 6379,
                db: 0,
                password: None,
                prefix: String::new(),
            }
        );
        assert_eq!(ok("h:").port, 6379);
        assert_eq!(ok("h:6380").port, 6380);
        assert_eq!(ok("h: 6380 ").port, 6380);
        assert_eq!(ok("h::3").db, 3);
        assert_eq!(ok("h::9223372036854775807").db, i64::MAX);
        assert_eq!(ok("h:::").password, None);
        assert_eq!(ok("h:::secret").password.as_deref(), Some("secret"));
        assert_eq!(ok("h:::\"se:cret\"").password.as_deref(), Some("se:cret"));
        assert_eq!(ok("h::::app").prefix, "app:");
        assert_eq!(ok("h::::\"a:b\"").prefix, "a:b:");
        assert_eq!(ok("h:::pw:").prefix, "");
        let full = ok("r:6380:1:pw:ns");
        assert_eq!(
            (full.port, full.db, full.password.as_deref(), &*full.prefix),
            (6380, 1, Some("pw"), "ns:")
        );
        for (bad, why) in [
            ("a:1:2:3:4:5", "more than five"),
            ("", "no host"),
            (":6379", "no host"),
            ("h:port", "port"),
            ("h:0", "port"),
            ("h:65536", "port"),
            ("h:-1", "port"),
            // Rust's `parse` takes one `+` itself: the digits check must see the second.
            ("h:++6380", "port"),
            ("h::x", "db"),
            ("h::-1", "db"),
            ("h::9223372036854775808", "db"),
            ("h::99999999999999999999", "db"),
        ] {
            let err = parse_source(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
            assert!(err.contains("<host>[:<port>"), "{err}");
        }
    }

    #[test]
    fn values_are_json_or_plain_split_at_the_last_colon() {
        let tcp = |host: &str, port| TargetSpec::Tcp {
            host: host.into(),
            port,
        };
        assert_eq!(parse_value(b"h:5900"), Ok(tcp("h", 5900)));
        assert_eq!(parse_value(b" h:5900\r\n"), Ok(tcp("h", 5900)));
        assert_eq!(parse_value(b"::1:5900"), Ok(tcp("::1", 5900)));
        assert_eq!(
            parse_value(br#" {"host": "10.0.0.1:5901", "x": 1} "#),
            Ok(tcp("10.0.0.1", 5901))
        );
        assert_eq!(
            parse_value(b"unix_socket:/run/v.sock"),
            Ok(TargetSpec::Unix("/run/v.sock".into()))
        );
        for bad in [
            &b""[..],
            b"h",
            b"h:x",
            b"{",
            br#"{"port": 1}"#,
            br#"{"host": 5}"#,
            br#"{"host": "h"}"#,
            b"h:\xff",
        ] {
            assert!(
                parse_value(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// The start-up line names the server (an IPv6 host in brackets), the db and, only when
    /// there is one, the namespace; never the password.
    #[test]
    fn the_description_names_server_db_and_namespace_but_not_the_password() {
        let describe = |source: &str| TokenRedis::open(source).unwrap().describe();
        assert_eq!(describe("my-redis"), "TokenRedis my-redis:6379 db 0");
        assert_eq!(
            describe("\"::1\":6380:2:secret:app"),
            "TokenRedis [::1]:6380 db 2 keys app:<token>"
        );
    }

    /// Redis that cannot be reached is "down" (503), never an answer (502), whatever the
    /// connection's failure. TCP to a broadcast address fails at once with ENETUNREACH (no
    /// route), an I/O error that is nothing more: not a time-out, a refusal, a dropped or an
    /// unrecoverable connection, so `is_io_error` alone says "down" there (the other terms
    /// are Redis refused, stopped, killed and silent, in `tests/token_backends.rs`).
    #[tokio::test]
    async fn a_redis_on_a_network_without_a_route_is_unavailable() {
        let redis = TokenRedis::open("255.255.255.255").unwrap();
        let err = redis.get("desk").await.unwrap_err();
        assert!(
            err.is_io_error()
                && !err.is_timeout()
                && !err.is_connection_refusal()
                && !err.is_connection_dropped()
                && !err.is_unrecoverable_error(),
            "an I/O error and nothing more: {err}"
        );
        let err = redis.lookup("desk").await.unwrap_err();
        assert_eq!(err.status(), 503, "{err}");
    }
}
