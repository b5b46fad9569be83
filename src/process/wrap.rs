//! wrap: `websockify PORT -- PROGRAM ARGS`. The program runs with the rebind shim preloaded,
//! which moves its bind() of PORT to a free loopback port; the server listens on PORT and
//! proxies to that port. Prepared (port picked, shim written, program found) before `-D`
//! detaches, so those failures reach the terminal; started inside the runtime, after it.
//!
//! The program runs in a process group of its own: a Ctrl-C at the terminal reaches
//! websockify only, which then stops serving and sends SIGTERM to the group (so a shell
//! wrapper and what it started stop too), SIGKILL after [`STOP_GRACE`]. It is always reaped
//! (tokio's child wait), so it never stays a zombie.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::DirBuilder;
use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustix::process::{kill_process_group, Pid, Signal};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::{Settings, TargetSpec, Targets, Wrap, WrapMode};
use crate::error::StartError;

/// The shim, built by build.rs from `rebind.c`.
const SHIM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/rebind.so"));

/// How long the program has to exit after SIGTERM before it gets SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// `--wrap-mode respawn`: at most this many starts within [`RESPAWN_WINDOW`] (the reference's
/// rule); a program dying faster waits for the window, with one warning.
pub const RESPAWN_STARTS: usize = 3;
pub const RESPAWN_WINDOW: Duration = Duration::from_secs(10);

/// A program ready to start: its loopback port is picked and its shim written.
#[derive(Debug)]
pub struct Program {
    wrap: Wrap,
    new_port: u16,
    shim: ShimFile,
}

impl Program {
    /// Prepares `settings.wrap`, if any: finds the program, picks its loopback port, writes
    /// the shim, and points `settings.target` at the port. Runs before `-D` and the runtime.
    pub fn prepare(settings: &mut Settings) -> Result<Option<Program>, StartError> {
        let Some(wrap) = settings.wrap.clone() else {
            return Ok(None);
        };
        let program = wrap.command.first().map(String::as_str).unwrap_or_default();
        find_program(program).map_err(|why| {
            StartError::new(format!(
                "-- WRAP_COMMAND_LINE: cannot run {program:?}: {why}"
            ))
        })?;
        let new_port = pick_port(wrap.port)
            .map_err(|e| StartError::new(format!("cannot find a free loopback port: {e}")))?;
        let shim = ShimFile::write()
            .map_err(|e| StartError::new(format!("cannot write the rebind shim: {e}")))?;
        settings.target = Targets::Fixed(TargetSpec::Resolved {
            host: "localhost".into(),
            // 127.0.0.1 first: where an IPv4 bind goes; [::1] for an IPv6 one (see rebind.c).
            addrs: vec![
                SocketAddr::from((Ipv4Addr::LOCALHOST, new_port)),
                SocketAddr::from((Ipv6Addr::LOCALHOST, new_port)),
            ],
        });
        Ok(Some(Program {
            wrap,
            new_port,
            shim,
        }))
    }

    /// Starts the program and the task that watches it. Must run inside the runtime. A program
    /// that cannot be started at all is a start-up error.
    pub fn start(self) -> Result<Supervisor, StartError> {
        info!(
            "  - Wrapping '{}': its port {} is moved to loopback port {}",
            self.wrap.command.join(" "),
            self.wrap.port,
            self.new_port
        );
        let child = self.spawn().map_err(|e| {
            StartError::new(format!(
                "-- WRAP_COMMAND_LINE: cannot start {:?}: {e}",
                self.wrap.command[0]
            ))
        })?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let (exit_tx, exit_rx) = watch::channel(None);
        let task = tokio::spawn(self.supervise(child, stop_rx, exit_tx));
        Ok(Supervisor {
            stop: stop_tx,
            exited: exit_rx,
            task,
        })
    }

    fn spawn(&self) -> std::io::Result<Child> {
        info!("Starting '{}'", self.wrap.command.join(" "));
        let mut preload = OsString::from(self.shim.path());
        if let Some(existing) = std::env::var_os("LD_PRELOAD").filter(|p| !p.is_empty()) {
            preload.push(":");
            preload.push(existing);
        }
        Command::new(&self.wrap.command[0])
            .args(&self.wrap.command[1..])
            .env("LD_PRELOAD", preload)
            .env("REBIND_OLD_PORT", self.wrap.port.to_string())
            .env("REBIND_NEW_PORT", self.new_port.to_string())
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
    }

    /// Watches the program until we stop: `exit` reports its status, `ignore` leaves it gone,
    /// `respawn` starts it again (throttled).
    async fn supervise(
        self,
        mut child: Child,
        mut stop: watch::Receiver<bool>,
        exited: watch::Sender<Option<u8>>,
    ) {
        let mut starts = VecDeque::from([Instant::now()]);
        let mut warned = false;
        loop {
            let status = tokio::select! {
                status = child.wait() => status,
                _ = stop.changed() => {
                    terminate(&mut child).await;
                    return;
                }
            };
            let code = status.as_ref().map_or(1, exit_code);
            match &status {
                Ok(status) => info!("Wrapped command exited (or daemon): {status}"),
                Err(e) => warn!("cannot wait for the wrapped command: {e}"),
            }
            match self.wrap.mode {
                WrapMode::Exit => {
                    let _ = exited.send(Some(code));
                    return;
                }
                WrapMode::Ignore => return,
                WrapMode::Respawn => {}
            }
            // The start RESPAWN_STARTS ago must be older than the window.
            if starts.len() >= RESPAWN_STARTS {
                let allowed = starts[starts.len() - RESPAWN_STARTS] + RESPAWN_WINDOW;
                if allowed > Instant::now() {
                    if !warned {
                        warn!(
                            "Command respawning too fast: waiting to start it at most {} times \
                             in {} s",
                            RESPAWN_STARTS,
                            RESPAWN_WINDOW.as_secs()
                        );
                        warned = true;
                    }
                    tokio::select! {
                        () = tokio::time::sleep_until(allowed.into()) => {}
                        _ = stop.changed() => return,
                    }
                }
            }
            child = match self.spawn() {
                Ok(child) => child,
                Err(e) => {
                    warn!("cannot start {:?} again: {e}", self.wrap.command[0]);
                    let _ = exited.send(Some(1));
                    return;
                }
            };
            starts.push_back(Instant::now());
            if starts.len() > RESPAWN_STARTS {
                starts.pop_front();
            }
        }
    }
}

/// The running program's watcher.
#[derive(Debug)]
pub struct Supervisor {
    stop: watch::Sender<bool>,
    exited: watch::Receiver<Option<u8>>,
    task: tokio::task::JoinHandle<()>,
}

/// Waits for the wrapped program's exit (see [`Supervisor::exit_notice`]).
#[derive(Clone)]
pub struct ExitNotice(watch::Receiver<Option<u8>>);

impl ExitNotice {
    /// Completes when the program has exited and `--wrap-mode exit` says to stop serving.
    pub fn wait(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut exited = self.0.clone();
        async move {
            if exited.wait_for(Option::is_some).await.is_err() {
                // The watcher ended without a status (ignore mode, or stopped): never.
                std::future::pending::<()>().await;
            }
        }
    }
}

impl Supervisor {
    /// Completes when the program has exited and `--wrap-mode exit` says to stop serving.
    pub fn exited(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.exit_notice().wait()
    }

    /// [`Supervisor::exited`] as often as needed, without borrowing the supervisor: the server
    /// asks again for a second stop during its drain.
    pub fn exit_notice(&self) -> ExitNotice {
        ExitNotice(self.exited.clone())
    }

    /// Stops the program (SIGTERM to its group, SIGKILL after [`STOP_GRACE`]), waits for it,
    /// and gives the status to exit with: the program's own when it ended us (`exit` mode).
    pub async fn stop(self) -> ExitCode {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        let code = *self.exited.borrow();
        code.map_or(ExitCode::SUCCESS, ExitCode::from)
    }
}

/// A status as a shell shows it: the exit code, or 128 + the signal that killed it.
fn exit_code(status: &ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => (128 + signal) as u8,
        (None, None) => 1,
    }
}

/// SIGTERM to the program's group, SIGKILL if it is still there after [`STOP_GRACE`]; reaped
/// either way.
async fn terminate(child: &mut Child) {
    let Some(pid) = child.id().and_then(|id| Pid::from_raw(id as i32)) else {
        return; // already reaped
    };
    let _ = kill_process_group(pid, Signal::TERM);
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        warn!("the wrapped command ignored SIGTERM for {STOP_GRACE:?}: SIGKILL");
        let _ = kill_process_group(pid, Signal::KILL);
        let _ = child.wait().await;
    }
}

/// Checks that `program` can be run (as exec will look for it), so that a typo fails before
/// `-D` detaches rather than in the daemon.
fn find_program(program: &str) -> Result<PathBuf, &'static str> {
    let executable = |path: &Path| {
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.is_empty() {
        return Err("no program");
    }
    if program.contains('/') {
        return if executable(Path::new(program)) {
            Ok(program.into())
        } else {
            Err("no such executable file")
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| executable(candidate))
        .ok_or("not found in PATH")
}

/// A loopback port free on 127.0.0.1 and, where there is IPv6, on [::1] (the shim moves an
/// IPv6 bind there), other than `old`. Free now: the program binds it a moment later, as in
/// the reference.
fn pick_port(old: u16) -> std::io::Result<u16> {
    let mut last = None;
    for _ in 0..20 {
        let v4 = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = v4.local_addr()?.port();
        if port == old {
            continue;
        }
        match TcpListener::bind((Ipv6Addr::LOCALHOST, port)) {
            Ok(_) => return Ok(port),
            // No IPv6 here: nothing will bind [::1].
            Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => return Ok(port),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no port found in 20 tries")))
}

/// The shim, written to a private file: a directory of our own (0700) in the temporary
/// directory, the file created there exclusively (0600). Both are removed when this is
/// dropped (at exit; `-D`'s parents leave with `_exit`, so they remove nothing).
#[derive(Debug)]
struct ShimFile {
    dir: PathBuf,
    file: PathBuf,
}

impl ShimFile {
    fn write() -> std::io::Result<ShimFile> {
        // ld.so splits LD_PRELOAD at spaces and colons: a TMPDIR with one cannot be used.
        let tmp = std::env::temp_dir();
        let base = match tmp.to_str() {
            Some(s) if !s.contains([' ', ':']) => tmp,
            _ => PathBuf::from("/tmp"),
        };
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let mut tries = 0;
        let dir = loop {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir = base.join(format!(
                "websockify-rebind.{}.{nanos:x}{n}",
                std::process::id()
            ));
            // Exclusive: an existing directory (someone else's) is never used.
            match DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => break dir,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && tries < 10 => {
                    tries += 1;
                }
                Err(e) => return Err(e),
            }
        };
        let shim = ShimFile {
            file: dir.join("rebind.so"),
            dir,
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&shim.file)?;
        file.write_all(SHIM)?;
        file.sync_all()?;
        Ok(shim)
    }

    fn path(&self) -> &Path {
        &self.file
    }
}

impl Drop for ShimFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
        let _ = std::fs::remove_dir(&self.dir);
    }
}
