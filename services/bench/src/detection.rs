//! Detection: simulators killed (SIGKILL), stopped (SIGSTOP) and terminated (SIGTERM)
//! under the background load, in parallel batches, each signalled at its own random
//! phase of its 1 s sample interval; timed from the signal to that service's DOWN at a
//! NATS subscriber of `health.status.*` (the monitor's output) and at a WebSocket client
//! of the gateway, both timestamped on receipt.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use nix::sys::signal::Signal;
use rand::Rng;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use vitals_protocol::{Status, StatusChange};
use vitals_testkit::ChildProc;

use crate::pipeline::Pipeline;
use crate::sys::CpuUse;
use crate::util::{Percentiles, connect_clients, cpu_seconds, histogram, percentiles, record};

/// The monitor's defaults the bounds follow from.
pub const TIMEOUT_MS: u64 = 3_000;
pub const INTERVAL_MS: u64 = 1_000;
pub const TICK_MS: u64 = 250;

#[derive(Debug, Serialize)]
pub struct Detection {
    pub signal: &'static str,
    pub trials: usize,
    pub batch: usize,
    pub detected_at_monitor: u64,
    pub detected_at_client: u64,
    pub at_monitor: Percentiles,
    pub at_client: Percentiles,
    /// What the design allows, ms from the signal (before delivery).
    pub bound_lo_ms: u64,
    pub bound_hi_ms: u64,
    pub bound: &'static str,
    /// DOWN reasons seen at the monitor, with how often.
    pub reasons: Vec<(String, u64)>,
    pub cpu: CpuUse,
}

pub fn label(signal: Signal) -> &'static str {
    match signal {
        Signal::SIGKILL => "kill",
        Signal::SIGSTOP => "stop",
        _ => "term",
    }
}

/// (lo, hi, why) of signal -> DOWN judged by the monitor.
fn bounds(signal: Signal, conn_events: bool) -> (u64, u64, &'static str) {
    match signal {
        Signal::SIGKILL if conn_events => (
            0,
            50,
            "the server's disconnect advisory: socket closed by the kernel, one NATS hop",
        ),
        Signal::SIGTERM => (0, 50, "the simulator's last sample says stopping"),
        _ => (
            TIMEOUT_MS - INTERVAL_MS,
            TIMEOUT_MS + TICK_MS,
            "heartbeat timeout: last sample 0..interval before the signal, judged every tick",
        ),
    }
}

enum Seen {
    Monitor(String, Status, Option<String>, Instant),
    Client(String, Status, Instant),
}

/// Runs `trials` signals in batches of `batch` simulators at once.
pub async fn run(p: &Pipeline, signal: Signal, trials: usize, batch: usize) -> Result<Detection> {
    let label = label(signal);
    let mut cpu = p.cpu_meter();
    let mut hm = histogram()?;
    let mut hc = histogram()?;
    let mut reasons: HashMap<String, u64> = HashMap::new();
    let (mut at_monitor, mut at_client) = (0u64, 0u64);
    let nats_url = p.nats.url();
    let ws_url = format!("ws://{}/ws", p.gateway.http);
    let mut done = 0;
    let mut round = 0;
    while done < trials {
        let n = batch.min(trials - done);
        let names: Vec<String> = (0..n).map(|i| format!("det-{label}-{round}-{i}")).collect();
        let wanted: HashSet<String> = names.iter().cloned().collect();
        let (tx, mut rx) = mpsc::unbounded_channel::<Seen>();
        let mut sub = p.client.subscribe("health.status.*").await?;
        p.client.flush().await?;
        let mut ws = connect_clients(&ws_url, 1).await?.remove(0);
        let monitor_side = {
            let (tx, wanted) = (tx.clone(), wanted.clone());
            tokio::spawn(async move {
                while let Some(msg) = sub.next().await {
                    let at = Instant::now();
                    if let Ok(c) = serde_json::from_slice::<StatusChange>(&msg.payload)
                        && wanted.contains(c.service.as_str())
                    {
                        let reason = c.reasons.first().cloned();
                        let _ = tx.send(Seen::Monitor(c.service.to_string(), c.status, reason, at));
                    }
                }
            })
        };
        let client_side = {
            let wanted = wanted.clone();
            tokio::spawn(async move {
                while let Some(Ok(msg)) = ws.next().await {
                    let Message::Text(text) = msg else { continue };
                    if !text.contains("\"type\":\"status\"") {
                        continue;
                    }
                    let at = Instant::now();
                    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                        continue;
                    };
                    let d = &v["data"];
                    let status = match d["status"].as_str() {
                        Some("HEALTHY") => Status::Healthy,
                        Some("DOWN") => Status::Down,
                        _ => continue,
                    };
                    if let Some(s) = d["service"].as_str()
                        && wanted.contains(s)
                    {
                        let _ = tx.send(Seen::Client(s.to_owned(), status, at));
                    }
                }
            })
        };
        let mut sims = Vec::new();
        for name in &names {
            sims.push(ChildProc::spawn(
                "simulator",
                &[
                    "--service",
                    name,
                    "--nats-url",
                    &nats_url,
                    "--http-addr",
                    "127.0.0.1:0",
                ],
                &[("RUST_LOG", "warn")],
            )?);
        }
        // Every simulator HEALTHY at the monitor and at the client.
        let mut healthy_m = HashSet::new();
        let mut healthy_c = HashSet::new();
        let mut early: Vec<Seen> = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while healthy_m.len() < n || healthy_c.len() < n {
            let Ok(Some(seen)) = tokio::time::timeout_at(deadline, rx.recv()).await else {
                anyhow::bail!(
                    "{label} batch {round}: {} of {n} HEALTHY at the monitor, {} at the client",
                    healthy_m.len(),
                    healthy_c.len()
                );
            };
            match &seen {
                Seen::Monitor(s, Status::Healthy, ..) => {
                    healthy_m.insert(s.clone());
                }
                Seen::Client(s, Status::Healthy, _) => {
                    healthy_c.insert(s.clone());
                }
                Seen::Monitor(_, Status::Down, ..) | Seen::Client(_, Status::Down, _) => {
                    early.push(seen);
                }
                _ => {}
            }
        }
        anyhow::ensure!(
            early.is_empty(),
            "{label} batch {round}: a simulator went DOWN before it was signalled"
        );
        // Each at its own random phase of its interval.
        let t0 = tokio::time::Instant::now() + Duration::from_millis(20);
        let mut order: Vec<(u64, usize)> = {
            let mut rng = rand::rng();
            (0..n)
                .map(|i| (rng.random_range(0..INTERVAL_MS * 1000), i))
                .collect()
        };
        order.sort_unstable();
        let mut signalled: HashMap<String, Instant> = HashMap::new();
        for (offset_us, i) in order {
            tokio::time::sleep_until(t0 + Duration::from_micros(offset_us)).await;
            let sim = &sims[i];
            let spent = cpu_seconds(sim.pid()).unwrap_or(0.0);
            sim.signal(signal)
                .with_context(|| format!("{signal} to {}", names[i]))?;
            signalled.insert(names[i].clone(), Instant::now());
            cpu.add("simulators", spent);
        }
        let mut down_m: HashMap<String, Instant> = HashMap::new();
        let mut down_c: HashMap<String, Instant> = HashMap::new();
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(TIMEOUT_MS + TICK_MS + 3_000);
        while down_m.len() < n || down_c.len() < n {
            let Ok(Some(seen)) = tokio::time::timeout_at(deadline, rx.recv()).await else {
                break;
            };
            match seen {
                Seen::Monitor(s, Status::Down, reason, at) => {
                    if let std::collections::hash_map::Entry::Vacant(e) = down_m.entry(s) {
                        *reasons.entry(reason_kind(reason.as_deref())).or_default() += 1;
                        e.insert(at);
                    }
                }
                Seen::Client(s, Status::Down, at) => {
                    down_c.entry(s).or_insert(at);
                }
                _ => {}
            }
        }
        monitor_side.abort();
        client_side.abort();
        drop(sims);
        for (name, at) in &down_m {
            if let Some(sent) = signalled.get(name) {
                record(&mut hm, at.saturating_duration_since(*sent));
            }
        }
        for (name, at) in &down_c {
            if let Some(sent) = signalled.get(name) {
                record(&mut hc, at.saturating_duration_since(*sent));
            }
        }
        at_monitor += down_m.len() as u64;
        at_client += down_c.len() as u64;
        done += n;
        round += 1;
    }
    let conn_events = reasons.contains_key("connection lost");
    let (lo, hi, why) = bounds(signal, conn_events);
    let mut reasons: Vec<(String, u64)> = reasons.into_iter().collect();
    reasons.sort();
    Ok(Detection {
        signal: label,
        trials,
        batch,
        detected_at_monitor: at_monitor,
        detected_at_client: at_client,
        at_monitor: percentiles(&hm),
        at_client: percentiles(&hc),
        bound_lo_ms: lo,
        bound_hi_ms: hi,
        bound: why,
        reasons,
        cpu: cpu.finish(),
    })
}

/// A DOWN reason without its figures: `connection lost (...)` -> `connection lost`.
fn reason_kind(reason: Option<&str>) -> String {
    let r = reason.unwrap_or("none");
    if r.starts_with("connection lost") {
        "connection lost".into()
    } else if r.starts_with("no sample") {
        "no sample (timeout)".into()
    } else {
        r.split(['(', ':']).next().unwrap_or(r).trim().to_owned()
    }
}
