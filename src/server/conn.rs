//! conn: one connection's walk down the pipeline: sniff its first byte (a Flash policy request
//! is answered there), TLS if it starts with a handshake, HTTP until a request becomes a
//! WebSocket (the gate and the target connect happen inside, before the 101), then the relay
//! with the session's observers beside it.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, info};

use super::Shared;
use crate::conninfo::ConnInfo;
use crate::error::{Error, Kind, Side};
use crate::http::{self, Upgraded};
use crate::listen::Stream;
use crate::observe::{log, Observer, Observers, Session};
use crate::relay;
use crate::sniff::{self, Protocol};
use crate::tls;

/// `info` is boxed: every async fn on the way keeps its arguments for its whole life, and a
/// `ConnInfo` by value would sit in every idle session's task several times over.
pub(super) async fn serve<S: Stream>(mut stream: S, mut info: Box<ConnInfo>, shared: &Arc<Shared>) {
    let timeout = shared.settings.handshake_timeout;
    let mut first = [0u8; 1];
    match tokio::time::timeout(timeout, stream.peek(&mut first)).await {
        Err(_) => return debug!("dropped: sent nothing within {timeout:?}"),
        Ok(Err(err)) => return debug!("dropped: {err}"),
        Ok(Ok(0)) => return debug!("closed before sending anything"),
        Ok(Ok(_)) => {}
    }
    match sniff::classify(&first) {
        Protocol::Tls => {
            let Some(acceptor) = &shared.tls else {
                return info!("TLS client refused: no certificate (give one with --cert FILE)");
            };
            // Boxed for the same reason as the HTTP state: it is not needed after the handshake.
            let handshake = Box::pin(acceptor.accept(stream));
            match tokio::time::timeout(timeout, handshake).await {
                Ok(Ok(tls_stream)) => {
                    info.tls = Some(tls::info(tls_stream.get_ref().1));
                    // Boxed so that plain connections' tasks are not sized for a TLS session.
                    Box::pin(serve_http(tls_stream, info, shared)).await;
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
        Protocol::Http => serve_http(stream, info, shared).await,
    }
}

async fn serve_http<IO>(io: IO, info: Box<ConnInfo>, shared: &Arc<Shared>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let info: Arc<ConnInfo> = Arc::from(info);
    // Boxed: the HTTP side's state is not needed once the session runs; inline, the task of
    // every idle session would be sized for it.
    let Some(upgraded) = Box::pin(http::serve(io, &info, &shared.http)).await else {
        return;
    };
    let Upgraded {
        mut client,
        leftover,
        mut target,
        target_name,
        mode,
        path,
    } = upgraded;
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
    let report = relay::run(&mut client, &mut target, leftover, mode, &mut observers).await;
    observers.close(&report);
}
