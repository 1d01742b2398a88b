//! KV `vitals_silences` into the engine: the silences (every change replaces the whole
//! set, see [`crate::engine::Engine::set_silences`]) and the acknowledgements (each put is
//! applied to its firing alert). Watched from its current values on, and again from the
//! start after any failure (a NATS restart), so nothing written meanwhile is missed.
//! Also deletes the acknowledgement of an alert that resolved.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::kv;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vitals_protocol::{Ack, Silence, subjects};
use vitals_runtime::Backoff;
use vitals_runtime::loglimit::LogLimiter;

use crate::metrics::{Metrics, ReasonLabel};
use crate::requests::Command;

/// Between attempts to watch again: JetStream may be away for a while.
const WATCH_BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(250),
    max: Duration::from_secs(10),
};
/// At most one log line about refused values this often (each is counted).
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);
/// Acknowledgements of resolved alerts waiting to be deleted; beyond, dropped (counted:
/// a stale ack is harmless, an alert id is never reused).
pub const FORGET_QUEUE: usize = 4_096;

/// What one KV entry means for the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Silence(Silence),
    SilenceGone(String),
    Ack(Ack),
    /// Not a key the monitor uses, or an ack deleted (nothing to do).
    Other,
}

/// Why a value was refused: the key's kind and the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub kind: &'static str,
    pub why: String,
}

/// Reads one entry. Pure, so the rules for what is accepted are tested beside it.
pub fn parse_entry(key: &str, op: kv::Operation, value: &[u8]) -> Result<Entry, Refused> {
    if let Some(id) = key.strip_prefix(subjects::SILENCE_KEY_PREFIX) {
        if op != kv::Operation::Put {
            return Ok(Entry::SilenceGone(id.to_owned()));
        }
        let refused = |why: String| Refused {
            kind: "silence",
            why,
        };
        let s = Silence::from_json(value).map_err(|e| refused(e.0))?;
        if s.id != id {
            return Err(refused(format!("its id {:?} is not its key's", s.id)));
        }
        return Ok(Entry::Silence(s));
    }
    if key.starts_with(subjects::ACK_KEY_PREFIX) {
        if op != kv::Operation::Put {
            return Ok(Entry::Other);
        }
        let refused = |why: String| Refused { kind: "ack", why };
        let ack = Ack::from_json(value).map_err(|e| refused(e.0))?;
        let id = vitals_protocol::silence::AlertId::parse(&ack.id).map_err(|e| refused(e.0))?;
        if subjects::ack_key(&id) != key {
            return Err(refused(format!("its id {:?} is not its key's", ack.id)));
        }
        return Ok(Entry::Ack(ack));
    }
    Ok(Entry::Other)
}

/// Runs until `cancel`: watch the bucket, start over (from its current values) on failure.
pub async fn run_watch(
    store: kv::Store,
    commands: mpsc::Sender<Command>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) {
    let mut log = RefusalLog::default();
    let mut attempt = 0;
    loop {
        let result = tokio::select! {
            r = watch(&store, &commands, &metrics, &mut log, &cancel) => r,
            () = cancel.cancelled() => return,
        };
        metrics.silences_watching.set(0);
        match result {
            Ok(()) => return,
            Err(e) => {
                attempt += 1;
                tracing::warn!(
                    error = format!("{e:#}"),
                    attempt,
                    "KV vitals_silences watch failed; silences and acks as last known, retrying"
                );
            }
        }
        tokio::select! {
            () = tokio::time::sleep(WATCH_BACKOFF.delay(attempt)) => {}
            () = cancel.cancelled() => return,
        }
    }
}

/// Watches until cancelled (Ok) or the watch fails (Err).
async fn watch(
    store: &kv::Store,
    commands: &mpsc::Sender<Command>,
    metrics: &Metrics,
    log: &mut RefusalLog,
    cancel: &CancellationToken,
) -> Result<()> {
    let messages = store
        .stream
        .get_info()
        .await
        .context("KV vitals_silences info")?
        .state
        .messages;
    let mut watch = store
        .watch_with_history(">")
        .await
        .context("watching KV vitals_silences")?;
    let mut silences: BTreeMap<String, Silence> = BTreeMap::new();
    // The whole set is sent once the current values are read, then on every change.
    let mut loading = messages > 0;
    if !loading {
        send(commands, Command::Silences(Vec::new())).await?;
    }
    metrics.silences_watching.set(1);
    tracing::info!(messages, "watching KV vitals_silences");
    loop {
        let entry = tokio::select! {
            e = watch.next() => e,
            () = cancel.cancelled() => return Ok(()),
        };
        let entry = entry.context("the KV watch ended")?.context("KV watch")?;
        let current = entry.seen_current || entry.delta == 0;
        let mut changed = false;
        match parse_entry(&entry.key, entry.operation, &entry.value) {
            Ok(Entry::Silence(s)) => {
                silences.insert(s.id.clone(), s);
                changed = true;
            }
            Ok(Entry::SilenceGone(id)) => changed = silences.remove(&id).is_some(),
            Ok(Entry::Ack(ack)) => send(commands, Command::Ack(ack)).await?,
            Ok(Entry::Other) => {}
            Err(refused) => {
                metrics
                    .silence_refusals
                    .get_or_create(&ReasonLabel {
                        reason: refused.kind,
                    })
                    .inc();
                log.note(&entry.key, &refused);
            }
        }
        if loading && current {
            loading = false;
            changed = true;
        }
        if changed && !loading {
            send(
                commands,
                Command::Silences(silences.values().cloned().collect()),
            )
            .await?;
        }
    }
}

async fn send(commands: &mpsc::Sender<Command>, c: Command) -> Result<()> {
    commands
        .send(c)
        .await
        .map_err(|_| anyhow::anyhow!("the engine stopped"))
}

/// Deletes the acknowledgements of resolved alerts until `cancel` (or the queue closes).
pub async fn run_forgetter(
    store: kv::Store,
    mut ids: mpsc::Receiver<String>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) {
    loop {
        let id = tokio::select! {
            id = ids.recv() => match id {
                Some(id) => id,
                None => return,
            },
            () = cancel.cancelled() => return,
        };
        // One retry: NATS may be between reconnects; a key left behind is harmless (the
        // monitor refuses to apply it: that alert no longer fires) and ages out of use.
        for attempt in 0..2 {
            match vitals_runtime::silences::forget_ack(&store, &id).await {
                Ok(()) => break,
                Err(e) if attempt == 1 => {
                    metrics.ack_forget_errors.inc();
                    tracing::warn!(id, error = %e, "could not delete the acknowledgement of a resolved alert");
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }
}

/// Refusals logged at a bounded rate, with how many were not.
struct RefusalLog(LogLimiter);

impl Default for RefusalLog {
    fn default() -> Self {
        Self(LogLimiter::new(REFUSAL_LOG_EVERY))
    }
}

impl RefusalLog {
    fn note(&mut self, key: &str, refused: &Refused) {
        let Some(suppressed) = self.0.due() else {
            return;
        };
        // The key came from whoever could write the bucket: shown escaped and bounded.
        let key: String = key.chars().take(80).collect();
        tracing::warn!(key = ?key, kind = refused.kind, why = %refused.why, suppressed, "refused a value in KV vitals_silences (further ones counted, logged at most every 10 s)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SILENCE: &str = r#"{"id":"s1","matchers":{"service":"bill*"},"starts_ms":1,"ends_ms":2,"created_by":"ann"}"#;
    const ACK: &str = r#"{"id":"billing:SERVICE_DOWN:100","by":"ann","at_ms":5}"#;

    #[test]
    fn entries_are_read_by_key_and_checked_against_it() {
        let put = kv::Operation::Put;
        assert!(
            matches!(parse_entry("silence.s1", put, SILENCE.as_bytes()), Ok(Entry::Silence(s)) if s.id == "s1")
        );
        assert_eq!(
            parse_entry("silence.s1", kv::Operation::Delete, b""),
            Ok(Entry::SilenceGone("s1".into()))
        );
        assert_eq!(
            parse_entry("silence.s2", put, SILENCE.as_bytes())
                .unwrap_err()
                .kind,
            "silence"
        );
        assert_eq!(
            parse_entry("silence.s1", put, b"{").unwrap_err().kind,
            "silence"
        );
        assert!(matches!(
            parse_entry("ack.billing.SERVICE_DOWN.100", put, ACK.as_bytes()),
            Ok(Entry::Ack(a)) if a.by == "ann"
        ));
        assert_eq!(
            parse_entry("ack.auth.SERVICE_DOWN.100", put, ACK.as_bytes())
                .unwrap_err()
                .kind,
            "ack"
        );
        assert_eq!(
            parse_entry("ack.billing.SERVICE_DOWN.100", kv::Operation::Purge, b""),
            Ok(Entry::Other)
        );
        assert_eq!(parse_entry("whatever", put, b"x"), Ok(Entry::Other));
    }
}
