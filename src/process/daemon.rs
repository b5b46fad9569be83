//! daemon: `-D/--daemon`, detaching from the terminal the classic way (fork, setsid, fork,
//! chdir, stdio to /dev/null). Called by `main` after every start-up check has passed and
//! before the runtime exists: a process may only fork while it has a single thread.

use std::ffi::CStr;
use std::path::Path;

use crate::error::StartError;

/// Detaches: the calling process exits 0 at once, the one that returns is a grandchild in a
/// session of its own (never a session leader, so it can never get a controlling terminal
/// again), its working directory `dir` (`/`, or the `--web` directory as the reference) and
/// its standard input, output and error /dev/null. Open files (the listening socket) are kept.
/// Unlike the reference it leaves the umask alone (a daemon creating files with mode 0666
/// would be a surprise) and keeps SIGTERM/SIGINT meaning "stop".
///
/// Must be called while the process has one thread: only the calling thread survives fork.
pub fn daemonize(dir: &Path) -> Result<(), StartError> {
    let failed =
        |what: &str| StartError::new(format!("-D: {what}: {}", std::io::Error::last_os_error()));
    std::env::set_current_dir(dir)
        .map_err(|e| StartError::new(format!("-D: cannot chdir to {}: {e}", dir.display())))?;
    // Opened before forking, so that a failure still reaches the terminal.
    let devnull = open_devnull().map_err(|_| failed("cannot open /dev/null"))?;
    fork_and_leave_parent().map_err(|_| failed("fork"))?;
    // SAFETY: setsid has no memory effects; it fails only for a group leader, which the first
    // child is not.
    if unsafe { libc::setsid() } < 0 {
        // SAFETY: _exit ends this child without running the parent's destructors.
        unsafe { libc::_exit(1) };
    }
    if fork_and_leave_parent().is_err() {
        // SAFETY: as above.
        unsafe { libc::_exit(1) };
    }
    for fd in [libc::STDIN_FILENO, libc::STDOUT_FILENO, libc::STDERR_FILENO] {
        // SAFETY: dup2 onto the standard descriptors, which stay open (now on /dev/null).
        unsafe { libc::dup2(devnull, fd) };
    }
    if devnull > libc::STDERR_FILENO {
        // SAFETY: our own descriptor, no longer needed.
        unsafe { libc::close(devnull) };
    }
    Ok(())
}

fn open_devnull() -> Result<libc::c_int, ()> {
    const DEVNULL: &CStr = c"/dev/null";
    // SAFETY: a valid NUL-terminated path; the descriptor is ours.
    let fd = unsafe { libc::open(DEVNULL.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        Err(())
    } else {
        Ok(fd)
    }
}

/// Forks; the parent exits 0 at once (with `_exit`: no destructor of its copy of our state
/// runs, so it removes no socket file and no shim the child still uses), the child returns.
fn fork_and_leave_parent() -> Result<(), ()> {
    // SAFETY: the process has a single thread (the caller's promise), so the child is a
    // complete copy of it.
    match unsafe { libc::fork() } {
        -1 => Err(()),
        0 => Ok(()),
        // SAFETY: see above.
        _ => unsafe { libc::_exit(0) },
    }
}
