//! A snapshot flood: `rate` anonymous `health.snapshot` requests a second, open loop (the
//! schedule decides when each is sent, not the last reply), for `secs`, while `services`
//! services publish at 1 Hz. Measures what the flood does to the monitor: its peak RSS
//! (VmHWM, reset when the flood starts), how many samples it still judged, what it
//! dropped or missed, and whether anyone went DOWN.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use serde::Serialize;
use vitals_protocol::subjects;
use vitals_testkit::{NatsServer, wait_until};

use crate::resync::vm_hwm;
use crate::util::{self, Part, names, sample};

#[derive(Debug, Serialize)]
pub struct Flood {
    pub monitor_bin: String,
    pub services: usize,
    pub rate_per_s: u64,
    pub secs: u64,
    /// Distinct inbox prefixes the requests came from (1 = one connection).
    pub askers: usize,
    pub requests_sent: u64,
    pub replies: u64,
    pub error_replies: u64,
    pub rss_before_mb: f64,
    pub rss_peak_mb: f64,
    pub samples_published: u64,
    pub samples_judged: f64,
    /// samples_judged / samples_published during the flood.
    pub ingest_ratio: f64,
    pub refused: f64,
    pub slow_consumer_drops: f64,
    pub samples_missed: f64,
    pub downs: u64,
}

pub async fn run(
    monitor_bin: &str,
    services: usize,
    rate: u64,
    secs: u64,
    askers: usize,
) -> Result<Flood> {
    let nats = NatsServer::start()?;
    let monitor = Part::start(monitor_bin, &nats, &[], "monitor running").await?;
    let names = Arc::new(names("flood", services)?);
    let publisher = nats.client().await?;
    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicU64::new(0));
    // 1 Hz for every service, in 100 slices a second so the load is even.
    let load = tokio::spawn({
        let (names, stop, published) = (names.clone(), stop.clone(), published.clone());
        async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let mut seq = 0u64;
            let slice = names.len().div_ceil(100).max(1);
            let mut at = 0;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                for name in names.iter().skip(at).take(slice) {
                    if publisher
                        .publish(subjects::metrics(name), sample(name, seq, false))
                        .await
                        .is_ok()
                    {
                        published.fetch_add(1, Ordering::Relaxed);
                    }
                }
                at += slice;
                if at >= names.len() {
                    at = 0;
                    seq += 1;
                }
            }
        }
    });
    let tracked = wait_until(Duration::from_secs(60), || async {
        let n = monitor.counter("vitals_monitor_services").await.ok()?;
        (n as usize >= services).then_some(())
    })
    .await;
    tracked.context("the monitor never tracked every service")?;
    // Settle: everyone HEALTHY and past the grace period.
    tokio::time::sleep(Duration::from_secs(4)).await;

    let watcher = nats.client().await?;
    let mut statuses = watcher.subscribe(subjects::STATUS_ALL).await?;
    let flooder = nats.client().await?;
    let mut replies_sub = flooder.subscribe("_INBOX.flood.>").await?;
    flooder.flush().await?;
    let counters = [
        "vitals_monitor_samples_total",
        "vitals_monitor_refused_samples_total",
        "vitals_monitor_slow_consumer_drops_total",
        "vitals_monitor_samples_missed_total",
    ];
    let mut before = Vec::new();
    for c in counters {
        before.push(monitor.counter(c).await?);
    }
    let pid = monitor.proc.pid();
    let rss_before = util::rss_bytes(pid)?;
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
    let published_before = published.load(Ordering::Relaxed);

    let replies = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let reader = tokio::spawn({
        let (replies, errors) = (replies.clone(), errors.clone());
        async move {
            while let Some(msg) = replies_sub.next().await {
                replies.fetch_add(1, Ordering::Relaxed);
                if msg
                    .headers
                    .as_ref()
                    .is_some_and(|h| h.get("Nats-Service-Error-Code").is_some())
                {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    let started = Instant::now();
    let total = rate * secs;
    let mut sent = 0u64;
    while sent < total {
        // Open loop: request n goes out at n / rate, whatever came back.
        let due = started + Duration::from_secs_f64(sent as f64 / rate as f64);
        tokio::time::sleep_until(due.into()).await;
        let asker = sent as usize % askers.max(1);
        let reply = format!("_INBOX.flood.{asker}.{sent}");
        flooder
            .publish_with_reply(subjects::SNAPSHOT, reply, "".into())
            .await?;
        sent += 1;
    }
    flooder.flush().await?;
    // Let replies and the pipeline catch up a little before counting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let published_during = published.load(Ordering::Relaxed) - published_before;
    let rss_peak = vm_hwm(pid)?;
    let mut after = Vec::new();
    for c in counters {
        after.push(monitor.counter(c).await?);
    }
    stop.store(true, Ordering::Relaxed);
    let _ = load.await;
    reader.abort();
    let mut downs = 0;
    while let Some(Some(msg)) = futures::FutureExt::now_or_never(statuses.next()) {
        if String::from_utf8_lossy(&msg.payload).contains("\"status\":\"DOWN\"") {
            downs += 1;
        }
    }
    let judged = after[0] - before[0];
    let mb = |b: u64| b as f64 / 1_048_576.0;
    Ok(Flood {
        monitor_bin: monitor_bin.to_owned(),
        services,
        rate_per_s: rate,
        secs,
        askers,
        requests_sent: sent,
        replies: replies.load(Ordering::Relaxed),
        error_replies: errors.load(Ordering::Relaxed),
        rss_before_mb: mb(rss_before),
        rss_peak_mb: mb(rss_peak),
        samples_published: published_during,
        samples_judged: judged,
        ingest_ratio: judged / published_during.max(1) as f64,
        refused: after[1] - before[1],
        slow_consumer_drops: after[2] - before[2],
        samples_missed: after[3] - before[3],
        downs,
    })
}
