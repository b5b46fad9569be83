//! A real HAProxy (Debian's `haproxy`), started on a free loopback port in TCP mode with a
//! generated configuration: in front of one server it sends a PROXY header to, or balancing
//! over several with health checks.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use super::procs::free_port;
use super::{bounded, temp_dir};

/// HAProxy running in the foreground; stopped when dropped.
pub struct HaProxy {
    child: Child,
    /// Where clients connect.
    pub addr: SocketAddr,
}

impl HaProxy {
    /// `mode tcp`, one frontend on 127.0.0.1 (a free port), one server `backend` with
    /// `send_proxy` (`send-proxy` or `send-proxy-v2`).
    pub async fn start(backend: SocketAddr, send_proxy: &str) -> HaProxy {
        HaProxy::start_with("", &format!("  server s1 {backend} {send_proxy}\n")).await
    }

    /// `mode tcp`, balancing round-robin over `servers` (each the proxy's address and the port
    /// of its `/healthz`), checked every 100 ms (`fall 1`, `rise 1`); a refused connect is
    /// retried on another server (`option redispatch`, `retries 3`).
    pub async fn balance(servers: &[(SocketAddr, u16)]) -> HaProxy {
        let lines: String = servers
            .iter()
            .enumerate()
            .map(|(i, (addr, health))| {
                format!("  server s{i} {addr} check port {health} inter 100ms fall 1 rise 1\n")
            })
            .collect();
        let backend =
            "  balance roundrobin\n  option httpchk GET /healthz\n  option redispatch\n  \
                       retries 3\n";
        HaProxy::start_with(backend, &lines).await
    }

    /// HAProxy in the foreground with `backend_options` and `servers` in its one backend.
    async fn start_with(backend_options: &str, servers: &str) -> HaProxy {
        let port = free_port();
        let dir = temp_dir("haproxy");
        let config = dir.join("haproxy.cfg");
        std::fs::write(
            &config,
            format!(
                "global\n  maxconn 256\n\
                 defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
                 frontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\n\
                 backend be\n{backend_options}{servers}"
            ),
        )
        .unwrap();
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy (apt-get install haproxy)");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        // Read from /proc, not by connecting: a probe would reach a server behind it.
        bounded("haproxy to listen", async {
            while !listening(port) {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
        .await;
        HaProxy { child, addr }
    }
}

/// Whether a socket listens on 127.0.0.1:`port` (a line of /proc/net/tcp in state 0A).
fn listening(port: u16) -> bool {
    let local = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp").is_ok_and(|table| {
        table.lines().any(|line| {
            let mut fields = line.split_whitespace().skip(1);
            fields.next() == Some(local.as_str()) && fields.nth(1) == Some("0A")
        })
    })
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
