//! Set-up for the prober's tests: a real nats-server, the real monitor and prober
//! binaries, and HTTP(S)/TCP servers run by the test whose behaviour it switches.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::http::StatusCode;
use axum::routing::any;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpListener;
use vitals_testkit::{ChildProc, NatsServer, SOON, next_json_within, wait_until};

pub const MONITOR_READY: &str = "monitor running";
pub const PROBER_READY: &str = "prober running";

/// A running binary and its HTTP listener.
pub struct Proc {
    pub proc: ChildProc,
    pub http: SocketAddr,
}

impl Proc {
    pub async fn metrics(&self) -> Result<String> {
        // reqwest here is the workspace's, without TLS: nothing to install.
        Ok(reqwest::get(format!("http://{}/metrics", self.http))
            .await?
            .text()
            .await?)
    }

    /// Waits until the sum of `series` in /metrics reaches `at_least`.
    pub async fn wait_counter(&self, series: &str, at_least: f64) -> Result<f64> {
        let got = wait_until(SOON, || async {
            let text = self.metrics().await.ok()?;
            let v = vitals_testkit::metric_sum(&text, series);
            (v >= at_least).then_some(v)
        })
        .await;
        match got {
            Some(v) => Ok(v),
            None => bail!(
                "{series} did not reach {at_least}:\n{}",
                self.metrics().await?
            ),
        }
    }
}

async fn start(bin: &str, args: &[&str], env: &[(&str, &str)], ready: &str) -> Result<Proc> {
    let mut all = vec!["--http-addr", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let proc = ChildProc::spawn(bin, &all, env)?;
    let http = proc.http_addr().await?;
    proc.wait_for_log(ready, SOON).await?;
    Ok(Proc { proc, http })
}

/// The real monitor (built by `cargo build -p monitor`).
pub async fn monitor(nats: &NatsServer, extra: &[&str]) -> Result<Proc> {
    let url = nats.url();
    let mut args = vec!["--nats-url", url.as_str()];
    args.extend_from_slice(extra);
    start("monitor", &args, &[], MONITOR_READY).await
}

/// The prober with `extra` flags.
pub async fn prober(nats: &NatsServer, extra: &[&str]) -> Result<Proc> {
    let url = nats.url();
    let mut args = vec!["--nats-url", url.as_str()];
    args.extend_from_slice(extra);
    start("prober", &args, &[], PROBER_READY).await
}

/// A targets file in a temp dir (kept as long as the returned guard).
pub fn targets_file(toml: &str) -> Result<(tempfile::TempDir, String)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("targets.toml");
    std::fs::write(&path, toml)?;
    let path = path.to_str().context("temp path")?.to_owned();
    Ok((dir, path))
}

/// How the test server answers, switched by the test while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Ok = 0,
    Unavailable = 1,
    /// Takes the request and never answers.
    Hang = 2,
    /// Reads the request and closes the connection without a response.
    Close = 3,
}

/// An HTTP server on 127.0.0.1:0 (axum behind hyper, so a connection can also be closed
/// unanswered), or HTTPS with `tls`.
pub struct Server {
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub async fn http() -> Result<Self> {
        Self::start(None).await
    }

    pub async fn https(tls: tokio_rustls::TlsAcceptor) -> Result<Self> {
        Self::start(Some(tls)).await
    }

    async fn start(tls: Option<tokio_rustls::TlsAcceptor>) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mode = Arc::new(AtomicU8::new(Mode::Ok as u8));
        let m = mode.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (mode, tls) = (m.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                serve_one(stream, mode).await;
                            }
                        }
                        None => serve_one(stream, mode).await,
                    }
                });
            }
        });
        Ok(Self { addr, mode, task })
    }

    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    pub fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://{}{path}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn mode_of(m: &AtomicU8) -> Mode {
    match m.load(Ordering::SeqCst) {
        1 => Mode::Unavailable,
        2 => Mode::Hang,
        3 => Mode::Close,
        _ => Mode::Ok,
    }
}

async fn serve_one<S>(mut stream: S, mode: Arc<AtomicU8>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if mode_of(&mode) == Mode::Close {
        // Take the whole request head, so the client sees a close, not a reset.
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        return;
    }
    let app = Router::new().fallback(any(move || {
        let mode = mode.clone();
        async move {
            match mode_of(&mode) {
                Mode::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "down"),
                Mode::Hang => {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    (StatusCode::OK, "late")
                }
                _ => (StatusCode::OK, "status: ok"),
            }
        }
    }));
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app))
        .await;
}

/// A subscription to `subject`, flushed so nothing published after this call is missed.
pub async fn subscribe(
    client: &async_nats::Client,
    subject: String,
) -> Result<async_nats::Subscriber> {
    let sub = client.subscribe(subject).await?;
    client.flush().await?;
    Ok(sub)
}

/// The next JSON message on `sub` for which `pred` holds; everything before it is
/// returned too (last is the match).
pub async fn until(
    sub: &mut async_nats::Subscriber,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Result<Vec<Value>> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let (_, v) = next_json_within(sub, left).await.with_context(|| {
            let tail: Vec<&Value> = seen.iter().rev().take(5).collect();
            format!("waiting for {what}; the last seen: {tail:#?}")
        })?;
        let hit = pred(&v);
        seen.push(v);
        if hit {
            return Ok(seen);
        }
    }
}

/// A probe sample's `probe.error` ("" when ok).
pub fn error_of(sample: &Value) -> &str {
    sample["probe"]["error"].as_str().unwrap_or("")
}

/// A self-signed certificate for 127.0.0.1 valid for `days` more days, and an acceptor
/// serving it; the PEM is what a `--ca-file` needs to trust it.
pub fn self_signed(days: i64) -> Result<(tokio_rustls::TlsAcceptor, String)> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])?;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(days);
    let cert = params.self_signed(&key)?;
    let pem = cert.pem();
    let der = cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![der], key)?;
    Ok((tokio_rustls::TlsAcceptor::from(Arc::new(config)), pem))
}
