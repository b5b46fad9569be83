//! A real HAProxy (Debian's `haproxy`), started on a free loopback port in TCP mode with a
//! generated configuration, in front of one server it sends a PROXY header to.

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
        let port = free_port();
        let dir = temp_dir("haproxy");
        let config = dir.join("haproxy.cfg");
        std::fs::write(
            &config,
            format!(
                "global\n  maxconn 256\n\
                 defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
                 frontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\n\
                 backend be\n  server s1 {backend} {send_proxy}\n"
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
        bounded("haproxy to listen", async {
            while tokio::net::TcpStream::connect(addr).await.is_err() {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
        .await;
        HaProxy { child, addr }
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
