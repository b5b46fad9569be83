//! Starting the binary as systemd does: listening sockets as fds 3, 4, ... with `LISTEN_FDS`,
//! `LISTEN_PID` (the binary's own pid) and `LISTEN_FDNAMES`; and a real notify socket to read
//! what it tells systemd.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tokio::net::UnixDatagram;

use super::{bounded, LoggedBinary};

/// Whom `LISTEN_PID` names.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ListenPid {
    /// The binary itself (a shell sets `LISTEN_PID=$$` and execs it: same pid).
    Own,
    /// Another process (pid 1): the sockets are not the binary's to take.
    Other,
}

/// Starts `websockify ARGS` with `fds` as fds 3, 4, ... and the activation variables
/// (`names` as LISTEN_FDNAMES when given), plus `env`.
pub fn spawn_activated(
    args: &[&str],
    fds: Vec<OwnedFd>,
    names: Option<&str>,
    pid: ListenPid,
    env: &[(&str, &str)],
) -> LoggedBinary {
    let bin = super::websockify_binary();
    let mut command = match pid {
        ListenPid::Own => {
            let mut sh = Command::new("/bin/sh");
            sh.args(["-c", r#"LISTEN_PID=$$ exec "$0" "$@""#]).arg(&bin);
            sh
        }
        ListenPid::Other => {
            let mut direct = Command::new(bin);
            direct.env("LISTEN_PID", "1");
            direct
        }
    };
    command
        .args(args)
        .env("LISTEN_FDS", fds.len().to_string())
        .envs(env.iter().copied());
    match names {
        Some(names) => command.env("LISTEN_FDNAMES", names),
        None => command.env_remove("LISTEN_FDNAMES"),
    };
    assert!(fds.len() <= 8, "at most 8 fds");
    let raw: Vec<i32> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    // SAFETY: only async-signal-safe calls (fcntl, dup2, close) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            // First out of the way (a source may already sit on 3 or 4), close-on-exec; then
            // each onto its place, where dup2 makes it inheritable.
            let mut moved = [0i32; 8];
            for (i, &fd) in raw.iter().enumerate() {
                let high = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 100);
                if high < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                moved[i] = high;
            }
            for (i, &high) in moved.iter().take(raw.len()).enumerate() {
                if libc::dup2(high, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(high);
            }
            // The fd after the last one passed is closed, whatever the test runner left open
            // there: a `LISTEN_FDS` larger than what was passed names a closed fd.
            libc::close(3 + raw.len() as i32);
            Ok(())
        });
    }
    let binary = LoggedBinary::spawn_command(command);
    drop(fds);
    binary
}

/// A notify socket as systemd's: a Unix datagram socket bound to a path (or an abstract
/// name), with what the binary sent so far.
pub struct NotifySocket {
    socket: UnixDatagram,
    /// What NOTIFY_SOCKET must say.
    pub address: String,
    path: Option<PathBuf>,
    /// Every datagram received, in order.
    pub received: Vec<String>,
}

impl NotifySocket {
    /// Bound at `dir/notify`.
    pub fn at(dir: &Path) -> NotifySocket {
        let path = dir.join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        NotifySocket {
            socket,
            address: path.display().to_string(),
            path: Some(path),
            received: Vec::new(),
        }
    }

    /// Bound to an abstract name (`@...`), as systemd may hand out.
    pub fn abstract_named(name: &str) -> NotifySocket {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let std = std::os::unix::net::UnixDatagram::bind_addr(&addr).unwrap();
        std.set_nonblocking(true).unwrap();
        NotifySocket {
            socket: UnixDatagram::from_std(std).unwrap(),
            address: format!("@{name}"),
            path: None,
            received: Vec::new(),
        }
    }

    /// The next datagram (bounded).
    pub async fn next(&mut self) -> String {
        let mut buf = vec![0u8; 4096];
        let n = bounded("a notify datagram", self.socket.recv(&mut buf))
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        self.received.push(text.clone());
        text
    }

    /// Reads datagrams until one has the line `line` (bounded); returns that datagram.
    pub async fn wait_for(&mut self, line: &str) -> String {
        bounded(&format!("{line:?} on the notify socket"), async {
            loop {
                let got = self.next().await;
                if got.lines().any(|l| l == line) {
                    return got;
                }
            }
        })
        .await
    }

    /// Counts datagrams with the line `line` that arrive within `window`.
    pub async fn count_within(&mut self, line: &str, window: Duration) -> usize {
        let mut n = 0;
        let _ = tokio::time::timeout(window, async {
            loop {
                if self.next().await.lines().any(|l| l == line) {
                    n += 1;
                }
            }
        })
        .await;
        n
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
}
