//! The notifier's own figures at `/metrics` (OpenMetrics text, prefix `vitals_notifier_`).
//! One registry per run; every receiver's series present from the start.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReceiverLabel {
    pub receiver: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

/// Why an event was not turned into notifications.
pub const REFUSAL_REASONS: [&str; 3] = ["not_an_alert_subject", "bad_json", "bad_id"];

type HistFamily = Family<ReceiverLabel, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    /// Alert transitions accepted by a receiver (2xx), per receiver.
    pub sent: Family<ReceiverLabel, Counter>,
    /// Notifications (requests) accepted, per receiver.
    pub requests: Family<ReceiverLabel, Counter>,
    /// Attempts that failed (each one), per receiver.
    pub failed: Family<ReceiverLabel, Counter>,
    pub retried: Family<ReceiverLabel, Counter>,
    pub dead_lettered: Family<ReceiverLabel, Counter>,
    /// Transitions not sent because the receiver already had them (KV vitals_notified).
    pub duplicates_skipped: Family<ReceiverLabel, Counter>,
    /// Firings not sent because silenced or inhibited.
    pub suppressed: Family<ReceiverLabel, Counter>,
    pub repeats: Family<ReceiverLabel, Counter>,
    pub queue_depth: Family<ReceiverLabel, Gauge>,
    pub latency: HistFamily,
    pub refused: Family<ReasonLabel, Counter>,
    pub unrouted: Counter,
    pub events: Counter,
    pub record_errors: Counter,
    pub nats_connected: Gauge,
}

fn latency_histogram() -> Histogram {
    // 1 ms to ~9 h: a receiver down for hours still lands in a bucket.
    Histogram::new(exponential_buckets(0.001, 2.0, 25))
}

impl Metrics {
    pub fn new(receivers: &[String]) -> Self {
        let mut registry = Registry::with_prefix("vitals_notifier");
        let m = Self {
            sent: Family::default(),
            requests: Family::default(),
            failed: Family::default(),
            retried: Family::default(),
            dead_lettered: Family::default(),
            duplicates_skipped: Family::default(),
            suppressed: Family::default(),
            repeats: Family::default(),
            queue_depth: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            refused: Family::default(),
            unrouted: Counter::default(),
            events: Counter::default(),
            record_errors: Counter::default(),
            nats_connected: Gauge::default(),
            registry: Registry::default(),
        };
        for r in receivers {
            let l = ReceiverLabel {
                receiver: r.clone(),
            };
            let _ = m.sent.get_or_create(&l);
            let _ = m.requests.get_or_create(&l);
            let _ = m.failed.get_or_create(&l);
            let _ = m.retried.get_or_create(&l);
            let _ = m.dead_lettered.get_or_create(&l);
            let _ = m.duplicates_skipped.get_or_create(&l);
            let _ = m.suppressed.get_or_create(&l);
            let _ = m.repeats.get_or_create(&l);
            let _ = m.queue_depth.get_or_create(&l);
            let _ = m.latency.get_or_create(&l);
        }
        for reason in REFUSAL_REASONS {
            let _ = m.refused.get_or_create(&ReasonLabel { reason });
        }
        registry.register(
            "sent",
            "Alert transitions a receiver accepted (2xx)",
            m.sent.clone(),
        );
        registry.register(
            "requests",
            "Notifications (HTTP requests) a receiver accepted",
            m.requests.clone(),
        );
        registry.register("failed", "Delivery attempts that failed", m.failed.clone());
        registry.register(
            "retried",
            "Delivery attempts that were retries",
            m.retried.clone(),
        );
        registry.register(
            "dead_lettered",
            "Alert transitions given up on (NOTIFY_DEAD)",
            m.dead_lettered.clone(),
        );
        registry.register(
            "duplicates_skipped",
            "Transitions not sent: the receiver already had them (KV vitals_notified)",
            m.duplicates_skipped.clone(),
        );
        registry.register(
            "suppressed",
            "Firings not sent: silenced or inhibited",
            m.suppressed.clone(),
        );
        registry.register(
            "repeats",
            "Reminders (repeat_s) and Alertmanager re-sends",
            m.repeats.clone(),
        );
        registry.register(
            "queue_depth",
            "Transitions waiting for a receiver",
            m.queue_depth.clone(),
        );
        registry.register(
            "delivery_latency_seconds",
            "From the alert event's at_ms to the receiver's 2xx",
            m.latency.clone(),
        );
        registry.register(
            "refused_events",
            "HEALTH_EVENTS messages that are not alert events (acked, not delivered)",
            m.refused.clone(),
        );
        registry.register(
            "unrouted",
            "Alert events no route matched",
            m.unrouted.clone(),
        );
        registry.register(
            "events",
            "Alert events read from HEALTH_EVENTS",
            m.events.clone(),
        );
        registry.register(
            "record_errors",
            "Deliveries whose KV vitals_notified record could not be written",
            m.record_errors.clone(),
        );
        registry.register(
            "nats_connected",
            "1 while connected to NATS",
            m.nats_connected.clone(),
        );
        Self { registry, ..m }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

pub fn label(receiver: &str) -> ReceiverLabel {
    ReceiverLabel {
        receiver: receiver.to_owned(),
    }
}
