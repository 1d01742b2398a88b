//! The interval loop: read the host, make the sample, check it, publish it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_nats::connection::State;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::collect::Collector;
use crate::metrics::Metrics;
use crate::sample::{self, Identity, Reading};

/// Repeated warnings (an outage, refused publishes) at most this often.
const WARN_EVERY_MS: u64 = 5_000;

pub struct Publisher {
    client: async_nats::Client,
    metrics: Arc<Metrics>,
    id: Identity,
    subject: async_nats::Subject,
    /// The seq of the next sample.
    next_seq: u64,
    unsent_log: LogEvery,
    error_log: LogEvery,
}

impl Publisher {
    pub fn new(
        client: async_nats::Client,
        metrics: Arc<Metrics>,
        id: Identity,
        first_seq: u64,
    ) -> Self {
        let subject = vitals_protocol::subjects::metrics(&id.service).into();
        Self {
            client,
            metrics,
            id,
            subject,
            next_seq: first_seq,
            unsent_log: LogEvery::new(WARN_EVERY_MS),
            error_log: LogEvery::new(WARN_EVERY_MS),
        }
    }

    /// One sample per interval until `stop`; returns the collector and the last reading, for
    /// the stopping sample. The first comes after at most a second (a long interval should
    /// not leave the service UNKNOWN that long), and never before sysinfo can measure CPU.
    pub async fn run(
        &mut self,
        mut collector: Collector,
        interval: Duration,
        stop: &CancellationToken,
    ) -> anyhow::Result<(Collector, Option<Reading>)> {
        let first = interval
            .min(Duration::from_secs(1))
            .max(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        let mut tick = tokio::time::interval_at(Instant::now() + first, interval);
        // A reading that fell behind should not burst to catch up.
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut last = None;
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => return Ok((collector, last)),
                _ = tick.tick() => {}
            }
            let (c, reading) = self.collect(collector).await?;
            collector = c;
            self.send(&reading, false).await;
            last = Some(reading);
        }
    }

    /// A reading off the async thread: a pass over /proc takes milliseconds, and /healthz
    /// should not wait for it.
    pub async fn collect(&self, mut collector: Collector) -> anyhow::Result<(Collector, Reading)> {
        let started = std::time::Instant::now();
        let (collector, reading) = tokio::task::spawn_blocking(move || {
            let r = collector.read();
            (collector, r)
        })
        .await
        .context("reading the host")?;
        let took = started.elapsed();
        self.metrics.collect_seconds.set(took.as_secs_f64());
        tracing::trace!(took_us = took.as_micros() as u64, "host read");
        Ok((collector, reading))
    }

    /// Makes, checks and sends one sample. Each sample made takes the next seq, sent or not,
    /// so a sample lost to an outage shows as a gap the monitor counts.
    pub async fn send(&mut self, reading: &Reading, stopping: bool) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let now = vitals_runtime::epoch_ms();
        let sample = sample::build(&self.id, seq, now, reading, stopping);
        if let Err(refusal) = sample.validate() {
            // A bug here, not bad input: say so loudly, but never send what would be refused.
            self.metrics.publish_failures.inc();
            if let Some(held) = self.error_log.ready(now) {
                tracing::error!(service = %self.id.service, seq, error = %refusal, held, "made an invalid sample; not sent");
            }
            return;
        }
        if self.client.connection_state() != State::Connected {
            self.metrics.samples_unsent.inc();
            if let Some(held) = self.unsent_log.ready(now) {
                tracing::warn!(service = %self.id.service, seq, held, "NATS not connected; samples not sent");
            }
            return;
        }
        let body = match serde_json::to_vec(&sample) {
            Ok(body) => body,
            Err(e) => {
                self.metrics.publish_failures.inc();
                tracing::error!(service = %self.id.service, error = %e, "encoding a sample");
                return;
            }
        };
        match self.client.publish(self.subject.clone(), body.into()).await {
            Ok(()) => {
                self.metrics.samples_sent.inc();
                if stopping {
                    tracing::info!(service = %self.id.service, seq, "sent last sample (stopping)");
                }
            }
            Err(e) => {
                self.metrics.publish_failures.inc();
                if let Some(held) = self.error_log.ready(now) {
                    tracing::warn!(service = %self.id.service, seq, error = %e, held, "publish failed");
                }
            }
        }
    }

    /// The `stopping: true` sample, a bounded flush so it leaves the process, then drain.
    pub async fn send_last(&mut self, reading: &Reading, within: Duration) {
        self.send(reading, true).await;
        if self.client.connection_state() == State::Connected {
            match tokio::time::timeout(within, self.client.flush()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "flushing NATS before exit"),
                Err(_) => tracing::warn!(timeout = ?within, "NATS flush timed out before exit"),
            }
        }
        if let Err(e) = self.client.drain().await {
            tracing::debug!(error = %e, "draining the NATS connection");
        }
    }
}

/// Lets a repeated log line through at most once per period, counting what it held back.
#[derive(Debug)]
pub struct LogEvery {
    period_ms: u64,
    last_ms: Option<u64>,
    held: u64,
}

impl LogEvery {
    pub const fn new(period_ms: u64) -> Self {
        Self {
            period_ms,
            last_ms: None,
            held: 0,
        }
    }

    /// Some(number held back since the last line) when this one may be logged.
    pub fn ready(&mut self, now_ms: u64) -> Option<u64> {
        if self
            .last_ms
            .is_some_and(|last| now_ms.saturating_sub(last) < self.period_ms)
        {
            self.held += 1;
            return None;
        }
        self.last_ms = Some(now_ms);
        Some(std::mem::take(&mut self.held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_every_limits_and_counts() {
        let mut l = LogEvery::new(1000);
        assert_eq!(l.ready(5_000), Some(0));
        assert_eq!(l.ready(5_001), None);
        assert_eq!(l.ready(5_999), None);
        assert_eq!(l.ready(6_000), Some(2));
    }
}
