//! The prober's own figures at `/metrics` (OpenMetrics text, prefix `vitals_prober_`).
//! One registry per run (no globals), every label value present from the start.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::sample::Failure;
use crate::targets::RefusalReason;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

pub struct Metrics {
    registry: Registry,
    /// Probes run, by result (`ok`, `failed`).
    pub probes: Family<ResultLabel, Counter>,
    pub failures: Family<ReasonLabel, Counter>,
    pub in_flight: Gauge,
    pub probe_seconds: Histogram,
    /// Probe rounds skipped because no slot of `--max-inflight` freed up before the next one.
    pub skipped: Counter,
    pub targets_active: Gauge,
    pub targets_refused: Family<ReasonLabel, Counter>,
    pub published: Counter,
    pub publish_errors: Counter,
    /// Samples not sent because they failed the protocol's validation (a bug).
    pub invalid_samples: Counter,
    pub retire_requests: Family<OutcomeLabel, Counter>,
    pub kv_ready: Gauge,
    pub nats_connected: Gauge,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("vitals_prober");
        let m = Self {
            probes: Family::default(),
            failures: Family::default(),
            in_flight: Gauge::default(),
            // 1 ms to ~16 s.
            probe_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            skipped: Counter::default(),
            targets_active: Gauge::default(),
            targets_refused: Family::default(),
            published: Counter::default(),
            publish_errors: Counter::default(),
            invalid_samples: Counter::default(),
            retire_requests: Family::default(),
            kv_ready: Gauge::default(),
            nats_connected: Gauge::default(),
            registry: Registry::default(),
        };
        for result in ["ok", "failed"] {
            let _ = m.probes.get_or_create(&ResultLabel { result });
        }
        for reason in Failure::REASONS {
            let _ = m.failures.get_or_create(&ReasonLabel { reason });
        }
        for r in RefusalReason::ALL {
            let _ = m
                .targets_refused
                .get_or_create(&ReasonLabel { reason: r.as_str() });
        }
        for outcome in ["retired", "refused", "no_answer"] {
            let _ = m.retire_requests.get_or_create(&OutcomeLabel { outcome });
        }
        registry.register("probes", "Probes run, by result", m.probes.clone());
        registry.register(
            "probe_failures",
            "Failed probes, by reason",
            m.failures.clone(),
        );
        registry.register(
            "probes_in_flight",
            "Probes running now",
            m.in_flight.clone(),
        );
        registry.register(
            "probe_duration_seconds",
            "Time from a probe's start to its outcome (response, failure or timeout)",
            m.probe_seconds.clone(),
        );
        registry.register(
            "probes_skipped",
            "Probe rounds skipped: no --max-inflight slot freed up before the next round",
            m.skipped.clone(),
        );
        registry.register(
            "targets_active",
            "Targets being probed",
            m.targets_active.clone(),
        );
        registry.register(
            "targets_refused",
            "KV target values refused, by reason (the previous good target, if any, keeps running)",
            m.targets_refused.clone(),
        );
        registry.register(
            "samples_published",
            "Samples handed to NATS",
            m.published.clone(),
        );
        registry.register(
            "publish_errors",
            "Samples NATS would not take",
            m.publish_errors.clone(),
        );
        registry.register(
            "invalid_samples",
            "Samples not sent: they failed the protocol's validation",
            m.invalid_samples.clone(),
        );
        registry.register(
            "retire_requests",
            "health.retire requests for removed targets, by outcome",
            m.retire_requests.clone(),
        );
        registry.register(
            "kv_ready",
            "1 while KV vitals_targets is being watched",
            m.kv_ready.clone(),
        );
        registry.register(
            "nats_connected",
            "1 while connected to NATS",
            m.nats_connected.clone(),
        );
        Self { registry, ..m }
    }

    pub fn refused(&self, reason: RefusalReason) {
        self.targets_refused
            .get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            })
            .inc();
    }

    pub fn probed(&self, failure: Option<Failure>, seconds: f64) {
        self.probe_seconds.observe(seconds);
        let result = if failure.is_some() { "failed" } else { "ok" };
        self.probes.get_or_create(&ResultLabel { result }).inc();
        if let Some(f) = failure {
            self.failures
                .get_or_create(&ReasonLabel { reason: f.reason() })
                .inc();
        }
    }

    pub fn retire(&self, outcome: &'static str) {
        self.retire_requests
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics");
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_is_there_from_the_start() {
        let m = Metrics::new();
        m.probed(Some(Failure::Status(503)), 0.01);
        m.refused(RefusalReason::UnknownField);
        let text = m.encode();
        for series in [
            r#"vitals_prober_probes_total{result="failed"} 1"#,
            r#"vitals_prober_probes_total{result="ok"} 0"#,
            r#"vitals_prober_probe_failures_total{reason="status"} 1"#,
            r#"vitals_prober_probe_failures_total{reason="timeout"} 0"#,
            r#"vitals_prober_targets_refused_total{reason="unknown_field"} 1"#,
            r#"vitals_prober_targets_refused_total{reason="bad_name"} 0"#,
            "vitals_prober_probes_in_flight 0",
            "vitals_prober_targets_active 0",
            "vitals_prober_probe_duration_seconds_count 1",
        ] {
            assert!(text.contains(series), "{series} missing from\n{text}");
        }
    }
}
