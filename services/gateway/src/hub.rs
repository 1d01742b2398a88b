//! Where the NATS feed meets the clients: the view, the broadcast of pre-serialised
//! frames, and a cache of the serialised snapshot.
//!
//! The feed applies an update and broadcasts it under the view's write lock; a client
//! joins (subscribes and takes its snapshot) under the read lock. So a client's snapshot
//! is exactly the state before the first frame it receives: nothing lost, nothing twice.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use tokio::sync::broadcast;
use vitals_protocol::{FeedMessage, GatewayState, ServiceState, Snapshot};
use vitals_runtime::Clock;

use crate::metrics::Metrics;
use crate::view::{Update, View};

/// A message body serialised once for every client: the JSON object without its opening
/// brace, so a connection writes `{"seq":N,` and then these bytes.
pub type Body = Arc<str>;

#[derive(Debug, Clone)]
pub enum Out {
    /// A frame and when its cause arrived from NATS (for the delivery-time histogram).
    Frame(Body, Instant),
    /// The view was replaced (e.g. after a NATS reconnect): every client takes a fresh snapshot.
    Resync,
}

pub struct Hub {
    view: RwLock<View>,
    tx: broadcast::Sender<Out>,
    /// (view version, resync flag) -> serialised snapshot body.
    cache: Mutex<Option<(u64, bool, Body)>>,
    clock: Clock,
    metrics: Arc<Metrics>,
    /// True once the view holds a first snapshot (from the monitor, KV, or "none").
    synced: tokio::sync::watch::Sender<bool>,
}

/// The JSON of `msg` without its opening `{` (a FeedMessage is always a non-empty object).
pub fn encode(msg: &FeedMessage) -> Body {
    let json = serde_json::to_string(msg).unwrap_or_else(|_| "{\"type\":\"error\"}".into());
    Arc::from(json.strip_prefix('{').unwrap_or(&json))
}

/// Prepends the connection's sequence number to a shared body.
pub fn frame(seq: u64, body: &str) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(body.len() + 24);
    // Writing into a String cannot fail; no temporary string for the number.
    let _ = write!(s, "{{\"seq\":{seq},");
    s.push_str(body);
    s
}

impl Hub {
    pub fn new(buffer: usize, clock: Clock, metrics: Arc<Metrics>) -> Self {
        let (tx, _) = broadcast::channel(buffer.max(16));
        Self {
            view: RwLock::new(View::new(clock.now_ms())),
            tx,
            cache: Mutex::new(None),
            clock,
            metrics,
            synced: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Waits (at most `timeout`) until the view holds a first snapshot, so a client that
    /// connects while the gateway starts does not get an empty view it would take as real.
    pub async fn wait_synced(&self, timeout: std::time::Duration) {
        let mut rx = self.synced.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|s| *s)).await;
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Applies a live update; relays it if it changed the view.
    pub fn publish(&self, update: Update) {
        let Ok(mut view) = self.view.write() else {
            return;
        };
        if view.apply(&update, self.clock.now_ms()) {
            let _ = self
                .tx
                .send(Out::Frame(encode(&update.into_message()), Instant::now()));
        }
    }

    /// Installs a fresh snapshot, replays what arrived while it was fetched, marks NATS as
    /// connected and tells every client to take a fresh snapshot.
    pub fn replace(&self, services: Vec<ServiceState>, source: &str, buffered: Vec<Update>) {
        let Ok(mut view) = self.view.write() else {
            return;
        };
        let now = self.clock.now_ms();
        view.replace(services, source, now);
        for update in &buffered {
            view.apply(update, now);
        }
        if let Some(state) = view.set_connected(true, now) {
            let _ = self.tx.send(Out::Frame(
                encode(&FeedMessage::Gateway { data: state }),
                Instant::now(),
            ));
        }
        let _ = self.tx.send(Out::Resync);
        self.synced.send_replace(true);
    }

    /// Records losing NATS and tells every client at once.
    pub fn disconnected(&self) {
        let Ok(mut view) = self.view.write() else {
            return;
        };
        if let Some(state) = view.set_connected(false, self.clock.now_ms()) {
            let _ = self.tx.send(Out::Frame(
                encode(&FeedMessage::Gateway { data: state }),
                Instant::now(),
            ));
        }
    }

    /// A new (or resyncing) client: its receiver and its snapshot, taken together.
    pub fn join(&self, resync: bool) -> (broadcast::Receiver<Out>, Body) {
        let Ok(view) = self.view.read() else {
            return (
                self.tx.subscribe(),
                encode(&FeedMessage::Snapshot(View::new(0).snapshot(resync, 0))),
            );
        };
        let rx = self.tx.subscribe();
        (rx, self.snapshot_body(&view, resync))
    }

    fn snapshot_body(&self, view: &View, resync: bool) -> Body {
        let version = view.version();
        if let Ok(cache) = self.cache.lock()
            && let Some((v, r, body)) = cache.as_ref()
            && *v == version
            && *r == resync
        {
            return body.clone();
        }
        self.metrics.snapshot_encodes.inc();
        let body = encode(&FeedMessage::Snapshot(
            view.snapshot(resync, self.clock.now_ms()),
        ));
        if let Ok(mut cache) = self.cache.lock() {
            *cache = Some((version, resync, body.clone()));
        }
        body
    }

    pub fn status(&self) -> Snapshot {
        let now = self.clock.now_ms();
        match self.view.read() {
            Ok(v) => v.as_monitor_snapshot(now),
            Err(_) => View::new(now).as_monitor_snapshot(now),
        }
    }

    pub fn gateway_state(&self) -> GatewayState {
        match self.view.read() {
            Ok(v) => v.gateway().clone(),
            Err(_) => View::new(0).gateway().clone(),
        }
    }

    pub fn receivers(&self) -> usize {
        self.tx.receiver_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitals_protocol::{ServiceName, Status, StatusChange};

    fn change(at_ms: u64, status: Status) -> Update {
        Update::Status(StatusChange {
            service: ServiceName::parse("a").unwrap(),
            status,
            previous: Status::Unknown,
            at_ms,
            reasons: vec![],
        })
    }

    #[test]
    fn frames_splice_the_sequence_into_a_shared_body() {
        let body = encode(&FeedMessage::Gateway {
            data: GatewayState {
                nats_connected: true,
                at_ms: 1,
                source: "kv".into(),
                live: true,
                problem: None,
            },
        });
        let text = frame(7, &body);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["seq"], 7);
        assert_eq!(v["type"], "gateway");
        assert_eq!(v["data"]["source"], "kv");
    }

    #[test]
    fn a_joining_client_sees_each_change_exactly_once() {
        let hub = Hub::new(64, Clock::new(), Arc::new(Metrics::new()));
        hub.publish(change(1, Status::Healthy));
        let (mut rx, snap) = hub.join(false);
        assert!(snap.contains("\"HEALTHY\""));
        hub.publish(change(2, Status::Down));
        hub.publish(change(2, Status::Down)); // repeated: not relayed
        let Ok(Out::Frame(f, _)) = rx.try_recv() else {
            panic!()
        };
        assert!(f.contains("\"DOWN\""));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn the_snapshot_is_serialised_once_per_version() {
        let metrics = Arc::new(Metrics::new());
        let hub = Hub::new(64, Clock::new(), metrics.clone());
        for _ in 0..100 {
            let _ = hub.join(false);
        }
        assert_eq!(metrics.snapshot_encodes.get(), 1);
        hub.publish(change(1, Status::Healthy));
        let _ = hub.join(false);
        assert_eq!(metrics.snapshot_encodes.get(), 2);
    }

    #[test]
    fn replace_marks_connected_and_asks_everyone_to_resync() {
        let hub = Hub::new(64, Clock::new(), Arc::new(Metrics::new()));
        let (mut rx, _) = hub.join(false);
        hub.replace(vec![], "monitor", vec![change(5, Status::Healthy)]);
        let Ok(Out::Frame(f, _)) = rx.try_recv() else {
            panic!()
        };
        assert!(f.contains("\"nats_connected\":true"));
        assert!(matches!(rx.try_recv(), Ok(Out::Resync)));
        assert_eq!(hub.status().services.len(), 1, "buffered update replayed");
        hub.disconnected();
        let Ok(Out::Frame(f, _)) = rx.try_recv() else {
            panic!()
        };
        assert!(f.contains("\"nats_connected\":false"));
    }
}
