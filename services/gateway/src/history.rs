//! `GET /api/history`: recent status changes and alerts from the HEALTH_EVENTS stream,
//! newest first. Reads backwards in growing windows so a recent page costs little even
//! when the stream holds days of history.
//!
//! Every dashboard asks for it when it (re)connects, so after a NATS reconnect thousands
//! of identical requests arrive at once: reads are bounded ([`READS`] at a time), and one
//! read answers every request for the same service and limit while it runs and for a
//! short window after.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use async_nats::jetstream;
use bytes::Bytes;
use tokio::sync::{OnceCell, Semaphore};
use vitals_protocol::{History, HistoryEntry, ServiceName, subjects};

use crate::metrics::Metrics;

/// Never scan more than this many stream messages for one request.
const MAX_SCAN: u64 = 50_000;
/// JetStream reads at once, at most (each creates a consumer).
pub const READS: usize = 4;
/// A read (including its wait for a slot) that takes longer fails with 503.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Distinct (service, limit) answers kept at most; beyond, requests are not cached.
const MAX_ENTRIES: usize = 1_024;

/// The JSON of a History, or why there is none.
pub type Answer = Result<Bytes, String>;
type Key = (Option<ServiceName>, usize);

struct Entry {
    answer: Arc<OnceCell<Answer>>,
    created: Instant,
}

pub struct HistoryCache {
    reads: Semaphore,
    ttl: Duration,
    entries: Mutex<HashMap<Key, Entry>>,
}

impl HistoryCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            reads: Semaphore::new(READS),
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The answer for (service, limit): a recent one, the one being read, or a new read.
    pub async fn get(
        &self,
        js: &jetstream::Context,
        service: Option<ServiceName>,
        limit: usize,
        metrics: &Metrics,
    ) -> Answer {
        let key = (service, limit);
        let (answer, shared) = self.entry(&key);
        if shared {
            metrics.history_cache_hits.inc();
        }
        answer
            .get_or_init(|| async {
                metrics.history_reads.inc();
                let read = async {
                    let _slot = self.reads.acquire().await.context("history closed")?;
                    let events = recent(js, key.0.as_ref(), key.1).await?;
                    let json = serde_json::to_vec(&History { events }).context("encoding")?;
                    anyhow::Ok(Bytes::from(json))
                };
                match tokio::time::timeout(READ_TIMEOUT, read).await {
                    Ok(Ok(json)) => Ok(json),
                    Ok(Err(e)) => Err(format!("{e:#}")),
                    Err(_) => Err("timed out".to_owned()),
                }
            })
            .await
            .clone()
    }

    /// The cell for `key` and whether another request made it.
    fn entry(&self, key: &Key) -> (Arc<OnceCell<Answer>>, bool) {
        let Ok(mut entries) = self.entries.lock() else {
            return (Arc::new(OnceCell::new()), false);
        };
        let now = Instant::now();
        // A finished read expires after the window; a failed one at once (it was shared
        // only by the requests that waited for it). One in flight is kept.
        let ttl = self.ttl;
        entries.retain(|_, e| match e.answer.get() {
            None => true,
            Some(Err(_)) => false,
            Some(Ok(_)) => now.duration_since(e.created) < ttl,
        });
        if let Some(e) = entries.get(key) {
            return (e.answer.clone(), true);
        }
        let answer = Arc::new(OnceCell::new());
        if entries.len() < MAX_ENTRIES {
            entries.insert(
                key.clone(),
                Entry {
                    answer: answer.clone(),
                    created: now,
                },
            );
        }
        (answer, false)
    }
}

pub async fn recent(
    js: &jetstream::Context,
    service: Option<&ServiceName>,
    limit: usize,
) -> Result<Vec<HistoryEntry>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let mut stream = js
        .get_stream(subjects::EVENTS_STREAM)
        .await
        .context("opening stream HEALTH_EVENTS")?;
    let state = stream.info().await.context("stream info")?.state.clone();
    if state.messages == 0 {
        return Ok(Vec::new());
    }
    let (first, last) = (state.first_sequence, state.last_sequence);
    let filter = match service {
        Some(s) => vec![subjects::status(s), subjects::alert(s)],
        None => Vec::new(),
    };
    let mut window = (limit as u64 * 4).max(256);
    loop {
        let start = last.saturating_sub(window - 1).max(first);
        let mut found: Vec<HistoryEntry> =
            vitals_runtime::read_stream(&stream, start, last, &filter)
                .await?
                .into_iter()
                .filter_map(|m| entry(&m.subject, m.seq, &m.payload))
                .collect();
        let exhausted = start == first || window >= MAX_SCAN;
        if found.len() >= limit || exhausted {
            found.reverse();
            found.truncate(limit);
            return Ok(found);
        }
        window = (window * 8).min(MAX_SCAN);
    }
}

fn entry(subject: &str, stream_seq: u64, payload: &[u8]) -> Option<HistoryEntry> {
    match subjects::parse_health(subject)? {
        subjects::HealthSubject::Status(_) => serde_json::from_slice(payload)
            .ok()
            .map(|data| HistoryEntry::Status { stream_seq, data }),
        subjects::HealthSubject::Alert(_) => serde_json::from_slice(payload)
            .ok()
            .map(|data| HistoryEntry::Alert { stream_seq, data }),
        _ => None,
    }
}
