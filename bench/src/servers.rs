//! The targets and the yardstick: echo, sink (discard), source (send forever) servers and a
//! plain tokio TCP relay. All set TCP_NODELAY and use large buffers so that they are never the
//! slowest hop; the relay uses `copy_bidirectional_with_sizes` because plain
//! `copy_bidirectional` would cap the yardstick at 8 KiB per syscall.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Binds, announces the real address on stdout (scripts may pass port 0), then serves each
/// connection with `handle` until the process is killed.
async fn serve<F, Fut>(listen: SocketAddr, handle: F) -> io::Result<()>
where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind(listen).await?;
    println!("listening {}", listener.local_addr()?);
    loop {
        match listener.accept().await {
            Ok((s, _)) => {
                let _ = s.set_nodelay(true);
                tokio::spawn(handle(s));
            }
            // EMFILE and friends: back off instead of spinning, keep serving the others.
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

pub async fn echo_server(listen: SocketAddr, buf: usize) -> io::Result<()> {
    serve(listen, move |mut s| async move {
        let mut b = vec![0u8; buf];
        loop {
            let n = match s.read(&mut b).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if s.write_all(&b[..n]).await.is_err() {
                return;
            }
        }
    })
    .await
}

pub async fn sink_server(listen: SocketAddr, buf: usize) -> io::Result<()> {
    serve(listen, move |mut s| async move {
        let mut b = vec![0u8; buf];
        while let Ok(n) = s.read(&mut b).await {
            if n == 0 {
                return;
            }
        }
    })
    .await
}

/// Sends a fixed pattern forever; also drains what the peer sends so a proxy's writes to us
/// never block.
pub async fn source_server(listen: SocketAddr, buf: usize) -> io::Result<()> {
    serve(listen, move |s| async move {
        let (mut rd, mut wr) = s.into_split();
        tokio::spawn(async move {
            let mut b = vec![0u8; 16 * 1024];
            while let Ok(n) = rd.read(&mut b).await {
                if n == 0 {
                    return;
                }
            }
        });
        let b: Vec<u8> = (0..buf).map(|i| (i % 251) as u8).collect();
        while wr.write_all(&b).await.is_ok() {}
    })
    .await
}

pub async fn tcp_relay(
    listen: SocketAddr,
    target: SocketAddr,
    buf: usize,
    connect_timeout: Duration,
) -> io::Result<()> {
    serve(listen, move |mut client| async move {
        let upstream = match tokio::time::timeout(connect_timeout, TcpStream::connect(target)).await
        {
            Ok(Ok(u)) => u,
            Ok(Err(e)) => return eprintln!("relay connect {target}: {e}"),
            Err(_) => return eprintln!("relay connect {target}: timed out"),
        };
        let mut upstream = upstream;
        let _ = upstream.set_nodelay(true);
        let _ =
            tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, buf, buf).await;
    })
    .await
}
