//! The `websockify` binary, running, with its stderr collected line by line: for the tests that
//! check what the real server logs.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::bounded;

/// The binary, running, with its log lines collected as they come.
pub struct LoggedBinary {
    child: Child,
    /// Where it listens (read from its start-up lines).
    pub addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
}

impl LoggedBinary {
    /// Starts `websockify ARGS` (plain, no colours; ARGS include the listen address, usually
    /// `127.0.0.1:0`) and waits for its start-up lines to learn the address.
    pub async fn start(args: &[&str]) -> LoggedBinary {
        let mut child = Command::new(env!("CARGO_BIN_EXE_websockify"))
            .args(args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).split(b'\n') {
                let Ok(line) = line else { break };
                // Kept byte for byte (lossy only where it is not UTF-8): the tests look for raw
                // bytes that must not be there.
                sink.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&line).into_owned());
            }
        });
        let mut binary = LoggedBinary {
            child,
            addr: ([127, 0, 0, 1], 0).into(),
            lines,
        };
        let line = binary.wait_for("Listen on").await;
        let port: u16 = line
            .rsplit(':')
            .next()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        binary.addr.set_port(port);
        binary
    }

    /// The first line containing `needle`, waiting (bounded) for it.
    pub async fn wait_for(&self, needle: &str) -> String {
        bounded(&format!("a log line with {needle:?}"), async {
            loop {
                if let Some(line) = self.lines().into_iter().find(|l| l.contains(needle)) {
                    return line;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
    }

    /// Sends `signal` (SIGTERM, SIGHUP...) to the binary.
    pub fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("a pid");
        rustix::process::kill_process(pid, signal).expect("signal sent");
    }

    /// Waits (bounded by `within`) for the binary to exit; its status and how long it took.
    pub async fn exit_within(&mut self, within: Duration) -> (std::process::ExitStatus, Duration) {
        let started = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return (status, started.elapsed());
            }
            assert!(
                started.elapsed() < within,
                "still running after {within:?}; log:\n{}",
                self.lines().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub fn count(&self, needle: &str) -> usize {
        self.lines().iter().filter(|l| l.contains(needle)).count()
    }
}

impl Drop for LoggedBinary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
