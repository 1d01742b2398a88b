//! What every measurement needs: the system under test, process figures, percentiles.

use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use vitals_protocol::ServiceName;
use vitals_testkit::{ChildProc, NatsServer, SOON};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Quiet children: only their start-up lines and warnings (`listening addr=...` comes from
/// `vitals_runtime::lifecycle` for the binaries that bind through it).
const CHILD_LOG: &str = "warn,monitor=info,monitor::ingest=warn,gateway=info,simulator=warn,notifier=info,vitals_runtime::lifecycle=info";

pub struct Part {
    pub proc: ChildProc,
    pub http: std::net::SocketAddr,
}

impl Part {
    pub async fn start(bin: &str, nats: &NatsServer, extra: &[&str], ready: &str) -> Result<Self> {
        let url = nats.url();
        let mut args = vec!["--nats-url", url.as_str()];
        if !extra.contains(&"--http-addr") {
            args.extend(["--http-addr", "127.0.0.1:0"]);
        }
        args.extend_from_slice(extra);
        let proc = ChildProc::spawn(bin, &args, &[("RUST_LOG", CHILD_LOG)])?;
        let http = proc.http_addr().await?;
        proc.wait_for_log(ready, Duration::from_secs(30)).await?;
        Ok(Self { proc, http })
    }

    pub async fn counter(&self, series: &str) -> Result<f64> {
        let text = reqwest::get(format!("http://{}/metrics", self.http))
            .await?
            .text()
            .await?;
        Ok(vitals_testkit::metric_sum(&text, series))
    }

    pub fn rss_bytes(&self) -> Result<u64> {
        rss_bytes(self.proc.pid())
    }

    pub fn cpu_seconds(&self) -> Result<f64> {
        cpu_seconds(self.proc.pid())
    }
}

pub async fn monitor(nats: &NatsServer, extra: &[&str]) -> Result<Part> {
    Part::start("monitor", nats, extra, "monitor running").await
}

pub async fn gateway(nats: &NatsServer, extra: &[&str]) -> Result<Part> {
    let g = Part::start("gateway", nats, extra, "gateway running").await?;
    g.proc.wait_for_log("view synced", SOON).await?;
    Ok(g)
}

/// Cumulative bucket counts (upper bound in seconds, count) of a Prometheus histogram.
pub async fn histogram_buckets(part: &Part, name: &str) -> Result<Vec<(f64, f64)>> {
    let text = reqwest::get(format!("http://{}/metrics", part.http))
        .await?
        .text()
        .await?;
    let prefix = format!("{name}_bucket{{le=\"");
    Ok(text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect())
}

/// The `q` quantile (ms, the bucket's upper bound) of what was observed between two reads
/// of the same histogram.
pub fn bucket_quantile_ms(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> f64 {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|&(le, n)| {
            (
                le,
                n - before.iter().find(|b| b.0 == le).map_or(0.0, |b| b.1),
            )
        })
        .collect();
    let total = delta.last().map_or(0.0, |d| d.1);
    if total <= 0.0 {
        return 0.0;
    }
    delta
        .iter()
        .find(|(_, n)| *n >= q * total)
        .map_or(f64::INFINITY, |(le, _)| le * 1000.0)
}

/// How many services the gateway's view holds.
pub async fn view_size(gateway: &Part) -> Result<usize> {
    let v: serde_json::Value = reqwest::get(format!("http://{}/api/status", gateway.http))
        .await?
        .json()
        .await?;
    Ok(v["services"].as_array().map_or(0, Vec::len))
}

/// Resident set size, from /proc.
pub fn rss_bytes(pid: u32) -> Result<u64> {
    match vitals_testkit::rss_bytes(pid) {
        0 => anyhow::bail!("no RSS for pid {pid}"),
        n => Ok(n),
    }
}

/// User + system CPU time, from /proc.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit(')').next().context("bad stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    // /proc reports in USER_HZ, which Linux fixes at 100 for userspace.
    Ok(ticks as f64 / 100.0)
}

#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub count: u64,
}

/// A histogram of microseconds, 1 µs .. 60 s (values outside are clamped).
pub fn histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 60_000_000, 3).context("histogram bounds")
}

/// Records a duration in µs, clamped into the histogram's range.
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record((d.as_micros() as u64).max(1));
}

/// Names for generated services: `prefix-0`, `prefix-1`, ...
pub fn names(prefix: &str, n: usize) -> Result<Vec<ServiceName>> {
    (0..n)
        .map(|i| ServiceName::parse(&format!("{prefix}-{i}")).context("generated name"))
        .collect()
}

pub fn percentiles(h: &Histogram<u64>) -> Percentiles {
    let ms = |us: u64| us as f64 / 1000.0;
    Percentiles {
        p50_ms: ms(h.value_at_quantile(0.50)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p999_ms: ms(h.value_at_quantile(0.999)),
        max_ms: ms(h.max()),
        count: h.len(),
    }
}

/// Connects `n` WebSocket clients and reads each one's first message (the snapshot).
pub async fn connect_clients(url: &str, n: usize) -> Result<Vec<Ws>> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        let (mut ws, _) =
            tokio::time::timeout(SOON, tokio_tungstenite::connect_async(url)).await??;
        tokio::time::timeout(SOON, ws.next())
            .await?
            .context("closed before the snapshot")??;
        clients.push(ws);
    }
    Ok(clients)
}

/// A well-formed sample for `service`, serialised.
pub fn sample(service: &ServiceName, seq: u64, stopping: bool) -> bytes::Bytes {
    let s = vitals_protocol::MetricSample {
        service: service.clone(),
        instance: format!("{service}-bench"),
        seq,
        ts_ms: vitals_runtime::epoch_ms(),
        cpu_pct: Some(20.0),
        mem_pct: Some(40.0),
        latency_ms: 30.0,
        error_rate: 0.001,
        health_url: "http://127.0.0.1:3001/health".into(),
        stopping,
        source: Default::default(),
        probe: None,
        host: None,
        interval_ms: None,
    };
    serde_json::to_vec(&s)
        .map(bytes::Bytes::from)
        .unwrap_or_default()
}
