//! allow: `--target-allow`, the only places token sources may send connections.
//!
//! A token source is data, often written by another system; the allow list bounds what a
//! compromised or mistaken source can reach. The check happens here, in the gate, before the
//! 101, and its answer IS the target: a host name is resolved once, every address it has must
//! be allowed (one outside refuses the whole name: it could be the one tried first), and the
//! target handed on is [`TargetSpec::Resolved`] with exactly those addresses, so the connect
//! cannot resolve the name a second time and be told something else (DNS rebinding). A Unix
//! socket path is canonicalised (symlinks and `..` resolved), checked by path components, and
//! handed on canonical, so a symlink cannot lead the connection elsewhere after the check.

use std::net::SocketAddr;
use std::sync::Arc;

use tracing::warn;

use crate::config::{AllowEntry, TargetSpec};
use crate::error::{Error, Kind, Side};
use crate::observe::redact::Quoted;

/// The configured list; empty means every target is allowed (the reference's behaviour).
#[derive(Debug, Default)]
pub struct Allow {
    entries: Vec<AllowEntry>,
}

impl Allow {
    pub fn new(entries: &[AllowEntry]) -> Allow {
        Allow {
            entries: entries.to_vec(),
        }
    }

    /// `target` as it may be connected to, or 403 ("Target not allowed"). A name that does
    /// not resolve, or a socket path that does not exist, is what connecting would have said
    /// (502).
    pub async fn check(&self, target: Arc<TargetSpec>) -> Result<Arc<TargetSpec>, Error> {
        if self.entries.is_empty() {
            return Ok(target);
        }
        match &*target {
            TargetSpec::Tcp { host, port } => {
                let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), *port))
                    .await
                    .map_err(Error::connect)?
                    .collect();
                self.check_addrs(&target, &addrs)?;
                Ok(Arc::new(TargetSpec::Resolved {
                    host: host.clone(),
                    addrs,
                }))
            }
            TargetSpec::Resolved { addrs, .. } => {
                self.check_addrs(&target, addrs)?;
                Ok(target)
            }
            TargetSpec::Unix(path) => {
                let path = path.clone();
                let real = tokio::task::spawn_blocking(move || std::fs::canonicalize(path))
                    .await
                    .map_err(|_| Error::new(Side::Internal, Kind::Io, "checking the target"))?
                    .map_err(Error::connect)?;
                if !self.entries.iter().any(|e| e.contains_path(&real)) {
                    return Err(refuse(&target, &real.display()));
                }
                Ok(Arc::new(TargetSpec::Unix(real)))
            }
        }
    }

    fn check_addrs(&self, target: &TargetSpec, addrs: &[SocketAddr]) -> Result<(), Error> {
        match addrs
            .iter()
            .find(|a| !self.entries.iter().any(|e| e.contains_ip(a.ip())))
        {
            Some(outside) => Err(refuse(target, &outside.ip())),
            None => Ok(()),
        }
    }

    /// How the start-up lines describe the list.
    pub fn describe(&self) -> Option<String> {
        (!self.entries.is_empty()).then(|| {
            let entries: Vec<String> = self.entries.iter().map(ToString::to_string).collect();
            entries.join(", ")
        })
    }
}

/// The operator learns which target the token source named; the client only gets the 403.
fn refuse(target: &TargetSpec, outside: &dyn std::fmt::Display) -> Error {
    warn!(
        target = %Quoted(&target.to_string()),
        %outside,
        "token source named a target outside --target-allow; refused"
    );
    Error::new(Side::Client, Kind::Forbidden, "Target not allowed")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(entries: &[&str]) -> Allow {
        let entries: Vec<AllowEntry> = entries
            .iter()
            .map(|e| AllowEntry::parse(e).unwrap())
            .collect();
        Allow::new(&entries)
    }

    #[tokio::test]
    async fn every_address_must_be_allowed_and_the_checked_ones_are_handed_on() {
        let list = allow(&["127.0.0.1", "::1"]);
        let both = Arc::new(TargetSpec::Resolved {
            host: "two-faced".into(),
            addrs: vec![
                "127.0.0.1:1".parse().unwrap(),
                "127.0.0.2:1".parse().unwrap(),
            ],
        });
        let err = list.check(both).await.unwrap_err();
        assert_eq!((err.status(), err.context), (403, "Target not allowed"));
        let name = Arc::new(TargetSpec::Tcp {
            host: "localhost".into(),
            port: 5900,
        });
        match &*list.check(name).await.unwrap() {
            TargetSpec::Resolved { host, addrs } => {
                assert_eq!(host, "localhost");
                assert!(!addrs.is_empty());
                assert!(addrs
                    .iter()
                    .all(|a| a.ip().is_loopback() && a.port() == 5900));
            }
            other => panic!("not resolved: {other:?}"),
        }
    }

    #[tokio::test]
    async fn an_empty_list_allows_all_and_an_allowed_target_passes_unchanged() {
        let name = Arc::new(TargetSpec::Tcp {
            host: "no-such-host.invalid".into(),
            port: 1,
        });
        assert_eq!(Allow::default().check(name.clone()).await.unwrap(), name);
        assert_eq!(Allow::default().describe(), None);
        let list = allow(&["127.0.0.0/8", "unix:/nonexistent/vnc"]);
        assert_eq!(
            list.describe().as_deref(),
            Some("127.0.0.0/8, unix:/nonexistent/vnc")
        );
        let inside = Arc::new(TargetSpec::Resolved {
            host: "local".into(),
            addrs: vec![
                "127.0.0.1:1".parse().unwrap(),
                "127.0.0.2:1".parse().unwrap(),
            ],
        });
        assert_eq!(list.check(inside.clone()).await.unwrap(), inside);
        let outside = Arc::new(TargetSpec::Resolved {
            host: "far".into(),
            addrs: vec!["10.0.0.1:1".parse().unwrap()],
        });
        assert_eq!(list.check(outside).await.unwrap_err().status(), 403);
    }

    /// A socket path is checked canonical: through a symlink it is judged (and handed on) by
    /// where it really leads.
    #[tokio::test]
    async fn unix_targets_are_checked_by_their_canonical_path() {
        let dir = std::env::temp_dir().join(format!("websockify-allow-{}", std::process::id()));
        let allowed = dir.join("allowed");
        std::fs::create_dir_all(&allowed).unwrap();
        std::fs::write(allowed.join("vnc.sock"), b"").unwrap();
        std::fs::write(dir.join("other.sock"), b"").unwrap();
        let _ = std::fs::remove_file(allowed.join("link.sock"));
        std::os::unix::fs::symlink(dir.join("other.sock"), allowed.join("link.sock")).unwrap();
        let list =
            Allow::new(&[AllowEntry::parse(&format!("unix:{}", allowed.display())).unwrap()]);
        let real_allowed = std::fs::canonicalize(&allowed).unwrap();
        let target = Arc::new(TargetSpec::Unix(allowed.join("vnc.sock")));
        assert_eq!(
            *list.check(target).await.unwrap(),
            TargetSpec::Unix(real_allowed.join("vnc.sock"))
        );
        let link = Arc::new(TargetSpec::Unix(allowed.join("link.sock")));
        assert_eq!(list.check(link).await.unwrap_err().status(), 403);
        let missing = Arc::new(TargetSpec::Unix(allowed.join("missing.sock")));
        assert_eq!(list.check(missing).await.unwrap_err().status(), 502);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn entries_match_addresses_in_their_block_only() {
        let e = |s| AllowEntry::parse(s).unwrap();
        let ip = |s: &str| s.parse().unwrap();
        assert!(e("10.0.0.0/8").contains_ip(ip("10.255.0.1")));
        assert!(!e("10.0.0.0/8").contains_ip(ip("11.0.0.1")));
        assert!(e("10.0.0.0/8").contains_ip(ip("::ffff:10.1.1.1")));
        assert!(!e("::/0").contains_ip(ip("::ffff:10.1.1.1")));
        assert!(e("0.0.0.0/0").contains_ip(ip("::ffff:10.1.1.1")));
        assert!(e("fd00::/8").contains_ip(ip("fdab::1")));
        assert!(!e("fd00::/8").contains_ip(ip("fe80::1")));
        assert!(e("192.0.2.7").contains_ip(ip("192.0.2.7")));
        assert!(!e("192.0.2.7").contains_ip(ip("192.0.2.8")));
        assert!(e("::ffff:192.0.2.0/120").contains_ip(ip("192.0.2.9")));
        let unix = e("unix:/nonexistent/vnc");
        assert!(unix.contains_path(std::path::Path::new("/nonexistent/vnc/a.sock")));
        assert!(!unix.contains_path(std::path::Path::new("/nonexistent/vnc-other/a.sock")));
        assert!(!unix.contains_ip(ip("127.0.0.1")));
    }
}
