//! unix_dir: `UnixDomainSocketDirectory`. The source is a directory of Unix sockets; the token
//! names one of them (a relative path, possibly into a subdirectory), and the target is that
//! socket.
//!
//! The reference keeps the socket inside the directory with a string prefix test on a path it
//! normalises but does not resolve, so `../vnc-other/x.sock` escapes from `/run/vnc`, and so
//! does any symlink. Here the path is canonicalised (symlinks and `..` resolved) and compared
//! with the canonical directory by path components; the target is the canonical path, so a
//! symlink swapped after the check cannot redirect the connection. Every lookup looks again,
//! on the blocking pool: a socket that appears or goes applies at once.
//!
//! Answers: no such socket, not a socket, or a path leading out → `Ok(None)` (404, "Token not
//! found", as the reference); the directory gone → 503.

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use tracing::{info, warn};

use super::file::{blocking, unavailable};
use super::file_name::{inside, source_dir};
use crate::config::TargetSpec;
use crate::error::{Error, StartError};
use crate::observe::redact::Quoted;

/// `UnixDomainSocketDirectory`.
#[derive(Debug)]
pub struct SocketDirectory {
    /// Canonical.
    dir: PathBuf,
}

impl SocketDirectory {
    /// `source` must be a directory (the reference only finds every token missing).
    pub fn open(source: &str) -> Result<SocketDirectory, StartError> {
        Ok(SocketDirectory {
            dir: source_dir(source, "UnixDomainSocketDirectory")?,
        })
    }

    pub async fn lookup(&self, token: &str) -> Result<Option<Arc<TargetSpec>>, Error> {
        // What cannot name a socket never reaches the file system (which would answer a name
        // too long with an error, worth a warning, instead of "no such file").
        if token.is_empty() || token.contains('\0') || token.split('/').any(|c| c.len() > 255) {
            return Ok(None);
        }
        let dir = self.dir.clone();
        let token = token.to_owned();
        blocking(move || find_socket(&dir, &token)).await?
    }

    pub fn describe(&self) -> String {
        format!("UnixDomainSocketDirectory {}", self.dir.display())
    }
}

fn find_socket(dir: &Path, token: &str) -> Result<Option<Arc<TargetSpec>>, Error> {
    let path = dir.join(token);
    let real = match std::fs::canonicalize(&path) {
        Ok(real) => real,
        Err(err)
            if matches!(
                err.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            if !dir.is_dir() {
                warn!(dir = %dir.display(), "UnixDomainSocketDirectory: the directory is gone");
                return Err(unavailable());
            }
            return Ok(None);
        }
        Err(err) => {
            warn!(socket = %Quoted(&path.to_string_lossy()), "UnixDomainSocketDirectory: {err}; token refused");
            return Ok(None);
        }
    };
    if !inside(dir, &real) {
        // A token that climbs out is the client's doing; a plain name that leads out is a
        // symlink the operator should know about.
        let climbs = Path::new(token)
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::RootDir));
        if climbs {
            info!("UnixDomainSocketDirectory: a token leading out of the directory, refused");
        } else {
            warn!(
                socket = %Quoted(&path.to_string_lossy()),
                leads_to = %Quoted(&real.to_string_lossy()),
                "UnixDomainSocketDirectory: a symlink leads out of the directory; token refused"
            );
        }
        return Ok(None);
    }
    if !std::fs::metadata(&real).is_ok_and(|meta| meta.file_type().is_socket()) {
        return Ok(None);
    }
    Ok(Some(Arc::new(TargetSpec::Unix(real))))
}
