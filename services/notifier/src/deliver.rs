//! One POST to a receiver: a fresh connection (TLS through rustls with the platform's
//! roots for https), one HTTP/1.1 request, the status. No pool: a notification is rare
//! and a fresh connection is what notices a receiver that moved.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::{CONTENT_TYPE, HOST, HeaderName, HeaderValue, USER_AGENT};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
pub use vitals_protocol::url::HttpUrl as Url;

const AGENT: &str = concat!("vitals-notifier/", env!("CARGO_PKG_VERSION"));

/// Why an attempt failed, and whether another could succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub reason: String,
    /// A 4xx (other than 408 and 429) says the request itself is wrong: not retried.
    pub permanent: bool,
}

fn failed(reason: impl Into<String>) -> Failed {
    Failed {
        reason: reason.into(),
        permanent: false,
    }
}

/// Whether a status is accepted, retried, or given up at once.
pub fn judge_status(code: u16) -> Result<(), Failed> {
    match code {
        200..=299 => Ok(()),
        408 | 429 => Err(failed(format!("status {code}"))),
        400..=499 => Err(Failed {
            reason: format!("status {code} (not retried)"),
            permanent: true,
        }),
        _ => Err(failed(format!("status {code}"))),
    }
}

/// The HTTP client every receiver shares (the TLS settings).
#[derive(Clone)]
pub struct Client {
    tls: tokio_rustls::TlsConnector,
}

impl Client {
    pub fn new() -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        let (_, ignored) = roots.add_parsable_certificates(native.certs);
        if !native.errors.is_empty() || ignored > 0 {
            tracing::warn!(errors = ?native.errors, ignored, "some platform root certificates could not be read");
        }
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

    /// POSTs `body` (JSON) to `url` within `timeout`.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: Bytes,
        timeout: Duration,
    ) -> Result<(), Failed> {
        match tokio::time::timeout(timeout, self.post_inner(url, headers, body)).await {
            Ok(r) => r,
            Err(_) => Err(failed(format!("timeout after {} ms", timeout.as_millis()))),
        }
    }

    async fn post_inner(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: Bytes,
    ) -> Result<(), Failed> {
        let u = Url::parse(url).ok_or_else(|| Failed {
            reason: "bad url".into(),
            permanent: true,
        })?;
        let tcp = TcpStream::connect((u.host, u.port))
            .await
            .map_err(|e| failed(format!("connect: {e}")))?;
        let _ = tcp.set_nodelay(true);
        if !u.tls {
            return exchange(&u, headers, body, tcp).await;
        }
        let name = ServerName::try_from(u.host.to_owned()).map_err(|e| Failed {
            reason: format!("tls: {e}"),
            permanent: true,
        })?;
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| failed(format!("tls: {e}")))?;
        exchange(&u, headers, body, tls).await
    }
}

async fn exchange<S>(
    u: &Url<'_>,
    headers: &[(String, String)],
    body: Bytes,
    stream: S,
) -> Result<(), Failed>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut req = Request::builder()
        .method(hyper::Method::POST)
        .uri(u.path)
        .body(Full::new(body))
        .map_err(|e| failed(format!("request: {e}")))?;
    let h = req.headers_mut();
    let bad = |_| failed("bad header");
    h.insert(HOST, HeaderValue::from_str(u.authority).map_err(bad)?);
    h.insert(USER_AGENT, HeaderValue::from_static(AGENT));
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (k, v) in headers {
        h.insert(
            HeaderName::from_bytes(k.as_bytes()).map_err(|_| failed("bad header"))?,
            HeaderValue::from_str(v).map_err(|_| failed("bad header"))?,
        );
    }
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| failed(format!("http: {e}")))?;
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let result = async {
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| failed(format!("http: {e}")))?;
        let code = resp.status().as_u16();
        // The body is read (bounded by the caller's timeout) so the receiver sees a
        // clean end of the exchange; its content does not matter.
        let _ = resp.into_body().collect().await;
        judge_status(code)
    }
    .await;
    conn.abort();
    result
}

/// The wait before retry `attempt` (1 = the first): `base` doubling up to `max`, then a
/// random point between half of that and all of it, so receivers coming back are not hit
/// by every notifier in step, and the total over n attempts has a known lower bound.
pub fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    let d = base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
        .min(max);
    let half = d / 2;
    half + Duration::from_nanos(rand::random_range(0..=half.as_nanos() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Url::parse("https://hooks.slack.com/services/T/B/X").unwrap();
        assert!(u.tls);
        assert_eq!(
            (u.host, u.port, u.path),
            ("hooks.slack.com", 443, "/services/T/B/X")
        );
        let u = Url::parse("http://127.0.0.1:9093").unwrap();
        assert_eq!((u.port, u.path, u.authority), (9093, "/", "127.0.0.1:9093"));
        for bad in [
            "ftp://h",
            "http://",
            "http://u:p@h/",
            "http://h:x/",
            "http://h/a b",
        ] {
            assert!(Url::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn statuses() {
        assert!(judge_status(200).is_ok());
        assert!(judge_status(204).is_ok());
        assert!(!judge_status(503).unwrap_err().permanent);
        assert!(!judge_status(429).unwrap_err().permanent);
        assert!(judge_status(400).unwrap_err().permanent);
        assert!(judge_status(404).unwrap_err().permanent);
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_half_random() {
        let (b, m) = (Duration::from_millis(500), Duration::from_secs(60));
        for _ in 0..100 {
            let d1 = backoff(b, m, 1);
            assert!(d1 >= Duration::from_millis(250) && d1 <= b);
            let d4 = backoff(b, m, 4);
            assert!(d4 >= Duration::from_secs(2) && d4 <= Duration::from_secs(4));
            let d30 = backoff(b, m, 30);
            assert!(d30 >= Duration::from_secs(30) && d30 <= m);
        }
        // The defaults' lower bound: 29 waits between 30 attempts exceed ten minutes.
        let min: Duration = (1..30)
            .map(|a| (b.saturating_mul(1 << (a - 1).min(20))).min(m) / 2)
            .sum();
        assert!(min > Duration::from_secs(600), "{min:?}");
    }
}
