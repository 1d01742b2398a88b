//! Monitor ingest: N services sending as fast as they can, then at 1 Hz; zero loss is
//! checked against what was sent and the monitor's own counters. Also the monitor's
//! memory per tracked service.

use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use serde::Serialize;
use vitals_protocol::ServiceName;
use vitals_testkit::NatsServer;

use crate::util::{Part, monitor, names};

#[derive(Debug, Serialize)]
pub struct Ingest {
    pub services: usize,
    pub samples: u64,
    pub samples_per_s: f64,
    pub lost: u64,
    pub refused: u64,
    pub slow_consumer_drops: u64,
    pub cpu_ms_per_1k_samples: f64,
    pub at_1hz_seconds: u64,
    pub at_1hz_sent: u64,
    pub at_1hz_lost: u64,
    pub rss_bytes: u64,
    pub bytes_per_service: f64,
    /// Samples in each service's window when memory was read.
    pub window_points: u64,
}

/// A sample as bytes, built from a per-service template (fast enough not to be the
/// bottleneck of the measurement).
struct Template {
    head: String,
    tail: String,
}

impl Template {
    fn new(service: &ServiceName) -> Self {
        Self {
            head: format!("{{\"service\":\"{service}\",\"instance\":\"{service}-bench\",\"seq\":"),
            tail: format!(
                ",\"ts_ms\":{},\"cpu_pct\":21.5,\"mem_pct\":43.25,\"latency_ms\":31.7,\"error_rate\":0.002,\"health_url\":\"http://127.0.0.1:3001/health\"}}",
                vitals_runtime::epoch_ms()
            ),
        }
    }

    fn at(&self, seq: u64) -> Bytes {
        let mut s = String::with_capacity(self.head.len() + self.tail.len() + 20);
        s.push_str(&self.head);
        s.push_str(&seq.to_string());
        s.push_str(&self.tail);
        Bytes::from(s)
    }
}

async fn samples(m: &Part) -> u64 {
    m.counter("vitals_monitor_samples_total")
        .await
        .unwrap_or(0.0) as u64
}

/// Polls until the monitor has accepted `target` samples or makes no progress for 5 s;
/// returns the count and when it was reached.
async fn settle(m: &Part, target: u64) -> (u64, Instant) {
    let mut last = (0, Instant::now());
    loop {
        let n = samples(m).await;
        let now = Instant::now();
        if n >= target {
            return (n, now);
        }
        if n != last.0 {
            last = (n, now);
        } else if now.duration_since(last.1) > Duration::from_secs(5) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn run(services: usize, rounds: u64, hz_seconds: u64) -> Result<Ingest> {
    let nats = NatsServer::start()?;
    let cap = (services + 100).to_string();
    let m = monitor(
        &nats,
        &[
            "--max-services",
            &cap,
            "--pending-limit",
            "4000000",
            "--publish-queue",
            "4000000",
        ],
    )
    .await?;
    let client = nats.client().await?;
    let names = names("load", services)?;
    let templates: Vec<(String, Template)> = names
        .iter()
        .map(|n| (vitals_protocol::subjects::metrics(n), Template::new(n)))
        .collect();
    let rss_before = m.rss_bytes()?;
    let cpu_before = m.cpu_seconds()?;

    // Burst: every service, `rounds` times, as fast as the client can send.
    let total = services as u64 * rounds;
    let started = Instant::now();
    for seq in 0..rounds {
        for (subject, t) in &templates {
            client.publish(subject.clone(), t.at(seq)).await?;
        }
    }
    client.flush().await?;
    let (accepted, done) = settle(&m, total).await;
    let elapsed = done.duration_since(started).as_secs_f64();
    let cpu = m.cpu_seconds()? - cpu_before;

    // Then 1 Hz: each service once a second, spread over the second.
    let mut sent_1hz = 0;
    let batches = 100usize;
    let per_batch = services.div_ceil(batches);
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / batches as u64));
    for s in 0..hz_seconds {
        for chunk in templates.chunks(per_batch) {
            tick.tick().await;
            for (subject, t) in chunk {
                client.publish(subject.clone(), t.at(rounds + s)).await?;
                sent_1hz += 1;
            }
        }
    }
    client.flush().await?;
    let (after_1hz, _) = settle(&m, accepted + sent_1hz).await;
    let refused = m.counter("vitals_monitor_refused_samples_total").await? as u64;
    let drops = m
        .counter("vitals_monitor_slow_consumer_drops_total")
        .await? as u64;
    let rss = m.rss_bytes()?;
    Ok(Ingest {
        services,
        samples: total,
        samples_per_s: accepted as f64 / elapsed,
        lost: total.saturating_sub(accepted),
        refused,
        slow_consumer_drops: drops,
        cpu_ms_per_1k_samples: cpu * 1000.0 / (total as f64 / 1000.0),
        at_1hz_seconds: hz_seconds,
        at_1hz_sent: sent_1hz,
        at_1hz_lost: (accepted + sent_1hz).saturating_sub(after_1hz),
        rss_bytes: rss,
        bytes_per_service: rss.saturating_sub(rss_before) as f64 / services as f64,
        window_points: rounds + hz_seconds,
    })
}
