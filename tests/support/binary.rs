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
    /// Everything it wrote to stdout so far (the `--traffic` symbols).
    stdout: Arc<Mutex<Vec<u8>>>,
}

impl LoggedBinary {
    /// Starts `websockify ARGS` (plain, no colours; ARGS include the listen address, usually
    /// `127.0.0.1:0`) and waits for its start-up lines to learn the address.
    pub async fn start(args: &[&str]) -> LoggedBinary {
        LoggedBinary::start_with(None, args, &[]).await
    }

    /// [`LoggedBinary::start`] with `env` added to its environment.
    pub async fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> LoggedBinary {
        LoggedBinary::start_with(None, args, env).await
    }

    /// As [`LoggedBinary::start`], in the working directory `dir` (relative paths in its
    /// arguments and its targets resolve there).
    pub async fn start_in(dir: Option<&std::path::Path>, args: &[&str]) -> LoggedBinary {
        LoggedBinary::start_with(dir, args, &[]).await
    }

    async fn start_with(
        dir: Option<&std::path::Path>,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> LoggedBinary {
        let mut binary = LoggedBinary::spawn_with(dir, args, env);
        let line = binary.wait_for("Listen on").await;
        let port: u16 = line
            .rsplit(':')
            .next()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        binary.addr.set_port(port);
        binary
    }

    /// Starts `websockify ARGS` without waiting for anything (`addr` is then meaningless).
    pub fn spawn(args: &[&str]) -> LoggedBinary {
        LoggedBinary::spawn_with(None, args, &[])
    }

    fn spawn_with(
        dir: Option<&std::path::Path>,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> LoggedBinary {
        let mut command = Command::new(super::websockify_binary());
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        command.args(args).envs(env.iter().copied());
        LoggedBinary::spawn_command(command)
    }

    /// Spawns `command` (the binary, or a wrapper that execs it), collecting its output.
    pub fn spawn_command(mut command: Command) -> LoggedBinary {
        let mut child = command
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut out = child.stdout.take().unwrap();
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stdout_sink = stdout.clone();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = out.read(&mut chunk) {
                stdout_sink.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
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
        LoggedBinary {
            child,
            addr: ([127, 0, 0, 1], 0).into(),
            lines,
            stdout,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits (bounded) until its stdout holds `needle`; returns all of stdout.
    pub async fn wait_for_stdout(&self, needle: &str) -> String {
        bounded(&format!("{needle:?} on stdout"), async {
            loop {
                let out = String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned();
                if out.contains(needle) {
                    return out;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
    }

    /// Its exit status, waiting for it (bounded by `limit`).
    pub async fn exit_status(&mut self, limit: Duration) -> std::process::ExitStatus {
        bounded("the binary to exit", async {
            tokio::time::timeout(limit, async {
                loop {
                    if let Some(status) = self.child.try_wait().unwrap() {
                        return status;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("still running after {limit:?}"))
        })
        .await
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
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

    /// Waits (bounded) until `n` lines contain `needle`.
    pub async fn wait_for_count(&self, needle: &str, n: usize) {
        bounded(&format!("{n} log lines with {needle:?}"), async {
            while self.count(needle) < n {
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

    /// Resident memory of the server process, KiB: its own, not the test's clients and
    /// targets, and not changed by what other tests in this binary do.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the server process is running");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// Descriptors open in the server process.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .expect("the server process is running")
            .count()
    }

    /// Waits (bounded) until the server process has `baseline` descriptors open again.
    pub async fn fds_return_to(&self, baseline: usize, what: &str) {
        bounded(
            &format!("the server's descriptors to return to {baseline} {what}"),
            async {
                while self.open_fds() > baseline {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        )
        .await
    }
}

impl Drop for LoggedBinary {
    /// SIGTERM first, so that the binary stops what it runs (a wrapped program), then SIGKILL
    /// if it is still there after a few seconds.
    fn drop(&mut self) {
        // SAFETY: kill has no memory effects.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        for _ in 0..400 {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
