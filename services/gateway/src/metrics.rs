//! The gateway's counters at `/metrics` (OpenMetrics text), one registry per instance.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabel {
    pub op: &'static str,
    pub outcome: &'static str,
}

/// Why an upgrade or API call was refused.
pub const REFUSALS: [&str; 4] = ["origin", "token", "capacity", "operator_token"];
/// Why the monitor's snapshot could not be used (then KV is read instead).
pub const SNAPSHOT_FAILURES: [&str; 4] = ["timeout", "request", "error_reply", "invalid"];
/// Why a client was dropped.
pub const DROPS: [&str; 5] = ["write_timeout", "idle", "closed", "error", "too_large"];

pub struct Metrics {
    registry: Registry,
    pub clients: Gauge,
    pub connections: Counter,
    pub messages_out: Counter,
    pub bytes_out: Counter,
    pub resyncs: Counter,
    pub drops: Family<ReasonLabel, Counter>,
    pub refusals: Family<ReasonLabel, Counter>,
    pub client_messages_ignored: Counter,
    pub feed_in: Counter,
    pub feed_invalid: Counter,
    pub feed_slow_consumer: Counter,
    pub nats_connected: Gauge,
    pub snapshot_fallbacks: Counter,
    pub snapshot_encodes: Counter,
    pub snapshot_failures: Family<ReasonLabel, Counter>,
    pub sync_failures: Counter,
    pub subscription_ends: Counter,
    pub history_reads: Counter,
    pub history_cache_hits: Counter,
    pub retire_requests: Family<ReasonLabel, Counter>,
    /// `/api/targets` requests, by operation and outcome.
    pub target_requests: Family<TargetLabel, Counter>,
    /// `/api/silences` and `/api/alerts/<id>/ack` requests, by operation and outcome.
    pub silence_requests: Family<TargetLabel, Counter>,
    /// `POST /api/inbox` notifications, by outcome.
    pub inbox_posts: Family<ReasonLabel, Counter>,
    /// From a message's arrival on NATS to its frame written to a client's socket (the
    /// oldest frame of each batch written), seconds.
    pub delivery_seconds: Histogram,
}

impl Metrics {
    pub fn new() -> Self {
        let m = Self {
            registry: Registry::default(),
            clients: Gauge::default(),
            connections: Counter::default(),
            messages_out: Counter::default(),
            bytes_out: Counter::default(),
            resyncs: Counter::default(),
            drops: Family::default(),
            refusals: Family::default(),
            client_messages_ignored: Counter::default(),
            feed_in: Counter::default(),
            feed_invalid: Counter::default(),
            feed_slow_consumer: Counter::default(),
            nats_connected: Gauge::default(),
            snapshot_fallbacks: Counter::default(),
            snapshot_encodes: Counter::default(),
            snapshot_failures: Family::default(),
            sync_failures: Counter::default(),
            subscription_ends: Counter::default(),
            history_reads: Counter::default(),
            history_cache_hits: Counter::default(),
            retire_requests: Family::default(),
            target_requests: Family::default(),
            silence_requests: Family::default(),
            inbox_posts: Family::default(),
            delivery_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
        };
        for reason in REFUSALS {
            let _ = m.refusals.get_or_create(&ReasonLabel { reason });
        }
        for reason in DROPS {
            let _ = m.drops.get_or_create(&ReasonLabel { reason });
        }
        for reason in ["ok", "bad_request"] {
            let _ = m.inbox_posts.get_or_create(&ReasonLabel { reason });
        }
        for reason in SNAPSHOT_FAILURES {
            let _ = m.snapshot_failures.get_or_create(&ReasonLabel { reason });
        }
        let mut r = Registry::with_prefix("vitals_gateway");
        r.register("clients", "WebSocket clients connected", m.clients.clone());
        r.register(
            "connections",
            "WebSocket connections accepted",
            m.connections.clone(),
        );
        r.register(
            "messages_out",
            "Frames sent to clients",
            m.messages_out.clone(),
        );
        r.register(
            "bytes_out",
            "Bytes of frames sent to clients",
            m.bytes_out.clone(),
        );
        r.register(
            "resyncs",
            "Snapshots sent to replace missed messages",
            m.resyncs.clone(),
        );
        r.register(
            "client_drops",
            "Clients disconnected by the gateway, by reason",
            m.drops.clone(),
        );
        r.register(
            "refusals",
            "Upgrades and API calls refused, by reason",
            m.refusals.clone(),
        );
        r.register(
            "client_messages_ignored",
            "Client messages that were not a valid request",
            m.client_messages_ignored.clone(),
        );
        r.register(
            "feed_messages",
            "Messages received from NATS",
            m.feed_in.clone(),
        );
        r.register(
            "feed_invalid",
            "NATS messages that did not parse",
            m.feed_invalid.clone(),
        );
        r.register(
            "feed_slow_consumer_drops",
            "NATS messages the client dropped because the gateway read too slowly",
            m.feed_slow_consumer.clone(),
        );
        r.register(
            "nats_connected",
            "1 while connected to NATS",
            m.nats_connected.clone(),
        );
        r.register(
            "snapshot_fallbacks",
            "Times the view came from KV because the monitor did not answer",
            m.snapshot_fallbacks.clone(),
        );
        r.register(
            "snapshot_encodes",
            "Snapshots serialised",
            m.snapshot_encodes.clone(),
        );
        r.register(
            "snapshot_failures",
            "Monitor snapshot requests that gave no usable snapshot, by reason",
            m.snapshot_failures.clone(),
        );
        r.register(
            "sync_failures",
            "Snapshot syncs that failed (the task panicked) and were retried",
            m.sync_failures.clone(),
        );
        r.register(
            "subscription_ends",
            "Times the subscription to health.> ended and was renewed",
            m.subscription_ends.clone(),
        );
        r.register(
            "history_reads",
            "History requests that read JetStream (the others shared a read)",
            m.history_reads.clone(),
        );
        r.register(
            "history_cache_hits",
            "History requests answered from a recent or in-flight read",
            m.history_cache_hits.clone(),
        );
        r.register(
            "retire_requests",
            "DELETE /api/services requests, by outcome",
            m.retire_requests.clone(),
        );
        r.register(
            "target_requests",
            "/api/targets requests, by operation (list, put, delete) and outcome",
            m.target_requests.clone(),
        );
        r.register(
            "silence_requests",
            "/api/silences and /api/alerts/<id>/ack requests, by operation (list, create, expire, ack) and outcome",
            m.silence_requests.clone(),
        );
        r.register(
            "inbox_posts",
            "Notifications posted to /api/inbox, by outcome (ok, bad_request, too_large, unauthorized)",
            m.inbox_posts.clone(),
        );
        r.register(
            "delivery_seconds",
            "From arrival on NATS to the frame written to a client's socket",
            m.delivery_seconds.clone(),
        );
        Self { registry: r, ..m }
    }

    pub fn refused(&self, reason: &'static str) {
        self.refusals.get_or_create(&ReasonLabel { reason }).inc();
    }

    pub fn dropped(&self, reason: &'static str) {
        self.drops.get_or_create(&ReasonLabel { reason }).inc();
    }

    pub fn snapshot_failed(&self, reason: &'static str) {
        self.snapshot_failures
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    pub fn retire(&self, reason: &'static str) {
        self.retire_requests
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    pub fn target(&self, op: &'static str, outcome: &'static str) {
        self.target_requests
            .get_or_create(&TargetLabel { op, outcome })
            .inc();
    }

    pub fn silence(&self, op: &'static str, outcome: &'static str) {
        self.silence_requests
            .get_or_create(&TargetLabel { op, outcome })
            .inc();
    }

    pub fn inbox(&self, reason: &'static str) {
        self.inbox_posts
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
