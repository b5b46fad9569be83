//! tcp: a target reached over TCP, by name or address.

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpStream;

use crate::net::tune_tcp;

/// Connects to `host:port` (the first address that answers), with TCP_NODELAY and keepalive.
pub(super) async fn connect(host: &str, port: u16) -> io::Result<TcpStream> {
    let stream = TcpStream::connect((host, port)).await?;
    tune_tcp(&stream);
    Ok(stream)
}

/// Connects to the first of `addrs` that answers (addresses the gate resolved and checked:
/// no second resolution), with TCP_NODELAY and keepalive.
pub(super) async fn connect_addrs(addrs: &[SocketAddr]) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addrs).await?;
    tune_tcp(&stream);
    Ok(stream)
}
