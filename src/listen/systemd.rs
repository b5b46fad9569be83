//! systemd: `--systemd`, socket activation. systemd (or any manager speaking its protocol)
//! passes listening sockets as fds 3, 4, ... with `LISTEN_FDS` (how many), `LISTEN_PID` (for
//! whom) and `LISTEN_FDNAMES` (their `FileDescriptorName=`), as sd_listen_fds(3) reads them.
//! Every socket passed is served, TCP and Unix alike (a `.socket` unit with one
//! `ListenStream=` for a port and one for a path gives both).
//!
//! Explicit, not automatic: an inherited `LISTEN_FDS` never changes where we listen unless the
//! command line asks for it. The variables are removed from our environment as soon as they
//! are read (before any thread exists), so a wrapped program does not inherit them.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::task::Poll;

use socket2::{Domain, Socket, Type};

use super::inetd::{Inetd, InetdStream};
use super::{Accepted, Listener};
use crate::conninfo::Addr;

/// The first fd systemd passes (SD_LISTEN_FDS_START).
const FIRST_FD: RawFd = 3;

/// More sockets than any unit passes: a bound on the fds probed for a corrupt `LISTEN_FDS`.
const MAX_FDS: u32 = 64;

/// The sockets passed, checked, before any runtime exists.
#[derive(Debug)]
pub struct PreparedSystemd(Vec<(Socket, String)>);

/// A one-line start-up error, prefixed with the option.
fn refused(why: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("--systemd: {why}"))
}

impl PreparedSystemd {
    /// Takes the sockets `LISTEN_*` describe, checks each is a listening TCP or Unix stream
    /// socket, makes them close-on-exec and nonblocking, and removes the variables. Must run
    /// while the process has one thread (it changes the environment).
    pub fn from_env() -> io::Result<PreparedSystemd> {
        let var = |name: &str| std::env::var(name).ok();
        let (pid, fds, names) = (var("LISTEN_PID"), var("LISTEN_FDS"), var("LISTEN_FDNAMES"));
        for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
            std::env::remove_var(name);
        }
        let pid = pid.ok_or_else(|| {
            refused(
                "no socket passed (LISTEN_PID is not set: start websockify from a .socket unit)",
            )
        })?;
        let ours = std::process::id();
        match pid.trim().parse::<u32>() {
            Ok(p) if p == ours => {}
            // sd_listen_fds(3): the sockets are for another process (a parent that did not
            // clear the variables); they are not ours to take.
            _ => {
                return Err(refused(format!(
                    "LISTEN_PID={pid:?} is not this process ({ours}): no socket passed to us"
                )))
            }
        }
        let count = match fds.as_deref().map(|n| n.trim().parse::<u32>()) {
            Some(Ok(n @ 1..=MAX_FDS)) => n,
            _ => {
                return Err(refused(format!(
                    "LISTEN_FDS={:?}: expected 1 to {MAX_FDS} sockets",
                    fds.unwrap_or_default()
                )))
            }
        };
        let names: Vec<String> = match names {
            Some(names) => names.split(':').map(str::to_owned).collect(),
            None => vec!["unknown".into(); count as usize],
        };
        if names.len() != count as usize {
            return Err(refused(format!(
                "LISTEN_FDNAMES names {} sockets, LISTEN_FDS passes {count}",
                names.len()
            )));
        }
        let mut sockets = Vec::with_capacity(names.len());
        for (fd, name) in (FIRST_FD..).zip(names) {
            let socket = take(fd).map_err(|why| refused(format!("fd {fd} ({name}): {why}")))?;
            sockets.push((socket, name));
        }
        Ok(PreparedSystemd(sockets))
    }

    /// Hands the sockets to the runtime (must run inside it).
    pub fn register(self) -> io::Result<Systemd> {
        let sockets = self
            .0
            .into_iter()
            .map(|(socket, name)| Ok((Inetd::register(socket)?, name)))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Systemd { sockets, next: 0 })
    }
}

/// Takes `fd` if it is an open, listening TCP or Unix stream socket.
fn take(fd: RawFd) -> Result<Socket, String> {
    // Probed before taking ownership: an fd that is not open is nobody's to close.
    // SAFETY: F_GETFD reads a flag of the descriptor number, whatever it is; EBADF if closed.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(format!("not open ({})", io::Error::last_os_error()));
    }
    // SAFETY: the fd is open and LISTEN_FDS hands it to this process alone (sd_listen_fds(3));
    // nothing else in the process refers to it.
    let socket = Socket::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let not_listening = "not a listening socket";
    let domain = socket
        .domain()
        .map_err(|e| format!("{not_listening} ({e})"))?;
    if ![Domain::IPV4, Domain::IPV6, Domain::UNIX].contains(&domain) {
        return Err(format!("{not_listening} (neither TCP nor Unix)"));
    }
    if socket.r#type().map_err(|e| e.to_string())? != Type::STREAM {
        return Err(format!(
            "{not_listening} (a datagram socket: use ListenStream=)"
        ));
    }
    if !socket.is_listener().map_err(|e| e.to_string())? {
        return Err(format!("{not_listening} (not listening)"));
    }
    // systemd passes them inheritable: a wrapped program must not get them.
    socket.set_cloexec(true).map_err(|e| e.to_string())?;
    socket.set_nonblocking(true).map_err(|e| e.to_string())?;
    Ok(socket)
}

/// The sockets systemd passed, served together.
#[derive(Debug)]
pub struct Systemd {
    sockets: Vec<(Inetd, String)>,
    /// Where the next accept starts looking: a busy socket does not starve the others.
    next: usize,
}

impl Listener for Systemd {
    type Stream = InetdStream;

    async fn accept(&mut self) -> io::Result<Accepted<InetdStream>> {
        std::future::poll_fn(|cx| {
            let n = self.sockets.len();
            for i in 0..n {
                let k = (self.next + i) % n;
                if let Poll::Ready(accepted) = self.sockets[k].0.poll_accept(cx) {
                    self.next = (k + 1) % n;
                    return Poll::Ready(accepted);
                }
            }
            Poll::Pending
        })
        .await
    }

    fn local_addr(&self) -> io::Result<Addr> {
        match self.sockets.first() {
            Some((socket, _)) => socket.local_addr(),
            None => Err(io::Error::other("no socket")),
        }
    }

    fn describe(&self) -> String {
        self.sockets
            .iter()
            .map(|(socket, name)| match socket.local_addr() {
                Ok(addr) => format!("{addr} (systemd: {name})"),
                Err(_) => format!("? (systemd: {name})"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{SocketAddr, TcpListener};
    use std::time::Duration;

    /// A listening TCP socket on 127.0.0.1, as `take` leaves it (nonblocking), and its address.
    fn passed() -> (Socket, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let socket = Socket::from(listener);
        socket.set_nonblocking(true).unwrap();
        (socket, addr)
    }

    /// With connections waiting on every socket, accepts go round: a busy socket does not
    /// starve the others.
    #[tokio::test]
    async fn accepts_take_the_sockets_in_turn() {
        let (a, addr_a) = passed();
        let (b, addr_b) = passed();
        let mut systemd = PreparedSystemd(vec![(a, "a".into()), (b, "b".into())])
            .register()
            .unwrap();
        // Two waiting on a, one on b, all queued by the kernel before the first accept.
        let mut clients = Vec::new();
        for addr in [addr_a, addr_a, addr_b] {
            clients.push(std::net::TcpStream::connect(addr).unwrap());
        }
        let mut order = Vec::new();
        for _ in 0..3 {
            let accepted = tokio::time::timeout(Duration::from_secs(10), systemd.accept())
                .await
                .expect("an accept in 10 s")
                .unwrap();
            order.push(accepted.local);
        }
        assert_eq!(
            order,
            [Addr::Tcp(addr_a), Addr::Tcp(addr_b), Addr::Tcp(addr_a)]
        );
        assert_eq!(systemd.local_addr().unwrap(), Addr::Tcp(addr_a));
        assert_eq!(
            systemd.describe(),
            format!("{addr_a} (systemd: a), {addr_b} (systemd: b)")
        );
    }
}
