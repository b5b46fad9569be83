//! net: socket options shared by both ends of a session: the accepted client and the target.
//! A leaf: knows nothing of what travels on the sockets.

use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;

/// TCP_NODELAY (frames are small and interactive: VNC input, terminal keystrokes) and
/// keepalive (notice peers that vanished) on a client or target socket. Failures are harmless
/// and ignored: the connection works without them.
pub fn tune_tcp(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let keepalive = TcpKeepalive::new().with_time(std::time::Duration::from_secs(60));
    let _ = SockRef::from(stream).set_tcp_keepalive(&keepalive);
}
