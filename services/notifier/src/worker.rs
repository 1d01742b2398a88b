//! One receiver's task: its FIFO queue, grouping per route (`group_wait`), the dedup check
//! against KV vitals_notified, sending with retries, dead letters, and reminders. A slow
//! or dead receiver only ever holds up its own queue.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use vitals_protocol::silence::AlertId;
use vitals_protocol::{AlertEvent, AlertState, AlertUpdate, DeadLetter, subjects};
use vitals_runtime::Clock;

use crate::acks::Done;
use crate::config::{Kind, Receiver, Route};
use crate::deliver::{self, Failed};
use crate::metrics::{Metrics, label};
use crate::payload;

/// Where an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Read from HEALTH_EVENTS.
    Stream,
    /// An alert KV health_status says fires now, read at start. `deliver`: the durable
    /// was new, so what fires now is notified if it was not yet; otherwise it only
    /// rebuilds the reminders.
    Start { deliver: bool },
}

pub struct Item {
    pub event: AlertEvent,
    pub route: usize,
    pub origin: Origin,
    pub done: Option<Arc<Done>>,
}

impl Item {
    fn finish(&self) {
        if let Some(d) = &self.done {
            d.finish();
        }
    }
}

/// What a worker shares with the others.
pub struct Shared {
    pub routes: Vec<Route>,
    pub notified: kv::Store,
    pub js: jetstream::Context,
    pub client: deliver::Client,
    pub metrics: Arc<Metrics>,
    pub external_url: String,
    pub clock: Clock,
}

/// One transition (or reminder) in a batch.
struct Note {
    event: AlertEvent,
    done: Option<Arc<Done>>,
    /// The KV key written after a 2xx; None for a reminder.
    record: Option<String>,
    origin: Origin,
}

struct Batch {
    deadline: Instant,
    notes: Vec<Note>,
}

/// A delivered firing, for reminders (and Alertmanager re-sends).
struct Tracked {
    event: AlertEvent,
    route: usize,
    every: Duration,
    next_at: Instant,
}

/// The queue's sending half (counts its depth).
#[derive(Clone)]
pub struct Queue {
    tx: mpsc::UnboundedSender<Item>,
    receiver: String,
    metrics: Arc<Metrics>,
}

impl Queue {
    pub fn push(&self, item: Item) {
        self.metrics
            .queue_depth
            .get_or_create(&label(&self.receiver))
            .inc();
        if let Err(e) = self.tx.send(item) {
            // The worker stopped (shutting down): the message stays unacked.
            self.metrics
                .queue_depth
                .get_or_create(&label(&self.receiver))
                .dec();
            drop(e);
        }
    }
}

pub struct Worker {
    rc: Receiver,
    shared: Arc<Shared>,
    rx: mpsc::UnboundedReceiver<Item>,
    /// Keys known written (this run), so most checks skip the KV read.
    recorded: HashSet<String>,
    tracked: HashMap<String, Tracked>,
    batches: BTreeMap<usize, Batch>,
}

/// Most keys remembered in memory before the cache starts over (KV stays the truth).
const MAX_CACHED_KEYS: usize = 200_000;
/// How often reminders are looked for.
const REPEAT_TICK: Duration = Duration::from_secs(1);

pub fn new(rc: Receiver, shared: Arc<Shared>) -> (Queue, Worker) {
    let (tx, rx) = mpsc::unbounded_channel();
    let q = Queue {
        tx,
        receiver: rc.name.clone(),
        metrics: shared.metrics.clone(),
    };
    (
        q,
        Worker {
            rc,
            shared,
            rx,
            recorded: HashSet::new(),
            tracked: HashMap::new(),
            batches: BTreeMap::new(),
        },
    )
}

impl Worker {
    fn lbl(&self) -> crate::metrics::ReceiverLabel {
        label(&self.rc.name)
    }

    pub async fn run(mut self, cancel: CancellationToken) {
        let mut next_repeat = Instant::now() + REPEAT_TICK;
        loop {
            let due = self
                .batches
                .values()
                .map(|b| b.deadline)
                .min()
                .unwrap_or(next_repeat)
                .min(next_repeat);
            tokio::select! {
                biased;
                () = cancel.cancelled() => return,
                () = tokio::time::sleep_until(due) => {
                    let now = Instant::now();
                    let ready: Vec<usize> = self
                        .batches
                        .iter()
                        .filter(|(_, b)| b.deadline <= now)
                        .map(|(r, _)| *r)
                        .collect();
                    for r in ready {
                        if !self.flush(r, &cancel).await {
                            return;
                        }
                    }
                    if next_repeat <= now {
                        self.queue_reminders(now);
                        next_repeat = now + REPEAT_TICK;
                    }
                }
                item = self.rx.recv() => {
                    let Some(item) = item else { return };
                    self.shared.metrics.queue_depth.get_or_create(&self.lbl()).dec();
                    if !self.handle(item, &cancel).await {
                        return;
                    }
                }
            }
        }
    }

    /// Decides what one event means for this receiver. False when cancelled.
    async fn handle(&mut self, item: Item, cancel: &CancellationToken) -> bool {
        let Ok(id) = AlertId::parse(&item.event.id) else {
            item.finish();
            return true;
        };
        // Never two events of one alert in a batch: whatever went before is sent first,
        // so its record is there for this one's decision and the order is kept.
        let holding: Vec<usize> = self
            .batches
            .iter()
            .filter(|(_, b)| b.notes.iter().any(|n| n.event.id == item.event.id))
            .map(|(r, _)| *r)
            .collect();
        for r in holding {
            if !self.flush(r, cancel).await {
                return false;
            }
        }
        let name = self.rc.name.clone();
        match item.event.state {
            AlertState::Firing => {
                if let Some(t) = self.tracked.get_mut(&item.event.id) {
                    t.event.marks = item.event.marks.clone();
                }
                let key = subjects::notified_key(&name, &id, AlertState::Firing);
                let announces = matches!(
                    item.event.update,
                    None | Some(AlertUpdate::Unsilenced) | Some(AlertUpdate::Uninhibited)
                );
                let rebuild_only = item.origin == Origin::Start { deliver: false };
                if !announces || rebuild_only {
                    if rebuild_only && !self.tracked.contains_key(&item.event.id) {
                        match self.is_recorded(&key, cancel).await {
                            Some(true) => self.track(&item.event, item.route),
                            Some(false) => {}
                            None => return false,
                        }
                    }
                    item.finish();
                    return true;
                }
                if !item.event.marks.notifiable() {
                    self.shared
                        .metrics
                        .suppressed
                        .get_or_create(&self.lbl())
                        .inc();
                    item.finish();
                    return true;
                }
                match self.is_recorded(&key, cancel).await {
                    None => return false,
                    Some(true) => {
                        self.shared
                            .metrics
                            .duplicates_skipped
                            .get_or_create(&self.lbl())
                            .inc();
                        if !self.tracked.contains_key(&item.event.id) {
                            self.track(&item.event, item.route);
                        }
                        item.finish();
                        return true;
                    }
                    Some(false) => {}
                }
                self.add(item, Some(key));
            }
            AlertState::Resolved => {
                self.tracked.remove(&item.event.id);
                if !self.rc.send_resolved && self.rc.kind != Kind::Alertmanager {
                    item.finish();
                    return true;
                }
                let fk = subjects::notified_key(&name, &id, AlertState::Firing);
                let rk = subjects::notified_key(&name, &id, AlertState::Resolved);
                match self.is_recorded(&fk, cancel).await {
                    None => return false,
                    // It never heard of the firing: a resolve would be noise.
                    Some(false) => {
                        item.finish();
                        return true;
                    }
                    Some(true) => {}
                }
                match self.is_recorded(&rk, cancel).await {
                    None => return false,
                    Some(true) => {
                        self.shared
                            .metrics
                            .duplicates_skipped
                            .get_or_create(&self.lbl())
                            .inc();
                        item.finish();
                        return true;
                    }
                    Some(false) => {}
                }
                self.add(item, Some(rk));
            }
        }
        true
    }

    fn add(&mut self, item: Item, record: Option<String>) {
        let wait = self
            .shared
            .routes
            .get(item.route)
            .map_or(Duration::ZERO, |r| r.group_wait);
        let batch = self.batches.entry(item.route).or_insert_with(|| Batch {
            deadline: Instant::now() + wait,
            notes: Vec::new(),
        });
        batch.notes.push(Note {
            event: item.event,
            done: item.done,
            record,
            origin: item.origin,
        });
    }

    /// How often a delivered firing is sent again: Alertmanager's `resend_s` (it expires
    /// alerts that are not), or the route's `repeat_s`.
    fn every(&self, route: usize) -> Option<Duration> {
        match self.rc.kind {
            Kind::Alertmanager => Some(self.rc.resend),
            _ => self.shared.routes.get(route).and_then(|r| r.repeat),
        }
    }

    fn track(&mut self, event: &AlertEvent, route: usize) {
        if let Some(every) = self.every(route) {
            self.tracked.insert(
                event.id.clone(),
                Tracked {
                    event: event.clone(),
                    route,
                    every,
                    next_at: Instant::now() + every,
                },
            );
        }
    }

    fn queue_reminders(&mut self, now: Instant) {
        let am = self.rc.kind == Kind::Alertmanager;
        let mut due = Vec::new();
        for t in self.tracked.values_mut() {
            if t.next_at > now {
                continue;
            }
            t.next_at = now + t.every;
            // Alertmanager needs every firing alert re-sent or it ends it; people get
            // reminders only for what nobody acknowledged and nothing explains.
            let remind = am || (t.event.marks.notifiable() && t.event.marks.acked_by.is_none());
            if remind {
                due.push((t.route, t.event.clone()));
            }
        }
        for (route, event) in due {
            if self
                .batches
                .get(&route)
                .is_some_and(|b| b.notes.iter().any(|n| n.event.id == event.id))
            {
                continue;
            }
            self.shared.metrics.repeats.get_or_create(&self.lbl()).inc();
            self.add(
                Item {
                    event,
                    route,
                    origin: Origin::Stream,
                    done: None,
                },
                None,
            );
        }
    }

    /// Whether KV vitals_notified holds `key`; None when cancelled while KV is unreachable.
    async fn is_recorded(&mut self, key: &str, cancel: &CancellationToken) -> Option<bool> {
        if self.recorded.contains(key) {
            return Some(true);
        }
        let kv = self.shared.notified.clone();
        let got = vitals_runtime::retry_until_cancelled(
            cancel,
            "reading KV vitals_notified",
            vitals_runtime::RECONNECT_BACKOFF,
            || {
                let kv = kv.clone();
                let key = key.to_owned();
                async move { Ok(kv.get(key).await?) }
            },
        )
        .await?;
        Some(got.is_some())
    }

    /// Sends batch `route` (retrying), then records or dead-letters it. False when cancelled.
    async fn flush(&mut self, route: usize, cancel: &CancellationToken) -> bool {
        let Some(batch) = self.batches.remove(&route) else {
            return true;
        };
        let events: Vec<AlertEvent> = batch.notes.iter().map(|n| n.event.clone()).collect();
        let sh = self.shared.clone();
        let body = match self.rc.kind {
            Kind::Webhook => payload::webhook(&self.rc.name, route, &events, &sh.external_url),
            Kind::Slack => payload::slack(&events, &sh.external_url),
            Kind::Alertmanager => payload::alertmanager(
                &events,
                &sh.external_url,
                sh.clock.now_ms(),
                self.rc.resend.as_millis() as u64,
            ),
        };
        let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
        let outcome = tokio::select! {
            () = cancel.cancelled() => return false,
            r = self.send(body) => r,
        };
        let lbl = self.lbl();
        match outcome {
            Ok(()) => {
                let now_ms = sh.clock.now_ms();
                sh.metrics.requests.get_or_create(&lbl).inc();
                let mut writes = Vec::new();
                for n in &batch.notes {
                    let Some(key) = &n.record else { continue };
                    sh.metrics.sent.get_or_create(&lbl).inc();
                    if n.origin == Origin::Stream {
                        sh.metrics
                            .latency
                            .get_or_create(&lbl)
                            .observe(now_ms.saturating_sub(n.event.at_ms) as f64 / 1000.0);
                    }
                    writes.push(record(&sh, key.clone(), n.event.at_ms));
                }
                for ok in futures::future::join_all(writes).await {
                    if !ok {
                        sh.metrics.record_errors.inc();
                    }
                }
                for n in batch.notes {
                    if n.record.is_some() {
                        if self.recorded.len() >= MAX_CACHED_KEYS {
                            self.recorded.clear();
                        }
                        if let Some(k) = &n.record {
                            self.recorded.insert(k.clone());
                        }
                        if n.event.state == AlertState::Firing {
                            self.track(&n.event, route);
                        }
                    }
                    if let Some(d) = &n.done {
                        d.finish();
                    }
                }
                tracing::debug!(receiver = %self.rc.name, route, alerts = events.len(), "delivered");
            }
            Err((why, attempts)) => {
                tracing::warn!(receiver = %self.rc.name, route, alerts = events.len(), attempts, reason = %why.reason, "gave up; dead-lettering");
                for n in batch.notes {
                    if n.record.is_some() {
                        sh.metrics.dead_lettered.get_or_create(&lbl).inc();
                        let dl = DeadLetter {
                            receiver: self.rc.name.clone(),
                            alert_id: n.event.id.clone(),
                            state: n.event.state,
                            reason: why.reason.clone(),
                            attempts,
                            at_ms: n.event.at_ms,
                            dead_ms: sh.clock.now_ms(),
                        };
                        dead_letter(&sh, &self.rc.name, &dl, cancel).await;
                    }
                    if let Some(d) = &n.done {
                        d.finish();
                    }
                }
            }
        }
        true
    }

    async fn send(&self, body: Bytes) -> Result<(), (Failed, u32)> {
        let lbl = self.lbl();
        let mut attempt = 0;
        loop {
            attempt += 1;
            if attempt > 1 {
                self.shared.metrics.retried.get_or_create(&lbl).inc();
            }
            let r = self
                .shared
                .client
                .post(
                    &self.rc.url,
                    &self.rc.headers,
                    body.clone(),
                    self.rc.timeout,
                )
                .await;
            let Err(f) = r else { return Ok(()) };
            self.shared.metrics.failed.get_or_create(&lbl).inc();
            if f.permanent || attempt >= self.rc.max_attempts {
                return Err((f, attempt));
            }
            tracing::debug!(receiver = %self.rc.name, attempt, reason = %f.reason, "delivery failed; retrying");
            tokio::time::sleep(deliver::backoff(
                self.rc.backoff_base,
                self.rc.backoff_max,
                attempt,
            ))
            .await;
        }
    }
}

/// Writes a delivery record, a few tries; false when it could not (a crash before the
/// next write may then repeat it).
async fn record(sh: &Shared, key: String, at_ms: u64) -> bool {
    for attempt in 1..=5u32 {
        match sh
            .notified
            .put(key.as_str(), Bytes::from(at_ms.to_string()))
            .await
        {
            Ok(_) => return true,
            Err(e) => {
                tracing::warn!(key = %key, attempt, error = %e, "recording a delivery failed");
                tokio::time::sleep(vitals_runtime::RECONNECT_BACKOFF.delay(attempt)).await;
            }
        }
    }
    false
}

async fn dead_letter(sh: &Shared, receiver: &str, dl: &DeadLetter, cancel: &CancellationToken) {
    let payload = Bytes::from(serde_json::to_vec(dl).unwrap_or_default());
    let subject = subjects::dead(receiver);
    let stored = vitals_runtime::retry_until_cancelled(
        cancel,
        "publishing a dead letter",
        vitals_runtime::RECONNECT_BACKOFF,
        || {
            let (js, subject, payload) = (sh.js.clone(), subject.clone(), payload.clone());
            async move {
                let ack = js.publish(subject, payload).await?;
                tokio::time::timeout(Duration::from_secs(5), ack).await??;
                Ok(())
            }
        },
    )
    .await;
    if stored.is_some() {
        tracing::info!(receiver, alert_id = %dl.alert_id, state = ?dl.state, "dead letter stored");
    }
}
