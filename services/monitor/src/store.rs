//! JetStream: the `health_status` KV bucket (current state per service) and the
//! `HEALTH_EVENTS` stream (history of status changes and alerts).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::{self, kv, stream};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use vitals_protocol::subjects::{self, HealthSubject};
use vitals_protocol::{AlertEvent, ServiceName, ServiceState};

use crate::metrics::Metrics;
use crate::reconcile;

pub struct Limits {
    pub events_max_age: Duration,
    pub events_max_bytes: i64,
    pub kv_max_bytes: i64,
}

/// Creates (or updates the limits of) the bucket and the stream. Idempotent.
pub async fn ensure(js: &jetstream::Context, limits: &Limits) -> Result<kv::Store> {
    js.create_or_update_stream(stream::Config {
        name: subjects::EVENTS_STREAM.into(),
        description: Some("Vitals status changes and alerts".into()),
        subjects: vec![subjects::STATUS_ALL.into(), subjects::ALERT_ALL.into()],
        max_age: limits.events_max_age,
        max_bytes: limits.events_max_bytes,
        discard: stream::DiscardPolicy::Old,
        storage: stream::StorageType::File,
        // `health.alert.>` also captures `health.alert.ack` requests: without this the
        // stream would answer them with a PubAck before the monitor's reply. The monitor
        // publishes with core NATS, so nothing waits for a stream ack.
        no_ack: true,
        ..Default::default()
    })
    .await
    .context("creating stream HEALTH_EVENTS")?;
    js.create_or_update_key_value(kv::Config {
        bucket: subjects::KV_BUCKET.into(),
        description: "Vitals: current state per service".into(),
        history: 1,
        max_bytes: limits.kv_max_bytes,
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .context("creating KV bucket health_status")
}

/// What a start restores: the states from KV, reconciled with HEALTH_EVENTS, and the
/// alert events to publish so the two agree (see [`crate::reconcile`]).
#[derive(Debug, Default)]
pub struct Restored {
    pub states: Vec<ServiceState>,
    pub repairs: Vec<AlertEvent>,
    /// Services whose last alert event in the stream had to be looked up.
    pub looked_up: usize,
    /// Of those, the ones whose state and stream disagreed (their history was read).
    pub diverged: usize,
    /// KV entries that could not be read: not restored and not reconciled, so nothing is
    /// published about them (a later sample starts them afresh).
    pub unreadable: Vec<String>,
}

/// Lookups of a service's last alert event in flight at once.
const PARALLEL_LOOKUPS: usize = 64;
/// Divergent services whose alert history is read at once.
const PARALLEL_READS: usize = 8;
/// The monitor's and the server's clocks may differ a little: a held firing is announced
/// for want of any event of its service only if it began this long after the oldest
/// message the stream retains.
const CLOCK_MARGIN_MS: u64 = 1_000;

/// Loads every state from KV and reconciles it with HEALTH_EVENTS, service by service.
/// Errors reading the stream leave the states as loaded and publish nothing.
pub async fn restore(
    js: &jetstream::Context,
    kv: &kv::Store,
    metrics: &Metrics,
    now_ms: u64,
) -> Result<Restored> {
    let loaded = vitals_runtime::load_service_states_checked(kv).await?;
    metrics.kv_unreadable.inc_by(loaded.unreadable.len() as u64);
    metrics.kv_repaired.inc_by(loaded.repaired as u64);
    if loaded.repaired > 0 {
        tracing::warn!(
            repaired = loaded.repaired,
            "KV entries with null figures read as 0"
        );
    }
    let mut out = Restored {
        states: loaded.states,
        unreadable: loaded.unreadable,
        ..Default::default()
    };
    match reconcile_with_stream(js, &mut out, now_ms).await {
        Ok(()) => {}
        Err(e) => {
            out.repairs.clear();
            tracing::warn!(
                error = format!("{e:#}"),
                "could not read the alert history; not reconciling"
            );
        }
    }
    for e in &out.repairs {
        let reason = match e.state {
            vitals_protocol::AlertState::Resolved => "resolved_orphan",
            vitals_protocol::AlertState::Firing => "announced",
        };
        metrics
            .restart_repairs
            .get_or_create(&crate::metrics::ReasonLabel { reason })
            .inc();
    }
    Ok(out)
}

async fn reconcile_with_stream(
    js: &jetstream::Context,
    out: &mut Restored,
    now_ms: u64,
) -> Result<()> {
    let mut stream = js
        .get_stream(subjects::EVENTS_STREAM)
        .await
        .context("opening HEALTH_EVENTS")?;
    let info = stream.info().await.context("stream info")?.state.clone();
    if info.messages == 0 {
        // Nothing to compare with: whatever KV holds stays held (and resolves when it clears).
        return Ok(());
    }
    let oldest_ms = u64::try_from(info.first_timestamp.unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(0)
        .saturating_add(CLOCK_MARGIN_MS);
    // Every service the stream has an alert about (complete: the server lists subjects,
    // paged), plus every state that holds an alert or a mark.
    let mut with_alerts: HashSet<String> = HashSet::new();
    let mut listed = stream
        .info_with_subjects(subjects::ALERT_EACH)
        .await
        .context("listing alert subjects")?;
    while let Some(item) = listed.next().await {
        let (subject, _count) = item.context("listing alert subjects")?;
        // A subject that is not a valid name was never published by a monitor: skip it.
        if let Some(HealthSubject::Alert(service)) = subjects::parse_health(&subject)
            && ServiceName::parse(service).is_ok()
        {
            with_alerts.insert(service.to_owned());
        }
    }
    let unreadable: HashSet<&str> = out.unreadable.iter().map(String::as_str).collect();
    let by_name: HashMap<String, usize> = out
        .states
        .iter()
        .enumerate()
        .map(|(i, s)| (s.service.to_string(), i))
        .collect();
    let mut names: Vec<String> = with_alerts
        .iter()
        .filter(|n| !unreadable.contains(n.as_str()))
        .cloned()
        .collect();
    names.extend(
        out.states
            .iter()
            .filter(|s| !with_alerts.contains(s.service.as_str()))
            .filter(|s| !s.alerts.is_empty() || s.last_alert.is_some())
            .map(|s| s.service.to_string()),
    );
    out.looked_up = names.len();
    let stream = &stream;
    let lasts: Vec<(String, Option<(AlertEvent, u64)>)> = futures::stream::iter(names)
        .map(|name| async move {
            let last = last_alert_of(stream, &name).await;
            last.map(|l| (name, l))
        })
        .buffer_unordered(PARALLEL_LOOKUPS)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    let diverged: Vec<(String, Option<u64>)> = lasts
        .into_iter()
        .filter(|(name, last)| {
            let state = by_name.get(name).map(|&i| &out.states[i]);
            !reconcile::in_sync(state, last.as_ref().map(|(e, _)| e))
        })
        .map(|(name, last)| (name, last.map(|(_, seq)| seq)))
        .collect();
    out.diverged = diverged.len();
    if diverged.is_empty() {
        return Ok(());
    }
    let first = info.first_sequence;
    let histories: Vec<Vec<AlertEvent>> = futures::stream::iter(diverged.iter())
        .map(|(name, last_seq)| async move {
            match last_seq {
                None => Ok(Vec::new()),
                Some(last) => alert_history(stream, name, first, *last).await,
            }
        })
        .buffered(PARALLEL_READS)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    let mut checked: Vec<ServiceState> = Vec::with_capacity(diverged.len());
    let mut taken = Vec::new();
    for (name, _) in &diverged {
        if let Some(&i) = by_name.get(name) {
            checked.push(out.states[i].clone());
            taken.push(i);
        }
    }
    let history: Vec<AlertEvent> = histories.into_iter().flatten().collect();
    out.repairs = reconcile::reconcile(&mut checked, &history, oldest_ms, now_ms);
    for (i, s) in taken.into_iter().zip(checked) {
        out.states[i] = s;
    }
    Ok(())
}

/// The last alert event HEALTH_EVENTS holds for `service`, with its stream sequence
/// (None: none, or unreadable).
async fn last_alert_of(
    stream: &stream::Stream,
    service: &str,
) -> Result<Option<(AlertEvent, u64)>> {
    let subject = alert_subject(service)?;
    match stream.get_last_raw_message_by_subject(&subject).await {
        Ok(msg) => Ok(serde_json::from_slice(&msg.payload)
            .ok()
            .map(|e| (e, msg.sequence))),
        Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("last alert of {service}: {e}")),
    }
}

fn alert_subject(service: &str) -> Result<String> {
    let name = ServiceName::parse(service).map_err(|e| anyhow::anyhow!("{service:?}: {e}"))?;
    Ok(subjects::alert(&name))
}

/// Every alert event HEALTH_EVENTS retains for `service`, oldest first, up to its last
/// one (stream sequence `last`). A read that stops short is retried, then an error: a
/// truncated history would make a firing that did arrive look as if it never had.
async fn alert_history(
    stream: &stream::Stream,
    service: &str,
    first: u64,
    last: u64,
) -> Result<Vec<AlertEvent>> {
    let subject = alert_subject(service)?;
    for _ in 0..3 {
        let messages =
            vitals_runtime::read_stream(stream, first, last, std::slice::from_ref(&subject))
                .await?;
        if messages.last().is_some_and(|m| m.seq == last) {
            return Ok(messages
                .iter()
                .filter_map(|m| serde_json::from_slice(&m.payload).ok())
                .collect());
        }
    }
    anyhow::bail!("the alert history of {service} could not be read to its end")
}

/// A state to write, or `None`: delete the key (a retired service).
type Write = Option<Bytes>;

/// Latest state per service waiting to be written. Writes coalesce: if a service changes
/// twice before the writer gets to it, only the newer state (or the delete) is written.
#[derive(Default)]
pub struct PendingWrites {
    map: Mutex<HashMap<String, Write>>,
    notify: Notify,
}

impl PendingWrites {
    pub fn put(&self, state: &ServiceState) -> serde_json::Result<()> {
        let bytes = serde_json::to_vec(state)?;
        self.set(state.service.to_string(), Some(Bytes::from(bytes)));
        Ok(())
    }

    pub fn delete(&self, service: &str) {
        self.set(service.to_owned(), None);
    }

    fn set(&self, key: String, write: Write) {
        if let Ok(mut map) = self.map.lock() {
            map.insert(key, write);
        }
        self.notify.notify_one();
    }

    fn take(&self) -> HashMap<String, Write> {
        self.map
            .lock()
            .map(|mut m| std::mem::take(&mut *m))
            .unwrap_or_default()
    }

    /// Puts a failed write back unless a newer one arrived meanwhile.
    fn retry(&self, key: String, write: Write) {
        if let Ok(mut map) = self.map.lock() {
            map.entry(key).or_insert(write);
        }
    }

    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Writes pending states to KV until cancelled, then makes a bounded last attempt.
pub async fn run_writer(
    kv: kv::Store,
    pending: Arc<PendingWrites>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            () = pending.notify.notified() => {}
            () = cancel.cancelled() => break,
        }
        if !write_all(&kv, &pending, &metrics).await {
            // NATS is away: back off instead of spinning, keep what is pending.
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(500)) => pending.notify.notify_one(),
                () = cancel.cancelled() => break,
            }
        }
    }
    let last =
        tokio::time::timeout(Duration::from_secs(2), write_all(&kv, &pending, &metrics)).await;
    let left = pending.len();
    match last {
        Ok(true) if left == 0 => tracing::debug!("state written to KV"),
        _ => {
            metrics.kv_unflushed.inc_by(left as u64);
            tracing::error!(
                unwritten = left,
                "could not write every state to KV before stopping; the next monitor reconciles from the event history"
            );
        }
    }
}

/// Writes in parallel (a burst of new services must not wait on one round trip each).
/// Returns false if any write failed (those are kept for a retry).
async fn write_all(kv: &kv::Store, pending: &PendingWrites, metrics: &Metrics) -> bool {
    let results: Vec<(String, Write, Option<String>)> = futures::stream::iter(pending.take())
        .map(|(key, write)| async move {
            let outcome = tokio::time::timeout(Duration::from_secs(2), async {
                match &write {
                    Some(value) => kv
                        .put(&key, value.clone())
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string()),
                    None => kv.delete(&key).await.map_err(|e| e.to_string()),
                }
            })
            .await;
            let error = match outcome {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(_) => Some("timed out".to_owned()),
            };
            (key, write, error)
        })
        .buffer_unordered(PARALLEL_WRITES)
        .collect()
        .await;
    let mut ok = true;
    for (key, value, error) in results {
        let Some(error) = error else {
            metrics.kv_writes.inc();
            continue;
        };
        metrics.kv_write_errors.inc();
        if ok {
            tracing::warn!(key, error, "KV write failed; will retry");
        }
        pending.retry(key, value);
        ok = false;
    }
    ok
}

/// KV writes in flight at once.
const PARALLEL_WRITES: usize = 64;
