//! The agent's own counters, served on `/metrics` (OpenMetrics text) and `/healthz`.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub samples_sent: Counter,
    /// Samples not handed to NATS because the connection was down (never queued: a late
    /// heartbeat would read as a fresh one).
    pub samples_unsent: Counter,
    /// Publishes the client refused, and samples that failed their own check (a bug).
    pub publish_failures: Counter,
    /// How long the last reading of the host took, in seconds.
    pub collect_seconds: Gauge<f64, AtomicU64>,
    pub nats_connected: Gauge,
}

/// The body of `/healthz`.
#[derive(Debug, Serialize)]
pub struct HealthView<'a> {
    pub status: &'static str,
    pub service: &'a str,
    pub instance: &'a str,
    pub samples_sent: u64,
    pub samples_unsent: u64,
    pub publish_failures: u64,
    pub last_collect_ms: f64,
    pub nats_connected: bool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("agent");
        let m = Self {
            samples_sent: Counter::default(),
            samples_unsent: Counter::default(),
            publish_failures: Counter::default(),
            collect_seconds: Gauge::default(),
            nats_connected: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "samples_sent",
            "Samples handed to the NATS client",
            m.samples_sent.clone(),
        );
        registry.register(
            "samples_unsent",
            "Samples dropped because NATS was not connected",
            m.samples_unsent.clone(),
        );
        registry.register(
            "publish_failures",
            "Samples not sent: the NATS client refused them, or they failed the protocol check",
            m.publish_failures.clone(),
        );
        registry.register(
            "collect_duration_seconds",
            "How long the last reading of the host took",
            m.collect_seconds.clone(),
        );
        registry.register(
            "nats_connected",
            "1 while the NATS connection is up",
            m.nats_connected.clone(),
        );
        Self { registry, ..m }
    }

    pub fn view<'a>(&self, service: &'a str, instance: &'a str) -> HealthView<'a> {
        HealthView {
            status: "ok",
            service,
            instance,
            samples_sent: self.samples_sent.get(),
            samples_unsent: self.samples_unsent.get(),
            publish_failures: self.publish_failures.get(),
            last_collect_ms: (self.collect_seconds.get() * 1e5).round() / 100.0,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_text_names_the_counters() {
        let m = Metrics::new();
        m.samples_sent.inc();
        m.collect_seconds.set(0.0042);
        let text = m.encode();
        for line in [
            "agent_samples_sent_total 1",
            "agent_samples_unsent_total 0",
            "agent_publish_failures_total 0",
            "agent_collect_duration_seconds 0.0042",
            "agent_nats_connected 0",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert_eq!(m.view("a", "b").last_collect_ms, 4.2);
    }
}
