//! `GET /api/history`: recent status changes and alerts from the HEALTH_EVENTS stream,
//! newest first. Reads backwards in growing windows so a recent page costs little even
//! when the stream holds days of history.

use anyhow::{Context, Result};
use async_nats::jetstream;
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
