//! forwarded: the client a trusted reverse proxy names in `Forwarded` (RFC 7239) or
//! `X-Forwarded-For` (`--trusted-proxies`). Each proxy appends the address it got the request
//! from, so the list is read from the right: proxies we trust are skipped, and the first
//! address we do not trust is the client (what nginx's `real_ip_recursive on` and HAProxy users
//! expect). Anything left of it was written by the client itself and is never believed. An
//! entry that is no address (`unknown`, an obfuscated name, garbage) stops the walk: the last
//! trusted proxy is then the best we know.

use std::net::{IpAddr, SocketAddr};

use hyper::header::HeaderMap;

use crate::config::AllowEntry;

/// The client named by the forwarding headers, given that the peer is a trusted proxy;
/// `None` when no header names one. `Forwarded` is used when present (it is the standard one),
/// `X-Forwarded-For` otherwise; every instance of the header counts, in order.
pub fn client(headers: &HeaderMap, trusted: &[AllowEntry]) -> Option<IpAddr> {
    let forwarded: Vec<&str> = values(headers, "forwarded")
        .flat_map(|v| v.split(','))
        .map(|element| for_param(element).unwrap_or(""))
        .collect();
    let hops = if forwarded.is_empty() {
        values(headers, "x-forwarded-for")
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect()
    } else {
        forwarded
    };
    let mut best = None;
    for hop in hops.iter().rev() {
        let Some(ip) = parse_node(hop) else {
            return best;
        };
        if !trusted.iter().any(|e| e.contains_ip(ip)) {
            return Some(ip);
        }
        best = Some(ip);
    }
    best
}

fn values<'a>(headers: &'a HeaderMap, name: &str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
}

/// The `for=` value of one `Forwarded` element, unquoted.
fn for_param(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("for")
            .then(|| value.trim().trim_matches('"'))
    })
}

/// An address as forwarding headers write it: `192.0.2.7`, `192.0.2.7:4711`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:4711`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = node.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    node.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn trusted() -> Vec<AllowEntry> {
        vec![
            AllowEntry::parse("10.0.0.0/8").unwrap(),
            AllowEntry::parse("2001:db8:ffff::/48").unwrap(),
        ]
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn the_rightmost_untrusted_address_is_the_client() {
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.0.0.5")]);
        assert_eq!(client(&h, &trusted()), ip("203.0.113.7"));
        // Split over two header lines: one list.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "203.0.113.7,10.1.1.1"),
        ]);
        assert_eq!(client(&h, &trusted()), ip("203.0.113.7"));
    }

    #[test]
    fn a_chain_of_trusted_proxies_gives_the_leftmost() {
        let h = headers(&[("x-forwarded-for", "10.0.0.9, 10.0.0.5")]);
        assert_eq!(client(&h, &trusted()), ip("10.0.0.9"));
    }

    #[test]
    fn garbage_stops_the_walk_at_the_last_trusted_proxy() {
        let h = headers(&[("x-forwarded-for", "203.0.113.7, nonsense, 10.0.0.5")]);
        assert_eq!(client(&h, &trusted()), ip("10.0.0.5"));
        let h = headers(&[("x-forwarded-for", "nonsense")]);
        assert_eq!(client(&h, &trusted()), None);
        assert_eq!(client(&HeaderMap::new(), &trusted()), None);
    }

    #[test]
    fn forwarded_wins_and_its_forms_are_read() {
        let h = headers(&[
            ("x-forwarded-for", "198.51.100.1"),
            (
                "forwarded",
                "for=6.6.6.6, For=\"[2001:db8::7]:4711\";proto=https, for=10.0.0.5;by=x",
            ),
        ]);
        assert_eq!(client(&h, &trusted()), ip("2001:db8::7"));
        let h = headers(&[("forwarded", "for=192.0.2.60:8080;proto=http")]);
        assert_eq!(client(&h, &trusted()), ip("192.0.2.60"));
        let h = headers(&[("forwarded", "for=unknown, for=10.0.0.5")]);
        assert_eq!(client(&h, &trusted()), ip("10.0.0.5"));
        let h = headers(&[("forwarded", "for=_hidden")]);
        assert_eq!(client(&h, &trusted()), None);
    }
}
