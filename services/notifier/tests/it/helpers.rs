//! Set-up for the notifier tests: a real nats-server with the repo's nats.conf, the
//! HEALTH_EVENTS stream made as the monitor makes it, the real `notifier` binary (logged in
//! as user notifier), and receivers that record every request. Every wait is bounded.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::{self, stream};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::Value;
use vitals_protocol::{AlertEvent, AlertMarks, AlertName, AlertState, AlertUpdate, ServiceName};
use vitals_testkit::{ChildProc, NatsServer, SOON, wait_until};

pub const MONITOR: (&str, &str) = ("monitor", "monitor-dev");

pub fn server() -> Result<NatsServer> {
    NatsServer::start_with_config(&vitals_testkit::repo_nats_conf()?)
}

/// A client as the monitor (it owns HEALTH_EVENTS and publishes health.>).
pub async fn monitor_client(nats: &NatsServer) -> Result<async_nats::Client> {
    Ok(async_nats::ConnectOptions::new()
        .user_and_password(MONITOR.0.into(), MONITOR.1.into())
        .connect(nats.url())
        .await?)
}

/// HEALTH_EVENTS as the monitor creates it (no_ack: it publishes with core NATS).
pub async fn events_stream(client: &async_nats::Client) -> Result<()> {
    jetstream::new(client.clone())
        .create_or_update_stream(stream::Config {
            name: "HEALTH_EVENTS".into(),
            subjects: vec!["health.status.>".into(), "health.alert.>".into()],
            max_age: Duration::from_secs(86_400),
            max_bytes: 64 * 1024 * 1024,
            discard: stream::DiscardPolicy::Old,
            storage: stream::StorageType::File,
            no_ack: true,
            ..Default::default()
        })
        .await?;
    Ok(())
}

pub fn event(service: &str, alert: AlertName, since_ms: u64, state: AlertState) -> AlertEvent {
    AlertEvent {
        id: format!("{service}:{}:{since_ms}", alert.as_str()),
        service: ServiceName::parse(service).expect("test names are valid"),
        alert,
        state,
        value: 5.0,
        threshold: 3.0,
        since_ms,
        at_ms: now_ms(),
        reason: None,
        marks: AlertMarks::default(),
        update: None,
    }
}

pub fn fire(service: &str, since_ms: u64) -> AlertEvent {
    event(
        service,
        AlertName::ServiceDown,
        since_ms,
        AlertState::Firing,
    )
}

pub fn resolve(service: &str, since_ms: u64) -> AlertEvent {
    event(
        service,
        AlertName::ServiceDown,
        since_ms,
        AlertState::Resolved,
    )
}

pub fn updated(mut e: AlertEvent, update: AlertUpdate) -> AlertEvent {
    e.update = Some(update);
    e.at_ms = now_ms();
    e
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub async fn publish(client: &async_nats::Client, e: &AlertEvent) -> Result<()> {
    client
        .publish(
            format!("health.alert.{}", e.service),
            serde_json::to_vec(e)?.into(),
        )
        .await?;
    client.flush().await?;
    Ok(())
}

/// What a receiver answers.
pub const OK: u16 = 200;

/// One request a receiver got: its place in arrival order and its JSON body.
#[derive(Debug, Clone)]
pub struct Got {
    pub n: u64,
    pub body: Value,
}

#[derive(Default)]
struct Inner {
    got: Mutex<Vec<Got>>,
    count: AtomicU64,
    status: AtomicU16,
    delay_ms: AtomicU64,
}

/// An HTTP receiver recording every POST (any path), answering `status` (200 to start).
#[derive(Clone)]
pub struct Sink {
    inner: Arc<Inner>,
    pub addr: SocketAddr,
}

impl Sink {
    pub async fn start() -> Result<Self> {
        let inner = Arc::new(Inner::default());
        inner.status.store(OK, Ordering::Relaxed);
        let app = axum::Router::new()
            .route("/{*path}", post(record))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { inner, addr })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn set_status(&self, code: u16) {
        self.inner.status.store(code, Ordering::Relaxed);
    }

    pub fn set_delay(&self, ms: u64) {
        self.inner.delay_ms.store(ms, Ordering::Relaxed);
    }

    /// The requests answered 2xx, in arrival order.
    pub fn accepted(&self) -> Vec<Got> {
        self.inner.got.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// Every request, answered or refused.
    pub fn attempts(&self) -> u64 {
        self.inner.count.load(Ordering::Relaxed)
    }

    /// Each accepted alert as (request number, vitals_id, status, body alert).
    pub fn alerts(&self) -> Vec<(u64, String, String, Value)> {
        let mut out = Vec::new();
        for g in self.accepted() {
            let list = g
                .body
                .get("alerts")
                .and_then(Value::as_array)
                .cloned()
                .or_else(|| g.body.as_array().cloned())
                .unwrap_or_default();
            for a in list {
                let id = a["labels"]["vitals_id"].as_str().unwrap_or("").to_owned();
                let status = a["status"].as_str().unwrap_or("").to_owned();
                out.push((g.n, id, status, a));
            }
        }
        out
    }

    /// How many times each (vitals_id, status) arrived.
    pub fn counts(&self) -> HashMap<(String, String), usize> {
        let mut m = HashMap::new();
        for (_, id, st, _) in self.alerts() {
            *m.entry((id, st)).or_insert(0) += 1;
        }
        m
    }

    /// Waits until `n` distinct transitions arrived.
    pub async fn wait_distinct(&self, n: usize, within: Duration) -> Result<()> {
        wait_until(within, || async {
            (self.counts().len() >= n).then_some(())
        })
        .await
        .with_context(|| {
            format!(
                "{} of {n} transitions arrived within {within:?}",
                self.counts().len()
            )
        })
    }
}

async fn record(State(s): State<Arc<Inner>>, body: axum::body::Bytes) -> StatusCode {
    let n = s.count.fetch_add(1, Ordering::Relaxed);
    let delay = s.delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let code = StatusCode::from_u16(s.status.load(Ordering::Relaxed)).unwrap_or(StatusCode::OK);
    if code.is_success() {
        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if let Ok(mut g) = s.got.lock() {
            g.push(Got { n, body });
        }
    }
    code
}

/// A running notifier with its receivers file.
pub struct Notifier {
    pub proc: ChildProc,
    pub http: SocketAddr,
    _dir: Arc<tempfile::TempDir>,
    pub config: std::path::PathBuf,
}

pub async fn write_config(toml: &str) -> Result<(Arc<tempfile::TempDir>, std::path::PathBuf)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("notifier.toml");
    std::fs::write(&path, toml)?;
    Ok((Arc::new(dir), path))
}

impl Notifier {
    pub async fn start(nats: &NatsServer, toml: &str, extra: &[&str]) -> Result<Self> {
        let (dir, path) = write_config(toml).await?;
        Self::start_with(nats, dir, path, extra).await
    }

    pub async fn start_with(
        nats: &NatsServer,
        dir: Arc<tempfile::TempDir>,
        config: std::path::PathBuf,
        extra: &[&str],
    ) -> Result<Self> {
        let url = nats.url();
        let cfg = config.to_string_lossy().into_owned();
        let mut args = vec![
            "--nats-url",
            &url,
            "--http-addr",
            "127.0.0.1:0",
            "--config",
            &cfg,
            "--external-url",
            "http://dash.test:5173",
        ];
        args.extend_from_slice(extra);
        let proc = ChildProc::spawn(
            "notifier",
            &args,
            &[("NATS_USER", "notifier"), ("NATS_PASSWORD", "notifier-dev")],
        )?;
        let http = proc.http_addr().await?;
        proc.wait_for_log("notifier running", SOON).await?;
        Ok(Self {
            proc,
            http,
            _dir: dir,
            config,
        })
    }

    /// The same notifier (binary, receivers file, durable) started again.
    pub async fn restart(&mut self, nats: &NatsServer) -> Result<()> {
        self.restart_with(nats, &[]).await
    }

    pub async fn restart_with(&mut self, nats: &NatsServer, extra: &[&str]) -> Result<()> {
        let again = Self::start_with(nats, self._dir.clone(), self.config.clone(), extra).await?;
        *self = again;
        Ok(())
    }

    pub async fn metric(&self, series: &str) -> Result<f64> {
        let text = reqwest::get(format!("http://{}/metrics", self.http))
            .await?
            .text()
            .await?;
        Ok(vitals_testkit::metric_sum(&text, series))
    }
}

/// A webhook receiver entry with the test's timings (short backoff so outages are quick).
pub fn webhook(name: &str, url: &str, extra: &str) -> String {
    let max = if extra.contains("backoff_max_ms") {
        ""
    } else {
        "backoff_max_ms = 1000\n"
    };
    format!(
        "[[receiver]]\nname = \"{name}\"\nkind = \"webhook\"\nurl = \"{url}\"\nbackoff_base_ms = 100\n{max}{extra}\n"
    )
}
