//! `ExpectOrigin`: the request's `Origin` must be one of `--auth-source`'s (space-separated,
//! compared exactly, as the reference); any other `Origin`, or none, is a 403 "Invalid Origin".
//! Stops other sites' pages from opening WebSockets through a user's browser (cross-site
//! WebSocket hijacking); a client that is not a browser can send any `Origin` it likes.

use hyper::header::ORIGIN;
use hyper::HeaderMap;

use crate::error::{Error, Kind, Side, StartError};

/// `ExpectOrigin` and its allowed origins.
#[derive(Debug)]
pub struct ExpectOrigin {
    allowed: Vec<String>,
}

impl ExpectOrigin {
    /// From `--auth-source "https://a.example https://b.example"`. No origin at all is a
    /// start-up error (the reference starts, then refuses everyone).
    pub fn new(source: Option<&str>) -> Result<Self, StartError> {
        Ok(ExpectOrigin {
            allowed: super::words(source, "ExpectOrigin", "allowed origins")?,
        })
    }

    pub fn authenticate(&self, headers: &HeaderMap) -> Result<(), Error> {
        // The first `Origin`, as the reference's `headers.get`; one that is not visible ASCII
        // cannot equal a serialized origin.
        let origin = headers.get(ORIGIN).and_then(|v| v.to_str().ok());
        match origin {
            Some(origin) if self.allowed.iter().any(|a| a == origin) => Ok(()),
            _ => Err(Error::new(Side::Client, Kind::Forbidden, "Invalid Origin")),
        }
    }

    pub fn describe(&self) -> String {
        self.allowed.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(plugin: &ExpectOrigin, origin: Option<&str>) -> Result<(), Error> {
        let mut headers = HeaderMap::new();
        if let Some(origin) = origin {
            headers.insert(ORIGIN, origin.parse().unwrap());
        }
        plugin.authenticate(&headers)
    }

    #[test]
    fn only_the_listed_origins_pass() {
        let plugin =
            ExpectOrigin::new(Some("https://desk.example  http://localhost:6080\n")).unwrap();
        assert!(check(&plugin, Some("https://desk.example")).is_ok());
        assert!(check(&plugin, Some("http://localhost:6080")).is_ok());
        for other in [
            None,
            Some(""),
            Some("null"),
            Some("https://evil.example"),
            Some("https://desk.example.evil.example"),
            Some("http://desk.example"),
            Some("HTTPS://DESK.EXAMPLE"),
            Some("http://localhost:6081"),
            Some("https://desk.example http://localhost:6080"),
        ] {
            let err = check(&plugin, other).unwrap_err();
            assert_eq!(
                (err.status(), err.context, err.challenge()),
                (403, "Invalid Origin", None),
                "{other:?}"
            );
        }
    }
}
