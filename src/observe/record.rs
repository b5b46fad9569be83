//! record: `--record FILE`, each session's traffic to `FILE.<n>` in the reference's format,
//! the JavaScript array noVNC's playback page (tests/vnc_playback.html) loads:
//!
//! ```text
//! var VNC_frame_data = [
//! '{12{RFB 003.008\n',      <- to the client, 12 ms after the session opened
//! '}15}RFB 003.008\n',      <- from the client
//! 'EOF'];
//! ```
//!
//! The session's task only copies the bytes into a job for the writer thread
//! (`observe::writer`), which escapes and writes them: the relay never waits on a disk. What a
//! session may have queued is bounded ([`SESSION_BACKLOG`], and [`GLOBAL_BACKLOG`] for all
//! together); past it the recording stops with a warning (the file ends after what was queued,
//! with its end mark); on a write error it stops where it failed. The session is never touched.
//! Files are created 0600: they hold everything typed in the session.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tracing::{info, warn};

use super::writer::{self, Job};
use super::{Direction, Observer, Session};

/// What one session's recording may have queued for the writer, in bytes (payload plus
/// [`FRAME_OVERHEAD`] per piece): 8 MiB, a few seconds of a busy desktop on a slow disk.
pub const SESSION_BACKLOG: usize = 8 << 20;

/// What all recordings together may have queued: 64 MiB.
pub const GLOBAL_BACKLOG: usize = 64 << 20;

/// What a queued piece costs beyond its payload (the job and its allocation).
const FRAME_OVERHEAD: usize = 64;

/// Bytes queued by every recording, not yet written.
pub(super) static GLOBAL: AtomicUsize = AtomicUsize::new(0);

pub(super) const HEAD: &[u8] = b"var VNC_frame_data = [\n";
pub(super) const TAIL: &[u8] = b"'EOF'];\n";

pub(super) fn cost(len: usize) -> usize {
    len + FRAME_OVERHEAD
}

/// A recording's queue, shared by its session (adds) and the writer (removes, or stops it).
#[derive(Debug, Default)]
pub(super) struct Backlog {
    queued: AtomicUsize,
    /// Set by either side when the recording stops; the session then queues nothing more.
    pub(super) stopped: AtomicBool,
}

impl Backlog {
    /// Takes `cost` bytes from both budgets; false (nothing taken) when either is spent.
    fn reserve(&self, cost: usize) -> bool {
        let session = self.queued.fetch_add(cost, Ordering::Relaxed) + cost;
        let global = GLOBAL.fetch_add(cost, Ordering::Relaxed) + cost;
        if session > SESSION_BACKLOG || global > GLOBAL_BACKLOG {
            self.done(cost);
            return false;
        }
        true
    }

    pub(super) fn done(&self, cost: usize) {
        self.queued.fetch_sub(cost, Ordering::Relaxed);
        GLOBAL.fetch_sub(cost, Ordering::Relaxed);
    }
}

/// Records one session: made with the base path and the connection's number.
#[derive(Debug)]
pub struct Recorder {
    id: u64,
    path: PathBuf,
    began: Option<Instant>,
    backlog: Arc<Backlog>,
}

impl Recorder {
    /// The recorder of connection `id` (the reference numbers every accepted connection, from
    /// 1): its file is `base.<id>`.
    pub fn new(base: &Path, id: u64) -> Recorder {
        let mut path = base.as_os_str().to_owned();
        path.push(format!(".{id}"));
        Recorder {
            id,
            path: path.into(),
            began: None,
            backlog: Arc::default(),
        }
    }

    fn stop(&mut self, why: &str) {
        if !self.backlog.stopped.swap(true, Ordering::Relaxed) {
            warn!(
                "recording {} stopped (the session goes on): {why}",
                self.path.display()
            );
        }
    }
}

impl Observer for Recorder {
    fn open(&mut self, _session: &Session<'_>) {
        self.began = Some(Instant::now());
        info!("opening record file: {}", self.path.display());
        let job = Job::RecordOpen {
            id: self.id,
            path: self.path.clone(),
            backlog: self.backlog.clone(),
        };
        if !writer::send(job) {
            self.stop("no writer");
        }
    }

    fn wants_bytes(&self) -> bool {
        true
    }

    fn bytes(&mut self, direction: Direction, data: &[u8]) {
        if self.backlog.stopped.load(Ordering::Relaxed) || data.is_empty() {
            return;
        }
        let Some(began) = self.began else { return };
        if !self.backlog.reserve(cost(data.len())) {
            return self.stop("the disk fell more than the backlog limit behind");
        }
        let job = Job::RecordFrame {
            id: self.id,
            to_client: direction == Direction::TargetToClient,
            ms: began.elapsed().as_millis() as u64,
            data: data.to_vec(),
        };
        if !writer::send(job) {
            self.backlog.done(cost(data.len()));
            self.stop("no writer");
        }
    }
}

impl Drop for Recorder {
    /// At the session's end however it ends (a closed relay, a dropped task at shutdown).
    fn drop(&mut self) {
        if self.began.is_some() {
            writer::send(Job::RecordClose { id: self.id });
        }
    }
}

/// Appends one frame line: `'{MS{DATA',` to the client, `'}MS}DATA',` from it.
pub(super) fn frame_line(out: &mut Vec<u8>, to_client: bool, ms: u64, data: &[u8]) {
    let mark = if to_client { b'{' } else { b'}' };
    out.push(b'\'');
    out.push(mark);
    out.extend_from_slice(ms.to_string().as_bytes());
    out.push(mark);
    escape(out, data);
    out.extend_from_slice(b"',\n");
}

/// Escapes bytes into a single-quoted JavaScript string literal whose characters are the
/// bytes (U+0000-U+00FF), as the reference's `latin1 → unicode_escape`, quote escaped.
pub(super) fn escape(out: &mut Vec<u8>, data: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in data {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\'' => out.extend_from_slice(b"\\'"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0x20..=0x7e => out.push(b),
            _ => out.extend_from_slice(&[
                b'\\',
                b'x',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(data: &[u8]) -> String {
        let mut out = Vec::new();
        escape(&mut out, data);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escaping_matches_the_reference_latin1_unicode_escape() {
        // Python: b.decode('latin1').encode('unicode_escape').decode('ascii').replace("'", "\\'")
        assert_eq!(escaped(b"RFB 003.008\n"), r"RFB 003.008\n");
        assert_eq!(escaped(b"a'b\\c"), r"a\'b\\c");
        assert_eq!(
            escaped(&[0, 9, 13, 0x1f, 0x7f, 0x80, 0xff]),
            r"\x00\t\r\x1f\x7f\x80\xff"
        );
        assert_eq!(escaped(b" ~\""), " ~\"");
    }

    #[test]
    fn a_frame_line_has_its_direction_marks_and_time() {
        let mut out = Vec::new();
        frame_line(&mut out, true, 12, b"hi");
        frame_line(&mut out, false, 0, b"'");
        assert_eq!(out, b"'{12{hi',\n'}0}\\'',\n");
    }

    #[test]
    fn the_backlog_refuses_past_its_bound_and_gives_back_what_it_took() {
        let backlog = Backlog::default();
        assert!(backlog.reserve(SESSION_BACKLOG));
        assert!(!backlog.reserve(1));
        backlog.done(SESSION_BACKLOG);
        assert!(backlog.reserve(1));
        backlog.done(1);
        assert_eq!(backlog.queued.load(Ordering::Relaxed), 0);

        // All recordings together: eight full sessions fill the global bound exactly; one
        // byte more is refused to a ninth, and given back. (In this one test: GLOBAL is shared.)
        let full: Vec<Backlog> = (0..GLOBAL_BACKLOG / SESSION_BACKLOG)
            .map(|_| Backlog::default())
            .collect();
        for session in &full {
            assert!(session.reserve(SESSION_BACKLOG));
        }
        assert_eq!(GLOBAL.load(Ordering::Relaxed), GLOBAL_BACKLOG);
        let ninth = Backlog::default();
        assert!(!ninth.reserve(1));
        assert_eq!(ninth.queued.load(Ordering::Relaxed), 0);
        for session in &full {
            session.done(SESSION_BACKLOG);
        }
        assert!(ninth.reserve(1));
        ninth.done(1);
        assert_eq!(GLOBAL.load(Ordering::Relaxed), 0);
    }

    /// The bounds count each queued piece as its payload plus 64 bytes (the job and its
    /// allocation): a flood of 1-byte pieces must not queue 8 Mi jobs.
    #[test]
    fn a_queued_piece_costs_its_payload_and_64_bytes() {
        assert_eq!(cost(0), 64);
        assert_eq!(cost(1000), 1064);
    }

    /// A stopped recording queues nothing more: its file ends with what was queued before.
    #[test]
    fn a_stopped_recording_queues_nothing_more() {
        let mut rec = Recorder::new(Path::new("/nonexistent/rec"), 1);
        rec.began = Some(Instant::now());
        rec.backlog.stopped.store(true, Ordering::Relaxed);
        rec.bytes(Direction::TargetToClient, b"after the stop");
        assert_eq!(rec.backlog.queued.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_file_is_the_base_path_and_the_connection_number() {
        let rec = Recorder::new(Path::new("/tmp/rec"), 7);
        assert_eq!(rec.path, PathBuf::from("/tmp/rec.7"));
    }
}
