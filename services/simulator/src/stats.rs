//! The simulator's own counters (served on `/healthz` and `/metrics`) and a log limiter.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

/// One set per process; the Prometheus counters are the only copy of each figure.
#[derive(Debug)]
pub struct Stats {
    registry: Registry,
    pub samples_sent: Counter,
    /// Samples not handed to NATS because the connection was down (never queued).
    pub samples_unsent: Counter,
    pub publish_errors: Counter,
    pub chaos_requests: Counter,
    /// Chaos requests refused (bad JSON, bad for_s, unknown mode).
    pub chaos_errors: Counter,
    /// `POST /faults` refused before it was read: wrong content type, a browser's
    /// `Origin` without a token, or a missing or wrong operator token.
    pub http_writes_refused: Counter,
    /// Chaos requests not answered because their reply subject is not an inbox.
    pub chaos_bad_reply: Counter,
    pub nats_connected: Gauge,
}

/// The body of `/healthz`.
#[derive(Debug, Serialize)]
pub struct StatsView {
    pub status: &'static str,
    pub services: usize,
    pub samples_sent: u64,
    pub samples_unsent: u64,
    pub publish_errors: u64,
    pub chaos_requests: u64,
    pub chaos_errors: u64,
    pub http_writes_refused: u64,
    pub chaos_bad_reply: u64,
    pub nats_connected: bool,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("simulator");
        let samples_sent = Counter::default();
        let samples_unsent = Counter::default();
        let publish_errors = Counter::default();
        let chaos_requests = Counter::default();
        let chaos_errors = Counter::default();
        let http_writes_refused = Counter::default();
        let chaos_bad_reply = Counter::default();
        let nats_connected = Gauge::default();
        registry.register(
            "samples_sent",
            "Samples handed to the NATS client",
            samples_sent.clone(),
        );
        registry.register(
            "samples_unsent",
            "Samples dropped because NATS was not connected",
            samples_unsent.clone(),
        );
        registry.register(
            "publish_errors",
            "Publishes the NATS client refused",
            publish_errors.clone(),
        );
        registry.register(
            "chaos_requests",
            "Chaos requests received (NATS and HTTP)",
            chaos_requests.clone(),
        );
        registry.register(
            "chaos_errors",
            "Chaos requests refused as invalid",
            chaos_errors.clone(),
        );
        registry.register(
            "http_writes_refused",
            "POST /faults refused for its content type, origin or token",
            http_writes_refused.clone(),
        );
        registry.register(
            "chaos_bad_reply",
            "Chaos requests left unanswered: the reply subject is not an inbox",
            chaos_bad_reply.clone(),
        );
        registry.register(
            "nats_connected",
            "1 while the NATS connection is up",
            nats_connected.clone(),
        );
        Self {
            registry,
            samples_sent,
            samples_unsent,
            publish_errors,
            chaos_requests,
            chaos_errors,
            http_writes_refused,
            chaos_bad_reply,
            nats_connected,
        }
    }

    pub fn set_connected(&self, connected: bool) {
        self.nats_connected.set(i64::from(connected));
    }

    pub fn view(&self, services: usize) -> StatsView {
        StatsView {
            status: "ok",
            services,
            samples_sent: self.samples_sent.get(),
            samples_unsent: self.samples_unsent.get(),
            publish_errors: self.publish_errors.get(),
            chaos_requests: self.chaos_requests.get(),
            chaos_errors: self.chaos_errors.get(),
            http_writes_refused: self.http_writes_refused.get(),
            chaos_bad_reply: self.chaos_bad_reply.get(),
            nats_connected: self.nats_connected.get() != 0,
        }
    }

    /// OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Lets a repeated log line through at most once per period, counting what it held back,
/// so an outage with 10k services does not become 10k log lines a second.
#[derive(Debug)]
pub struct LogEvery {
    period_ms: u64,
    /// u64::MAX = never logged.
    last_ms: AtomicU64,
    held: AtomicU64,
}

impl LogEvery {
    pub const fn new(period_ms: u64) -> Self {
        Self {
            period_ms,
            last_ms: AtomicU64::new(u64::MAX),
            held: AtomicU64::new(0),
        }
    }

    /// Some(number held back since the last line) when this one may be logged.
    pub fn ready(&self, now_ms: u64) -> Option<u64> {
        let last = self.last_ms.load(Ordering::Relaxed);
        let due = last == u64::MAX || now_ms.saturating_sub(last) >= self.period_ms;
        if due
            && self
                .last_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.held.swap(0, Ordering::Relaxed));
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_every_limits_and_counts() {
        let l = LogEvery::new(1000);
        assert_eq!(l.ready(5_000), Some(0));
        assert_eq!(l.ready(5_001), None);
        assert_eq!(l.ready(5_999), None);
        assert_eq!(l.ready(6_000), Some(2));
        assert_eq!(l.ready(6_001), None);
    }

    #[test]
    fn metrics_text_names_the_counters() {
        let s = Stats::new();
        s.samples_sent.inc();
        let text = s.encode();
        assert!(text.contains("simulator_samples_sent_total 1"), "{text}");
        assert!(text.contains("simulator_nats_connected 0"), "{text}");
        assert!(s.view(1).samples_sent == 1);
    }
}
