//! The interval loop: one sample per service per interval on `metrics.<service>`.

use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::epoch_ms;
use crate::service::SimService;
use crate::stats::{LogEvery, Stats};

/// Repeated warnings (outage, refused publishes) at most this often.
const WARN_EVERY_MS: u64 = 5_000;

pub struct Publisher {
    client: async_nats::Client,
    stats: Arc<Stats>,
    interval: Duration,
    unsent_log: LogEvery,
    error_log: LogEvery,
}

impl Publisher {
    pub fn new(client: async_nats::Client, stats: Arc<Stats>, interval: Duration) -> Self {
        Self {
            client,
            stats,
            interval,
            unsent_log: LogEvery::new(WARN_EVERY_MS),
            error_log: LogEvery::new(WARN_EVERY_MS),
        }
    }

    /// One task per service. With many services each starts at its own offset within
    /// the interval, so the sends are spread out rather than one burst per tick.
    pub fn spawn_all(
        self: &Arc<Self>,
        services: &[Arc<SimService>],
        stop: &CancellationToken,
    ) -> JoinSet<()> {
        let mut tasks = JoinSet::new();
        let n = services.len().max(1) as u32;
        let start = Instant::now();
        for (i, svc) in services.iter().enumerate() {
            let offset = self.interval.mul_f64(f64::from(i as u32) / f64::from(n));
            let (me, svc, stop) = (self.clone(), svc.clone(), stop.clone());
            tasks.spawn(async move { me.run_one(&svc, start + offset, stop).await });
        }
        tasks
    }

    async fn run_one(&self, svc: &SimService, first: Instant, stop: CancellationToken) {
        let mut tick = tokio::time::interval_at(first, self.interval);
        // A heartbeat that fell behind should not burst to catch up, and should keep
        // its place in the spread.
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => self.send(svc, false).await,
            }
        }
    }

    /// Makes and sends one sample (none while a fault silences the service).
    pub async fn send(&self, svc: &SimService, stopping: bool) {
        let _gate = svc.gate().await;
        let now = epoch_ms();
        let Some(sample) = svc.next_sample(now, stopping) else {
            return;
        };
        if let Err(refusal) = sample.validate() {
            // A bug here, not bad input: say so loudly, but never send it.
            self.stats.publish_errors.inc();
            if let Some(held) = self.error_log.ready(now) {
                tracing::error!(service = %svc.name, error = %refusal, held, "made an invalid sample; not sent");
            }
            return;
        }
        // A disconnected client would buffer the sample and send it late as if fresh;
        // a stale heartbeat is worse than a missing one.
        if self.client.connection_state() != State::Connected {
            self.stats.samples_unsent.inc();
            if let Some(held) = self.unsent_log.ready(now) {
                tracing::warn!(service = %svc.name, seq = sample.seq, held, "NATS not connected; samples not sent");
            }
            return;
        }
        let body = match serde_json::to_vec(&sample) {
            Ok(body) => body,
            Err(e) => {
                self.stats.publish_errors.inc();
                tracing::error!(service = %svc.name, error = %e, "encoding sample");
                return;
            }
        };
        match self.client.publish(svc.subject.clone(), body.into()).await {
            Ok(()) => {
                self.stats.samples_sent.inc();
                if stopping {
                    tracing::info!(service = %svc.name, seq = sample.seq, "sent last sample (stopping)");
                }
            }
            Err(e) => {
                self.stats.publish_errors.inc();
                if let Some(held) = self.error_log.ready(now) {
                    tracing::warn!(service = %svc.name, error = %e, held, "publish failed");
                }
            }
        }
    }

    /// The `stopping: true` sample of every service, then a bounded flush so it leaves
    /// the process before it exits.
    pub async fn send_last(&self, services: &[Arc<SimService>], flush_within: Duration) {
        for svc in services {
            self.send(svc, true).await;
        }
        if self.client.connection_state() != State::Connected {
            // Nothing was queued, so there is nothing to wait for.
            return;
        }
        match tokio::time::timeout(flush_within, self.client.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "flushing NATS before exit"),
            Err(_) => tracing::warn!(timeout = ?flush_within, "NATS flush timed out before exit"),
        }
    }
}
