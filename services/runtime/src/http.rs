//! The one HTTP server every binary runs: HTTP/1.1 (with upgrades, for the gateway's
//! WebSocket) through hyper, with the limits a slow or hostile client must not get past:
//!
//! - a **header read timeout**: a connection must deliver each request head within it,
//!   counted from when the server starts waiting for that head, so it also bounds a new
//!   connection that sends nothing and a keep-alive connection that sits idle;
//! - an **idle timeout**: a connection on which no byte moved either way for this long is
//!   closed (a client that stops reading a response, or never sends the rest of a body);
//! - a **per-address connection cap**: connections from one IP beyond it are closed at
//!   accept, counted, and logged at a bounded rate. A slot is held for as long as the
//!   socket lives, an upgraded WebSocket included.
//!
//! HTTP/2 is not served: browsers use it only over TLS, which Vitals does not terminate,
//! and hyper-util's auto-detection reads the first bytes without any timer.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The limits of [`serve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_conns_per_ip: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_millis(DEFAULT_HEADER_TIMEOUT_MS),
            idle_timeout: Duration::from_millis(DEFAULT_IDLE_TIMEOUT_MS),
            max_conns_per_ip: DEFAULT_MAX_CONNS_PER_IP,
        }
    }
}

pub const DEFAULT_HEADER_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 60_000;
pub const DEFAULT_MAX_CONNS_PER_IP: usize = 256;

/// The flags every binary takes for its HTTP listener (flattened into each `Config`).
#[derive(Debug, Clone, clap::Args)]
pub struct HttpArgs {
    /// A client must send each request's head (request line and headers) within this
    /// long, counted from when the server waits for it (also bounds an idle keep-alive).
    #[arg(long, env = "VITALS_HTTP_HEADER_TIMEOUT_MS", default_value_t = DEFAULT_HEADER_TIMEOUT_MS,
        value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub http_header_timeout_ms: u64,
    /// A connection on which nothing moved either way for this long is closed.
    #[arg(long, env = "VITALS_HTTP_IDLE_TIMEOUT_MS", default_value_t = DEFAULT_IDLE_TIMEOUT_MS,
        value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub http_idle_timeout_ms: u64,
    /// Most connections open at once from one IP address (WebSockets included); more are
    /// closed at once [default: 256; the gateway: --max-clients + 256, since a reverse
    /// proxy brings every viewer from one address].
    #[arg(long, env = "VITALS_HTTP_MAX_CONNS_PER_IP",
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000_000))]
    pub http_max_conns_per_ip: Option<usize>,
}

impl HttpArgs {
    /// The limits, with `default_per_ip` when the flag is not given.
    pub fn limits(&self, default_per_ip: usize) -> Limits {
        Limits {
            header_read_timeout: Duration::from_millis(self.http_header_timeout_ms),
            idle_timeout: Duration::from_millis(self.http_idle_timeout_ms),
            max_conns_per_ip: self.http_max_conns_per_ip.unwrap_or(default_per_ip),
        }
    }
}

/// What prometheus-client's text encoder writes (OpenMetrics 1.0, ending in `# EOF`).
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A `/metrics` answer: the encoded registry with the OpenMetrics content type.
pub fn metrics_response(text: String) -> Response {
    ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response()
}

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting, lets
/// every connection finish the request it is on (idle ones close at once) and returns
/// when they have. Upgraded connections are no longer the server's: their owner tracks them.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: Limits,
) -> io::Result<()> {
    let stop = CancellationToken::new();
    let conns = TaskTracker::new();
    let per_ip = PerIp::new(limits.max_conns_per_ip);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut accept_errors = 0u32;
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => {
                    accept_errors = 0;
                    a
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning,
                    // as axum::serve does; a dropped peer is not worth a pause.
                    if !is_connection_error(&e) {
                        accept_errors = accept_errors.saturating_add(1);
                        tracing::error!(error = %e, accept_errors, "accepting an HTTP connection");
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_millis(100)) => {}
                            () = &mut shutdown => break,
                        }
                    }
                    continue;
                }
            },
        };
        let Some(slot) = per_ip.acquire(peer) else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Watched {
            stream,
            activity: activity.clone(),
            _slot: slot,
        });
        let service = TowerToHyperService::new(router.clone());
        let stop = stop.clone();
        conns.spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .keep_alive(true);
            let conn = builder.serve_connection(io, service).with_upgrades();
            let mut conn = std::pin::pin!(conn);
            let mut stopping = false;
            loop {
                let idle_at = activity.last() + limits.idle_timeout;
                tokio::select! {
                    ended = conn.as_mut() => {
                        if let Err(e) = ended {
                            // Timeouts, resets and bad requests: the client's doing.
                            tracing::debug!(peer = %peer, error = %e, "HTTP connection ended");
                        }
                        break;
                    }
                    () = stop.cancelled(), if !stopping => {
                        stopping = true;
                        conn.as_mut().graceful_shutdown();
                    }
                    () = tokio::time::sleep_until(idle_at) => {
                        if activity.last() + limits.idle_timeout <= Instant::now() {
                            tracing::debug!(peer = %peer, "HTTP connection idle; closing");
                            break;
                        }
                    }
                }
            }
        });
    }
    drop(listener);
    stop.cancel();
    conns.close();
    conns.wait().await;
    Ok(())
}

/// Accept errors that concern one connection only (see axum::serve).
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// When bytes last moved on a connection, as milliseconds since it was accepted.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// The socket, noting each read or write that moved bytes, and holding its address's
/// slot until it is dropped (which, after an upgrade, is when the WebSocket ends).
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
    _slot: Slot,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Open connections per remote IP, under a cap.
#[derive(Clone)]
struct PerIp {
    inner: Arc<PerIpInner>,
}

struct PerIpInner {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
    refused: AtomicU64,
    /// When a refusal was last logged (ms since `start`); one line per 10 s at most.
    logged_ms: AtomicU64,
    start: Instant,
}

/// How often refusals at the per-address cap are logged (with the count so far).
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

impl PerIp {
    fn new(max: usize) -> Self {
        Self {
            inner: Arc::new(PerIpInner {
                max: max.max(1),
                open: Mutex::new(HashMap::new()),
                refused: AtomicU64::new(0),
                logged_ms: AtomicU64::new(u64::MAX),
                start: Instant::now(),
            }),
        }
    }

    fn acquire(&self, peer: SocketAddr) -> Option<Slot> {
        let ip = peer.ip();
        let admitted = {
            let mut open = self.inner.open.lock().unwrap_or_else(|p| p.into_inner());
            let n = open.entry(ip).or_insert(0);
            if *n < self.inner.max {
                *n += 1;
                true
            } else {
                false
            }
        };
        if admitted {
            return Some(Slot {
                per_ip: self.clone(),
                ip,
            });
        }
        let refused = self.inner.refused.fetch_add(1, Ordering::Relaxed) + 1;
        let now = self.inner.start.elapsed().as_millis() as u64;
        let last = self.inner.logged_ms.load(Ordering::Relaxed);
        let due =
            last == u64::MAX || now.saturating_sub(last) >= REFUSAL_LOG_EVERY.as_millis() as u64;
        if due
            && self
                .inner
                .logged_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                peer = %ip,
                max_conns_per_ip = self.inner.max,
                refused_total = refused,
                "HTTP connection refused: too many from one address"
            );
        }
        None
    }

    fn release(&self, ip: IpAddr) {
        let mut open = self.inner.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&ip);
            }
        }
    }
}

/// One connection's place under its address's cap; freed on drop.
struct Slot {
    per_ip: PerIp,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.per_ip.release(self.ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_counts_per_address_and_frees_on_drop() {
        let per_ip = PerIp::new(2);
        let a: SocketAddr = "10.0.0.1:1000".parse().unwrap();
        let a2: SocketAddr = "10.0.0.1:1001".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:1000".parse().unwrap();
        let one = per_ip.acquire(a).unwrap();
        let _two = per_ip.acquire(a2).unwrap();
        assert!(per_ip.acquire(a).is_none(), "third from one address");
        let _other = per_ip.acquire(b).expect("another address has its own cap");
        drop(one);
        assert!(per_ip.acquire(a).is_some(), "a freed slot is reused");
        assert_eq!(per_ip.inner.refused.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn flags_parse_with_ranges() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            http: HttpArgs,
        }
        use clap::Parser;
        let c = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(
            c.http.limits(7),
            Limits {
                max_conns_per_ip: 7,
                ..Limits::default()
            }
        );
        let c = Cli::try_parse_from(["x", "--http-max-conns-per-ip", "3"]).unwrap();
        assert_eq!(c.http.limits(7).max_conns_per_ip, 3);
        for bad in [
            ["x", "--http-max-conns-per-ip", "0"],
            ["x", "--http-header-timeout-ms", "0"],
            ["x", "--http-idle-timeout-ms", "99"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }
}
