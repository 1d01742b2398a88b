//! Through the whole pipeline to WebSocket clients: end-to-end latency of a status
//! change, fan-out throughput, and the gateway's memory per idle client.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use futures::StreamExt;
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message;
use vitals_testkit::NatsServer;

use crate::probes::{self, ProbeRun};
use crate::util::{Part, connect_clients, sample};

#[derive(Debug, Serialize)]
pub struct E2e {
    pub clients: usize,
    pub runs: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub ratio_p99_vs_hop: f64,
    /// Every probe at every client, and what the monitor's output showed.
    pub probes: ProbeRun,
    /// The gateway's own share: from NATS arrival to the frame written to each client's
    /// socket (its `delivery_seconds` histogram; bucket upper bounds).
    pub gateway_p50_ms: f64,
    pub gateway_p99_ms: f64,
}

/// Probes (a new service's first sample each, open loop at `rate`) timed from their
/// scheduled instant to that service's UNKNOWN -> HEALTHY at each of `clients` clients.
pub async fn e2e(
    nats: &NatsServer,
    gateway: &Part,
    clients: usize,
    runs: usize,
    rate: f64,
    hop_p99_ms: f64,
) -> Result<E2e> {
    let url = format!("ws://{}/ws", gateway.http);
    let sockets = connect_clients(&url, clients).await?;
    let buckets_before =
        crate::util::histogram_buckets(gateway, "vitals_gateway_delivery_seconds").await?;
    let client = crate::load::client(&nats.url()).await?;
    let tag = format!("e2e{clients}-");
    let probes = probes::run(&client, sockets, &tag, rate, runs, Duration::from_secs(10)).await?;
    let buckets_after =
        crate::util::histogram_buckets(gateway, "vitals_gateway_delivery_seconds").await?;
    let gw = |q| crate::util::bucket_quantile_ms(&buckets_before, &buckets_after, q);
    let p = probes.at_clients;
    Ok(E2e {
        clients,
        runs,
        p50_ms: p.p50_ms,
        p99_ms: p.p99_ms,
        p999_ms: p.p999_ms,
        ratio_p99_vs_hop: if hop_p99_ms > 0.0 {
            p.p99_ms / hop_p99_ms
        } else {
            0.0
        },
        probes,
        gateway_p50_ms: gw(0.5),
        gateway_p99_ms: gw(0.99),
    })
}

#[derive(Debug, Serialize)]
pub struct Fanout {
    pub clients: usize,
    pub messages: usize,
    pub deliveries: u64,
    pub deliveries_per_s: f64,
    pub resyncs: u64,
}

/// Summaries published straight on NATS (as the monitor would), counted at every client.
pub async fn fanout(
    nats: &NatsServer,
    gateway: &Part,
    clients: usize,
    messages: usize,
) -> Result<Fanout> {
    let url = format!("ws://{}/ws", gateway.http);
    let sockets = connect_clients(&url, clients).await?;
    let delivered = Arc::new(AtomicU64::new(0));
    let resyncs = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for mut ws in sockets {
        let delivered = delivered.clone();
        let resyncs = resyncs.clone();
        readers.push(tokio::spawn(async move {
            let mut mine = 0;
            while mine < messages {
                let Some(Ok(Message::Text(text))) = ws.next().await else {
                    break;
                };
                // Only the bench's own summaries (the background's are not counted).
                if text.contains("\"type\":\"metrics\"") && text.contains("\"service\":\"fan\"") {
                    mine += 1;
                    delivered.fetch_add(1, Ordering::Relaxed);
                } else if text.contains("\"resync\":true") {
                    resyncs.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let client = nats.client().await?;
    let summary = serde_json::json!({
        "service": "fan", "status": "HEALTHY", "at_ms": 0, "last_seen_ms": 0,
        "instance": "fan-1", "health_url": "http://127.0.0.1:1/health",
        "figures": {"cpu_pct": 21.5, "mem_pct": 43.2, "error_rate": 0.001, "latency_ms": 31.0,
            "latency_avg_ms": 30.2, "latency_p95_ms": 48.0, "latency_p99_ms": 55.1,
            "uptime_pct": 100.0, "samples": 60, "window_s": 60}
    });
    let started = Instant::now();
    for i in 0..messages {
        let mut s = summary.clone();
        s["last_seen_ms"] = i.into();
        client
            .publish("health.metrics.fan", serde_json::to_vec(&s)?.into())
            .await?;
    }
    client.flush().await?;
    let finished =
        tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(readers)).await;
    let elapsed = started.elapsed().as_secs_f64();
    if finished.is_err() {
        tracing_warn("fan-out readers did not finish in 60 s");
    }
    let n = delivered.load(Ordering::Relaxed);
    Ok(Fanout {
        clients,
        messages,
        deliveries: n,
        deliveries_per_s: n as f64 / elapsed,
        resyncs: resyncs.load(Ordering::Relaxed),
    })
}

/// Gives the monitor (and so the gateway's view) `n` more services and waits until the
/// gateway shows them.
pub async fn populate(nats: &NatsServer, gateway: &Part, n: usize) -> Result<()> {
    let client = nats.client().await?;
    let before = crate::util::view_size(gateway).await?;
    for name in crate::util::names("view", n)? {
        client
            .publish(
                vitals_protocol::subjects::metrics(&name),
                sample(&name, 0, false),
            )
            .await?;
    }
    client.flush().await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while crate::util::view_size(gateway).await? < before + n {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the gateway's view did not grow to {}",
            before + n
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The gateway's RSS growth per idle WebSocket client.
pub async fn gateway_memory(gateway: &Part, clients: usize) -> Result<f64> {
    let before = gateway.rss_bytes()?;
    let url = format!("ws://{}/ws", gateway.http);
    let sockets = connect_clients(&url, clients).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = gateway.rss_bytes()?;
    drop(sockets);
    Ok(after.saturating_sub(before) as f64 / clients as f64)
}

fn tracing_warn(msg: &str) {
    #[allow(clippy::print_stderr)]
    {
        eprintln!("warning: {msg}");
    }
}
