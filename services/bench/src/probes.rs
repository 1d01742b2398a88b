//! Latency probes: at a fixed rate, the first sample of a new service (one service per
//! probe), timed from its *scheduled* send instant (coordinated-omission correction) to
//! the exact change it causes, UNKNOWN -> HEALTHY of that service, seen by a NATS
//! subscriber of `health.status.*` (the monitor's output) and by WebSocket clients of
//! the gateway. Any other change of that service (a DOWN later) is not a delivery.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use vitals_protocol::{ServiceName, Status, StatusChange};

use crate::util::{Percentiles, Ws, histogram, percentiles, record, sample};

#[derive(Debug, Clone, Serialize)]
pub struct ProbeRun {
    pub rate_per_s: f64,
    pub probes: usize,
    /// Probes whose change reached the NATS subscriber / deliveries at the clients.
    pub at_monitor: Percentiles,
    pub monitor_missing: u64,
    pub clients: usize,
    pub at_clients: Percentiles,
    /// `clients x probes` expected.
    pub client_deliveries: u64,
    pub client_missing: u64,
    pub resyncs: u64,
    /// The most a probe left after its scheduled instant (the bench's own lateness, part
    /// of every figure since the clock starts at the schedule).
    pub max_send_lag_ms: f64,
    /// The slowest probes at the monitor: (scheduled s after the first, latency ms), to
    /// tell a periodic stall from noise.
    pub slowest_at_monitor: Vec<(f64, f64)>,
}

/// A probe's index if `service` is `<tag><index>`.
fn index(tag: &str, service: &str) -> Option<usize> {
    service.strip_prefix(tag)?.parse().ok()
}

/// Sends `count` probes at `rate` a second named `<tag><i>`, times them at a NATS
/// subscriber and at each of `sockets`, waits up to `wait` after the last one.
pub async fn run(
    client: &async_nats::Client,
    sockets: Vec<Ws>,
    tag: &str,
    rate: f64,
    count: usize,
    wait: Duration,
) -> Result<ProbeRun> {
    let epoch = Instant::now();
    let clients = sockets.len();
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Duration)>();
    let resyncs = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for mut ws in sockets {
        let tx = tx.clone();
        let tag = tag.to_owned();
        let resyncs = resyncs.clone();
        readers.push(tokio::spawn(async move {
            let mut seen = vec![false; count];
            while let Some(Ok(msg)) = ws.next().await {
                let Message::Text(text) = msg else { continue };
                if text.contains("\"resync\":true") {
                    resyncs.fetch_add(1, Ordering::Relaxed);
                }
                if !text.contains("\"type\":\"status\"") {
                    continue;
                }
                let at = epoch.elapsed();
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                    continue;
                };
                let d = &v["data"];
                if d["status"] != "HEALTHY" || d["previous"] != "UNKNOWN" {
                    continue;
                }
                if let Some(i) = d["service"].as_str().and_then(|s| index(&tag, s))
                    && i < count
                    && !seen[i]
                {
                    seen[i] = true;
                    let _ = tx.send((i, at));
                }
            }
        }));
    }
    drop(tx);
    let mut sub = client
        .subscribe("health.status.*")
        .await
        .context("subscribe health.status.*")?;
    client.flush().await?;
    let (mtx, mut mrx) = mpsc::unbounded_channel::<(usize, Duration)>();
    let monitor_side = {
        let tag = tag.to_owned();
        tokio::spawn(async move {
            let mut seen = vec![false; count];
            while let Some(msg) = sub.next().await {
                let at = epoch.elapsed();
                let Ok(c) = serde_json::from_slice::<StatusChange>(&msg.payload) else {
                    continue;
                };
                if c.status != Status::Healthy || c.previous != Status::Unknown {
                    continue;
                }
                if let Some(i) = index(&tag, c.service.as_str())
                    && i < count
                    && !seen[i]
                {
                    seen[i] = true;
                    let _ = mtx.send((i, at));
                }
            }
        })
    };
    // The schedule: probe i at `i / rate` s, whatever the replies.
    let start = epoch.elapsed() + Duration::from_millis(50);
    let scheduled: Vec<Duration> = (0..count)
        .map(|i| start + Duration::from_secs_f64(i as f64 / rate))
        .collect();
    let mut max_lag = Duration::ZERO;
    for (i, at) in scheduled.iter().enumerate() {
        tokio::time::sleep_until(tokio::time::Instant::from_std(epoch + *at)).await;
        max_lag = max_lag.max(epoch.elapsed().saturating_sub(*at));
        let name = ServiceName::parse(&format!("{tag}{i}")).context("probe name")?;
        client
            .publish(
                vitals_protocol::subjects::metrics(&name),
                sample(&name, 0, false),
            )
            .await?;
    }
    client.flush().await?;
    let end = tokio::time::Instant::now() + wait;

    let mut h = histogram()?;
    let mut hm = histogram()?;
    let (mut deliveries, mut at_monitor) = (0u64, 0u64);
    let mut slowest: Vec<(f64, f64)> = Vec::new();
    let expected = (clients * count) as u64;
    while deliveries < expected || at_monitor < count as u64 {
        let got = tokio::time::timeout_at(end, async {
            tokio::select! {
                Some((i, at)) = rx.recv(), if deliveries < expected => Some((true, i, at)),
                Some((i, at)) = mrx.recv(), if at_monitor < count as u64 => Some((false, i, at)),
                else => None,
            }
        })
        .await;
        match got {
            Ok(Some((true, i, at))) => {
                deliveries += 1;
                record(&mut h, at.saturating_sub(scheduled[i]));
            }
            Ok(Some((false, i, at))) => {
                at_monitor += 1;
                slowest.push((
                    (scheduled[i] - start).as_secs_f64(),
                    at.saturating_sub(scheduled[i]).as_secs_f64() * 1000.0,
                ));
                record(&mut hm, at.saturating_sub(scheduled[i]));
            }
            Ok(None) | Err(_) => break,
        }
    }
    for r in readers {
        r.abort();
    }
    monitor_side.abort();
    let missing = count as u64 - at_monitor;
    slowest.sort_by(|a, b| b.1.total_cmp(&a.1));
    slowest.truncate(10);
    Ok(ProbeRun {
        rate_per_s: rate,
        probes: count,
        at_monitor: percentiles(&hm),
        monitor_missing: missing,
        clients,
        at_clients: percentiles(&h),
        client_deliveries: deliveries,
        client_missing: expected - deliveries,
        resyncs: resyncs.load(Ordering::Relaxed),
        max_send_lag_ms: max_lag.as_secs_f64() * 1000.0,
        slowest_at_monitor: slowest,
    })
}
