//! The monitor's own counters that say whether anything was lost or left undone, read
//! from its /metrics, and a watch for DOWN raised where none should be.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use serde::Serialize;
use vitals_protocol::{Status, StatusChange};

use crate::util::Part;

#[derive(Debug, Clone, Copy, Serialize, Default, PartialEq)]
pub struct MonitorCounters {
    pub samples: u64,
    pub refused: u64,
    pub slow_consumer_drops: u64,
    pub samples_missed: u64,
    pub publish_drops: u64,
    pub publish_errors: u64,
    pub published: u64,
    pub kv_writes: u64,
    pub kv_write_errors: u64,
}

impl MonitorCounters {
    pub async fn read(m: &Part) -> Result<Self> {
        let text = reqwest::get(format!("http://{}/metrics", m.http))
            .await
            .context("monitor /metrics")?
            .text()
            .await?;
        let n = |s: &str| vitals_testkit::metric_sum(&text, s) as u64;
        Ok(Self {
            samples: n("vitals_monitor_samples_total"),
            refused: n("vitals_monitor_refused_samples_total"),
            slow_consumer_drops: n("vitals_monitor_slow_consumer_drops_total"),
            samples_missed: n("vitals_monitor_samples_missed_total"),
            publish_drops: n("vitals_monitor_publish_drops_total"),
            publish_errors: n("vitals_monitor_publish_errors_total"),
            published: n("vitals_monitor_published_total"),
            kv_writes: n("vitals_monitor_kv_writes_total"),
            kv_write_errors: n("vitals_monitor_kv_write_errors_total"),
        })
    }

    /// What happened between `before` and `self`.
    pub fn since(&self, before: &Self) -> Self {
        Self {
            samples: self.samples.saturating_sub(before.samples),
            refused: self.refused.saturating_sub(before.refused),
            slow_consumer_drops: self
                .slow_consumer_drops
                .saturating_sub(before.slow_consumer_drops),
            samples_missed: self.samples_missed.saturating_sub(before.samples_missed),
            publish_drops: self.publish_drops.saturating_sub(before.publish_drops),
            publish_errors: self.publish_errors.saturating_sub(before.publish_errors),
            published: self.published.saturating_sub(before.published),
            kv_writes: self.kv_writes.saturating_sub(before.kv_writes),
            kv_write_errors: self.kv_write_errors.saturating_sub(before.kv_write_errors),
        }
    }

    /// Everything that means a sample or an event was lost or refused (must be 0).
    pub fn losses(&self) -> u64 {
        self.refused
            + self.slow_consumer_drops
            + self.samples_missed
            + self.publish_drops
            + self.publish_errors
            + self.kv_write_errors
    }
}

/// Polls until the monitor has accepted `target` samples (and `kv_target` KV writes),
/// or `limit` passes; returns the counters then and how long it took.
pub async fn drain(
    m: &Part,
    target: u64,
    kv_target: u64,
    limit: Duration,
) -> Result<(MonitorCounters, Duration, bool)> {
    let started = Instant::now();
    loop {
        let c = MonitorCounters::read(m).await?;
        if c.samples >= target && c.kv_writes >= kv_target {
            return Ok((c, started.elapsed(), true));
        }
        if started.elapsed() > limit {
            return Ok((c, started.elapsed(), false));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Counts DOWN changes of services whose names start with one of `prefixes` (the steady
/// load: none of them stops, so any DOWN is a false alarm under load).
pub struct DownWatch {
    count: Arc<AtomicU64>,
    /// The first few (service: reason), to say what happened.
    examples: Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl DownWatch {
    pub async fn start(client: &async_nats::Client, prefixes: &[&str]) -> Result<Self> {
        let mut sub = client.subscribe("health.status.*").await?;
        client.flush().await?;
        let count = Arc::new(AtomicU64::new(0));
        let n = count.clone();
        let examples = Arc::new(std::sync::Mutex::new(Vec::new()));
        let ex = examples.clone();
        let prefixes: Vec<String> = prefixes.iter().map(|p| (*p).to_owned()).collect();
        let task = tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                if let Ok(c) = serde_json::from_slice::<StatusChange>(&msg.payload)
                    && c.status == Status::Down
                    && prefixes.iter().any(|p| c.service.as_str().starts_with(p))
                {
                    n.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut ex) = ex.lock()
                        && ex.len() < 5
                    {
                        ex.push(format!("{}: {}", c.service, c.reasons.join(", ")));
                    }
                }
            }
        });
        Ok(Self {
            count,
            examples,
            task,
        })
    }

    pub fn downs(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn examples(&self) -> Vec<String> {
        self.examples.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

impl Drop for DownWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}
