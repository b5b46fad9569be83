//! conn: one connection's walk down the pipeline: sniff its first byte (a Flash policy request
//! is answered there), TLS if it starts with a handshake, HTTP until a request becomes a
//! WebSocket (the gate and the target connect happen inside, before the 101), then the relay
//! with the session's observers beside it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::{debug, info};

use super::limits::Permit;
use super::{DrainFlags, Shared};
use crate::conninfo::ConnInfo;
use crate::error::Limit;
use crate::error::{Error, Kind, Side};
use crate::http::{self, Upgraded};
use crate::listen::{proxy, Stream};
use crate::observe::{log, metrics, Observer, Observers, Session};
use crate::proxy_header;
use crate::relay;
use crate::sniff::{self, Protocol, Rewind};
use crate::tls;

/// `info` is boxed: every async fn on the way keeps its arguments for its whole life, and a
/// `ConnInfo` by value would sit in every idle session's task several times over.
pub(super) async fn serve<S: Stream>(
    mut stream: S,
    mut info: Box<ConnInfo>,
    shared: &Arc<Shared>,
    drain: &DrainFlags,
) {
    let timeout = shared.settings.handshake_timeout;
    let trusted = match &shared.proxy_protocol {
        Some(pp) if pp.trusts(&info.peer) => {
            match proxy::read_header(&mut stream, timeout).await {
                Ok(header) => {
                    proxy::apply(&mut info, &header);
                    if info.via.is_some() {
                        tracing::Span::current()
                            .record("client", tracing::field::display(&info.peer));
                    }
                }
                Err(err) => return log::failure(&err),
            }
            true
        }
        _ => false,
    };
    // With --proxy-protocol, a header from a peer it does not trust must be seen to be
    // refused: enough bytes to recognise one, as many as the first segment brought.
    let look = if shared.proxy_protocol.is_some() && !trusted {
        16
    } else {
        1
    };
    if shared.tls.is_none() {
        return serve_plain(stream, info, look, shared, drain).await;
    }
    let mut first = [0u8; 16];
    let seen = match tokio::time::timeout(timeout, stream.peek(&mut first[..look])).await {
        Err(_) => return debug!("dropped: sent nothing within {timeout:?}"),
        Ok(Err(err)) => return debug!("dropped: {err}"),
        Ok(Ok(0)) => return debug!("closed before sending anything"),
        Ok(Ok(n)) => n,
    };
    if look > 1 && proxy_header::looks_like_header(&first[..seen]) {
        return log::failure(&Error::new(
            Side::Client,
            Kind::Forbidden,
            "PROXY header from a peer outside --proxy-protocol",
        ));
    }
    let protocol = sniff::classify(&first[..seen]);
    // Held for the connection's life: its place under the limits.
    let _permit = match admit(&info, shared) {
        Ok(permit) => permit,
        Err(limit) => return refuse(stream, protocol, limit, shared).await,
    };
    match protocol {
        Protocol::Tls => {
            let Some(tls) = &shared.tls else {
                return info!("TLS client refused: no certificate (give one with --cert FILE)");
            };
            // The configuration as of now: a reload later does not touch this connection.
            let config = tls.config();
            // Boxed for the same reason as the HTTP state: it is not needed after the handshake.
            let handshake = Box::pin(tls::stream::accept(stream, config));
            match tokio::time::timeout(timeout, handshake).await {
                Ok(Ok((tls_stream, handshaken))) => {
                    info.tls = Some(tls::info(tls_stream.connection(), handshaken));
                    // Boxed so that plain connections' tasks are not sized for a TLS session.
                    Box::pin(serve_http(tls_stream, info, shared, drain)).await;
                }
                Ok(Err(err)) => log::failure(&Error::io(Side::Client, "TLS handshake", err)),
                Err(_) => log::failure(&Error::new(
                    Side::Client,
                    Kind::Timeout,
                    "TLS handshake not done in time",
                )),
            }
        }
        Protocol::Http | Protocol::FlashPolicy if shared.settings.ssl_only => {
            info!("plain client refused (--ssl-only)");
        }
        Protocol::FlashPolicy => sniff::answer_flash_policy(stream, timeout).await,
        Protocol::Http => serve_http(stream, info, shared, drain).await,
    }
}

/// [`serve`] without a certificate: no TLS handshake needs the first bytes left in the socket,
/// so they are read, not peeked (one syscall less per connection), and replayed to whoever
/// reads next ([`Rewind`]). The same checks, in the same order, with the same words.
async fn serve_plain<S: Stream>(
    stream: S,
    info: Box<ConnInfo>,
    look: usize,
    shared: &Arc<Shared>,
    drain: &DrainFlags,
) {
    let timeout = shared.settings.handshake_timeout;
    let stream = match tokio::time::timeout(timeout, Rewind::read_first(stream)).await {
        Err(_) => return debug!("dropped: sent nothing within {timeout:?}"),
        Ok(Err(err)) => return debug!("dropped: {err}"),
        Ok(Ok(None)) => return debug!("closed before sending anything"),
        Ok(Ok(Some(stream))) => stream,
    };
    let first = stream.prefix();
    if look > 1 && proxy_header::looks_like_header(&first[..first.len().min(look)]) {
        return log::failure(&Error::new(
            Side::Client,
            Kind::Forbidden,
            "PROXY header from a peer outside --proxy-protocol",
        ));
    }
    let protocol = sniff::classify(first);
    let _permit = match admit(&info, shared) {
        Ok(permit) => permit,
        Err(limit) => return refuse(stream, protocol, limit, shared).await,
    };
    match protocol {
        Protocol::Tls => info!("TLS client refused: no certificate (give one with --cert FILE)"),
        Protocol::Http | Protocol::FlashPolicy if shared.settings.ssl_only => {
            info!("plain client refused (--ssl-only)");
        }
        Protocol::FlashPolicy => sniff::answer_flash_policy(stream, timeout).await,
        Protocol::Http => {
            let info: Arc<ConnInfo> = Arc::from(info);
            // Boxed as in `serve_http`.
            let Some(upgraded) = Box::pin(http::serve(stream, &info, &shared.http)).await else {
                return;
            };
            // The relay gets the socket itself: hyper has read the replayed bytes by now.
            let upgraded = upgraded.map_client(Rewind::into_inner);
            run_session(upgraded, info, shared, drain).await;
        }
    }
}

/// A place under the limits (held for the connection's life), or the limit it hit.
fn admit(info: &ConnInfo, shared: &Shared) -> Result<Option<Permit>, Limit> {
    match &shared.limits {
        Some(limits) => limits.admit(info.peer.ip()).map(Some),
        None => Ok(None),
    }
}

async fn serve_http<IO>(io: IO, info: Box<ConnInfo>, shared: &Arc<Shared>, drain: &DrainFlags)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let info: Arc<ConnInfo> = Arc::from(info);
    // Boxed: the HTTP side's state is not needed once the session runs; inline, the task of
    // every idle session would be sized for it.
    let Some(upgraded) = Box::pin(http::serve(io, &info, &shared.http)).await else {
        return;
    };
    run_session(upgraded, info, shared, drain).await;
}

/// A WebSocket session, from the 101 to its close line.
async fn run_session<IO>(
    upgraded: Upgraded<IO>,
    info: Arc<ConnInfo>,
    shared: &Arc<Shared>,
    drain: &DrainFlags,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Upgraded {
        mut client,
        leftover,
        mut target,
        target_name,
        mode,
        path,
        forwarded,
    } = upgraded;
    if let Some(client) = forwarded {
        tracing::Span::current().record("forwarded", tracing::field::display(client));
    }
    let run_once = shared.settings.run_once;
    shared.activity.send_if_modified(|a| {
        a.websockets += 1;
        run_once
    });
    let settings = &shared.settings;
    let mut observers =
        Observers::for_session(settings.record.as_deref(), settings.traffic, info.id);
    observers.open(&Session {
        info: &info,
        path: &path,
        target: &target_name,
        mode,
    });
    // Not needed while the session runs: an idle session keeps only what the relay uses
    // (observers copy at `open` what they want to keep).
    drop((path, target_name, info));
    drain.relaying.store(true, Ordering::Relaxed);
    let outside = relay::Outside {
        heartbeat: shared.settings.heartbeat,
        going_away: &drain.going_away,
    };
    let report = relay::run_with(
        &mut client,
        &mut target,
        leftover,
        mode,
        &mut observers,
        outside,
    )
    .await;
    observers.close(&report);
}

/// A connection over a limit: one log line (its level and label from the error, where a metric
/// counts the hit), then a plain HTTP client gets a 503 with `Retry-After`; a TLS client (and
/// anything else) is closed before its handshake, since no HTTP can be spoken to it unencrypted
/// and a handshake is the work the limits are there to spare.
async fn refuse<S>(stream: S, protocol: Protocol, limit: Limit, shared: &Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let err = Error::new(Side::Client, Kind::Limited(limit), limit_reason(limit));
    log::failure(&err);
    let http = protocol == Protocol::Http && !shared.settings.ssl_only;
    // Status 0: closed before a TLS handshake, with nothing sent.
    metrics::refused(&err, if http { 503 } else { 0 });
    if http {
        Box::pin(answer_503(
            stream,
            &err,
            limit,
            shared.settings.handshake_timeout,
        ))
        .await;
    }
}

fn limit_reason(limit: Limit) -> &'static str {
    match limit {
        Limit::Connections => "too many connections (--max-connections)",
        Limit::PerClient => "too many connections from this address (--max-connections-per-ip)",
        Limit::Rate => "connecting too fast (--handshake-rate)",
        Limit::Clients => "too many client addresses to track",
    }
}

/// Writes the 503 without reading the request (a refusal costs no parsing), then reads and
/// drops what the client sent, at most `MAX_HEAD_BYTES` for at most one second: closing with
/// unread bytes would reset the connection and could destroy the answer before it is read.
async fn answer_503<S>(mut stream: S, err: &Error, limit: Limit, timeout: std::time::Duration)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let body = format!("503 Service Unavailable: {}\n", err.context);
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: {}\r\nContent-Type: text/plain; \
         charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        limit.retry_after(),
        body.len()
    );
    let linger = timeout.min(std::time::Duration::from_secs(1));
    let answered = tokio::time::timeout(timeout, async {
        stream.write_all(head.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
    if !matches!(answered, Ok(Ok(()))) {
        return;
    }
    let _ = tokio::time::timeout(linger, async {
        let mut sink = vec![0u8; 4096];
        let mut total = 0;
        while total < crate::http::MAX_HEAD_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::time::Instant;

    /// The drain after a 503 reads a request head's worth and stops there: a client that keeps
    /// sending does not hold the connection (nor a task) for the whole linger. Time is paused,
    /// so the clock moves only when the server waits: a drain that stops at the bound returns
    /// at the instant it began, one that reads on waits out the linger.
    #[tokio::test(start_paused = true)]
    async fn the_drain_after_a_503_stops_at_a_request_heads_worth() {
        for sent in [http::MAX_HEAD_BYTES, 3 * http::MAX_HEAD_BYTES] {
            let (mut client, server) = tokio::io::duplex(4 * http::MAX_HEAD_BYTES);
            client.write_all(&vec![b'x'; sent]).await.unwrap();
            // The client's end stays open: only the bound ends the drain.
            let err = Error::new(Side::Client, Kind::Limited(Limit::Connections), "full");
            let began = Instant::now();
            answer_503(server, &err, Limit::Connections, Duration::from_secs(5)).await;
            assert_eq!(began.elapsed(), Duration::ZERO, "{sent} bytes sent");
            let mut answer = String::new();
            client.read_to_string(&mut answer).await.unwrap();
            assert!(
                answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n")
                    && answer.ends_with("\r\n\r\n503 Service Unavailable: full\n"),
                "{answer:?}"
            );
        }
        // Below the bound, the drain waits for more (or the end) up to the linger: 1 s.
        let (mut client, server) = tokio::io::duplex(4 * http::MAX_HEAD_BYTES);
        client
            .write_all(&vec![b'x'; http::MAX_HEAD_BYTES - 1])
            .await
            .unwrap();
        let err = Error::new(Side::Client, Kind::Limited(Limit::Connections), "full");
        let began = Instant::now();
        answer_503(server, &err, Limit::Connections, Duration::from_secs(5)).await;
        assert_eq!(began.elapsed(), Duration::from_secs(1));
    }
}
