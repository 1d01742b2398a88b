//! Monitor ingest: N new services sending as fast as the bench can publish, with the
//! monitor's defaults (any flag that is not a default is listed in `flags`). The clock
//! stops when the pipeline is drained: every sample accepted, every service's first
//! status change received by a subscriber and its KV write confirmed. Loss is sent minus
//! accepted, beside the monitor's own refusal, drop and gap counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use futures::StreamExt;
use serde::Serialize;
use vitals_testkit::NatsServer;

use crate::counters::MonitorCounters;
use crate::load::{self, Flow};
use crate::sys::CpuUse;
use crate::util::{monitor, names};

/// The monitor's default `--max-services`: a larger run must raise it (and says so).
pub const DEFAULT_MAX_SERVICES: usize = 20_000;

/// In a service's first status change.
const FIRST: &[u8] = b"\"previous\":\"UNKNOWN\"";

#[derive(Debug, Serialize)]
pub struct Ingest {
    pub services: usize,
    /// Monitor flags that are not its defaults (empty: a user's `make up` settings).
    pub flags: Vec<String>,
    pub samples: u64,
    pub samples_per_s: f64,
    /// From the first publish to the last sample accepted, status change out and KV
    /// write confirmed.
    pub drained_s: f64,
    pub accepted_s: f64,
    pub lost: u64,
    pub counters: MonitorCounters,
    pub status_changes: u64,
    pub cpu_ms_per_1k_samples: f64,
    pub cpu: CpuUse,
    pub rss_bytes: u64,
}

pub async fn run(services: usize, rounds: u64) -> Result<Ingest> {
    let nats = NatsServer::start_with_accounts()?;
    let cap = (services + 100).to_string();
    let flags: Vec<String> = if services > DEFAULT_MAX_SERVICES {
        vec!["--max-services".into(), cap]
    } else {
        Vec::new()
    };
    let flag_refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    let m = monitor(&nats, &flag_refs).await?;
    let client = load::client(&nats.url()).await?;
    let watcher = load::client(&nats.url()).await?;
    let changes = Arc::new(AtomicU64::new(0));
    let mut sub = watcher.subscribe("health.status.*").await?;
    watcher.flush().await?;
    let seen = changes.clone();
    let counting = tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            // A service's first change (UNKNOWN -> HEALTHY), not a later DOWN.
            if msg.subject.as_str().starts_with("health.status.load-")
                && msg.payload.windows(FIRST.len()).any(|w| w == FIRST)
            {
                seen.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let mut flow = Flow::new(&names("load", services)?);
    let before = MonitorCounters::read(&m).await?;
    let mut cpu = crate::sys::CpuMeter::start();
    if let Some(pid) = nats.pid() {
        cpu.watch("nats-server", pid);
    }
    cpu.watch("monitor", m.proc.pid());
    let cpu_before = m.cpu_seconds()?;

    let total = services as u64 * rounds;
    let started = Instant::now();
    let now_ms = vitals_runtime::epoch_ms();
    for _ in 0..total {
        let (subject, payload) = flow.next_sample(now_ms);
        client.publish(subject, payload).await?;
    }
    client.flush().await?;
    // Drained, or no progress for 5 s (something was lost).
    let mut last = (before, Instant::now());
    let mut accepted_at = None;
    let mut progress = (0, 0, 0);
    let (after, done) = loop {
        let c = MonitorCounters::read(&m).await?;
        let now = Instant::now();
        if accepted_at.is_none() && c.samples - before.samples >= total {
            accepted_at = Some(now);
        }
        if c.samples - before.samples >= total
            && c.kv_writes - before.kv_writes >= services as u64
            && changes.load(Ordering::Relaxed) >= services as u64
        {
            break (c, now);
        }
        // Progress is what the drain waits for (heartbeats and summaries move other
        // counters all the time).
        let moved = (c.samples, c.kv_writes, changes.load(Ordering::Relaxed));
        if moved != progress {
            progress = moved;
            last = (c, now);
        } else if now.duration_since(last.1) > Duration::from_secs(5) {
            break last;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    counting.abort();
    let d = after.since(&before);
    let cpu_s = m.cpu_seconds()? - cpu_before;
    let drained_s = done.duration_since(started).as_secs_f64();
    Ok(Ingest {
        services,
        flags,
        samples: total,
        samples_per_s: d.samples as f64 / drained_s,
        drained_s,
        accepted_s: accepted_at.map_or(drained_s, |a| a.duration_since(started).as_secs_f64()),
        lost: total.saturating_sub(d.samples),
        counters: d,
        status_changes: changes.load(Ordering::Relaxed),
        cpu_ms_per_1k_samples: cpu_s * 1000.0 / (total as f64 / 1000.0),
        cpu: cpu.finish(),
        rss_bytes: m.rss_bytes()?,
    })
}
