//! net: socket options shared by both ends of a session: the accepted client and the target.
//! A leaf: knows nothing of what travels on the sockets.

use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;

/// Whether a socket accepted from a listener starts with the listener's TCP_NODELAY and
/// keepalive settings. Linux copies them at accept (so [`tune_tcp`] on the listener once spares
/// three `setsockopt` per connection); elsewhere each accepted socket is tuned.
pub const ACCEPTED_INHERIT_OPTIONS: bool = cfg!(target_os = "linux");

/// TCP_NODELAY (frames are small and interactive: VNC input, terminal keystrokes) and
/// keepalive (notice peers that vanished) on a client or target socket, or on a listener whose
/// accepted sockets inherit them. Failures are harmless and ignored: the connection works
/// without them.
pub fn tune_tcp<'s>(socket: impl Into<SockRef<'s>>) {
    let socket = socket.into();
    let _ = socket.set_tcp_nodelay(true);
    let keepalive = TcpKeepalive::new().with_time(std::time::Duration::from_secs(60));
    let _ = socket.set_tcp_keepalive(&keepalive);
}

/// [`tune_tcp`] on an accepted socket, unless it inherited the options from its listener.
pub fn tune_accepted(stream: &TcpStream) {
    if !ACCEPTED_INHERIT_OPTIONS {
        tune_tcp(stream);
    }
}
