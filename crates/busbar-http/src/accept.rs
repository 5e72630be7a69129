//! The HTTP accept path: one task per connection, HTTP/1.1 served by hyper with a header-read
//! timeout (`http.header_read_timeout_ms`: a client that sends its headers a byte at a time, or
//! nothing at all, is closed when it runs out; an idle keep-alive connection too), an optional
//! TLS handshake (HTTPS) bounded by the same timeout and run in the connection's task, so a
//! stalled handshake never holds up accepts, a cap on open connections per client address
//! (`limits.connections_per_ip`; IPv6 per /64, IPv4-mapped as IPv4) and in all (`http.connections_max`, so many addresses cannot use
//! up the descriptors the Kafka listeners need), and a read deadline on every request body
//! (`http.body_read_timeout_ms`, [`crate::body::Deadline`]: a 408 answer closes the connection).
//! Every write to a connection's socket (HTTP, or TLS records) that makes no progress for
//! `http.write_timeout_ms` fails ([`WriteDeadline`]) and closes the connection: a client that
//! sends requests and never reads its answers cannot pin a task and its buffers. Progress resets
//! it, so a slow but reading client (an SSE stream) is kept.
//! Closes for these reasons are logged at most [`LINES_PER_SECOND`] times a second.
//!
//! A verified client certificate (mTLS) names the connection's principal, which `auth` uses for a
//! request without an `Authorization` header.

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, watch, Semaphore};

/// Most lines a second of the accept-path log; the rest are counted and summarised.
pub const LINES_PER_SECOND: u32 = 20;

/// Maps a verified client certificate (DER, end entity) to a user name.
pub type CertPrincipal = Arc<dyn Fn(&[u8]) -> Option<String> + Send + Sync>;

/// HTTPS settings (`http.tls` with `[tls]`).
#[derive(Clone)]
pub struct HttpTls {
    pub server: Arc<rustls::ServerConfig>,
    /// How a verified client certificate becomes a principal (`tls.principal_mapping`).
    pub principal: CertPrincipal,
}

impl std::fmt::Debug for HttpTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTls").finish_non_exhaustive()
    }
}

/// The user a verified client certificate names, for requests of its connection.
#[derive(Debug, Clone)]
pub struct ClientCert(pub String);

/// What every connection task needs.
struct Settings {
    router: Router,
    tls: Option<HttpTls>,
    header_read_timeout: Duration,
    per_ip: PerIp,
    per_ip_max: usize,
    /// Places for open connections in all (`http.connections_max`).
    total: Arc<Semaphore>,
    total_max: usize,
    body_read_timeout: Duration,
    /// A write stalled this long closes the connection (`http.write_timeout_ms`).
    write_timeout: Duration,
    body_budget: crate::body::Budget,
    log: RateLog,
}

/// Accepts on `listener` until `shutdown`, then lets every open connection finish its request
/// (graceful close) and returns once all are gone.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    config: &crate::HttpConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let settings = Arc::new(Settings {
        router,
        tls: config.tls.clone(),
        header_read_timeout: config.header_read_timeout,
        per_ip: PerIp::default(),
        per_ip_max: config.connections_per_ip,
        total: Arc::new(Semaphore::new(config.connections_max)),
        total_max: config.connections_max,
        body_read_timeout: config.body_read_timeout,
        write_timeout: config.write_timeout,
        body_budget: crate::body::Budget::new(config.body_bytes_budget),
        log: RateLog::default(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let (open_tx, mut open_rx) = mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
        };
        let Ok(place) = settings.total.clone().try_acquire_owned() else {
            drop(socket);
            let max = settings.total_max;
            settings.log.line(&format!(
                "closed a connection from {peer}: over http.connections_max ({max})"
            ));
            continue;
        };
        let Some(slot) = settings.per_ip.acquire(peer.ip(), settings.per_ip_max) else {
            drop(socket);
            let max = settings.per_ip_max;
            settings.log.line(&format!(
                "closed a connection from {peer}: over limits.connections_per_ip ({max})"
            ));
            continue;
        };
        let _ = socket.set_nodelay(true);
        let (settings, stop, open) = (settings.clone(), stop_rx.clone(), open_tx.clone());
        tokio::spawn(async move {
            connection(socket, peer, &settings, stop).await;
            drop((slot, place, open));
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(open_tx);
    // Every connection task holds a sender: this returns once the last one has finished.
    let _ = open_rx.recv().await;
    Ok(())
}

/// A failed accept: one aborted connection is skipped, anything else (out of descriptors)
/// pauses accepting for a second, as axum's own loop does.
async fn accept_failed(e: &std::io::Error) {
    use std::io::ErrorKind::*;
    if !matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused
    ) {
        let msg = format!("accept failed: {e}; retrying in 1 s");
        busbar_broker::log::error("busbar-http", "accept_failed", &msg, &[]);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// One connection: the TLS handshake when HTTPS is on, then HTTP until it closes.
async fn connection(
    socket: tokio::net::TcpStream,
    peer: SocketAddr,
    settings: &Settings,
    stop: watch::Receiver<bool>,
) {
    let stalled = Arc::new(AtomicBool::new(false));
    let socket = WriteDeadline::new(socket, settings.write_timeout, stalled.clone());
    let Some(tls) = &settings.tls else {
        http(socket, peer, None, settings, stop).await;
        return log_stalled(&stalled, peer, settings);
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.server.clone());
    let stream =
        match tokio::time::timeout(settings.header_read_timeout, acceptor.accept(socket)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                let line = format!("closed a connection from {peer}: TLS handshake failed: {e}");
                return settings.log.line(&line);
            }
            Err(_) => {
                return settings.log.line(&format!(
                    "closed a connection from {peer}: TLS handshake not finished within \
                     http.header_read_timeout_ms"
                ));
            }
        };
    let cert = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|c| (tls.principal)(c.as_ref()));
    http(stream, peer, cert, settings, stop).await;
    log_stalled(&stalled, peer, settings);
}

/// Logs a connection closed because its client did not take what was written.
fn log_stalled(stalled: &AtomicBool, peer: SocketAddr, settings: &Settings) {
    if stalled.load(Ordering::Relaxed) {
        settings.log.line(&format!(
            "closed a connection from {peer}: its client took nothing written for \
             http.write_timeout_ms"
        ));
    }
}

/// A socket whose writes (and flushes) fail with `TimedOut` once they have made no progress for
/// `limit`, setting `stalled`; reads pass through. Under TLS it is the TCP stream, so TLS records
/// are bounded the same way.
struct WriteDeadline<IO> {
    io: IO,
    limit: Duration,
    /// Armed when a write or flush first returns pending; cleared by any progress.
    since: Option<Pin<Box<tokio::time::Sleep>>>,
    stalled: Arc<AtomicBool>,
}

impl<IO> WriteDeadline<IO> {
    fn new(io: IO, limit: Duration, stalled: Arc<AtomicBool>) -> Self {
        Self {
            io,
            limit,
            since: None,
            stalled,
        }
    }

    /// Passes `r` on, or a `TimedOut` error once pending has lasted `limit`.
    fn bounded<T>(&mut self, r: Poll<io::Result<T>>, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if r.is_ready() {
            self.since = None;
            return r;
        }
        let limit = self.limit;
        let since = self
            .since
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if since.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.stalled.store(true, Ordering::Relaxed);
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "no write progress within http.write_timeout_ms",
        )))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for WriteDeadline<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        this.bounded(r, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.bounded(r, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_flush(cx);
        this.bounded(r, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_shutdown(cx);
        this.bounded(r, cx)
    }
}

/// Serves HTTP/1.1 on `io` until the client closes, a header read times out, or the server stops
/// (then the request in progress finishes first).
async fn http<IO>(
    io: IO,
    peer: SocketAddr,
    cert: Option<String>,
    settings: &Settings,
    mut stop: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let router = settings.router.clone();
    let (body_timeout, budget) = (settings.body_read_timeout, settings.body_budget.clone());
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let mut router = router.clone();
        let mut req = req.map(|b| {
            axum::body::Body::new(crate::body::Deadline::new(b, body_timeout, budget.clone()))
        });
        req.extensions_mut().insert(ConnectInfo(peer));
        if let Some(user) = &cert {
            req.extensions_mut().insert(ClientCert(user.clone()));
        }
        async move {
            use tower_service::Service;
            type Req = axum::extract::Request;
            std::future::poll_fn(|cx| Service::<Req>::poll_ready(&mut router, cx)).await?;
            let mut response = Service::<Req>::call(&mut router, req).await?;
            use axum::http::StatusCode;
            let status = response.status();
            if status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::SERVICE_UNAVAILABLE {
                // The body may not have been read whole: the connection cannot be reused.
                let close = axum::http::HeaderValue::from_static("close");
                response
                    .headers_mut()
                    .insert(axum::http::header::CONNECTION, close);
            }
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                if e.is_timeout() {
                    settings.log.line(&format!(
                        "closed a connection from {peer}: headers not received within \
                         http.header_read_timeout_ms"
                    ));
                }
            }
        }
        _ = async { let _ = stop.wait_for(|s| *s).await; } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Open connections per client address (IPv6: per /64, [`client_address`](busbar_broker::client_address)).
#[derive(Default)]
struct PerIp {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One counted connection; dropping it frees its place.
struct IpSlot {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl PerIp {
    /// A place for one more connection from `ip`; `None` when its address (IPv6: its /64)
    /// already has `max`.
    fn acquire(&self, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let ip = busbar_broker::client_address::client_address(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            open: self.open.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// A log of at most [`LINES_PER_SECOND`] lines a second.
struct RateLog {
    window: Mutex<(Instant, u32, u64)>,
}

impl Default for RateLog {
    fn default() -> Self {
        Self {
            window: Mutex::new((Instant::now(), 0, 0)),
        }
    }
}

impl RateLog {
    fn line(&self, text: &str) {
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if w.0.elapsed() >= Duration::from_secs(1) {
            if w.2 > 0 {
                let msg = format!(
                    "{} more closed connections not logged (at most {LINES_PER_SECOND} lines a \
                     second)",
                    w.2
                );
                busbar_broker::log::info("busbar-http", "lines_suppressed", &msg, &[]);
            }
            *w = (Instant::now(), 0, 0);
        }
        if w.1 >= LINES_PER_SECOND {
            w.2 += 1;
            return;
        }
        w.1 += 1;
        busbar_broker::log::info("busbar-http", "connection_closed", text, &[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_counts_each_address_and_frees_on_drop() {
        let limit = PerIp::default();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let s1 = limit.acquire(a, 2).unwrap();
        let _s2 = limit.acquire(a, 2).unwrap();
        assert!(limit.acquire(a, 2).is_none());
        assert!(limit.acquire("10.0.0.1".parse().unwrap(), 2).is_some());
        drop(s1);
        assert!(limit.acquire(a, 2).is_some());
    }

    #[test]
    fn per_ip_counts_ipv6_per_64_and_mapped_ipv4_as_ipv4() {
        let limit = PerIp::default();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let _a = limit.acquire(ip("2001:db8:1:2::1"), 2).unwrap();
        let _b = limit.acquire(ip("2001:db8:1:2:ffff::9"), 2).unwrap();
        assert!(
            limit.acquire(ip("2001:db8:1:2:abcd::1"), 2).is_none(),
            "a third address of the same /64 is over the limit"
        );
        assert!(
            limit.acquire(ip("2001:db8:1:3::1"), 2).is_some(),
            "another /64"
        );
        let _v4 = limit.acquire(ip("192.0.2.7"), 2).unwrap();
        let _mapped = limit.acquire(ip("::ffff:192.0.2.7"), 2).unwrap();
        assert!(
            limit.acquire(ip("192.0.2.7"), 2).is_none(),
            "an IPv4-mapped address counts as its IPv4 address"
        );
    }
}
