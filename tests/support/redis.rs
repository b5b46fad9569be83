//! A real `redis-server` on a free loopback port, without persistence: the TokenRedis backend
//! of the token and scale-out tests.

use std::time::{Duration, Instant};

use super::WAIT;

/// A `redis-server` on a free loopback port, without persistence; killed when dropped.
pub struct Redis {
    pub port: u16,
    password: Option<String>,
    child: Option<std::process::Child>,
}

impl Redis {
    pub fn start(password: Option<&str>) -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Redis {
            port,
            password: password.map(str::to_owned),
            child: None,
        };
        redis.restart();
        redis
    }

    /// Starts the server (again, on the same port: its data is gone) and waits until it
    /// answers.
    pub fn restart(&mut self) {
        let mut command = std::process::Command::new("redis-server");
        command.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]);
        if let Some(password) = &self.password {
            command.args(["--requirepass", password]);
        }
        let child = command
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server) must be installed");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while self.cli(&["PING"]).trim() != "PONG" {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server and waits for it to be gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to the server: a stopped server accepts connections
    /// (the kernel does) but answers nothing.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// `redis-cli` against this server (database `db` with `-n`); its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut command = std::process::Command::new("redis-cli");
        command.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(password) = &self.password {
            command.args(["--no-auth-warning", "-a", password]);
        }
        let out = command.args(args).output().expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn set(&self, db: u32, key: &str, value: &str) {
        let db = db.to_string();
        assert_eq!(self.cli(&["-n", &db, "SET", key, value]).trim(), "OK");
    }

    /// Connections the server accepted since it started (each `redis-cli` call is one).
    pub fn connections_received(&self) -> u64 {
        let info = self.cli(&["INFO", "stats"]);
        info.lines()
            .find_map(|line| line.strip_prefix("total_connections_received:"))
            .expect("INFO stats")
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}
