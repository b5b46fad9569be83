//! file: `TokenFile` and `ReadOnlyTokenFile` (and `--target-config`): `token: host:port`
//! lines in a file, or in every regular file of a directory.
//!
//! The line format is the reference's, quirks included ([`parse_line`]). `ReadOnlyTokenFile`
//! reads its source once, at start-up. `TokenFile` applies edits without a restart: each lookup
//! compares the source's stamps (size, modification time, inode of the file, or of the
//! directory and each of its files) with those it loaded, a few `stat`s on the runtime thread
//! ([`unchanged`] says why not on the blocking pool), and reads the source again, on the
//! blocking pool, only when they differ, so a file replaced by rename (as editors
//! and configuration managers do) is picked up as well as one edited in place. File times tick
//! coarsely (a few milliseconds), so an edit right after a read may keep every stamp: a source
//! modified less than `RACY` before it was read is read again at each lookup until it has
//! been quiet that long (git's "racily clean" rule). A source that
//! can no longer be read refuses every token (503) until it can: deleting the file revokes
//! access, it does not freeze the old table.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use tracing::warn;

use crate::config::TargetSpec;
use crate::error::{Error, Kind, Side, StartError};

/// What one line of a token file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// Blank, or a `#` comment.
    Skip,
    Entry {
        token: String,
        target: TargetSpec,
    },
    /// Not a `token: host:port` line: why (the line is skipped with a warning).
    Malformed(&'static str),
}

/// Reads one line as the reference does: stripped; blank and `#` lines skipped; split at `:`
/// followed by whitespace (exactly one such place, so a token may contain `:`), the token kept
/// as it is; the target stripped and split at its LAST colon, so a bare IPv6 address works
/// (`tok: ::1:5901`), and brackets around the host are dropped (`[::1]:5901`, which the
/// reference would pass on as a host name and fail on); `unix_socket:/path` names a Unix socket.
pub fn parse_line(line: &str) -> Line {
    let line = line.trim_matches(is_space);
    if line.is_empty() || line.starts_with('#') {
        return Line::Skip;
    }
    let mut splits = line
        .char_indices()
        .filter(|&(i, c)| c == ':' && line[i + 1..].starts_with(is_space));
    let Some((colon, _)) = splits.next() else {
        return Line::Malformed("expected 'token: host:port'");
    };
    if splits.next().is_some() {
        return Line::Malformed("more than one ': ' in the line");
    }
    let token = &line[..colon];
    // Past the colon and the one whitespace character the split consumed.
    let rest = &line[colon + 1..];
    let rest = &rest[rest.chars().next().map_or(0, char::len_utf8)..];
    match parse_target(rest.trim_matches(is_space)) {
        Ok(target) => Line::Entry {
            token: token.to_owned(),
            target,
        },
        Err(why) => Line::Malformed(why),
    }
}

/// Whitespace as Python sees it (`str.strip`, the regex `\s`): Unicode whitespace and the
/// four separators U+001C..U+001F, which Rust's `char::is_whitespace` leaves out.
pub fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// A target as token sources write it (already stripped): `host:port`, split at the LAST
/// colon, brackets around the host dropped, the port 0-65535; or `unix_socket:/path`.
pub fn parse_target(target: &str) -> Result<TargetSpec, &'static str> {
    let Some((host, port)) = target.rsplit_once(':') else {
        return Err("the target has no ':port'");
    };
    if host == "unix_socket" {
        if port.is_empty() {
            return Err("unix_socket: needs a path");
        }
        return Ok(TargetSpec::Unix(PathBuf::from(port)));
    }
    let host = host.trim_matches(['[', ']']);
    if host.is_empty() {
        return Err("the target has no host");
    }
    match port.trim().parse::<u16>() {
        Ok(port) => Ok(TargetSpec::Tcp {
            host: host.to_owned(),
            port,
        }),
        Err(_) => Err("the target's port is not a number (0-65535)"),
    }
}

/// What identifies a version of a file: a rename or an edit changes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
    device: u64,
}

impl FileStamp {
    fn of(meta: &std::fs::Metadata) -> FileStamp {
        FileStamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            inode: meta.ino(),
            device: meta.dev(),
        }
    }
}

/// The stamps of a source: the file, or the directory then each file read from it.
type Stamps = Vec<(PathBuf, FileStamp)>;

/// How long after its last modification a file's stamps may still hide an edit.
const RACY: std::time::Duration = std::time::Duration::from_secs(2);

/// A source as loaded.
#[derive(Debug)]
struct Table {
    stamps: Stamps,
    /// Some stamp was too fresh when read: the next lookup reads the source again.
    racy: bool,
    /// `Err` when the source could not be read: every lookup is refused until it can.
    targets: Result<HashMap<String, Arc<TargetSpec>>, String>,
}

/// `TokenFile` (`watch`) or `ReadOnlyTokenFile`.
#[derive(Debug)]
pub struct TokenFile {
    /// Absolute (a later `chdir` must not change it).
    source: PathBuf,
    watch: bool,
    table: ArcSwap<Table>,
    /// One reload at a time; lookups meanwhile use the table they found.
    reloading: tokio::sync::Mutex<()>,
}

impl TokenFile {
    /// Reads `source` now: a source that does not exist or cannot be read is a start-up error
    /// naming it; a malformed line is a warning naming file and line.
    pub fn open(source: &str, watch: bool) -> Result<TokenFile, StartError> {
        let path = std::path::absolute(source)
            .map_err(|e| StartError::new(format!("--token-source {source}: {e}")))?;
        let table = load(&path);
        if let Err(err) = &table.targets {
            return Err(StartError::new(format!("--token-source {source}: {err}")));
        }
        Ok(TokenFile {
            source: path,
            watch,
            table: ArcSwap::from_pointee(table),
            reloading: tokio::sync::Mutex::new(()),
        })
    }

    pub async fn lookup(&self, token: &str) -> Result<Option<Arc<TargetSpec>>, Error> {
        if self.watch {
            self.refresh().await?;
        }
        let table = self.table.load();
        match &table.targets {
            Ok(targets) => Ok(targets.get(token).cloned()),
            Err(_) => Err(unavailable()),
        }
    }

    /// Reads the source again if its stamps changed since it was loaded.
    async fn refresh(&self) -> Result<(), Error> {
        let loaded = self.table.load_full();
        if !loaded.racy && unchanged(&self.source, &loaded.stamps) {
            return Ok(());
        }
        let _one_at_a_time = self.reloading.lock().await;
        // Another lookup may have reloaded it while this one waited.
        let reloaded = self.table.load_full();
        if !Arc::ptr_eq(&loaded, &reloaded)
            && !reloaded.racy
            && unchanged(&self.source, &reloaded.stamps)
        {
            return Ok(());
        }
        let path = self.source.clone();
        let table = blocking(move || load(&path)).await?;
        if let Err(err) = &table.targets {
            warn!(source = %self.source.display(), "token source unreadable, refusing every token: {err}");
        }
        self.table.store(Arc::new(table));
        Ok(())
    }

    pub fn describe(&self) -> String {
        let kind = if self.watch {
            "TokenFile"
        } else {
            "ReadOnlyTokenFile"
        };
        format!("{kind} {}", self.source.display())
    }
}

pub(super) fn unavailable() -> Error {
    Error::new(
        Side::Internal,
        Kind::Unavailable,
        "token source unavailable",
    )
}

/// Runs `work` on the blocking pool: file system calls never block the runtime.
pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| unavailable())
}

/// Whether the source still has the stamps it was loaded with, checking the same files (and
/// the directory, whose own stamp changes when a file is added, removed or renamed).
///
/// `stat`ed here, on the runtime thread: a `stat` of a local file takes about a microsecond,
/// while the hop to the blocking pool and back (two thread wake-ups) cost more CPU than the
/// rest of the gate (about 22 µs against 15 µs per session, BENCHMARKS.md 2026-12-06). What
/// the pool protected against is a token file on a network mount that hangs: then this worker
/// hangs with it (the reference, which reads the file at each connection, hangs every
/// connection). Keep token files on local disks; the read of a changed source stays on the
/// pool.
fn unchanged(source: &Path, loaded: &Stamps) -> bool {
    let stamp = |path: &Path| {
        std::fs::metadata(path)
            .ok()
            .map(|meta| FileStamp::of(&meta))
    };
    if loaded.is_empty() {
        // Unreadable when loaded: changed once it is there.
        return stamp(source).is_none();
    }
    loaded
        .iter()
        .all(|(path, loaded)| stamp(path).as_ref() == Some(loaded))
}

/// Reads the whole source: the file, or every regular file in the directory (by name order,
/// so that a token defined twice resolves the same way every time: the last one wins).
fn load(source: &Path) -> Table {
    let read_at = SystemTime::now();
    let mut stamps = Vec::new();
    let targets = read_source(source, &mut stamps).map_err(|e| e.to_string());
    let racy = stamps.iter().any(|(_, stamp)| {
        stamp
            .modified
            .is_none_or(|modified| modified + RACY > read_at)
    });
    Table {
        stamps,
        racy,
        targets,
    }
}

fn read_source(source: &Path, stamps: &mut Stamps) -> io::Result<HashMap<String, Arc<TargetSpec>>> {
    let meta = std::fs::metadata(source)?;
    stamps.push((source.to_path_buf(), FileStamp::of(&meta)));
    let files = if meta.is_dir() {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(source)? {
            let path = entry?.path();
            if std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
                files.push(path);
            }
        }
        files.sort();
        files
    } else {
        vec![source.to_path_buf()]
    };
    let mut targets = HashMap::new();
    for file in files {
        let meta = std::fs::metadata(&file)?;
        if file != source {
            stamps.push((file.clone(), FileStamp::of(&meta)));
        }
        let text = std::fs::read(&file)?;
        let text = String::from_utf8_lossy(&text);
        for (n, line) in text.lines().enumerate() {
            match parse_line(line) {
                Line::Skip => {}
                Line::Entry { token, target } => {
                    targets.insert(token, Arc::new(target));
                }
                Line::Malformed(why) => warn!(
                    file = %file.display(),
                    line = n + 1,
                    "token file: {why}; line skipped"
                ),
            }
        }
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(token: &str, host: &str, port: u16) -> Line {
        Line::Entry {
            token: token.into(),
            target: TargetSpec::Tcp {
                host: host.into(),
                port,
            },
        }
    }

    /// The check for edits runs in place: lookups go on while the blocking pool is busy; the
    /// read of an edited file still waits for the pool, and then serves the edit.
    #[test]
    fn an_unchanged_file_is_checked_in_place_and_an_edited_one_read_on_the_blocking_pool() {
        let dir = std::env::temp_dir().join(format!("websockify-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokens");
        std::fs::write(&path, "a: host:1\n").unwrap();
        // Older than RACY: its stamps are trusted, as a file that has been there a while.
        let old = SystemTime::now() - std::time::Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let runtime = crate::gate::token::one_blocking_thread();
        runtime.block_on(async {
            let file = TokenFile::open(path.to_str().unwrap(), true).unwrap();
            let (release, wait) = std::sync::mpsc::channel::<()>();
            let busy = tokio::task::spawn_blocking(move || wait.recv());
            let bound = std::time::Duration::from_secs(10);
            let found = tokio::time::timeout(bound, file.lookup("a")).await;
            let target = |host: &str, port| {
                Some(Arc::new(TargetSpec::Tcp {
                    host: host.into(),
                    port,
                }))
            };
            assert_eq!(found.unwrap().unwrap(), target("host", 1));

            std::fs::write(&path, "a: other:2\n").unwrap();
            let mut reading = std::pin::pin!(file.lookup("a"));
            let early = std::time::Duration::from_millis(200);
            assert!(
                tokio::time::timeout(early, &mut reading).await.is_err(),
                "the edited file was read without the blocking pool"
            );
            release.send(()).unwrap();
            let found = tokio::time::timeout(bound, reading).await;
            assert_eq!(found.unwrap().unwrap(), target("other", 2));
            busy.await.unwrap().unwrap();
        });
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn lines_are_read_as_the_reference_reads_them() {
        assert_eq!(parse_line("abc: host:5900"), entry("abc", "host", 5900));
        assert_eq!(
            parse_line("  abc:\thost:5900  "),
            entry("abc", "host", 5900)
        );
        // A token may contain ':' not followed by whitespace.
        assert_eq!(parse_line("a:b: host:1"), entry("a:b", "host", 1));
        // The target splits at its last colon: bare IPv6 works.
        assert_eq!(parse_line("b:\t::1:5901"), entry("b", "::1", 5901));
        assert_eq!(parse_line("c: [::1]:5901"), entry("c", "::1", 5901));
        assert_eq!(parse_line("d:   host:5900"), entry("d", "host", 5900));
        // Python's whitespace includes U+001C..U+001F (found by the token_line fuzz model).
        assert_eq!(
            parse_line("\u{1f}f:\u{1c}host:1\u{1d}"),
            entry("f", "host", 1)
        );
        // The token is kept as it is, trailing space included (the split is at ': ').
        assert_eq!(parse_line("e : host:1"), entry("e ", "host", 1));
        assert_eq!(
            parse_line("u: unix_socket:/run/vnc.sock"),
            Line::Entry {
                token: "u".into(),
                target: TargetSpec::Unix("/run/vnc.sock".into())
            }
        );
        for skipped in ["", "   ", "# a: b:1", "  #x"] {
            assert_eq!(parse_line(skipped), Line::Skip, "{skipped:?}");
        }
        for bad in [
            "no separator",
            "abc:host:5900",
            "a: b: c:1",
            "a: host",
            "a: host:port",
            "a: host:70000",
            "a: :5900",
            "a: unix_socket:",
        ] {
            assert!(
                matches!(parse_line(bad), Line::Malformed(_)),
                "{bad:?}: {:?}",
                parse_line(bad)
            );
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("websockify-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn set_modified(path: &Path, ago: std::time::Duration) {
        // Read-only: a directory's times are set through it too (the owner may).
        std::fs::File::open(path)
            .unwrap()
            .set_modified(SystemTime::now() - ago)
            .unwrap();
    }

    /// A source modified within `RACY` of its reading is read again; an older one is trusted
    /// to its stamps. A directory's stamps are its own and each file's, a file's only its own.
    #[test]
    fn fresh_sources_are_racy_and_every_file_of_a_directory_is_stamped() {
        let dir = scratch("racy");
        let file = dir.join("a");
        std::fs::write(&file, "a: host:1\n").unwrap();
        let table = load(&file);
        assert!(table.racy, "a file written just now");
        assert_eq!(table.stamps.len(), 1);
        set_modified(&file, std::time::Duration::from_secs(60));
        let table = load(&file);
        assert!(!table.racy, "a file untouched for a minute");
        assert_eq!(
            table.stamps,
            [(file.clone(), FileStamp::of(&file.metadata().unwrap()))]
        );
        assert!(unchanged(&file, &table.stamps));

        std::fs::write(dir.join("b"), "b: host:2\n").unwrap();
        set_modified(&dir.join("b"), std::time::Duration::from_secs(60));
        set_modified(&dir, std::time::Duration::from_secs(60));
        let table = load(&dir);
        assert!(!table.racy);
        let stamped: Vec<&Path> = table
            .stamps
            .iter()
            .map(|(path, _)| path.as_path())
            .collect();
        assert_eq!(stamped, [dir.as_path(), &file, &dir.join("b")]);
        assert_eq!(table.targets.as_ref().unwrap().len(), 2);
        // An edit in place of one file (the directory's own stamp unchanged) is a change.
        std::fs::write(dir.join("b"), "b: host:3\n").unwrap();
        set_modified(&dir, std::time::Duration::from_secs(60));
        assert!(!unchanged(&dir, &table.stamps));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A source unreadable when loaded has no stamps: it has changed once it exists again.
    #[test]
    fn an_unreadable_source_changes_when_it_appears() {
        let dir = scratch("appears");
        let file = dir.join("tokens");
        let table = load(&file);
        assert!(table.targets.is_err() && table.stamps.is_empty());
        assert!(unchanged(&file, &table.stamps));
        std::fs::write(&file, "a: host:1\n").unwrap();
        assert!(!unchanged(&file, &table.stamps));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A malformed line is skipped with a warning naming its file and line (counted from 1).
    #[test]
    fn a_malformed_line_is_named_by_its_number() {
        let dir = scratch("malformed");
        let file = dir.join("tokens");
        std::fs::write(&file, "a: host:1\nnot a line\nb: host:2\n").unwrap();
        let (table, text) = crate::gate::token::logged(|| load(&file));
        assert_eq!(table.targets.unwrap().len(), 2);
        assert!(
            text.contains("line skipped") && text.contains(" line=2\n"),
            "{text}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A lookup that waited while another read the edited source takes the table that one
    /// read, without reading again, unless it was read while the file was fresh (racy): then
    /// it reads again. The one blocking thread is kept busy to see which lookup reads.
    #[test]
    fn a_lookup_that_waited_for_a_reload_reads_again_only_after_a_racy_one() {
        use std::sync::mpsc::channel;
        use std::time::Duration;
        use tokio::time::timeout;

        let dir = scratch("waited");
        let path = dir.join("tokens");
        std::fs::write(&path, "a: host:1\n").unwrap();
        set_modified(&path, Duration::from_secs(120));
        let runtime = crate::gate::token::one_blocking_thread();
        runtime.block_on(async {
            let file = TokenFile::open(path.to_str().unwrap(), true).unwrap();
            let (bound, early) = (Duration::from_secs(10), Duration::from_millis(200));
            let host = |port| {
                Some(Arc::new(TargetSpec::Tcp {
                    host: "host".into(),
                    port,
                }))
            };
            for (racy, port) in [(false, 2), (true, 3)] {
                std::fs::write(&path, format!("a: host:{port}\n")).unwrap();
                if !racy {
                    set_modified(&path, Duration::from_secs(60));
                }
                // The first lookup waits for the blocking thread to read the edit, the second
                // for the first.
                let (release, wait) = channel::<()>();
                let busy = tokio::task::spawn_blocking(move || wait.recv());
                let mut first = std::pin::pin!(file.lookup("a"));
                assert!(timeout(early, &mut first).await.is_err());
                let mut second = std::pin::pin!(file.lookup("a"));
                assert!(timeout(early, &mut second).await.is_err());
                // The blocking thread: the first lookup's read, then busy again.
                let (release_again, wait_again) = channel::<()>();
                let busy_again = tokio::task::spawn_blocking(move || wait_again.recv());
                release.send(()).unwrap();
                assert_eq!(timeout(bound, first).await.unwrap().unwrap(), host(port));
                if racy {
                    assert!(
                        timeout(early, &mut second).await.is_err(),
                        "a table read while the file was fresh was trusted"
                    );
                } else {
                    let found = timeout(bound, &mut second).await;
                    assert_eq!(found.expect("read the source again").unwrap(), host(port));
                }
                release_again.send(()).unwrap();
                if racy {
                    assert_eq!(timeout(bound, second).await.unwrap().unwrap(), host(port));
                }
                busy.await.unwrap().unwrap();
                busy_again.await.unwrap().unwrap();
            }
        });
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// An edit that keeps size, time and inode is still read while the file is fresh.
    #[tokio::test]
    async fn a_fresh_file_is_read_again_even_with_the_same_stamps() {
        let dir = scratch("same-stamps");
        let path = dir.join("tokens");
        std::fs::write(&path, "a: host:1\n").unwrap();
        let file = TokenFile::open(path.to_str().unwrap(), true).unwrap();
        let modified = path.metadata().unwrap().modified().unwrap();
        std::fs::write(&path, "a: host:2\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(modified)
            .unwrap();
        let found = file.lookup("a").await.unwrap();
        let expected = TargetSpec::Tcp {
            host: "host".into(),
            port: 2,
        };
        assert_eq!(found.as_deref(), Some(&expected));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
