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

#[cfg(test)]
mod tests {
    use super::*;

    /// What cannot name a socket is not found without asking the file system: in a
    /// directory that is gone, asking would answer 503.
    #[tokio::test]
    async fn tokens_that_cannot_name_a_socket_never_reach_the_file_system() {
        let gone = SocketDirectory {
            dir: std::env::temp_dir().join(format!("websockify-gone-{}", std::process::id())),
        };
        let longest = "x".repeat(255);
        for never in [
            String::new(),
            "a\0b".into(),
            format!("{longest}x"),
            format!("d/{longest}y"),
        ] {
            assert_eq!(gone.lookup(&never).await.unwrap(), None, "{never:?}");
        }
        for asked in [longest.clone(), format!("d/{longest}")] {
            assert_eq!(gone.lookup(&asked).await.unwrap_err().status(), 503);
        }
    }

    /// A socket in the directory (or a subdirectory) is found by its canonical path; a file
    /// that is not a socket, a missing one, and a path or symlink leading out are not.
    #[tokio::test]
    async fn only_sockets_inside_the_directory_are_found() {
        let root = std::env::temp_dir().join(format!("websockify-sockets-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dir = root.join("sockets");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let _a = std::os::unix::net::UnixListener::bind(dir.join("a.sock")).unwrap();
        let _b = std::os::unix::net::UnixListener::bind(dir.join("sub/b.sock")).unwrap();
        let _out = std::os::unix::net::UnixListener::bind(root.join("out.sock")).unwrap();
        std::os::unix::fs::symlink(root.join("out.sock"), dir.join("link.sock")).unwrap();
        std::fs::write(dir.join("plain"), "").unwrap();
        let plugin = SocketDirectory::open(dir.to_str().unwrap()).unwrap();
        let real = dir.canonicalize().unwrap();
        assert_eq!(
            plugin.describe(),
            format!("UnixDomainSocketDirectory {}", real.display())
        );
        let unix = |path: PathBuf| Some(Arc::new(TargetSpec::Unix(path)));
        assert_eq!(
            plugin.lookup("a.sock").await.unwrap(),
            unix(real.join("a.sock"))
        );
        assert_eq!(
            plugin.lookup("sub/b.sock").await.unwrap(),
            unix(real.join("sub/b.sock"))
        );
        for nothing in [
            "missing.sock",
            "plain",
            "plain/x",
            "sub",
            "../out.sock",
            "link.sock",
            ".",
        ] {
            assert_eq!(plugin.lookup(nothing).await.unwrap(), None, "{nothing}");
        }
        // A path the file system cannot follow is refused with a warning naming why.
        std::os::unix::fs::symlink("loop.sock", dir.join("loop.sock")).unwrap();
        let (found, log) = crate::gate::token::logged(|| find_socket(&real, "loop.sock"));
        assert_eq!(found.unwrap(), None);
        assert!(
            log.contains("Too many levels of symbolic links (os error 40); token refused")
                && log.contains("loop.sock"),
            "{log}"
        );
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(plugin.lookup("a.sock").await.unwrap_err().status(), 503);
    }
}
