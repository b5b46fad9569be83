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
        Command::new(&self.wrap.command[0])
            .args(&self.wrap.command[1..])
            .env(
                "LD_PRELOAD",
                preload(self.shim.path(), std::env::var_os("LD_PRELOAD")),
            )
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
            if let Some(allowed) = respawn_held_until(&starts, Instant::now()) {
                if !warned {
                    warn!(
                        "Command respawning too fast: waiting to start it at most {} times in {} \
                         s",
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

/// `--wrap-mode respawn`'s throttle: with `starts` the last [`RESPAWN_STARTS`] start times,
/// oldest first, the time before which the next start must wait, if it must (the start
/// RESPAWN_STARTS ago must be older than the window).
fn respawn_held_until(starts: &VecDeque<Instant>, now: Instant) -> Option<Instant> {
    if starts.len() < RESPAWN_STARTS {
        return None;
    }
    let allowed = starts[starts.len() - RESPAWN_STARTS] + RESPAWN_WINDOW;
    (allowed > now).then_some(allowed)
}

/// The program's `LD_PRELOAD`: the shim first, then what ours had (ld.so ignores an empty one).
fn preload(shim: &Path, existing: Option<OsString>) -> OsString {
    let mut preload = OsString::from(shim);
    if let Some(existing) = existing.filter(|p| !p.is_empty()) {
        preload.push(":");
        preload.push(existing);
    }
    preload
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
    pick_port_with(old, |port| {
        TcpListener::bind((Ipv6Addr::LOCALHOST, port)).map(drop)
    })
}

/// [`pick_port`], with the check that the port is free on [::1] given as `bind_v6`.
fn pick_port_with(old: u16, bind_v6: impl Fn(u16) -> std::io::Result<()>) -> std::io::Result<u16> {
    let mut last = None;
    for _ in 0..20 {
        let v4 = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = v4.local_addr()?.port();
        if port == old {
            continue;
        }
        match bind_v6(port) {
            Ok(()) => return Ok(port),
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
        ShimFile::write_in(std::env::temp_dir())
    }

    /// [`ShimFile::write`] under `tmp` (the temporary directory).
    fn write_in(tmp: PathBuf) -> std::io::Result<ShimFile> {
        // ld.so splits LD_PRELOAD at spaces and colons: a TMPDIR with one cannot be used.
        let base = match tmp.to_str() {
            Some(s) if !s.contains([' ', ':']) => tmp,
            _ => PathBuf::from("/tmp"),
        };
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let dir = private_dir(|| {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            base.join(format!(
                "websockify-rebind.{}.{nanos:x}{n}",
                std::process::id()
            ))
        })?;
        let shim = ShimFile {
            file: dir.join("rebind.so"),
            dir,
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&shim.file)?;
        // The mode given at creation passes through the umask; ld.so must be able to read it.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(SHIM)?;
        file.sync_all()?;
        Ok(shim)
    }

    fn path(&self) -> &Path {
        &self.file
    }
}

/// Creates a directory of our own (0700) at the first of `name`'s paths that does not exist:
/// an existing one (someone else's) is never used; after 10 that do, the error.
/// The mode is set again after the creation: a umask such as 0177 would leave it 0600, a
/// directory the wrapped program could not enter.
fn private_dir(mut name: impl FnMut() -> PathBuf) -> std::io::Result<PathBuf> {
    let mut tries = 0;
    loop {
        let dir = name();
        match DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                    .inspect_err(|_| drop(std::fs::remove_dir(&dir)))?;
                return Ok(dir);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && tries < 10 => {
                tries += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

impl Drop for ShimFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::io::ErrorKind;
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wsfy-wrap-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_status_is_its_exit_code_or_128_plus_the_signal() {
        // wait(2) statuses: the exit code in bits 8..16, a killing signal in the low 7 bits.
        assert_eq!(exit_code(&ExitStatus::from_raw(7 << 8)), 7);
        assert_eq!(exit_code(&ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(&ExitStatus::from_raw(15)), 128 + 15);
        assert_eq!(exit_code(&ExitStatus::from_raw(9)), 128 + 9);
        // Neither (stopped by SIGSTOP, which tokio's wait never reports): 1.
        assert_eq!(exit_code(&ExitStatus::from_raw(0x137f)), 1);
    }

    #[test]
    fn only_executable_regular_files_are_programs() {
        let dir = temp("find");
        let exe = dir.join("exe");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let plain = dir.join("plain");
        std::fs::write(&plain, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
        let path = |p: &Path| p.to_str().unwrap().to_owned();
        assert_eq!(find_program(&path(&exe)), Ok(exe.clone()));
        assert_eq!(find_program(&path(&plain)), Err("no such executable file"));
        // A directory has x bits too.
        assert_eq!(find_program(&path(&dir)), Err("no such executable file"));
        assert_eq!(
            find_program(&path(&dir.join("missing"))),
            Err("no such executable file")
        );
        assert_eq!(find_program(""), Err("no program"));
        // A bare name is looked for in PATH.
        let sh = find_program("sh").unwrap();
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{sh:?}");
        assert_eq!(
            find_program("no-such-program-here"),
            Err("not found in PATH")
        );
    }

    #[test]
    fn the_shim_is_preloaded_first_and_an_existing_preload_kept_after_it() {
        let shim = Path::new("/tmp/d/rebind.so");
        assert_eq!(preload(shim, None), "/tmp/d/rebind.so");
        assert_eq!(preload(shim, Some("".into())), "/tmp/d/rebind.so");
        assert_eq!(
            preload(shim, Some("/lib/other.so".into())),
            "/tmp/d/rebind.so:/lib/other.so"
        );
    }

    #[test]
    fn a_respawn_waits_until_the_start_respawn_starts_ago_leaves_the_window() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let starts = |at_s: &[u64]| at_s.iter().map(|&s| at(s)).collect::<VecDeque<_>>();
        assert_eq!(RESPAWN_STARTS, 3);
        // Fewer starts than RESPAWN_STARTS: never held.
        assert_eq!(respawn_held_until(&starts(&[0, 1]), at(1)), None);
        // The third start back, at 0, is in the window until 10.
        assert_eq!(respawn_held_until(&starts(&[0, 4, 8]), at(8)), Some(at(10)));
        assert_eq!(respawn_held_until(&starts(&[0, 4, 8]), at(10)), None);
        assert_eq!(respawn_held_until(&starts(&[0, 4, 8]), at(11)), None);
    }

    #[test]
    fn a_port_is_picked_free_on_both_loopbacks() {
        // Free on [::1] as well: the first port the kernel gave for 127.0.0.1.
        let tried = std::cell::RefCell::new(Vec::new());
        let port = pick_port_with(0, |p| {
            tried.borrow_mut().push(p);
            Ok(())
        })
        .unwrap();
        assert_eq!(*tried.borrow(), [port]);
        // No IPv6 here: the IPv4 port will do.
        let port = pick_port_with(0, |_| Err(ErrorKind::AddrNotAvailable.into())).unwrap();
        assert!(port > 1, "{port}");
        // Taken on [::1]: other ports are tried until one is free there.
        tried.borrow_mut().clear();
        let port = pick_port_with(0, |p| {
            tried.borrow_mut().push(p);
            if tried.borrow().len() < 3 {
                Err(ErrorKind::AddrInUse.into())
            } else {
                Ok(())
            }
        })
        .unwrap();
        assert_eq!(tried.borrow().len(), 3);
        assert_eq!(tried.borrow().last(), Some(&port));
        // Taken every time: the error, after 20 tries.
        let n = Cell::new(0);
        let err = pick_port_with(0, |_| {
            n.set(n.get() + 1);
            Err(ErrorKind::AddrInUse.into())
        })
        .unwrap_err();
        assert_eq!((err.kind(), n.get()), (ErrorKind::AddrInUse, 20));
        // The real check: a port of the kernel's ephemeral range.
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
        let range: Vec<u16> = range
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        let port = pick_port(0).unwrap();
        assert!((range[0]..=range[1]).contains(&port), "{port} {range:?}");
    }

    #[test]
    fn the_shim_is_written_privately_and_removed_when_dropped() {
        let base = temp("shim");
        let shim = ShimFile::write_in(base.clone()).unwrap();
        let (dir, file) = (shim.dir.clone(), shim.path().to_owned());
        assert_eq!(file.parent(), Some(dir.as_path()));
        assert!(dir.starts_with(&base), "{dir:?}");
        assert_eq!(std::fs::read(&file).unwrap(), SHIM);
        assert_eq!((mode(&dir), mode(&file)), (0o700, 0o600));
        drop(shim);
        assert!(!file.exists() && !dir.exists());
        // ld.so splits LD_PRELOAD at spaces and colons: such a temporary directory is not used.
        for odd in ["a b", "a:b"] {
            std::fs::create_dir_all(base.join(odd)).unwrap();
            let shim = ShimFile::write_in(base.join(odd)).unwrap();
            assert!(shim.dir.starts_with("/tmp"), "{odd}: {:?}", shim.dir);
            assert!(!shim.dir.starts_with(&base), "{odd}: {:?}", shim.dir);
        }
    }

    #[test]
    fn a_private_directory_skips_up_to_ten_existing_names() {
        let base = temp("private");
        // Names 0, 1, ... of which the first `taken` exist (someone else's).
        let attempt = |taken: usize| {
            let n = Cell::new(0);
            let result = private_dir(|| {
                let i = n.get();
                n.set(i + 1);
                let dir = base.join(format!("{taken}-{i}"));
                if i < taken {
                    std::fs::create_dir_all(&dir).unwrap();
                }
                dir
            });
            (result, n.get())
        };
        let (dir, names) = attempt(10);
        assert_eq!((dir.unwrap(), names), (base.join("10-10"), 11));
        assert_eq!(mode(&base.join("10-10")), 0o700);
        let (err, names) = attempt(11);
        assert_eq!(
            (err.unwrap_err().kind(), names),
            (ErrorKind::AlreadyExists, 11)
        );
        // Any other error at once.
        let n = Cell::new(0);
        let err = private_dir(|| {
            n.set(n.get() + 1);
            base.join("missing/dir")
        })
        .unwrap_err();
        assert_eq!((err.kind(), n.get()), (ErrorKind::NotFound, 1));
    }
}
