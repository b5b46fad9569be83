//! gate: decides, before the 101, where a request may go and whether it may go there. First
//! the target lookup (today one source: the fixed `host:port` or `--unix-target`; the token
//! plugins add theirs), then authentication (the auth plugins). A refusal is an [`Error`]
//! whose side and kind decide the HTTP status; it never reaches the relay.
//!
//! The gate sees the request head and the [`ConnInfo`], never the body or the socket, and is
//! bounded in time: a slow token backend costs one connection a refusal, not a hang.

use std::sync::Arc;
use std::time::Duration;

use hyper::{HeaderMap, Uri};

use crate::config::TargetSpec;
use crate::conninfo::ConnInfo;
use crate::error::{Error, Kind, Side};

/// The longest a gate decision may take (target lookup and authentication together).
pub const GATE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where targets come from. Chosen once at start-up; static dispatch, one variant per source.
#[derive(Debug, Clone)]
enum Source {
    /// Every request goes to the same target.
    Fixed(Arc<TargetSpec>),
}

/// The gate, configured.
#[derive(Debug, Clone)]
pub struct Gate {
    source: Source,
}

impl Gate {
    /// A gate sending every request to `target`.
    pub fn fixed(target: TargetSpec) -> Gate {
        Gate {
            source: Source::Fixed(Arc::new(target)),
        }
    }

    /// Where this request may go, or why it may not, within [`GATE_TIMEOUT`].
    pub async fn decide(
        &self,
        uri: &Uri,
        headers: &HeaderMap,
        info: &ConnInfo,
    ) -> Result<Arc<TargetSpec>, Error> {
        match tokio::time::timeout(GATE_TIMEOUT, self.lookup(uri, headers, info)).await {
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
        _uri: &Uri,
        _headers: &HeaderMap,
        _info: &ConnInfo,
    ) -> Result<Arc<TargetSpec>, Error> {
        match &self.source {
            Source::Fixed(target) => Ok(target.clone()),
        }
    }

    /// How the start-up lines describe where requests go.
    pub fn describe(&self) -> String {
        match &self.source {
            Source::Fixed(target) => target.to_string(),
        }
    }
}
