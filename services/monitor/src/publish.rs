//! Outbound: events from the engine to NATS subjects (and KV writes), off the hot path.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use vitals_protocol::{MonitorHeartbeat, subjects};

use crate::engine::Event;
use crate::metrics::Metrics;
use crate::store::PendingWrites;

#[derive(Debug)]
pub enum Outbound {
    /// Boxed: a state with a host's figures is large, a heartbeat is not.
    Event(Box<Event>),
    Heartbeat(MonitorHeartbeat),
}

/// The engine's side: never waits. A full queue (NATS away for long) drops and counts.
///
/// Two lanes: summaries (one per service a second, a burst when many are due together)
/// go behind status changes, alerts, heartbeats and KV writes, so a status change never
/// waits for thousands of summaries to be encoded and sent. A summary may therefore leave
/// after a later status change of its service: `health.status.*` is the authority for
/// status, a summary's `status` only a hint (the gateway takes it only for a service it
/// knows nothing of).
#[derive(Clone)]
pub struct Outbox {
    urgent: mpsc::Sender<Outbound>,
    bulk: mpsc::Sender<Outbound>,
    metrics: Arc<Metrics>,
}

/// The publisher's side of the two lanes.
pub struct OutboxReceiver {
    urgent: mpsc::Receiver<Outbound>,
    bulk: mpsc::Receiver<Outbound>,
}

impl OutboxReceiver {
    /// The next item, urgent first; `None` once both lanes are closed and empty.
    async fn recv(&mut self) -> Option<Outbound> {
        tokio::select! {
            biased;
            Some(item) = self.urgent.recv() => Some(item),
            Some(item) = self.bulk.recv() => Some(item),
            else => None,
        }
    }
}

impl Outbox {
    /// Each lane holds up to `capacity` items.
    pub fn new(capacity: usize, metrics: Arc<Metrics>) -> (Self, OutboxReceiver) {
        let (urgent, urgent_rx) = mpsc::channel(capacity.max(1));
        let (bulk, bulk_rx) = mpsc::channel(capacity.max(1));
        (
            Self {
                urgent,
                bulk,
                metrics,
            },
            OutboxReceiver {
                urgent: urgent_rx,
                bulk: bulk_rx,
            },
        )
    }

    pub fn send(&self, item: Outbound) {
        let lane = match &item {
            Outbound::Event(event) if matches!(event.as_ref(), Event::Summary(_)) => &self.bulk,
            _ => &self.urgent,
        };
        if lane.try_send(item).is_err() {
            self.metrics.publish_drops.inc();
        }
    }
}

/// Publishes until the outbox is closed and drained. KV writes go to the coalescing writer.
pub async fn run_publisher(
    client: async_nats::Client,
    mut rx: OutboxReceiver,
    kv_writes: Arc<PendingWrites>,
    metrics: Arc<Metrics>,
) {
    while let Some(item) = rx.recv().await {
        let (subject, payload) = match &item {
            Outbound::Heartbeat(hb) => (subjects::HEARTBEAT.to_owned(), serde_json::to_vec(hb)),
            Outbound::Event(event) => match event.as_ref() {
                Event::Status(c) => (subjects::status(&c.service), serde_json::to_vec(c)),
                Event::Alert(a) => (subjects::alert(&a.service), serde_json::to_vec(a)),
                Event::Summary(s) => (subjects::summary(&s.service), serde_json::to_vec(s)),
                Event::Stored(state) => {
                    if let Err(e) = kv_writes.put(state) {
                        metrics.encode_errors.inc();
                        tracing::error!(service = %state.service, error = %e, "cannot encode a state for KV");
                    }
                    continue;
                }
                Event::Forget(name) => {
                    kv_writes.delete(name.as_str());
                    continue;
                }
            },
        };
        let payload = match payload {
            Ok(p) => p,
            Err(e) => {
                metrics.encode_errors.inc();
                tracing::error!(subject, error = %e, "cannot encode an event");
                continue;
            }
        };
        match client.publish(subject, Bytes::from(payload)).await {
            Ok(()) => {
                metrics.published.inc();
            }
            Err(e) => {
                metrics.publish_errors.inc();
                tracing::warn!(error = %e, "publish failed");
            }
        }
    }
    // Bounded: during an outage a flush would wait for the server forever.
    let _ = tokio::time::timeout(Duration::from_secs(2), client.flush()).await;
}

#[cfg(test)]
mod tests {
    use vitals_protocol::{Figures, ServiceName, ServiceSummary, Status};

    use super::*;

    fn summary(name: &str) -> Outbound {
        Outbound::Event(Box::new(Event::Summary(ServiceSummary {
            service: ServiceName::parse(name).unwrap(),
            status: Status::Healthy,
            at_ms: 0,
            last_seen_ms: Some(0),
            instance: format!("{name}-1"),
            health_url: String::new(),
            figures: Figures::default(),
            source: Default::default(),
            probe: None,
            host: None,
        })))
    }

    fn forget(name: &str) -> Outbound {
        Outbound::Event(Box::new(Event::Forget(ServiceName::parse(name).unwrap())))
    }

    fn name(item: &Outbound) -> String {
        match item {
            Outbound::Event(e) => match e.as_ref() {
                Event::Summary(s) => format!("summary {}", s.service),
                Event::Forget(n) => format!("forget {n}"),
                other => format!("{other:?}"),
            },
            Outbound::Heartbeat(_) => "heartbeat".into(),
        }
    }

    #[tokio::test]
    async fn urgent_items_overtake_queued_summaries_and_both_lanes_drain() {
        let (outbox, mut rx) = Outbox::new(16, Arc::new(Metrics::new()));
        outbox.send(summary("a"));
        outbox.send(summary("b"));
        outbox.send(forget("c"));
        drop(outbox);
        let mut got = Vec::new();
        while let Some(item) = rx.recv().await {
            got.push(name(&item));
        }
        assert_eq!(got, ["forget c", "summary a", "summary b"]);
    }

    #[tokio::test]
    async fn a_full_lane_drops_and_counts_without_blocking_the_other() {
        let metrics = Arc::new(Metrics::new());
        let (outbox, mut rx) = Outbox::new(1, metrics.clone());
        outbox.send(summary("a"));
        outbox.send(summary("b"));
        outbox.send(forget("c"));
        assert_eq!(metrics.publish_drops.get(), 1);
        drop(outbox);
        let mut got = Vec::new();
        while let Some(item) = rx.recv().await {
            got.push(name(&item));
        }
        assert_eq!(got, ["forget c", "summary a"]);
    }
}
