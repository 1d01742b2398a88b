//! One HTTP(S) probe, step by step on a fresh connection: resolve, connect, TLS (rustls:
//! the platform's roots plus `--ca-file`), one HTTP/1.1 request, at most [`MAX_BODY`] of
//! the body. Each step fails with its own word; redirects are not followed (a 3xx is
//! judged by `expect_status`); there is no pool, so every probe checks the whole path.

use std::io;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::header::{HOST, HeaderName, HeaderValue, USER_AGENT};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use vitals_protocol::target::HttpMethod;
use vitals_protocol::url::HttpUrl as Url;
use vitals_protocol::{MAX_JSON_INT, Target};

use crate::sample::{Failure, Outcome};

/// Most body bytes read to look for `body_contains`.
pub const MAX_BODY: usize = 64 * 1024;
const AGENT: &str = concat!("vitals-prober/", env!("CARGO_PKG_VERSION"));

/// What every HTTP target shares: the TLS settings.
#[derive(Clone)]
pub struct HttpProber {
    tls: tokio_rustls::TlsConnector,
}

impl HttpProber {
    /// The platform's roots (`rustls-native-certs`: the OS store, or `SSL_CERT_FILE`/
    /// `SSL_CERT_DIR`) plus `extra_roots`.
    pub fn new(extra_roots: Vec<CertificateDer<'static>>) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        let (added, ignored) = roots.add_parsable_certificates(native.certs);
        if !native.errors.is_empty() || ignored > 0 {
            tracing::warn!(errors = ?native.errors, ignored, "some platform root certificates could not be read");
        }
        for cert in extra_roots {
            roots
                .add(cert)
                .context("a --ca-file certificate is not a usable root")?;
        }
        tracing::info!(
            platform_roots = added,
            total_roots = roots.len(),
            "TLS roots loaded"
        );
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }

    /// Probes `target` (kind `http`). The caller bounds it with the target's timeout:
    /// dropping this future drops the connection.
    pub async fn probe(&self, target: &Target) -> Outcome {
        let start = Instant::now();
        let elapsed_ms = || start.elapsed().as_secs_f64() * 1000.0;
        let failed = |f: Failure| Outcome::failed(elapsed_ms(), f);
        let Some(url) = target.url.as_deref().and_then(Url::parse) else {
            return failed(Failure::Protocol);
        };
        let tcp = match connect(url.host, url.port).await {
            Ok(s) => s,
            Err(f) => return failed(f),
        };
        if !url.tls {
            return self.exchange(target, &url, tcp, None, start).await;
        }
        let name = match ServerName::try_from(url.host.to_owned()) {
            Ok(n) => n,
            Err(_) => return failed(Failure::Tls),
        };
        match self.tls.connect(name, tcp).await {
            Ok(stream) => {
                let cert = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(|leaf| not_after_ms(leaf));
                self.exchange(target, &url, stream, cert, start).await
            }
            Err(e) => failed(classify_tls(&e)),
        }
    }

    /// The request and response on an open connection.
    async fn exchange<S>(
        &self,
        target: &Target,
        url: &Url<'_>,
        stream: S,
        cert_expires_ms: Option<u64>,
        start: Instant,
    ) -> Outcome
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let elapsed_ms = || start.elapsed().as_secs_f64() * 1000.0;
        let failed = |f: Failure| Outcome {
            cert_expires_ms,
            ..Outcome::failed(elapsed_ms(), f)
        };
        let request = match build_request(target, url) {
            Some(r) => r,
            None => return failed(Failure::Protocol),
        };
        let (mut sender, conn) =
            match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
                Ok(pair) => pair,
                Err(e) => return failed(classify_hyper(&e)),
            };
        // The connection runs beside the exchange and goes with it (timeout included).
        let _conn = AbortOnDrop(tokio::spawn(async move {
            let _ = conn.await;
        }));
        let response = match sender.send_request(request).await {
            Ok(r) => r,
            Err(e) => return failed(classify_hyper(&e)),
        };
        let latency_ms = elapsed_ms();
        let code = response.status().as_u16();
        let mut outcome = Outcome {
            latency_ms,
            status_code: Some(code),
            failure: None,
            cert_expires_ms,
        };
        if !target.status_ok(code) {
            outcome.failure = Some(Failure::Status(code));
        } else if let Some(needle) = &target.body_contains {
            outcome.failure = match read_prefix(response.into_body(), MAX_BODY).await {
                Ok(body) if contains(&body, needle.as_bytes()) => None,
                Ok(_) => Some(Failure::BodyMismatch),
                Err(e) => Some(classify_hyper(&e)),
            };
        }
        outcome
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn build_request(target: &Target, url: &Url<'_>) -> Option<Request<Empty<Bytes>>> {
    let method = match target.method() {
        HttpMethod::Get => hyper::Method::GET,
        HttpMethod::Head => hyper::Method::HEAD,
    };
    let mut request = Request::builder()
        .method(method)
        .uri(url.path)
        .body(Empty::new())
        .ok()?;
    let headers = request.headers_mut();
    headers.insert(HOST, HeaderValue::from_str(url.authority).ok()?);
    headers.insert(USER_AGENT, HeaderValue::from_static(AGENT));
    // The target's own headers last: they may set Host or User-Agent on purpose.
    for (name, value) in target.headers.iter().flatten() {
        headers.insert(
            HeaderName::from_bytes(name.as_bytes()).ok()?,
            HeaderValue::from_str(value).ok()?,
        );
    }
    Some(request)
}

/// Resolves and connects to the first address that accepts.
pub async fn connect(host: &str, port: u16) -> Result<TcpStream, Failure> {
    let addrs: Vec<_> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| Failure::Dns)?
        .collect();
    let mut failure = Failure::Dns;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => failure = classify_io_kind(e.kind()).unwrap_or(Failure::ConnectError),
        }
    }
    Err(failure)
}

/// Up to `max` bytes of the body (the rest is never read: the connection is dropped).
async fn read_prefix(mut body: hyper::body::Incoming, max: usize) -> Result<Vec<u8>, hyper::Error> {
    let mut out = Vec::new();
    while out.len() < max {
        match body.frame().await {
            Some(frame) => {
                if let Ok(data) = frame?.into_data() {
                    let room = max - out.len();
                    out.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            None => break,
        }
    }
    Ok(out)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// The leaf certificate's notAfter, epoch ms; None if it cannot be read.
pub fn not_after_ms(der: &[u8]) -> Option<u64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let secs = cert.validity().not_after.timestamp();
    let ms = u64::try_from(secs).ok()?.checked_mul(1000)?;
    (ms <= MAX_JSON_INT).then_some(ms)
}

/// A failed handshake: rustls says why (certificate, protocol), or the peer went away.
fn classify_tls(e: &io::Error) -> Failure {
    if e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) {
        return Failure::Tls;
    }
    classify_io_kind(e.kind()).unwrap_or(Failure::Tls)
}

/// A failed HTTP exchange.
fn classify_hyper(e: &hyper::Error) -> Failure {
    if e.is_incomplete_message() || e.is_closed() || e.is_canceled() {
        return Failure::ConnectionClosed;
    }
    if e.is_timeout() {
        return Failure::Timeout;
    }
    let mut cause = std::error::Error::source(e);
    while let Some(err) = cause {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
            {
                return Failure::Tls;
            }
            if let Some(f) = classify_io_kind(io.kind()) {
                return f;
            }
        }
        cause = err.source();
    }
    Failure::Protocol
}

/// The failure an I/O error kind clearly means, if any (shared with the TCP probe).
pub fn classify_io_kind(kind: io::ErrorKind) -> Option<Failure> {
    match kind {
        io::ErrorKind::ConnectionRefused => Some(Failure::ConnectRefused),
        io::ErrorKind::TimedOut => Some(Failure::Timeout),
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::UnexpectedEof => Some(Failure::ConnectionClosed),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_what_a_probe_needs() {
        let u = Url::parse("https://shop.example.com/health?deep=1#top").unwrap();
        assert_eq!(
            u,
            Url {
                tls: true,
                host: "shop.example.com",
                port: 443,
                authority: "shop.example.com",
                path: "/health?deep=1",
            }
        );
        let u = Url::parse("http://[::1]:8080").unwrap();
        assert_eq!(
            (u.host, u.port, u.path, u.authority),
            ("::1", 8080, "/", "[::1]:8080")
        );
        let u = Url::parse("http://h?x=1").unwrap();
        assert_eq!((u.port, u.path), (80, "?x=1"));
        for bad in ["ftp://x/", "http://", "http://h:99999/", "http://[::1/"] {
            assert_eq!(Url::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn requests_carry_host_and_the_targets_headers() {
        let t = Target::from_json(
            "shop",
            br#"{"kind":"http","url":"http://h:81/x","method":"HEAD","headers":{"Authorization":"Bearer t"}}"#,
        )
        .unwrap();
        let url = Url::parse(t.url.as_deref().unwrap()).unwrap();
        let r = build_request(&t, &url).unwrap();
        assert_eq!(r.method(), hyper::Method::HEAD);
        assert_eq!(r.uri(), "/x");
        assert_eq!(r.headers()[HOST], "h:81");
        assert_eq!(r.headers()["authorization"], "Bearer t");
    }

    #[test]
    fn finds_the_needle_anywhere_in_the_prefix() {
        assert!(contains(b"status: ok", b"ok"));
        assert!(!contains(b"status: down", b"ok"));
        assert!(!contains(b"o", b"ok"));
    }

    #[test]
    fn junk_is_no_certificate() {
        assert_eq!(not_after_ms(b"not der"), None);
    }

    #[test]
    fn io_kinds_map_to_words() {
        assert_eq!(
            classify_io_kind(io::ErrorKind::ConnectionRefused),
            Some(Failure::ConnectRefused)
        );
        assert_eq!(
            classify_io_kind(io::ErrorKind::UnexpectedEof),
            Some(Failure::ConnectionClosed)
        );
        assert_eq!(classify_io_kind(io::ErrorKind::Other), None);
        let tls = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert_eq!(classify_tls(&tls), Failure::Tls);
    }
}
