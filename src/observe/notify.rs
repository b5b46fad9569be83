//! notify: telling systemd (a `Type=notify` service) where the server is in its life, the
//! sd_notify(3) protocol: `READY=1` once a client can be served, `RELOADING=1` and `READY=1`
//! around a SIGHUP reload, `STOPPING=1` when the listener closes, `WATCHDOG=1` every half
//! `WATCHDOG_USEC` while the runtime runs. Active only when `NOTIFY_SOCKET` is set; a failure
//! to send is one warning, never a reason to stop serving.
//!
//! Hand-written (a datagram per message on std's `UnixDatagram`): the `sd-notify` crate
//! (0.5) cannot reach an abstract `NOTIFY_SOCKET` (`@name`), which systemd may hand out.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use tracing::{debug, warn};

/// The manager's socket and watchdog, read once at start-up.
struct Notifier {
    socket: UnixDatagram,
    to: SocketAddr,
    /// Half of `WATCHDOG_USEC`: how often `WATCHDOG=1` goes out.
    watchdog: Option<Duration>,
    /// Whether a failed send was already reported.
    warned: AtomicBool,
}

static NOTIFIER: OnceLock<Notifier> = OnceLock::new();

/// Set by [`stopping`]: a reload that ends during the drain must not say `READY=1` again.
static STOPPED: AtomicBool = AtomicBool::new(false);

/// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`, and removes them from the
/// environment: a wrapped program must not talk to the manager in our name. Must run while the
/// process has one thread (it changes the environment), after logging is set up.
pub fn init() {
    let var = |name: &str| std::env::var(name).ok();
    let (path, usec, pid) = (
        var("NOTIFY_SOCKET"),
        var("WATCHDOG_USEC"),
        var("WATCHDOG_PID"),
    );
    for name in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
        std::env::remove_var(name);
    }
    let Some(path) = path.filter(|p| !p.is_empty()) else {
        return;
    };
    let connect = || -> io::Result<(UnixDatagram, SocketAddr)> {
        let to = match path.strip_prefix('@') {
            Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
            None if path.starts_with('/') => SocketAddr::from_pathname(&path)?,
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "neither a path nor an abstract socket",
                ))
            }
        };
        let socket = UnixDatagram::unbound()?;
        // A manager that does not read must not block the runtime: the send fails instead.
        socket.set_nonblocking(true)?;
        Ok((socket, to))
    };
    let (socket, to) = match connect() {
        Ok(pair) => pair,
        Err(err) => return warn!("NOTIFY_SOCKET={path:?}: not notifying systemd: {err}"),
    };
    let ours = std::process::id().to_string();
    let watchdog = usec
        .and_then(|u| u.trim().parse::<u64>().ok())
        .filter(|&u| u > 0 && pid.as_deref().is_none_or(|p| p.trim() == ours))
        .map(|u| Duration::from_micros(u / 2));
    let _ = NOTIFIER.set(Notifier {
        socket,
        to,
        watchdog,
        warned: AtomicBool::new(false),
    });
}

/// Sends `state` (newline-separated `KEY=VALUE` lines) if systemd listens.
fn send(state: &str) {
    let Some(notifier) = NOTIFIER.get() else {
        return;
    };
    match notifier.socket.send_to_addr(state.as_bytes(), &notifier.to) {
        Ok(_) => debug!("sd_notify: {}", state.replace('\n', " ")),
        Err(err) if !notifier.warned.swap(true, Ordering::Relaxed) => {
            warn!("cannot notify systemd (NOTIFY_SOCKET): {err}");
        }
        Err(err) => debug!("cannot notify systemd: {err}"),
    }
}

/// Newlines would start a new assignment: a status is one line.
fn one_line(status: &str) -> String {
    status.replace(['\n', '\r'], " ")
}

/// The server listens and can serve a client.
pub fn ready(status: &str) {
    if STOPPED.load(Ordering::Relaxed) {
        return;
    }
    send(&format!("READY=1\nSTATUS={}", one_line(status)));
}

/// A reload begins (systemd 253+ wants the monotonic clock beside it).
pub fn reloading() {
    let mut state = String::from("RELOADING=1\nSTATUS=reloading");
    if let Some(usec) = monotonic_usec() {
        state.push_str(&format!("\nMONOTONIC_USEC={usec}"));
    }
    send(&state);
}

/// The listener is closed; the server drains and stops.
pub fn stopping(status: &str) {
    STOPPED.store(true, Ordering::Relaxed);
    send(&format!("STOPPING=1\nSTATUS={}", one_line(status)));
}

/// Pings systemd's watchdog every half `WATCHDOG_USEC` from a task of the runtime, so a wedged
/// runtime stops the pings and systemd restarts the service. Nothing without a watchdog. Must
/// run inside the runtime; abort the handle to stop.
pub fn watchdog() -> Option<tokio::task::JoinHandle<()>> {
    let every = NOTIFIER.get()?.watchdog?;
    Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        loop {
            ticks.tick().await;
            send("WATCHDOG=1");
        }
    }))
}

/// CLOCK_MONOTONIC in microseconds, as `MONOTONIC_USEC=` wants it.
fn monotonic_usec() -> Option<u64> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `now` is.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) } != 0 {
        return None;
    }
    let secs = u64::try_from(now.tv_sec).ok()?;
    let nanos = u64::try_from(now.tv_nsec).ok()?;
    Some(secs * 1_000_000 + nanos / 1_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_stays_one_assignment() {
        assert_eq!(one_line("a\nWATCHDOG=trigger\r"), "a WATCHDOG=trigger ");
    }

    /// CLOCK_MONOTONIC read here too, converted by `Duration` instead.
    fn monotonic_micros() -> u128 {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec, which `now` is.
        assert_eq!(
            unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) },
            0
        );
        Duration::new(now.tv_sec as u64, now.tv_nsec as u32).as_micros()
    }

    /// `MONOTONIC_USEC` is the clock systemd reads, in microseconds: between two readings of
    /// it taken around, whole seconds and their fraction alike.
    #[test]
    fn the_monotonic_clock_is_read_in_microseconds() {
        for _ in 0..1000 {
            let before = monotonic_micros();
            let ours = u128::from(monotonic_usec().unwrap());
            let after = monotonic_micros();
            assert!(
                before <= ours && ours <= after,
                "{before} <= {ours} <= {after}"
            );
        }
    }
}
