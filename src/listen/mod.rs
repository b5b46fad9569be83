//! listen: where connections come from. One file per kind of listening socket (TCP, Unix,
//! inetd's on standard input, systemd's activated ones), each a [`Listener`] that hands out
//! [`Stream`]s and the addresses of both ends. The server is generic over them, so a new kind
//! is a new file, not a new branch in the accept loop. Knows nothing of what travels on the
//! connections.

use std::future::Future;
use std::io;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::Listen;
use crate::conninfo::Addr;

pub mod inetd;
pub mod proxy;
pub mod systemd;
pub mod tcp;
pub mod unix;

pub use inetd::Inetd;
pub use systemd::Systemd;
pub use tcp::{bind_addr, resolve, Tcp};
pub use unix::Unix;

/// A listening socket of some kind.
pub trait Listener: Send + 'static {
    type Stream: Stream;

    /// The next connection, with its peer's and its own address.
    fn accept(&mut self) -> impl Future<Output = io::Result<Accepted<Self::Stream>>> + Send;

    /// Where this listener listens, for the start-up lines.
    fn local_addr(&self) -> io::Result<Addr>;

    /// What the start-up summary says after "Listen on".
    fn describe(&self) -> String {
        self.local_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "?".into())
    }
}

/// An accepted connection and what the socket says about it.
pub struct Accepted<S> {
    pub stream: S,
    pub peer: Addr,
    pub local: Addr,
}

/// An accepted connection's byte stream.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Waits for the first bytes and copies some into `buf` without consuming them: the sniffer
    /// looks before TLS or HTTP read. Returns 0 at end of stream.
    fn peek(&mut self, buf: &mut [u8]) -> impl Future<Output = io::Result<usize>> + Send;
}

/// A listener of the kind the command line asked for. `main` matches on it once and runs the
/// server generic over the kind inside.
#[derive(Debug)]
pub enum Bound {
    Tcp(Tcp),
    Unix(Unix),
    Inetd(Inetd),
    Systemd(Systemd),
}

/// Binds (or, for `--inetd`, takes) what `listen` asks for. The error names the address or the
/// file. Runs inside the runtime.
pub async fn bind(listen: &Listen, prefer_ipv6: bool) -> io::Result<Bound> {
    Ok(match listen {
        Listen::Tcp { host, port } => Bound::Tcp(tcp::bind(host, *port, prefer_ipv6).await?),
        Listen::Unix { path, mode } => Bound::Unix(Unix::bind(path, *mode)?),
        Listen::Inetd => Bound::Inetd(Inetd::from_stdin()?),
        Listen::Systemd => Bound::Systemd(systemd::PreparedSystemd::from_env()?.register()?),
    })
}

/// A listening socket bound before the runtime exists: `-D` must fork while the process has
/// one thread, and a port in use must still reach the terminal. [`Prepared::register`] then
/// hands it to the runtime.
#[derive(Debug)]
pub enum Prepared {
    Tcp(std::net::TcpListener),
    Unix(unix::PreparedUnix),
    Inetd(inetd::PreparedInetd),
    Systemd(systemd::PreparedSystemd),
}

impl Prepared {
    /// [`bind`] on this thread, without the runtime (the name is resolved here, blocking).
    pub fn bind(listen: &Listen, prefer_ipv6: bool) -> io::Result<Prepared> {
        Ok(match listen {
            Listen::Tcp { host, port } => {
                Prepared::Tcp(tcp::bind_blocking(host, *port, prefer_ipv6)?)
            }
            Listen::Unix { path, mode } => Prepared::Unix(unix::PreparedUnix::bind(path, *mode)?),
            Listen::Inetd => Prepared::Inetd(inetd::PreparedInetd::from_stdin()?),
            Listen::Systemd => Prepared::Systemd(systemd::PreparedSystemd::from_env()?),
        })
    }

    /// Hands the socket to the runtime; must run inside it.
    pub fn register(self) -> io::Result<Bound> {
        Ok(match self {
            Prepared::Tcp(listener) => {
                Bound::Tcp(Tcp::new(tokio::net::TcpListener::from_std(listener)?)?)
            }
            Prepared::Unix(unix) => Bound::Unix(unix.register()?),
            Prepared::Inetd(inetd) => Bound::Inetd(inetd.register()?),
            Prepared::Systemd(systemd) => Bound::Systemd(systemd.register()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The start-up line names where a TCP or Unix listener listens; a wrapped program
    /// (`--wrap-mode`) is told the TCP port only.
    #[tokio::test]
    async fn listeners_say_where_they_listen() {
        let tcp = Prepared::bind(
            &Listen::Tcp {
                host: "127.0.0.1".into(),
                port: 0,
            },
            false,
        )
        .unwrap();
        let Prepared::Tcp(socket) = &tcp else {
            panic!("not a TCP socket")
        };
        let port = socket.local_addr().unwrap().port();
        assert_ne!(port, 0);
        let Bound::Tcp(listener) = tcp.register().unwrap() else {
            panic!("not a TCP listener")
        };
        assert_eq!(listener.describe(), format!("127.0.0.1:{port}"));

        let dir = std::env::temp_dir().join(format!("websockify-listen-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ws.sock");
        let unix = Prepared::bind(
            &Listen::Unix {
                path: path.clone(),
                mode: 0o600,
            },
            false,
        )
        .unwrap();
        assert!(matches!(unix, Prepared::Unix(_)));
        let Bound::Unix(listener) = unix.register().unwrap() else {
            panic!("not a Unix listener")
        };
        assert_eq!(listener.describe(), format!("unix:{}", path.display()));
        drop(listener);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
