//! The gateway's peak memory during a resync storm: a large view, many WebSocket
//! clients, and every client told to take a fresh snapshot at once (a new monitor's
//! heartbeat makes the gateway sync again, here from KV, then resync every client).
//!
//! Peak RSS is the kernel's high-water mark (VmHWM), reset just before the storm
//! (`/proc/PID/clear_refs` = 5), so the figure is the storm's own peak.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use serde::Serialize;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use vitals_testkit::NatsServer;

use crate::util::{Part, connect_clients, rss_bytes};

#[derive(Debug, Serialize)]
pub struct ResyncRss {
    pub gateway_bin: String,
    pub services: usize,
    pub clients: usize,
    /// One client's snapshot, bytes (as received).
    pub snapshot_bytes: usize,
    /// VmRSS just before the storm.
    pub rss_before_bytes: u64,
    /// VmHWM over the storm (reset just before it).
    pub peak_rss_bytes: u64,
    /// Whether the high-water mark could be reset (else it includes connecting).
    pub peak_was_reset: bool,
    /// Clients that received a resync snapshot, and how long until the last did.
    pub resynced: usize,
    pub storm_seconds: f64,
    /// Resync snapshots received in all (more than `resynced` when clients fell behind
    /// during the storm and were resynced again), and the gateway's own count.
    pub snapshots_received: usize,
    pub gateway_resyncs: f64,
    /// Clients the gateway dropped during the storm.
    pub dropped: f64,
    /// The gateway's own count of snapshot encodings during the storm (0 if absent).
    pub snapshot_encodes: f64,
}

fn state(service: &str) -> serde_json::Value {
    json!({
        "service": service, "status": "HEALTHY", "since_ms": 1_763_900_000_000u64,
        "last_seen_ms": 1_763_900_000_000u64, "reasons": ["first sample"], "alerts": [],
        "instance": format!("{service}-3f9a2c"),
        "health_url": format!("http://10.0.0.1:3001/{service}/health"),
        "figures": {"cpu_pct": 23.4, "mem_pct": 41.0, "error_rate": 0.004, "latency_ms": 38.2,
            "latency_avg_ms": 35.1, "latency_p95_ms": 52.0, "latency_p99_ms": 61.3,
            "uptime_pct": 100.0, "samples": 60, "window_s": 60}
    })
}

fn heartbeat(monitor_id: &str, services: usize) -> bytes::Bytes {
    let now = vitals_runtime::epoch_ms();
    let hb = json!({
        "monitor_id": monitor_id, "version": "bench", "at_ms": now, "started_ms": now,
        "uptime_s": 1, "interval_ms": 1000, "heartbeat_timeout_ms": 3000,
        "services": services, "samples_total": 0, "samples_per_s": 0.0, "refused_total": 0,
        "refusals": {}, "slow_consumer_drops": 0, "publish_drops": 0, "in_grace": false
    });
    bytes::Bytes::from(hb.to_string())
}

pub fn vm_hwm(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .context("no VmHWM")
}

pub async fn run(gateway_bin: &str, services: usize, clients: usize) -> Result<ResyncRss> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let js = async_nats::jetstream::new(client.clone());
    let kv = js
        .create_key_value(async_nats::jetstream::kv::Config {
            bucket: vitals_protocol::subjects::KV_BUCKET.into(),
            ..Default::default()
        })
        .await?;
    let names: Vec<String> = (0..services).map(|i| format!("svc-{i:05}")).collect();
    for chunk in names.chunks(500) {
        let puts = chunk.iter().map(|n| {
            let kv = kv.clone();
            let body = bytes::Bytes::from(state(n).to_string());
            async move { kv.put(n.as_str(), body).await }
        });
        for put in futures::future::join_all(puts).await {
            put?;
        }
    }
    // No monitor: each sync asks (nobody answers within 200 ms), then reads KV.
    let gw = Part::start(
        gateway_bin,
        &nats,
        &[
            "--max-clients",
            "20000",
            "--snapshot-timeout-ms",
            "200",
            "--write-timeout-ms",
            "60000",
        ],
        "gateway running",
    )
    .await?;
    gw.proc
        .wait_for_log("view synced", Duration::from_secs(30))
        .await?;
    let in_view = crate::util::view_size(&gw).await?;
    if in_view != services {
        bail!("the gateway's view has {in_view} services, not {services}");
    }
    client
        .publish(
            vitals_protocol::subjects::HEARTBEAT,
            heartbeat("bench-a", services),
        )
        .await?;
    client.flush().await?;

    let url = format!("ws://{}/ws", gw.http);
    let sockets = connect_clients(&url, clients).await?;
    let resynced = Arc::new(AtomicUsize::new(0));
    let received = Arc::new(AtomicUsize::new(0));
    let snapshot_bytes = Arc::new(AtomicUsize::new(0));
    let mut readers = Vec::new();
    for mut ws in sockets {
        let (resynced, snapshot_bytes) = (resynced.clone(), snapshot_bytes.clone());
        let received = received.clone();
        readers.push(tokio::spawn(async move {
            let mut first = true;
            while let Some(Ok(msg)) = ws.next().await {
                let Message::Text(text) = msg else { continue };
                let head = text.get(..64.min(text.len())).unwrap_or("");
                if head.contains("\"type\":\"snapshot\",\"resync\":true") {
                    snapshot_bytes.store(text.len(), Ordering::Relaxed);
                    received.fetch_add(1, Ordering::Relaxed);
                    if first {
                        first = false;
                        resynced.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    // Live traffic throughout: summaries, ~500/s. (No heartbeats: one from a monitor id
    // other than the last would start another sync.)
    let load = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let mut n: u64 = 0;
            loop {
                tick.tick().await;
                for _ in 0..5 {
                    let svc = &names[(n as usize * 7919) % names.len()];
                    let mut summary = state(svc);
                    summary["at_ms"] = json!(1_763_900_000_000u64 + n);
                    summary["last_seen_ms"] = json!(1_763_900_000_000u64 + n);
                    let _ = client
                        .publish(format!("health.metrics.{svc}"), summary.to_string().into())
                        .await;
                    n += 1;
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;

    let pid = gw.proc.pid();
    let rss_before = rss_bytes(pid)?;
    let peak_was_reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
    let encodes_before = gw.counter("vitals_gateway_snapshot_encodes_total").await?;
    let resyncs_before = gw.counter("vitals_gateway_resyncs_total").await?;
    let dropped_before = gw.counter("vitals_gateway_client_drops_total").await?;
    let started = Instant::now();
    client
        .publish(
            vitals_protocol::subjects::HEARTBEAT,
            heartbeat("bench-b", services),
        )
        .await?;
    client.flush().await?;
    let deadline = started + Duration::from_secs(300);
    while resynced.load(Ordering::Relaxed) < clients && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let storm_seconds = started.elapsed().as_secs_f64();
    let peak = vm_hwm(pid)?;
    let encodes = gw.counter("vitals_gateway_snapshot_encodes_total").await? - encodes_before;
    let gateway_resyncs = gw.counter("vitals_gateway_resyncs_total").await? - resyncs_before;
    let dropped = gw.counter("vitals_gateway_client_drops_total").await? - dropped_before;
    load.abort();
    for r in readers {
        r.abort();
    }
    Ok(ResyncRss {
        gateway_bin: gateway_bin.to_owned(),
        services,
        clients,
        snapshot_bytes: snapshot_bytes.load(Ordering::Relaxed),
        rss_before_bytes: rss_before,
        peak_rss_bytes: peak,
        peak_was_reset,
        resynced: resynced.load(Ordering::Relaxed),
        storm_seconds,
        snapshots_received: received.load(Ordering::Relaxed),
        gateway_resyncs,
        dropped,
        snapshot_encodes: encodes,
    })
}
