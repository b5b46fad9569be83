//! writer: the one thread that does the observers' slow output (recording files, the traffic
//! symbols on stdout), so that a session's task never waits on a disk or a pipe. Sessions hand
//! it jobs over a channel; what each job may hold is bounded by its sender (`record`, `traffic`).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tracing::{info, warn};

use super::record::{self, Backlog};

/// Work for the writer thread.
pub(super) enum Job {
    /// Create (truncate) a session's recording file and write its head.
    RecordOpen {
        id: u64,
        path: PathBuf,
        backlog: Arc<Backlog>,
    },
    /// One relayed piece of a session, `ms` after it opened.
    RecordFrame {
        id: u64,
        to_client: bool,
        ms: u64,
        data: Vec<u8>,
    },
    /// End a session's recording (`'EOF'];`) and close its file.
    RecordClose { id: u64 },
    /// Traffic symbols for stdout.
    Traffic(&'static str),
    /// Everything sent before it is written; then tell the sender.
    Sync(mpsc::SyncSender<()>),
}

/// The writer's inbox; `None` when its thread could not be started (then nothing is recorded).
static INBOX: OnceLock<Option<Mutex<Sender<Job>>>> = OnceLock::new();

/// Hands `job` to the writer thread, starting it on first use (so that nothing runs before a
/// `-D` fork). False when there is no writer.
pub(super) fn send(job: Job) -> bool {
    let inbox = INBOX.get_or_init(|| {
        let (tx, rx) = mpsc::channel();
        match std::thread::Builder::new()
            .name("observe-writer".into())
            .spawn(move || run(rx))
        {
            Ok(_) => Some(Mutex::new(tx)),
            Err(err) => {
                warn!("cannot start the recording writer: {err}; --record and --traffic are off");
                None
            }
        }
    });
    match inbox {
        // The lock only guards a clone; a Sender is not Sync on older compilers.
        Some(tx) => {
            let tx = tx.lock().unwrap_or_else(PoisonError::into_inner).clone();
            tx.send(job).is_ok()
        }
        None => false,
    }
}

/// Waits (at most `timeout`) until every job sent so far is written: at exit, so that the last
/// recordings end with their `'EOF'];`.
pub fn flush(timeout: Duration) {
    let Some(Some(_)) = INBOX.get() else { return };
    let (tx, rx) = mpsc::sync_channel(1);
    if send(Job::Sync(tx)) {
        let _ = rx.recv_timeout(timeout);
    }
}

/// An open recording.
struct Recording {
    path: PathBuf,
    out: BufWriter<File>,
    backlog: Arc<Backlog>,
}

fn run(inbox: Receiver<Job>) {
    let mut files: HashMap<u64, Recording> = HashMap::new();
    let mut stdout_dirty = false;
    loop {
        let job = match inbox.try_recv() {
            Ok(job) => job,
            Err(TryRecvError::Empty) => {
                // Idle: make what was written visible (tail -f, a traffic watcher).
                flush_all(&mut files, &mut stdout_dirty);
                match inbox.recv() {
                    Ok(job) => job,
                    Err(_) => return,
                }
            }
            Err(TryRecvError::Disconnected) => return,
        };
        match job {
            Job::RecordOpen { id, path, backlog } => {
                // 0600: a recording holds everything typed in the session (passwords too).
                let opened = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&path)
                    .and_then(|file| {
                        let mut out = BufWriter::with_capacity(64 * 1024, file);
                        out.write_all(record::HEAD)?;
                        Ok(out)
                    });
                match opened {
                    Ok(out) => {
                        files.insert(id, Recording { path, out, backlog });
                    }
                    Err(err) => {
                        backlog.stopped.store(true, Ordering::Relaxed);
                        warn!(
                            "recording stopped (the session goes on): cannot create {}: {err}",
                            path.display()
                        );
                    }
                }
            }
            Job::RecordFrame {
                id,
                to_client,
                ms,
                data,
            } => {
                if let Some(rec) = files.get_mut(&id) {
                    let mut line = Vec::with_capacity(data.len() * 2 + 32);
                    record::frame_line(&mut line, to_client, ms, &data);
                    let written = rec.out.write_all(&line);
                    rec.backlog.done(record::cost(data.len()));
                    if let Err(err) = written {
                        fail(&mut files, id, &err);
                    }
                } else {
                    record::GLOBAL.fetch_sub(record::cost(data.len()), Ordering::Relaxed);
                }
            }
            Job::RecordClose { id } => {
                if let Some(mut rec) = files.remove(&id) {
                    let ended = rec
                        .out
                        .write_all(record::TAIL)
                        .and_then(|()| rec.out.flush());
                    match ended {
                        Ok(()) => info!("recording {} complete", rec.path.display()),
                        Err(err) => {
                            warn!("recording {} stopped: {err}", rec.path.display())
                        }
                    }
                }
            }
            Job::Traffic(symbols) => {
                super::traffic::QUEUED.fetch_sub(1, Ordering::Relaxed);
                // A closed stdout only loses the symbols.
                let _ = io::stdout().lock().write_all(symbols.as_bytes());
                stdout_dirty = true;
            }
            Job::Sync(done) => {
                flush_all(&mut files, &mut stdout_dirty);
                let _ = done.try_send(());
            }
        }
    }
}

fn flush_all(files: &mut HashMap<u64, Recording>, stdout_dirty: &mut bool) {
    let failed: Vec<(u64, io::Error)> = files
        .iter_mut()
        .filter_map(|(id, rec)| rec.out.flush().err().map(|err| (*id, err)))
        .collect();
    for (id, err) in failed {
        fail(files, id, &err);
    }
    if std::mem::take(stdout_dirty) {
        let _ = io::stdout().lock().flush();
    }
}

/// A write failed (a full disk, a removed mount): this recording stops, never the session.
fn fail(files: &mut HashMap<u64, Recording>, id: u64, err: &io::Error) {
    if let Some(rec) = files.remove(&id) {
        rec.backlog.stopped.store(true, Ordering::Relaxed);
        warn!(
            "recording {} stopped (the session goes on): {err}",
            rec.path.display()
        );
        // Dropping the BufWriter retries the flush once; its error is the same one.
    }
}
