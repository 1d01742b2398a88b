//! One HTTP(S) probe: a request on a fresh connection (no pool, so each probe measures and
//! checks the whole path: DNS, connect, TLS, response), redirects not followed (a 3xx is
//! judged by `expect_status`), at most [`MAX_BODY`] of the body read for `body_contains`.

use std::error::Error as _;
use std::io;
use std::time::Duration;

use anyhow::Context;
use tokio::time::Instant;
use vitals_protocol::target::HttpMethod;
use vitals_protocol::{MAX_JSON_INT, Target};

use crate::sample::{Failure, Outcome};

/// Most body bytes read to look for `body_contains`.
pub const MAX_BODY: usize = 64 * 1024;

/// One client for every HTTP target: rustls with the platform's roots plus `extra_roots`.
#[derive(Clone)]
pub struct HttpProber {
    client: reqwest::Client,
}

impl HttpProber {
    pub fn new(extra_roots: Vec<reqwest::Certificate>) -> anyhow::Result<Self> {
        // reqwest is built without its own provider (aws-lc-rs); ring is the one already
        // linked for NATS. Installing twice (tests, several runs) is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .tls_info(true)
            .tls_certs_merge(extra_roots)
            .pool_max_idle_per_host(0)
            .user_agent(concat!("vitals-prober/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client")?;
        Ok(Self { client })
    }

    /// Probes `target` (kind `http`). The caller bounds it with the target's timeout;
    /// `timeout` is also given to the request so its connection is dropped with it.
    pub async fn probe(&self, target: &Target, timeout: Duration) -> Outcome {
        let start = Instant::now();
        let elapsed_ms = || start.elapsed().as_secs_f64() * 1000.0;
        let method = match target.method() {
            HttpMethod::Get => reqwest::Method::GET,
            HttpMethod::Head => reqwest::Method::HEAD,
        };
        let mut request = self
            .client
            .request(method, target.url.as_deref().unwrap_or_default())
            .timeout(timeout);
        for (name, value) in target.headers.iter().flatten() {
            request = request.header(name, value);
        }
        let mut response = match request.send().await {
            Ok(r) => r,
            Err(e) => return Outcome::failed(elapsed_ms(), classify(&e)),
        };
        let latency_ms = elapsed_ms();
        let code = response.status().as_u16();
        let cert_expires_ms = response
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(reqwest::tls::TlsInfo::peer_certificate)
            .and_then(not_after_ms);
        let mut outcome = Outcome {
            latency_ms,
            status_code: Some(code),
            failure: None,
            cert_expires_ms,
        };
        if !target.status_ok(code) {
            outcome.failure = Some(Failure::Status(code));
        } else if let Some(needle) = &target.body_contains {
            outcome.failure = match read_prefix(&mut response, MAX_BODY).await {
                Ok(body) if contains(&body, needle.as_bytes()) => None,
                Ok(_) => Some(Failure::BodyMismatch),
                Err(e) => Some(classify(&e)),
            };
        }
        outcome
    }
}

/// Up to `max` bytes of the body (the rest is never read: the connection is dropped).
async fn read_prefix(response: &mut reqwest::Response, max: usize) -> reqwest::Result<Vec<u8>> {
    let mut body = Vec::new();
    while body.len() < max {
        match response.chunk().await? {
            Some(chunk) => {
                let room = max - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            None => break,
        }
    }
    Ok(body)
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

/// The short word for a failed request, from the error and its causes.
pub fn classify(e: &reqwest::Error) -> Failure {
    if e.is_timeout() {
        return Failure::Timeout;
    }
    let mut text = String::new();
    let mut cause: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(err) = cause {
        if err.is::<rustls::Error>() {
            return Failure::Tls;
        }
        if let Some(io) = err.downcast_ref::<io::Error>() {
            // rustls reports through io::Error, whose source() skips the inner error.
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
        text.push_str(&err.to_string().to_lowercase());
        text.push('\n');
        cause = err.source();
    }
    if text.contains("dns error") || text.contains("failed to lookup address") {
        Failure::Dns
    } else if text.contains("certificate") || text.contains("tls") {
        Failure::Tls
    } else if text.contains("connection closed") || text.contains("incomplete message") {
        Failure::ConnectionClosed
    } else if e.is_connect() {
        Failure::ConnectError
    } else {
        Failure::Protocol
    }
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
    fn finds_the_needle_anywhere_in_the_prefix() {
        assert!(contains(b"status: ok", b"ok"));
        assert!(!contains(b"status: down", b"ok"));
        assert!(contains(b"", b""));
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
    }
}
