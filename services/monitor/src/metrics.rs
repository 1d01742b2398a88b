//! The monitor's own counters, exposed at `/metrics` (Prometheus text) and summarised
//! in its heartbeat. One registry per monitor instance (no globals), so tests can run
//! several monitors in one process.

use std::collections::BTreeMap;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::engine::connections::ConnOutcome;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use vitals_protocol::{AlertName, RefusalReason, Status};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointReason {
    pub endpoint: &'static str,
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabel {
    pub alert: &'static str,
    pub state: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub samples: Counter,
    pub refusals: Family<ReasonLabel, Counter>,
    pub slow_consumer_drops: Counter,
    pub publish_drops: Counter,
    pub publish_errors: Counter,
    /// Events handed to the NATS client (status, alert, summary, heartbeat): with
    /// `kv_writes` what a benchmark waits for before it stops the clock.
    pub published: Counter,
    pub kv_write_errors: Counter,
    /// KV writes (puts and deletes) the server confirmed.
    pub kv_writes: Counter,
    pub clock_skew: Counter,
    pub transitions: Family<StatusLabel, Counter>,
    pub alerts: Family<AlertLabel, Counter>,
    pub services: Gauge,
    pub nats_connected: Gauge,
    pub reconnects: Counter,
    pub snapshot_requests: Counter,
    pub snapshot_refusals: Family<ReasonLabel, Counter>,
    pub http_refusals: Family<ReasonLabel, Counter>,
    /// NATS requests not served: a reply subject that is not an inbox, or over a rate.
    pub request_refusals: Family<EndpointReason, Counter>,
    /// Replies (snapshot, retire) that could not be sent.
    pub reply_errors: Counter,
    /// A request endpoint's subscription ended while the monitor ran.
    pub request_endpoint_closed: Counter,
    /// Samples an instance skipped (gaps in its `seq`): lost anywhere on the way.
    pub samples_missed: Counter,
    pub retired: Family<ReasonLabel, Counter>,
    /// Events that could not be serialised (a bug, never expected).
    pub encode_errors: Counter,
    /// State writes still pending when the monitor stopped (lost).
    pub kv_unflushed: Counter,
    /// KV entries found unreadable at start (left alone: not restored, not reconciled).
    pub kv_unreadable: Counter,
    /// KV entries read at start only after taking their `null` numbers as 0.
    pub kv_repaired: Counter,
    /// Alert events published at start to make the history agree with the state, by kind.
    pub restart_repairs: Family<ReasonLabel, Counter>,
    pub http_server_failures: Counter,
    /// Time to judge one sample (parse, validate, evaluate), seconds: one observation per
    /// batch of samples taken from the subscription, the batch's average.
    pub eval_seconds: Histogram,
    /// Time the ingest loop spends on one tick (silence, summaries, snapshot), seconds:
    /// samples arriving meanwhile wait, so this bounds what a tick adds to latency.
    pub tick_seconds: Histogram,
    /// Values in KV `vitals_silences` that were refused (invalid), by kind (silence, ack).
    pub silence_refusals: Family<ReasonLabel, Counter>,
    /// Silence and ack requests answered `ok: false`, by endpoint and reason.
    pub silence_request_errors: Family<EndpointReason, Counter>,
    /// Acknowledgements of resolved alerts that could not be deleted (or were dropped
    /// because too many waited).
    pub ack_forget_errors: Counter,
    /// 1 while the KV vitals_silences watch runs.
    pub silences_watching: Gauge,
    /// Connection advisories, by what they did (`down` = a service DOWN at once).
    pub conn_events: Family<OutcomeLabel, Counter>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("vitals_monitor");
        let m = Self {
            samples: Counter::default(),
            refusals: Family::default(),
            slow_consumer_drops: Counter::default(),
            publish_drops: Counter::default(),
            publish_errors: Counter::default(),
            published: Counter::default(),
            kv_write_errors: Counter::default(),
            kv_writes: Counter::default(),
            clock_skew: Counter::default(),
            transitions: Family::default(),
            alerts: Family::default(),
            services: Gauge::default(),
            nats_connected: Gauge::default(),
            reconnects: Counter::default(),
            snapshot_requests: Counter::default(),
            snapshot_refusals: Family::default(),
            http_refusals: Family::default(),
            request_refusals: Family::default(),
            reply_errors: Counter::default(),
            request_endpoint_closed: Counter::default(),
            samples_missed: Counter::default(),
            retired: Family::default(),
            encode_errors: Counter::default(),
            kv_unflushed: Counter::default(),
            kv_unreadable: Counter::default(),
            kv_repaired: Counter::default(),
            restart_repairs: Family::default(),
            http_server_failures: Counter::default(),
            eval_seconds: Histogram::new(exponential_buckets(1e-7, 4.0, 12)),
            tick_seconds: Histogram::new(exponential_buckets(1e-5, 2.0, 16)),
            silence_refusals: Family::default(),
            silence_request_errors: Family::default(),
            ack_forget_errors: Counter::default(),
            silences_watching: Gauge::default(),
            conn_events: Family::default(),
            registry: Registry::default(),
        };
        // Every refusal reason, status and alert appears from the start (as 0), so a
        // dashboard or alert rule never sees a series appear out of nowhere.
        for r in RefusalReason::ALL {
            let _ = m
                .refusals
                .get_or_create(&ReasonLabel { reason: r.as_str() });
        }
        for s in [Status::Healthy, Status::Degraded, Status::Down] {
            let _ = m
                .transitions
                .get_or_create(&StatusLabel { status: s.as_str() });
        }
        for a in AlertName::ALL {
            for state in ["firing", "resolved"] {
                let _ = m.alerts.get_or_create(&AlertLabel {
                    alert: a.as_str(),
                    state,
                });
            }
        }
        registry.register("samples", "Samples accepted", m.samples.clone());
        registry.register(
            "refused_samples",
            "Samples refused, by reason",
            m.refusals.clone(),
        );
        registry.register(
            "slow_consumer_drops",
            "Slow-consumer events from the NATS client (a lower bound of messages dropped; see samples_missed)",
            m.slow_consumer_drops.clone(),
        );
        registry.register(
            "publish_drops",
            "Outbound events dropped because the publish queue was full",
            m.publish_drops.clone(),
        );
        registry.register(
            "publish_errors",
            "Failed publishes",
            m.publish_errors.clone(),
        );
        registry.register(
            "published",
            "Events handed to the NATS client (status, alert, summary, heartbeat)",
            m.published.clone(),
        );
        registry.register(
            "kv_write_errors",
            "Failed KV writes (retried)",
            m.kv_write_errors.clone(),
        );
        registry.register(
            "kv_writes",
            "KV writes (puts and deletes) confirmed by the server",
            m.kv_writes.clone(),
        );
        registry.register(
            "clock_skew_samples",
            "Accepted samples whose ts_ms is more than 5 minutes off the monitor's clock",
            m.clock_skew.clone(),
        );
        registry.register(
            "transitions",
            "Status changes, by new status",
            m.transitions.clone(),
        );
        registry.register(
            "alert_events",
            "Alert events, by alert and state",
            m.alerts.clone(),
        );
        registry.register("services", "Services tracked", m.services.clone());
        registry.register(
            "nats_connected",
            "1 while connected to NATS",
            m.nats_connected.clone(),
        );
        registry.register(
            "nats_reconnects",
            "NATS reconnections",
            m.reconnects.clone(),
        );
        registry.register(
            "snapshot_requests",
            "Snapshot requests served",
            m.snapshot_requests.clone(),
        );
        for reason in ["busy", "no_such_page", "error", "bad_request"] {
            let _ = m.snapshot_refusals.get_or_create(&ReasonLabel { reason });
        }
        for endpoint in [
            "snapshot",
            "retire",
            "silence_create",
            "silence_list",
            "silence_expire",
            "alert_ack",
        ] {
            for reason in ["reply_subject", "asker_rate", "total_rate"] {
                let _ = m
                    .request_refusals
                    .get_or_create(&EndpointReason { endpoint, reason });
            }
        }
        registry.register(
            "request_refusals",
            "NATS requests not served, by endpoint and reason (reply_subject: not an inbox; nothing is published)",
            m.request_refusals.clone(),
        );
        for reason in ["token", "no_operator_token"] {
            let _ = m.http_refusals.get_or_create(&ReasonLabel { reason });
        }
        for reason in ["down_too_long", "request"] {
            let _ = m.retired.get_or_create(&ReasonLabel { reason });
        }
        registry.register(
            "snapshot_refusals",
            "Snapshot requests answered with an error, by reason",
            m.snapshot_refusals.clone(),
        );
        registry.register(
            "http_refusals",
            "HTTP requests refused, by reason",
            m.http_refusals.clone(),
        );
        registry.register(
            "reply_errors",
            "Request replies that could not be sent",
            m.reply_errors.clone(),
        );
        registry.register(
            "request_endpoint_closed",
            "Request endpoints whose subscription ended",
            m.request_endpoint_closed.clone(),
        );
        registry.register(
            "samples_missed",
            "Samples an instance skipped (gaps in its seq), lost anywhere on the way",
            m.samples_missed.clone(),
        );
        registry.register("retired", "Services retired, by why", m.retired.clone());
        registry.register(
            "encode_errors",
            "Events that could not be serialised",
            m.encode_errors.clone(),
        );
        registry.register(
            "kv_unflushed",
            "State writes still pending (lost) when the monitor stopped",
            m.kv_unflushed.clone(),
        );
        registry.register(
            "kv_unreadable",
            "KV entries that could not be read at start (not restored, not reconciled)",
            m.kv_unreadable.clone(),
        );
        registry.register(
            "kv_repaired",
            "KV entries read at start after taking null numbers as 0",
            m.kv_repaired.clone(),
        );
        for outcome in ConnOutcome::ALL {
            let _ = m.conn_events.get_or_create(&OutcomeLabel {
                outcome: outcome.as_str(),
            });
        }
        registry.register(
            "conn_events",
            "Server connect/disconnect advisories, by what they did (down: a service DOWN at once)",
            m.conn_events.clone(),
        );
        for reason in ["resolved_orphan", "announced"] {
            let _ = m.restart_repairs.get_or_create(&ReasonLabel { reason });
        }
        registry.register(
            "restart_repairs",
            "Alert events published at start to reconcile HEALTH_EVENTS with KV, by kind",
            m.restart_repairs.clone(),
        );
        registry.register(
            "http_server_failures",
            "Times the HTTP server died (the monitor then stops)",
            m.http_server_failures.clone(),
        );
        registry.register(
            "eval_seconds",
            "Time to judge one sample",
            m.eval_seconds.clone(),
        );
        registry.register(
            "tick_seconds",
            "Time the ingest loop spends on one tick",
            m.tick_seconds.clone(),
        );
        for reason in ["silence", "ack"] {
            let _ = m.silence_refusals.get_or_create(&ReasonLabel { reason });
        }
        registry.register(
            "silence_refusals",
            "Invalid values in KV vitals_silences (ignored), by kind",
            m.silence_refusals.clone(),
        );
        registry.register(
            "silence_request_errors",
            "Silence and ack requests answered ok:false, by endpoint and reason",
            m.silence_request_errors.clone(),
        );
        registry.register(
            "ack_forget_errors",
            "Acknowledgements of resolved alerts that could not be deleted from KV",
            m.ack_forget_errors.clone(),
        );
        registry.register(
            "silences_watching",
            "1 while the KV vitals_silences watch runs",
            m.silences_watching.clone(),
        );
        Self { registry, ..m }
    }

    pub fn conn_event(&self, outcome: ConnOutcome) {
        self.conn_events
            .get_or_create(&OutcomeLabel {
                outcome: outcome.as_str(),
            })
            .inc();
    }

    pub fn refused(&self, reason: RefusalReason) {
        self.refusals
            .get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            })
            .inc();
    }

    pub fn snapshot_refused(&self, reason: &'static str) {
        self.snapshot_refusals
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    pub fn request_refused(&self, endpoint: &'static str, reason: &'static str) {
        self.request_refusals
            .get_or_create(&EndpointReason { endpoint, reason })
            .inc();
    }

    pub fn http_refused(&self, reason: &'static str) {
        self.http_refusals
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    pub fn refusal_counts(&self) -> BTreeMap<String, u64> {
        RefusalReason::ALL
            .iter()
            .map(|r| {
                let n = self
                    .refusals
                    .get_or_create(&ReasonLabel { reason: r.as_str() })
                    .get();
                (r.as_str().to_owned(), n)
            })
            .collect()
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
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
    fn encodes_every_series_from_the_start() {
        let m = Metrics::new();
        m.refused(RefusalReason::BadName);
        m.samples.inc();
        let text = m.encode();
        assert!(text.contains("vitals_monitor_samples_total 1"), "{text}");
        assert!(text.contains("vitals_monitor_refused_samples_total{reason=\"bad_name\"} 1"));
        assert!(text.contains("vitals_monitor_refused_samples_total{reason=\"invalid_json\"} 0"));
        assert!(text.contains(
            "vitals_monitor_alert_events_total{alert=\"SERVICE_DOWN\",state=\"firing\"} 0"
        ));
        assert_eq!(m.refusal_counts()["bad_name"], 1);
    }
}
