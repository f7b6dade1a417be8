//! How both servers (`eventual sink`, `eventual serve`) accept connections: HTTP/1.1 and HTTP/2
//! with prior knowledge (h2c) on one port, limits on what one connection may send or hold, and
//! graceful shutdown.
//!
//! hyper-util's `auto` builder tells the two protocols apart by the HTTP/2 preface. hyper's own
//! settings do the rest: the HTTP/1 header-read timeout (also an idle keep-alive timeout), header
//! size and count limits (`431`), a `400` for a request line or header it cannot parse, and HTTP/2's
//! concurrent-stream limit. One thing hyper-util does not bound is the time before a connection's
//! first request: sniffing the preface waits for bytes forever, so a connection that has not
//! started a request within the header-read timeout is closed here.

use std::{future::Future, io, pin::pin, sync::Arc, time::Duration};

use axum::Router;
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::Notify,
};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// Limits on one connection, for both protocols ([`Config::serving`](crate::Config::serving)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeOptions {
    /// A client must send a request's whole header within this (`--header-read-timeout`, default
    /// 10 s), counted from the connection's start or the end of the previous answer, or the
    /// connection is closed: slow or silent clients do not hold a connection, and an idle
    /// keep-alive connection is closed after this long.
    pub header_read_timeout: Duration,
    /// Largest request header in bytes (HTTP/1 read buffer, HTTP/2 header list); larger gets `431`
    /// (HTTP/1) or a stream reset (HTTP/2). Default 64 KiB.
    pub max_header_bytes: usize,
    /// Most header fields in an HTTP/1 request; more gets `431`. Default 100.
    pub max_headers: usize,
    /// Most requests in flight at once on one HTTP/2 connection (`--http2-max-streams`, default
    /// 1,000), e.g. long-polls sharing it.
    pub http2_max_streams: u32,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 << 10,
            max_headers: 100,
            http2_max_streams: 1_000,
        }
    }
}

/// Serves `router` on `listener` until `stop` resolves; in-flight requests then finish, and
/// `shutdown` is cancelled first so long-polls answer at once instead of holding the exit.
///
/// Each connection speaks HTTP/1.1 or, when it opens with the HTTP/2 preface, HTTP/2 (prior
/// knowledge, no TLS); `options` bounds what it may send.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    stop: impl Future<Output = ()> + Send + 'static,
    options: &ServeOptions,
) -> io::Result<()> {
    let builder = Arc::new(builder(options));
    let first_request_within = options.header_read_timeout;
    let graceful = GracefulShutdown::new();
    let mut stop = pin!(async move {
        tokio::select! {
            () = stop => shutdown.cancel(),
            () = shutdown.cancelled() => {}
        }
    });
    loop {
        let tcp = tokio::select! {
            // A stop is noticed first, even while connections keep arriving.
            biased;
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
        };
        prepare(&tcp);
        let started = Arc::new(Notify::new());
        let service = {
            let started = started.clone();
            let router = router.clone();
            hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                started.notify_one();
                router.clone().oneshot(request)
            })
        };
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let conn = builder.serve_connection(TokioIo::new(tcp), service);
            let mut conn = pin!(watcher.watch(conn));
            tokio::select! {
                // In this order: a request that has arrived is served even when this task is
                // first polled after the deadline (a starved server must not drop it).
                biased;
                result = &mut conn => return log_end(result),
                () = started.notified() => {}
                () = tokio::time::sleep(first_request_within) => {
                    tracing::debug!("closing a connection that sent no request in time");
                    return;
                }
            }
            log_end(conn.await);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// hyper's connection builder with `options`' limits, for HTTP/1.1 and HTTP/2.
fn builder(options: &ServeOptions) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        // hyper's floor for its read buffer is 8 KiB.
        .max_buf_size(options.max_header_bytes.max(8 << 10))
        .max_headers(options.max_headers)
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(options.http2_max_streams)
        .max_header_list_size(u32::try_from(options.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// Sets `TCP_NODELAY` on an accepted connection. Without it, the last small write of a streamed
/// answer (a log being followed, an SSE event, the end of a chunked body) waits for the peer's
/// delayed ACK: about 40 ms per request on Linux.
fn prepare(tcp: &TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "failed to set TCP_NODELAY");
    }
}

/// After a failed `accept`: errors about one connection are skipped; others (out of file
/// descriptors) are logged and accepting pauses a second, as `axum::serve` does.
async fn accept_failed(e: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed; retrying in a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Logs how a connection ended, when it ended in an error (at debug: clients cause them).
fn log_end(result: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_have_nodelay_set() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = tokio::spawn(TcpStream::connect(addr));
        let (stream, _) = listener.accept().await.expect("accept");
        prepare(&stream);
        assert!(
            stream.nodelay().expect("getsockopt"),
            "TCP_NODELAY must be on"
        );
        client.await.expect("join").expect("connect");
    }
}
