//! `GET /api/history`: recent status changes and alerts from the HEALTH_EVENTS stream,
//! newest first. Reads backwards in growing windows so a recent page costs little even
//! when the stream holds days of history.

use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use vitals_protocol::{HistoryEntry, ServiceName, subjects};

/// Never scan more than this many stream messages for one request.
const MAX_SCAN: u64 = 50_000;

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
        let mut found = read_range(&stream, start, last, &filter).await?;
        let exhausted = start == first || window >= MAX_SCAN;
        if found.len() >= limit || exhausted {
            found.reverse();
            found.truncate(limit);
            return Ok(found);
        }
        window = (window * 8).min(MAX_SCAN);
    }
}

/// Entries with stream sequence in [start, last] matching `filter` (all if empty), oldest first.
async fn read_range(
    stream: &jetstream::stream::Stream,
    start: u64,
    last: u64,
    filter: &[String],
) -> Result<Vec<HistoryEntry>> {
    let mut consumer = stream
        .create_consumer(consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: start,
            },
            ack_policy: consumer::AckPolicy::None,
            filter_subjects: filter.to_vec(),
            memory_storage: true,
            inactive_threshold: Duration::from_secs(10),
            ..Default::default()
        })
        .await
        .context("creating a history consumer")?;
    let name = consumer.cached_info().name.clone();
    let mut pending = consumer.info().await.context("consumer info")?.num_pending;
    let mut out = Vec::new();
    'read: while pending > 0 {
        let mut batch = consumer
            .fetch()
            .max_messages(pending.min(1_000) as usize)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .context("fetching history")?;
        let mut got = 0;
        while let Some(msg) = batch.next().await {
            let msg = msg.map_err(|e| anyhow::anyhow!("history message: {e}"))?;
            got += 1;
            let Ok(info) = msg.info() else { continue };
            let seq = info.stream_sequence;
            if seq > last {
                break 'read;
            }
            if let Some(entry) = entry(&msg.subject, seq, &msg.payload) {
                out.push(entry);
            }
            pending = info.pending;
        }
        if got == 0 {
            break;
        }
    }
    let _ = stream.delete_consumer(&name).await;
    Ok(out)
}

fn entry(subject: &str, stream_seq: u64, payload: &[u8]) -> Option<HistoryEntry> {
    if subject.starts_with("health.status.") {
        serde_json::from_slice(payload)
            .ok()
            .map(|data| HistoryEntry::Status { stream_seq, data })
    } else if subject.starts_with("health.alert.") {
        serde_json::from_slice(payload)
            .ok()
            .map(|data| HistoryEntry::Alert { stream_seq, data })
    } else {
        None
    }
}
