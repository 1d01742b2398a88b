//! The baseline: core NATS, one publisher to one subscriber, MetricSample payloads.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use serde::Serialize;
use vitals_protocol::ServiceName;
use vitals_testkit::NatsServer;

use crate::util::{Percentiles, histogram, percentiles, record, sample};

#[derive(Debug, Serialize)]
pub struct Raw {
    pub msgs_per_s: f64,
    pub payload_bytes: usize,
    pub hop_p50_ms: f64,
    pub hop_p99_ms: f64,
    pub hop_p999_ms: f64,
    pub hop_rate_per_s: u64,
    pub hop: Percentiles,
}

async fn client(nats: &NatsServer) -> Result<async_nats::Client> {
    async_nats::ConnectOptions::new()
        .subscription_capacity(1 << 20)
        .connect(nats.url())
        .await
        .context("bench client")
}

pub async fn run(nats: &NatsServer, messages: usize, rate: u64, secs: u64) -> Result<Raw> {
    let publisher = client(nats).await?;
    let subscriber = client(nats).await?;
    let name = ServiceName::parse("raw").context("name")?;
    let payload = sample(&name, 1, false);

    // Throughput: as fast as possible.
    let mut sub = subscriber.subscribe("bench.raw").await?;
    subscriber.flush().await?;
    let started = Instant::now();
    let counting = tokio::spawn(async move {
        let mut n = 0;
        while n < messages {
            match tokio::time::timeout(Duration::from_secs(10), sub.next()).await {
                Ok(Some(_)) => n += 1,
                _ => break,
            }
        }
        (n, Instant::now())
    });
    for _ in 0..messages {
        publisher.publish("bench.raw", payload.clone()).await?;
    }
    publisher.flush().await?;
    let (received, done) = counting.await?;
    let msgs_per_s = received as f64 / done.duration_since(started).as_secs_f64();

    // One-hop latency at a fixed rate: the send instant travels in a header.
    let epoch = Instant::now();
    let mut sub = subscriber.subscribe("bench.hop").await?;
    subscriber.flush().await?;
    let total = rate * secs;
    let receiving = tokio::spawn(async move {
        let mut h = histogram()?;
        for _ in 0..total {
            let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(5), sub.next()).await
            else {
                break;
            };
            let now = epoch.elapsed();
            let sent = msg
                .headers
                .as_ref()
                .and_then(|h| h.get("t"))
                .and_then(|v| v.as_str().parse::<u64>().ok())
                .unwrap_or(0);
            record(&mut h, now.saturating_sub(Duration::from_nanos(sent)));
        }
        anyhow::Ok(h)
    });
    // Open loop, timed from each message's scheduled instant (not when it left), so a
    // stall of the sender counts against the latency instead of being skipped.
    let period = Duration::from_micros(1_000_000 / rate.max(1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let t0 = epoch.elapsed();
    for i in 0..total {
        tick.tick().await;
        let scheduled = t0 + period * i as u32;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("t", scheduled.as_nanos().to_string().as_str());
        publisher
            .publish_with_headers("bench.hop", headers, payload.clone())
            .await?;
    }
    publisher.flush().await?;
    let hop = percentiles(&receiving.await??);
    Ok(Raw {
        msgs_per_s,
        payload_bytes: payload.len(),
        hop_p50_ms: hop.p50_ms,
        hop_p99_ms: hop.p99_ms,
        hop_p999_ms: hop.p999_ms,
        hop_rate_per_s: rate,
        hop,
    })
}
