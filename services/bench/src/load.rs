//! Open-loop sample flows: a schedule decides when each sample goes (sample k at
//! `k / rate` seconds after the start), never a reply, so a slow system cannot slow the
//! load down and hide its own queueing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use serde::Serialize;
use tokio::task::JoinHandle;
use vitals_protocol::ServiceName;

/// N services sending in turn, each sample a fresh `seq` and `ts_ms`. Built from
/// per-service text so that making a sample is not what limits the bench.
pub struct Flow {
    subjects: Vec<String>,
    heads: Vec<String>,
    /// Samples sent so far over every run of this flow (sample k is service `k % n`,
    /// seq `k / n`), so a flow can be stopped and started again without a seq gap.
    next: u64,
}

const TAIL: &str = ",\"cpu_pct\":21.5,\"mem_pct\":43.25,\"latency_ms\":31.7,\"error_rate\":0.002,\"health_url\":\"http://127.0.0.1:3001/health\"}";

impl Flow {
    pub fn new(names: &[ServiceName]) -> Self {
        Self {
            subjects: names
                .iter()
                .map(vitals_protocol::subjects::metrics)
                .collect(),
            heads: names
                .iter()
                .map(|n| format!("{{\"service\":\"{n}\",\"instance\":\"{n}-bench\",\"seq\":"))
                .collect(),
            next: 0,
        }
    }

    pub fn services(&self) -> usize {
        self.subjects.len()
    }

    pub fn sent(&self) -> u64 {
        self.next
    }

    /// The next sample of the flow: its subject and bytes.
    pub fn next_sample(&mut self, ts_ms: u64) -> (String, Bytes) {
        let n = self.subjects.len().max(1) as u64;
        let i = (self.next % n) as usize;
        let seq = self.next / n;
        self.next += 1;
        let head = &self.heads[i];
        let mut s = String::with_capacity(head.len() + TAIL.len() + 40);
        s.push_str(head);
        s.push_str(&seq.to_string());
        s.push_str(",\"ts_ms\":");
        s.push_str(&ts_ms.to_string());
        s.push_str(TAIL);
        (self.subjects[i].clone(), Bytes::from(s))
    }
}

/// What one run of a flow did against its schedule.
#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct FlowStats {
    pub rate_per_s: f64,
    pub secs: f64,
    pub sent: u64,
    /// The most the sender was ever behind its schedule: above a few ms the bench, not the
    /// system under test, limited the offered load.
    pub max_lag_ms: f64,
}

pub struct Running {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    task: JoinHandle<Result<(Flow, FlowStats)>>,
}

/// Sends `flow` at `rate` samples a second until stopped.
pub fn start(client: async_nats::Client, mut flow: Flow, rate: f64) -> Running {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let sent_now = Arc::new(AtomicU64::new(0));
    let live = sent_now.clone();
    let task = tokio::spawn(async move {
        let t0 = Instant::now();
        let mut sent = 0u64;
        let mut max_lag = 0f64;
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while !flag.load(Ordering::Relaxed) {
            tick.tick().await;
            let elapsed = t0.elapsed().as_secs_f64();
            let due = (elapsed * rate) as u64;
            if due > sent {
                max_lag = max_lag.max(elapsed - sent as f64 / rate);
            }
            let now_ms = vitals_runtime::epoch_ms();
            while sent < due {
                let (subject, payload) = flow.next_sample(now_ms);
                client.publish(subject, payload).await.context("publish")?;
                sent += 1;
            }
            live.store(sent, Ordering::Relaxed);
        }
        client.flush().await.context("flush")?;
        let stats = FlowStats {
            rate_per_s: rate,
            secs: t0.elapsed().as_secs_f64(),
            sent,
            max_lag_ms: max_lag * 1000.0,
        };
        Ok((flow, stats))
    });
    Running {
        stop,
        sent: sent_now,
        task,
    }
}

impl Running {
    /// Samples handed to the NATS client so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    pub async fn stop(self) -> Result<(Flow, FlowStats)> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.context("flow task")?
    }
}

/// Runs `flow` at `rate` for `secs`, then returns it.
pub async fn run_for(
    client: &async_nats::Client,
    flow: Flow,
    rate: f64,
    secs: f64,
) -> Result<(Flow, FlowStats)> {
    let running = start(client.clone(), flow, rate);
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    running.stop().await
}

/// A client for the bench's own publishing, with room for a burst.
pub async fn client(url: &str) -> Result<async_nats::Client> {
    async_nats::ConnectOptions::new()
        .client_capacity(65_536)
        .subscription_capacity(1 << 20)
        .connect(url)
        .await
        .context("bench client")
}
