//! JetStream: the `health_status` KV bucket (current state per service) and the
//! `HEALTH_EVENTS` stream (history of status changes and alerts).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::{self, kv, stream};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use vitals_protocol::{AlertEvent, ServiceState, subjects};

use crate::metrics::Metrics;

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

/// The last alert events in HEALTH_EVENTS (about `count` of them, oldest first), and the
/// `at_ms` of the oldest one read: the history covers everything since then. With no
/// alert read, `u64::MAX` (nothing can be said about any alert).
pub async fn recent_alerts(js: &jetstream::Context, count: u64) -> Result<(Vec<AlertEvent>, u64)> {
    let mut stream = js
        .get_stream(subjects::EVENTS_STREAM)
        .await
        .context("opening HEALTH_EVENTS")?;
    let state = stream.info().await.context("stream info")?.state.clone();
    if state.messages == 0 {
        return Ok((Vec::new(), u64::MAX));
    }
    // Status changes and alerts interleave about one to one.
    let start = state
        .last_sequence
        .saturating_sub(count * 2)
        .max(state.first_sequence);
    let messages = vitals_runtime::read_stream(
        &stream,
        start,
        state.last_sequence,
        &[subjects::ALERT_ALL.to_owned()],
    )
    .await?;
    let events: Vec<AlertEvent> = messages
        .iter()
        .filter_map(|m| serde_json::from_slice(&m.payload).ok())
        .collect();
    let from = events.first().map_or(u64::MAX, |e| e.at_ms);
    Ok((events, from))
}

/// Every stored state (see [`vitals_runtime::load_service_states`]).
pub use vitals_runtime::load_service_states as load;

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
        if let Some(error) = error {
            metrics.kv_write_errors.inc();
            if ok {
                tracing::warn!(key, error, "KV write failed; will retry");
            }
            pending.retry(key, value);
            ok = false;
        }
    }
    ok
}

/// KV writes in flight at once.
const PARALLEL_WRITES: usize = 64;
