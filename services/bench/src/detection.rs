//! Detection: simulators killed (SIGKILL), stopped (SIGSTOP) and terminated (SIGTERM),
//! timed from the signal to DOWN arriving at a WebSocket client.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use futures::StreamExt;
use nix::sys::signal::Signal;
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message;
use vitals_testkit::{ChildProc, NatsServer};

use crate::util::{Part, Percentiles, Ws, connect_clients, histogram, percentiles, record};

#[derive(Debug, Serialize)]
pub struct Detection {
    pub signal: &'static str,
    pub runs: usize,
    pub detected: u64,
    pub latency: Percentiles,
}

/// Reads status changes until `want` services reached `status`; returns when each did.
async fn watch(
    ws: &mut Ws,
    status: &str,
    want: &[String],
    timeout: Duration,
) -> HashMap<String, Instant> {
    let mut seen = HashMap::new();
    let deadline = Instant::now() + timeout;
    while seen.len() < want.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(Ok(Message::Text(text)))) = tokio::time::timeout(left, ws.next()).await else {
            break;
        };
        let now = Instant::now();
        if !text.contains("\"type\":\"status\"") {
            continue;
        }
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        if v["data"]["status"] == status
            && let Some(s) = v["data"]["service"].as_str()
            && want.iter().any(|w| w == s)
        {
            seen.entry(s.to_owned()).or_insert(now);
        }
    }
    seen
}

pub async fn run(
    nats: &NatsServer,
    gateway: &Part,
    signal: Signal,
    runs: usize,
) -> Result<Detection> {
    let label = match signal {
        Signal::SIGKILL => "kill",
        Signal::SIGSTOP => "stop",
        _ => "term",
    };
    let url = format!("ws://{}/ws", gateway.http);
    let mut ws = connect_clients(&url, 1).await?.remove(0);
    let nats_url = nats.url();
    let names: Vec<String> = (0..runs).map(|i| format!("det-{label}-{i}")).collect();
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
    let healthy = watch(&mut ws, "HEALTHY", &names, Duration::from_secs(30)).await;
    anyhow::ensure!(
        healthy.len() == runs,
        "only {} of {runs} simulators became HEALTHY",
        healthy.len()
    );
    // Read DOWNs while signalling, so each arrival is timed when it happens.
    let watcher = {
        let names = names.clone();
        tokio::spawn(async move { watch(&mut ws, "DOWN", &names, Duration::from_secs(30)).await })
    };
    // Signal each at a different point of its publishing interval.
    let mut signalled = HashMap::new();
    for (i, (name, sim)) in names.iter().zip(&sims).enumerate() {
        tokio::time::sleep(Duration::from_millis(
            1000 / runs as u64 + (i as u64 * 37) % 50,
        ))
        .await;
        sim.signal(signal)?;
        signalled.insert(name.clone(), Instant::now());
    }
    let down = watcher.await?;
    let mut h = histogram()?;
    for (name, at) in &down {
        if let Some(sent) = signalled.get(name) {
            record(&mut h, at.saturating_duration_since(*sent));
        }
    }
    drop(sims);
    Ok(Detection {
        signal: label,
        runs,
        detected: down.len() as u64,
        latency: percentiles(&h),
    })
}
