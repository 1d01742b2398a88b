//! Where the NATS feed meets the clients: the view, the broadcast of pre-serialised
//! frames, and the shared serialised snapshot.
//!
//! The feed applies an update, broadcasts it and records it in a ring of recent frames,
//! all under the view's write lock; a client joins (subscribes) under the read lock. A
//! joining client gets the snapshot encoded at some version V (shared by every client,
//! encoded at most once per version, never under the lock) plus the recent frames after
//! V up to the version at which it subscribed. So a client's snapshot plus that catch-up
//! is exactly the state before the first frame it receives: nothing lost, nothing twice.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::broadcast;
use vitals_protocol::{FeedMessage, GatewayState, MonitorHeartbeat, ServiceState, Snapshot};
use vitals_runtime::Clock;

use crate::metrics::Metrics;
use crate::view::{Captured, Update, View};

/// A message body serialised once for every client: the JSON object without its opening
/// brace, so a connection writes `{"seq":N,` and then these bytes.
pub type Body = Bytes;

/// Recent frames kept so a joining client can reuse a snapshot encoded a little earlier
/// (a resync storm then encodes once, not once per client).
pub const RECENT: usize = 4_096;
/// A cached snapshot of an older version than the view's, encoded longer ago than this, is
/// not reused (encoded afresh instead): a joiner gets a snapshot of about now (its `at_ms`
/// is when it was encoded) rather than a long catch-up.
pub const CACHE_AGE: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Debug, Clone)]
pub enum Out {
    /// A frame and when its cause arrived from NATS (for the delivery-time histogram).
    Frame(Body, Instant),
    /// The view was replaced (e.g. after a NATS reconnect): every client takes a fresh snapshot.
    Resync,
}

/// What a joining client sends first: the shared snapshot, then the frames it misses.
pub struct Joined {
    pub rx: broadcast::Receiver<Out>,
    /// The snapshot's fields after `"type":"snapshot","resync":..,` (see [`snapshot_prefix`]).
    pub snapshot: Bytes,
    /// Frames between the snapshot's version and the receiver's start, oldest first.
    pub catch_up: Vec<Body>,
}

/// The frames broadcast since version `base` (each bumped the version by one: the
/// newest is the view's current version) and the last encoded snapshot.
struct Recent {
    base: u64,
    frames: VecDeque<Body>,
    /// (version, encoded snapshot, when encoded).
    cached: Option<(u64, Bytes, Instant)>,
}

pub struct Hub {
    view: RwLock<View>,
    tx: broadcast::Sender<Out>,
    recent: Mutex<Recent>,
    /// Single flight: the encoding in progress, if any. Joiners wait for it (all woken at
    /// once when it is done, not handed a lock one by one) and take its result.
    encoding: Mutex<Option<tokio::sync::watch::Receiver<bool>>>,
    clock: Clock,
    metrics: Arc<Metrics>,
    /// True once the view holds a first snapshot (from the monitor, KV, or "none").
    synced: tokio::sync::watch::Sender<bool>,
}

/// The JSON of `msg` without its opening `{` (a FeedMessage is always a non-empty object).
pub fn encode(msg: &FeedMessage) -> Body {
    strip_brace(serde_json::to_vec(msg).unwrap_or_else(|_| b"{\"type\":\"error\"}".to_vec()))
}

fn strip_brace(json: Vec<u8>) -> Bytes {
    let bytes = Bytes::from(json);
    if bytes.first() == Some(&b'{') {
        bytes.slice(1..)
    } else {
        bytes
    }
}

/// A snapshot's fields in FeedSnapshot's order, minus `resync` (per client, in the prefix).
#[derive(Serialize)]
struct SnapshotFields<'a> {
    at_ms: u64,
    gateway: &'a GatewayState,
    monitor: &'a Option<MonitorHeartbeat>,
    monitor_seen_ms: Option<u64>,
    services: &'a [Arc<ServiceState>],
}

fn encode_snapshot(c: &Captured, now_ms: u64) -> Bytes {
    let fields = SnapshotFields {
        at_ms: now_ms,
        gateway: &c.gateway,
        monitor: &c.monitor,
        monitor_seen_ms: c.monitor_seen_ms,
        services: &c.services,
    };
    strip_brace(serde_json::to_vec(&fields).unwrap_or_else(|_| b"{}".to_vec()))
}

/// What a connection writes before a shared frame body.
pub fn frame_prefix(seq: u64) -> String {
    format!("{{\"seq\":{seq},")
}

/// What a connection writes before the shared snapshot body.
pub fn snapshot_prefix(seq: u64, resync: bool) -> String {
    format!("{{\"seq\":{seq},\"type\":\"snapshot\",\"resync\":{resync},")
}

impl Hub {
    pub fn new(buffer: usize, clock: Clock, metrics: Arc<Metrics>) -> Self {
        let (tx, _) = broadcast::channel(buffer.max(16));
        Self {
            view: RwLock::new(View::new(clock.now_ms())),
            tx,
            recent: Mutex::new(Recent {
                base: 0,
                frames: VecDeque::new(),
                cached: None,
            }),
            encoding: Mutex::new(None),
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

    /// Broadcasts a frame that bumped the view's version by one, and remembers it.
    /// Called with the view's write lock held.
    fn send_frame(&self, body: Body) {
        if let Ok(mut recent) = self.recent.lock() {
            if recent.frames.len() == RECENT {
                recent.frames.pop_front();
                recent.base += 1;
            }
            recent.frames.push_back(body.clone());
        }
        let _ = self.tx.send(Out::Frame(body, Instant::now()));
    }

    /// Applies a live update; relays it if it changed the view.
    pub fn publish(&self, update: Update) {
        let Ok(mut view) = self.view.write() else {
            return;
        };
        if view.apply(&update, self.clock.now_ms()) {
            self.send_frame(encode(&update.into_message()));
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
        // Versions before this point cannot be caught up on by frames: start afresh.
        if let Ok(mut recent) = self.recent.lock() {
            recent.base = view.version();
            recent.frames.clear();
            recent.cached = None;
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
            self.send_frame(encode(&FeedMessage::Gateway { data: state }));
        }
    }

    /// Records whether the feed keeps the view current (`problem` says why not) and tells
    /// every client when that changes.
    pub fn set_live(&self, problem: Option<String>) {
        let Ok(mut view) = self.view.write() else {
            return;
        };
        if let Some(state) = view.set_live(problem, self.clock.now_ms()) {
            self.send_frame(encode(&FeedMessage::Gateway { data: state }));
        }
    }

    /// A new (or resyncing) client: its receiver and its snapshot, taken together.
    pub async fn join(&self) -> Joined {
        loop {
            if let Some(joined) = self.join_cached() {
                return joined;
            }
            let running = match self.encoding.lock() {
                Ok(mut flight) => match flight.as_ref() {
                    Some(running) => Some(running.clone()),
                    None => {
                        let (done, running) = tokio::sync::watch::channel(false);
                        *flight = Some(running);
                        drop(flight);
                        return self.encode_and_join(done);
                    }
                },
                Err(_) => None,
            };
            match running {
                // Woken when it is done (or abandoned: then someone else encodes).
                Some(mut running) => {
                    let _ = running.wait_for(|done| *done).await;
                }
                None => return self.encode_and_join(tokio::sync::watch::channel(false).0),
            }
        }
    }

    /// Encodes the current view for this joiner and caches it for the others; no await
    /// in here, so a flight once started always finishes.
    fn encode_and_join(&self, done: tokio::sync::watch::Sender<bool>) -> Joined {
        let (rx, captured) = match self.view.read() {
            Ok(view) => (self.tx.subscribe(), view.capture()),
            Err(_) => (self.tx.subscribe(), View::new(0).capture()),
        };
        // Encoded outside the lock: the feed's writer never waits for it.
        self.metrics.snapshot_encodes.inc();
        let body = encode_snapshot(&captured, self.clock.now_ms());
        if let Ok(mut recent) = self.recent.lock()
            && recent
                .cached
                .as_ref()
                .is_none_or(|(v, _, _)| *v < captured.version)
        {
            recent.cached = Some((captured.version, body.clone(), Instant::now()));
        }
        if let Ok(mut flight) = self.encoding.lock() {
            *flight = None;
        }
        done.send_replace(true);
        Joined {
            rx,
            snapshot: body,
            catch_up: Vec::new(),
        }
    }

    /// Joins on the cached snapshot when the recent frames cover what came after it.
    fn join_cached(&self) -> Option<Joined> {
        let view = self.view.read().ok()?;
        let recent = self.recent.lock().ok()?;
        let (version, body, encoded) = recent.cached.as_ref()?;
        let now = view.version();
        debug_assert_eq!(recent.base + recent.frames.len() as u64, now);
        // The current version is always reused (encoded at most once per version); an
        // older one only while recent, with the frames since.
        let current = *version == now;
        if *version < recent.base || *version > now || (!current && encoded.elapsed() > CACHE_AGE) {
            return None;
        }
        let skip = (*version - recent.base) as usize;
        Some(Joined {
            rx: self.tx.subscribe(),
            snapshot: body.clone(),
            catch_up: recent.frames.iter().skip(skip).cloned().collect(),
        })
    }

    pub fn status(&self) -> Snapshot {
        let now = self.clock.now_ms();
        match self.view.read() {
            Ok(v) => v.as_monitor_snapshot(now),
            Err(_) => View::new(now).as_monitor_snapshot(now),
        }
    }

    /// Sets what every snapshot tells the dashboard about health URLs it may poll.
    pub fn set_health_origins(&self, origins: Vec<String>) {
        if let Ok(mut v) = self.view.write() {
            v.set_health_origins(origins);
        }
    }

    /// Whether the view holds this alert as firing (an ack needs it to).
    pub fn is_firing(&self, alert_id: &str) -> bool {
        self.view.read().is_ok_and(|v| v.is_firing(alert_id))
    }

    pub fn gateway_state(&self) -> GatewayState {
        match self.view.read() {
            Ok(v) => v.gateway().clone(),
            Err(_) => View::new(0).gateway().clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitals_protocol::{ServiceName, Status, StatusChange};

    fn change(svc: &str, at_ms: u64, status: Status) -> Update {
        Update::Status(StatusChange {
            service: ServiceName::parse(svc).unwrap(),
            status,
            previous: Status::Unknown,
            at_ms,
            reasons: vec![],
        })
    }

    fn text(prefix: String, body: &[u8]) -> String {
        prefix + std::str::from_utf8(body).unwrap()
    }

    fn frames(rx: &mut broadcast::Receiver<Out>) -> Vec<Body> {
        let mut out = Vec::new();
        while let Ok(o) = rx.try_recv() {
            if let Out::Frame(b, _) = o {
                out.push(b);
            }
        }
        out
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
                health_origins: Vec::new(),
            },
        });
        let v: serde_json::Value = serde_json::from_str(&text(frame_prefix(7), &body)).unwrap();
        assert_eq!(v["seq"], 7);
        assert_eq!(v["type"], "gateway");
        assert_eq!(v["data"]["source"], "kv");
    }

    /// The shared body behind a client's prefix is exactly the view's FeedSnapshot.
    #[tokio::test]
    async fn the_spliced_snapshot_is_the_views_snapshot() {
        let hub = Hub::new(64, Clock::new(), Arc::new(Metrics::new()));
        hub.publish(change("a", 1, Status::Healthy));
        hub.publish(change("b", 2, Status::Down));
        let joined = hub.join().await;
        for resync in [false, true] {
            let t = text(snapshot_prefix(3, resync), &joined.snapshot);
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            assert_eq!(v["seq"], 3);
            let msg: FeedMessage = serde_json::from_value(v).unwrap();
            let FeedMessage::Snapshot(snap) = msg else {
                panic!("{t}")
            };
            let want = hub.view.read().unwrap().snapshot(resync, snap.at_ms);
            assert_eq!(snap, want);
        }
    }

    /// A client joining on a snapshot cached at any earlier version, at any later cut,
    /// gets exactly the frames after the snapshot: catch-up then live, none lost or twice.
    #[tokio::test]
    async fn a_joining_client_sees_each_change_exactly_once_at_every_cut() {
        let updates: Vec<Update> = (0..12)
            .map(|i| {
                let status = if i % 2 == 0 {
                    Status::Healthy
                } else {
                    Status::Down
                };
                change(&format!("s{}", i % 3), 10 + i, status)
            })
            .collect();
        for cached_at in 0..=updates.len() {
            for join_at in cached_at..=updates.len() {
                let metrics = Arc::new(Metrics::new());
                let hub = Hub::new(64, Clock::new(), metrics.clone());
                let (_keep, mut all) = {
                    let rx = hub.tx.subscribe();
                    (hub.tx.clone(), rx)
                };
                for u in &updates[..cached_at] {
                    hub.publish(u.clone());
                }
                let first = hub.join().await;
                assert!(first.catch_up.is_empty());
                for u in &updates[cached_at..join_at] {
                    hub.publish(u.clone());
                }
                let mut joined = hub.join().await;
                assert_eq!(metrics.snapshot_encodes.get(), 1, "the cache was reused");
                assert_eq!(joined.snapshot, first.snapshot);
                for u in &updates[join_at..] {
                    hub.publish(u.clone());
                }
                let everything = frames(&mut all);
                let mut got = joined.catch_up.clone();
                got.extend(frames(&mut joined.rx));
                assert_eq!(
                    got,
                    everything[cached_at..],
                    "cached {cached_at} join {join_at}"
                );
            }
        }
    }

    #[tokio::test]
    async fn the_snapshot_is_encoded_once_until_the_recent_frames_no_longer_cover_it() {
        let metrics = Arc::new(Metrics::new());
        let hub = Hub::new(64, Clock::new(), metrics.clone());
        for _ in 0..100 {
            let _ = hub.join().await;
        }
        assert_eq!(metrics.snapshot_encodes.get(), 1);
        hub.publish(change("a", 1, Status::Healthy));
        assert_eq!(hub.join().await.catch_up.len(), 1);
        assert_eq!(metrics.snapshot_encodes.get(), 1);
        for i in 0..RECENT as u64 {
            hub.publish(change("a", 2 + i, Status::Healthy));
        }
        let joined = hub.join().await;
        assert!(joined.catch_up.is_empty());
        assert_eq!(metrics.snapshot_encodes.get(), 2);
        hub.replace(vec![], "monitor", vec![]);
        let _ = hub.join().await;
        assert_eq!(
            metrics.snapshot_encodes.get(),
            3,
            "a replaced view is encoded anew"
        );
    }

    /// A resync storm: every client that joins at once shares one encoding.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_joiners_share_one_encoding() {
        let metrics = Arc::new(Metrics::new());
        let hub = Arc::new(Hub::new(64, Clock::new(), metrics.clone()));
        for i in 0..2_000 {
            hub.publish(change(&format!("s{i}"), 1, Status::Healthy));
        }
        let joins: Vec<_> = (0..200)
            .map(|_| {
                let hub = hub.clone();
                tokio::spawn(async move { hub.join().await.snapshot.len() })
            })
            .collect();
        for j in joins {
            assert!(j.await.unwrap() > 2_000 * 20);
        }
        assert_eq!(metrics.snapshot_encodes.get(), 1);
    }

    #[tokio::test]
    async fn replace_marks_connected_and_asks_everyone_to_resync() {
        let hub = Hub::new(64, Clock::new(), Arc::new(Metrics::new()));
        let mut rx = hub.join().await.rx;
        hub.replace(vec![], "monitor", vec![change("a", 5, Status::Healthy)]);
        let Ok(Out::Frame(f, _)) = rx.try_recv() else {
            panic!()
        };
        assert!(String::from_utf8_lossy(&f).contains("\"nats_connected\":true"));
        assert!(matches!(rx.try_recv(), Ok(Out::Resync)));
        assert_eq!(hub.status().services.len(), 1, "buffered update replayed");
        hub.disconnected();
        let Ok(Out::Frame(f, _)) = rx.try_recv() else {
            panic!()
        };
        assert!(String::from_utf8_lossy(&f).contains("\"nats_connected\":false"));
        hub.set_live(Some("subscription ended".into()));
        let Ok(Out::Frame(f, _)) = rx.try_recv() else {
            panic!()
        };
        let f = String::from_utf8_lossy(&f).into_owned();
        assert!(
            f.contains("\"live\":false") && f.contains("subscription ended"),
            "{f}"
        );
        assert!(!hub.gateway_state().live);
    }
}
