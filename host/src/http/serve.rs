//! The accept loop: HTTP/1.1 on hyper with upgrades, so `/ws` can take the
//! bare TCP stream back from hyper; Nagle is off and the send buffer capped
//! on every socket.

use std::future::Future;
use std::io;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Kernel send buffer per socket (Linux doubles it). Without a cap it
/// autotunes to `tcp_wmem` max (4 MiB) before the session's bounded queue
/// fills, so a stalled reader would pin megabytes before being dropped.
const SEND_BUFFER_BYTES: usize = 64 * 1024;
/// How long a client may take to send a request's headers; also how long
/// an idle keep-alive connection stays open. A client that never finishes
/// its request must not hold a connection (and shutdown) forever.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long shutdown waits for HTTP requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long accepting pauses after an error such as running out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves until `shutdown` resolves, then lets HTTP requests in flight
/// finish (for up to [`DRAIN_TIMEOUT`]). Upgraded WebSocket sessions are
/// not waited for here.
pub async fn serve(listener: TcpListener, router: Router, shutdown: impl Future<Output = ()>) {
    let connections = TaskTracker::new();
    let closing = CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
        };
        // Small frames must not wait for Nagle + delayed ACK.
        let _ = tcp.set_nodelay(true);
        let _ = socket2::SockRef::from(&tcp).set_send_buffer_size(SEND_BUFFER_BYTES);
        let service = TowerToHyperService::new(router.clone());
        let closing = closing.clone();
        connections.spawn(async move {
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = closing.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    closing.cancel();
    connections.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("HTTP connections still open after the drain timeout");
    }
}

async fn accept_failed(e: io::Error) {
    use io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed");
    tokio::time::sleep(ACCEPT_BACKOFF).await;
}
