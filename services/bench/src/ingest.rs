//! Monitor ingest: N new services sending as fast as the bench can publish, with the
//! monitor's defaults (any flag that is not a default is listed in `flags`). The clock
//! stops when the pipeline is drained: every sample accepted, every service's first
//! status change received by a subscriber and its KV write confirmed. Loss is sent minus
//! accepted, beside the monitor's own refusal, drop and gap counters.
//!
//! Each trial first sends the very same burst (same subjects, same payloads, same
//! publisher) to a plain subscriber with the client's default buffer, on the same server:
//! that is the raw-NATS rate the monitor's is a fraction of. A burst takes a fraction of a
//! second, so each size runs several trials and reports the median.

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

/// The monitor's default `--pending-limit` (and the NATS client's default buffer): a
/// burst of at most this many samples cannot overflow it.
pub const DEFAULT_PENDING_LIMIT: u64 = 65_536;

/// In a service's first status change.
const FIRST: &[u8] = b"\"previous\":\"UNKNOWN\"";

/// One burst to a plain `metrics.*` subscriber that only counts.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RawBurst {
    pub samples_per_s: f64,
    pub received: u64,
    pub lost: u64,
}

/// One trial: the raw burst, then the same burst to the monitor.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Trial {
    pub raw_per_s: f64,
    pub monitor_per_s: f64,
    pub ratio_vs_raw: f64,
    pub raw_lost: u64,
    pub monitor_lost: u64,
}

/// A size's trials; the top-level figures are the median trial's (by ratio).
#[derive(Debug, Serialize)]
pub struct Ingest {
    pub services: usize,
    /// Median over `trials` of the monitor's rate over the raw rate.
    pub ratio_vs_raw: f64,
    pub raw: RawBurst,
    pub trials: Vec<Trial>,
    /// The monitor's, over every trial (the raw subscriber's is in `trials`).
    pub lost_in_all_trials: u64,
    #[serde(flatten)]
    pub median: MonitorBurst,
}

/// One burst to the monitor.
#[derive(Debug, Serialize)]
pub struct MonitorBurst {
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

pub async fn run(services: usize, rounds: u64, trials: usize) -> Result<Ingest> {
    let mut runs = Vec::new();
    for _ in 0..trials.max(1) {
        let nats = NatsServer::start_with_accounts()?;
        let raw = raw_burst(&nats, services, rounds).await?;
        let monitor = monitor_burst(&nats, services, rounds).await?;
        runs.push((raw, monitor));
    }
    let lost_in_all_trials = runs.iter().map(|(_, m)| m.lost).sum();
    let mut trials: Vec<Trial> = runs
        .iter()
        .map(|(raw, m)| Trial {
            raw_per_s: raw.samples_per_s,
            monitor_per_s: m.samples_per_s,
            ratio_vs_raw: m.samples_per_s / raw.samples_per_s.max(1.0),
            raw_lost: raw.lost,
            monitor_lost: m.lost,
        })
        .collect();
    let order = |t: &Trial| t.ratio_vs_raw;
    let mut by_ratio: Vec<usize> = (0..runs.len()).collect();
    by_ratio.sort_by(|&a, &b| order(&trials[a]).total_cmp(&order(&trials[b])));
    let mid = by_ratio[by_ratio.len() / 2];
    let ratio_vs_raw = trials[mid].ratio_vs_raw;
    let (raw, median) = runs.swap_remove(mid);
    trials.sort_by(|a, b| order(a).total_cmp(&order(b)));
    Ok(Ingest {
        services,
        ratio_vs_raw,
        raw,
        trials,
        lost_in_all_trials,
        median,
    })
}

/// The burst through core NATS alone, to a subscriber with the client's default buffer
/// (the monitor's default `--pending-limit` is the same 65,536).
async fn raw_burst(nats: &NatsServer, services: usize, rounds: u64) -> Result<RawBurst> {
    let client = load::client(&nats.url()).await?;
    let subscriber = async_nats::connect(nats.url()).await?;
    let total = services as u64 * rounds;
    let mut sub = subscriber
        .subscribe(vitals_protocol::subjects::METRICS_ALL)
        .await?;
    subscriber.flush().await?;
    let counting = tokio::spawn(async move {
        let mut n = 0u64;
        let mut last = Instant::now();
        while n < total {
            match tokio::time::timeout(Duration::from_secs(2), sub.next()).await {
                Ok(Some(_)) => {
                    n += 1;
                    last = Instant::now();
                }
                _ => break,
            }
        }
        (n, last)
    });
    let mut flow = Flow::new(&names("load", services)?);
    let started = Instant::now();
    let now_ms = vitals_runtime::epoch_ms();
    for _ in 0..total {
        let (subject, payload) = flow.next_sample(now_ms);
        client.publish(subject, payload).await?;
    }
    client.flush().await?;
    let (received, last) = counting.await?;
    Ok(RawBurst {
        samples_per_s: received as f64 / last.duration_since(started).as_secs_f64(),
        received,
        lost: total - received,
    })
}

async fn monitor_burst(nats: &NatsServer, services: usize, rounds: u64) -> Result<MonitorBurst> {
    let cap = (services + 100).to_string();
    let flags: Vec<String> = if services > DEFAULT_MAX_SERVICES {
        vec!["--max-services".into(), cap]
    } else {
        Vec::new()
    };
    let flag_refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    let m = monitor(nats, &flag_refs).await?;
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
    Ok(MonitorBurst {
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
