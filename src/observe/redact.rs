//! redact: attacker-controlled text made safe for a log line. Secrets in a request target
//! (noVNC's `?token=…`, passwords, keys) are replaced; every byte that could end a line, forge a
//! `key=value` field or upset a terminal is escaped.

use std::borrow::Cow;
use std::fmt;

/// Text from a peer, written into a log line quoted and escaped: printable ASCII stays as it
/// is; `"` and `\` are backslashed; everything else (control characters, DEL, and every
/// non-ASCII character, so also U+2028/U+2029 line separators, bidi controls and look-alike
/// letters) becomes `\u{XXXX}`, and invalid UTF-8 was already replaced before it got here.
/// A line written with it can neither be split nor grow a forged `key=value` field.
pub struct Quoted<'a>(pub &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write as _;
        f.write_char('"')?;
        for c in self.0.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                ' '..='~' => f.write_char(c)?,
                _ => write!(f, "\\u{{{:04x}}}", c as u32)?,
            }
        }
        f.write_char('"')
    }
}

impl fmt::Debug for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A request target as it may be logged: secrets redacted, then quoted and escaped.
pub fn request_target(path_and_query: &str) -> String {
    Quoted(&redact_target(path_and_query)).to_string()
}

/// The request target (path and query) as it may be logged: the value of every query
/// parameter whose name, percent-decoded and compared case-insensitively, contains `token`,
/// `password`, `secret` or `key` becomes `REDACTED`; everything else is kept byte for byte.
/// noVNC passes its token as `?token=…`, and a log file must not hand it to its readers.
pub fn redact_target(path_and_query: &str) -> Cow<'_, str> {
    redact_query(path_and_query, |_| true)
}

/// Redacts, in `path_and_query`, the non-empty values of secret-named parameters for which
/// `is_secret_value` holds.
fn redact_query(path_and_query: &str, is_secret_value: fn(&str) -> bool) -> Cow<'_, str> {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return Cow::Borrowed(path_and_query);
    };
    let secret = |param: &str| match param.split_once('=') {
        Some((name, value)) => !value.is_empty() && is_secret_value(value) && is_secret_name(name),
        None => false,
    };
    if !query.split('&').any(secret) {
        return Cow::Borrowed(path_and_query);
    }
    let params: Vec<Cow<'_, str>> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((name, _)) if secret(param) => Cow::Owned(format!("{name}=REDACTED")),
            _ => Cow::Borrowed(param),
        })
        .collect();
    Cow::Owned(format!("{path}?{}", params.join("&")))
}

/// A URL from the configuration (a token API), as the start-up lines may show it: the
/// user-info (`user:password@`) and the values of secret-named query parameters become
/// `REDACTED`, so a log reader learns where lookups go but not how they authenticate. A `%s`
/// value is the template's slot for the token, not a secret, and stays.
pub fn url(text: &str) -> Cow<'_, str> {
    let (scheme, rest) = match text.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, text),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host = match authority.rsplit_once('@') {
        Some((_, host)) => Cow::Owned(format!("REDACTED@{host}")),
        None => Cow::Borrowed(authority),
    };
    let tail = redact_query(tail, |value| value != "%s");
    if matches!((&host, &tail), (Cow::Borrowed(_), Cow::Borrowed(_))) {
        return Cow::Borrowed(text);
    }
    let scheme = scheme.map(|s| format!("{s}://")).unwrap_or_default();
    Cow::Owned(format!("{scheme}{host}{tail}"))
}

fn is_secret_name(name: &str) -> bool {
    let decoded =
        String::from_utf8_lossy(&crate::percent::percent_decode(name)).to_ascii_lowercase();
    ["token", "password", "secret", "key"]
        .iter()
        .any(|word| decoded.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_values_are_redacted_and_nothing_else_changes() {
        assert_eq!(
            redact_target("/websockify?token=abc"),
            "/websockify?token=REDACTED"
        );
        assert_eq!(
            redact_target("/?a=1&TOKEN=x&b=2"),
            "/?a=1&TOKEN=REDACTED&b=2"
        );
        assert_eq!(redact_target("/?%74oken=x"), "/?%74oken=REDACTED");
        assert_eq!(redact_target("/?tokenized=1"), "/?tokenized=REDACTED");
        assert_eq!(
            redact_target("/?password=p&api_key=k&secret=s"),
            "/?password=REDACTED&api_key=REDACTED&secret=REDACTED"
        );
    }

    #[test]
    fn urls_lose_their_credentials_but_keep_host_path_and_slot() {
        assert_eq!(
            url("https://user:pa55@api.example:8443/t/%s?key=k1&x=1"),
            "https://REDACTED@api.example:8443/t/%s?key=REDACTED&x=1"
        );
        assert_eq!(
            url("http://tok@h/lookup?token=%s"),
            "http://REDACTED@h/lookup?token=%s"
        );
        // No credentials: the very same text, borrowed.
        let plain = "http://127.0.0.1:8080/t?token=%s";
        assert!(matches!(url(plain), Cow::Borrowed(p) if p == plain));
        // An `@` in the path is not user-info.
        assert_eq!(url("http://h/a@b/%s"), "http://h/a@b/%s");
    }

    #[test]
    fn targets_without_secret_values_are_borrowed_unchanged() {
        for target in [
            "/websockify",
            "/token/path",
            "/?token",
            "/?token=",
            "/?a=1&b=2",
            "/?",
        ] {
            assert!(matches!(redact_target(target), Cow::Borrowed(t) if t == target));
        }
    }
    #[test]
    fn quoted_text_cannot_split_a_line_or_forge_a_field() {
        assert_eq!(Quoted("/websockify").to_string(), "\"/websockify\"");
        assert_eq!(
            Quoted("/a\" status=200").to_string(),
            "\"/a\\\" status=200\""
        );
        assert_eq!(Quoted("a\nb\rc").to_string(), "\"a\\u{000a}b\\u{000d}c\"");
        assert_eq!(Quoted("a\u{2028}b").to_string(), "\"a\\u{2028}b\"");
        assert_eq!(Quoted("\u{1b}[31m").to_string(), "\"\\u{001b}[31m\"");
        assert_eq!(Quoted("back\\slash").to_string(), "\"back\\\\slash\"");
        for nasty in ["x\u{2029}y", "x\u{85}y", "x\u{7f}", "é"] {
            let out = Quoted(nasty).to_string();
            assert!(out.bytes().all(|b| (b' '..=b'~').contains(&b)), "{out}");
        }
    }

    /// `{:?}` escapes as `{}` does: a derived Debug would put the raw text (a line break in
    /// it included) into whatever formats a Quoted that way.
    #[test]
    fn quoted_text_is_escaped_alike_by_debug() {
        let nasty = Quoted("a\"b\nc");
        assert_eq!(format!("{nasty:?}"), "\"a\\\"b\\u{000a}c\"");
        assert_eq!(format!("{nasty:?}"), nasty.to_string());
    }

    #[test]
    fn request_targets_are_redacted_then_quoted() {
        assert_eq!(
            request_target("/?token=abc\ntime=1"),
            "\"/?token=REDACTED\""
        );
        assert_eq!(request_target("/x y"), "\"/x y\"");
    }
}
