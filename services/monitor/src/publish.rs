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
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Outbound>,
    metrics: Arc<Metrics>,
}

impl Outbox {
    pub fn new(capacity: usize, metrics: Arc<Metrics>) -> (Self, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self { tx, metrics }, rx)
    }

    pub fn send(&self, item: Outbound) {
        if self.tx.try_send(item).is_err() {
            self.metrics.publish_drops.inc();
        }
    }
}

/// Publishes until the outbox is closed and drained. KV writes go to the coalescing writer.
pub async fn run_publisher(
    client: async_nats::Client,
    mut rx: mpsc::Receiver<Outbound>,
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
