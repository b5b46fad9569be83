//! file_name: `TokenFileName`. The source is a directory; the token names a file in it whose
//! whole content is the target, `host:port` or `unix_socket:/path`.
//!
//! As the reference, the token is reduced to its base name (everything after its last `/`).
//! Unlike the reference, the file must also *stay* inside the directory: its path is
//! canonicalised (symlinks and `..` resolved) and compared with the directory's by path
//! components, so a symlink leading out is refused; and its content is split at the LAST colon
//! (the reference splits at every colon, so an IPv6 target breaks). Every lookup reads the
//! file, on the blocking pool: adding, editing or deleting a file applies at once.
//!
//! Answers: no such file (or not a regular file, or one leading out) → `Ok(None)` (404,
//! "Token not found"); a file that cannot be read or does not hold a target → a warning naming
//! the file and 503 for that token: the token exists, our side of it is broken, and the client
//! should not be told it has a wrong token.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::warn;

use super::file::{blocking, is_space, parse_target, unavailable};
use crate::config::TargetSpec;
use crate::error::{Error, StartError};
use crate::observe::redact::Quoted;

/// The most a token file may hold; a target is a few dozen bytes.
const MAX_FILE: u64 = 4096;

/// `TokenFileName`.
#[derive(Debug)]
pub struct TokenFileName {
    /// Canonical.
    dir: PathBuf,
}

impl TokenFileName {
    /// `source` must be a directory (the reference raises at start-up too).
    pub fn open(source: &str) -> Result<TokenFileName, StartError> {
        Ok(TokenFileName {
            dir: source_dir(source, "TokenFileName")?,
        })
    }

    pub async fn lookup(&self, token: &str) -> Result<Option<Arc<TargetSpec>>, Error> {
        let Some(name) = base_name(token) else {
            return Ok(None);
        };
        let path = self.dir.join(name);
        let dir = self.dir.clone();
        blocking(move || read_target(&dir, &path)).await?
    }

    pub fn describe(&self) -> String {
        format!("TokenFileName {}", self.dir.display())
    }
}

/// The canonical path of a directory `source`, or a start-up error naming it.
pub(super) fn source_dir(source: &str, plugin: &str) -> Result<PathBuf, StartError> {
    match std::fs::canonicalize(source) {
        Ok(dir) if dir.is_dir() => Ok(dir),
        Ok(_) => Err(StartError::new(format!(
            "--token-source {source}: not a directory ({plugin} needs one)"
        ))),
        Err(err) => Err(StartError::new(format!("--token-source {source}: {err}"))),
    }
}

/// Whether `path` (canonical) is strictly inside `dir` (canonical), compared by components:
/// `/run/vnc-other/x` is not inside `/run/vnc`.
pub(super) fn inside(dir: &Path, path: &Path) -> bool {
    path != dir && path.starts_with(dir)
}

/// The longest file name Linux file systems allow; a longer token names no file (and must not
/// reach the file system, which would answer with an error instead of "no such file").
const NAME_MAX: usize = 255;

/// The token as the reference reduces it (`os.path.basename`: after the last `/`); `None` for
/// what cannot name a file in the directory (empty, `.`, `..`, a NUL byte, over `NAME_MAX`).
pub fn base_name(token: &str) -> Option<&str> {
    let base = token.rsplit('/').next().unwrap_or(token);
    match base {
        "" | "." | ".." => None,
        _ if base.contains('\0') || base.len() > NAME_MAX => None,
        _ => Some(base),
    }
}

/// The target a token file holds: its content stripped, one line, read as a TokenFile's
/// target (split at the last colon; `unix_socket:/path`; brackets dropped; port 0-65535).
pub fn parse_content(content: &str) -> Result<TargetSpec, &'static str> {
    let content = content.trim_matches(is_space);
    if content.contains(['\n', '\r']) {
        return Err("more than one line");
    }
    parse_target(content)
}

fn read_target(dir: &Path, path: &Path) -> Result<Option<Arc<TargetSpec>>, Error> {
    let refuse = |why: &dyn std::fmt::Display| {
        warn!(file = %Quoted(&path.to_string_lossy()), "TokenFileName: {why}; token refused");
        Err(unavailable())
    };
    let real = match std::fs::canonicalize(path) {
        Ok(real) => real,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            if !dir.is_dir() {
                return refuse(&"the token directory is gone");
            }
            return Ok(None);
        }
        Err(err) => return refuse(&err),
    };
    if !inside(dir, &real) {
        warn!(
            file = %Quoted(&path.to_string_lossy()),
            leads_to = %Quoted(&real.to_string_lossy()),
            "TokenFileName: the file leads out of the token directory; token refused"
        );
        return Ok(None);
    }
    // Only a regular file is a token (not a directory, a socket or a FIFO).
    if !std::fs::metadata(&real).is_ok_and(|meta| meta.is_file()) {
        return Ok(None);
    }
    let mut content = Vec::new();
    if let Err(err) = std::fs::File::open(&real)
        .and_then(|file| file.take(MAX_FILE + 1).read_to_end(&mut content))
    {
        return refuse(&err);
    }
    if content.len() as u64 > MAX_FILE {
        return refuse(&format_args!("larger than {MAX_FILE} bytes"));
    }
    let Ok(content) = std::str::from_utf8(&content) else {
        return refuse(&"not UTF-8");
    };
    match parse_content(content) {
        Ok(target) => Ok(Some(Arc::new(target))),
        Err(why) => refuse(&why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_reduced_to_its_base_name() {
        assert_eq!(base_name("desk"), Some("desk"));
        assert_eq!(base_name("../../etc/passwd"), Some("passwd"));
        assert_eq!(base_name("/abs/desk"), Some("desk"));
        for none in ["", "dir/", ".", "..", "a/..", "x\0y"] {
            assert_eq!(base_name(none), None, "{none:?}");
        }
    }

    #[test]
    fn the_content_splits_at_the_last_colon() {
        let tcp = |host: &str, port| TargetSpec::Tcp {
            host: host.into(),
            port,
        };
        assert_eq!(parse_content("host:5900\n"), Ok(tcp("host", 5900)));
        assert_eq!(parse_content("  ::1:5901 \r\n"), Ok(tcp("::1", 5901)));
        assert_eq!(parse_content("[fe80::1]:5901"), Ok(tcp("fe80::1", 5901)));
        assert_eq!(
            parse_content("unix_socket:/run/vnc.sock\n"),
            Ok(TargetSpec::Unix("/run/vnc.sock".into()))
        );
        for bad in ["", "host", "host:x", "host:70000", "a:1\nb:2", ":1"] {
            assert!(parse_content(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn inside_compares_by_components() {
        let dir = Path::new("/run/vnc");
        assert!(inside(dir, Path::new("/run/vnc/a.sock")));
        assert!(inside(dir, Path::new("/run/vnc/sub/a.sock")));
        assert!(!inside(dir, Path::new("/run/vnc")));
        assert!(!inside(dir, Path::new("/run/vnc-other/a.sock")));
        assert!(!inside(dir, Path::new("/run/vncx")));
        assert!(!inside(dir, Path::new("/run")));
    }

    #[test]
    fn a_name_of_name_max_bytes_is_a_name_and_a_longer_one_none() {
        let longest = "x".repeat(NAME_MAX);
        assert_eq!(base_name(&longest), Some(longest.as_str()));
        assert_eq!(base_name(&format!("{longest}x")), None);
        assert_eq!(base_name(&format!("dir/{longest}")), Some(longest.as_str()));
    }

    /// What a lookup answers for each kind of file: the target; nothing for a missing file, a
    /// directory or one leading out; 503 for a token file that holds no target, is too large
    /// or not UTF-8, and for a directory that is gone.
    #[tokio::test]
    async fn each_kind_of_file_gets_its_answer() {
        let root = std::env::temp_dir().join(format!("websockify-names-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dir = root.join("tokens");
        std::fs::create_dir_all(dir.join("subdir")).unwrap();
        std::fs::write(root.join("outside"), "out:1").unwrap();
        std::os::unix::fs::symlink(root.join("outside"), dir.join("out")).unwrap();
        std::os::unix::fs::symlink("dangling", dir.join("nowhere")).unwrap();
        std::os::unix::fs::symlink("loop", dir.join("loop")).unwrap();
        std::fs::write(dir.join("desk"), "host:5900\n").unwrap();
        // Exactly MAX_FILE bytes is still read; one more is refused.
        let padded = format!("{:<1$}", "host:5901", MAX_FILE as usize);
        std::fs::write(dir.join("full"), &padded).unwrap();
        std::fs::write(dir.join("over"), format!("{padded} ")).unwrap();
        std::fs::write(dir.join("latin1"), b"h\xe9:1").unwrap();
        std::fs::write(dir.join("garbage"), "no port").unwrap();
        let plugin = TokenFileName::open(dir.to_str().unwrap()).unwrap();
        assert_eq!(
            plugin.describe(),
            format!("TokenFileName {}", dir.canonicalize().unwrap().display())
        );
        let tcp = |host: &str, port| {
            Some(Arc::new(TargetSpec::Tcp {
                host: host.into(),
                port,
            }))
        };
        assert_eq!(plugin.lookup("desk").await.unwrap(), tcp("host", 5900));
        assert_eq!(plugin.lookup("../x/desk").await.unwrap(), tcp("host", 5900));
        assert_eq!(plugin.lookup("full").await.unwrap(), tcp("host", 5901));
        for nothing in ["missing", "nowhere", "subdir", "out", "..", ""] {
            assert_eq!(plugin.lookup(nothing).await.unwrap(), None, "{nothing}");
        }
        // A symlink loop is an error of the source, not a missing token.
        for broken in ["over", "latin1", "garbage", "loop"] {
            let err = plugin.lookup(broken).await.unwrap_err();
            assert_eq!(err.status(), 503, "{broken}");
        }
        std::fs::remove_dir_all(&root).unwrap();
        let err = plugin.lookup("desk").await.unwrap_err();
        assert_eq!(err.status(), 503, "the directory is gone");
    }

    #[test]
    fn the_source_must_be_a_directory() {
        let file = std::env::temp_dir().join(format!("websockify-notdir-{}", std::process::id()));
        std::fs::write(&file, "").unwrap();
        let err = TokenFileName::open(file.to_str().unwrap()).unwrap_err();
        assert!(err.message.contains("not a directory"), "{err}");
        std::fs::remove_file(&file).unwrap();
        let err = TokenFileName::open(file.to_str().unwrap()).unwrap_err();
        assert!(err.message.contains("No such file"), "{err}");
    }
}
