//! KV `vitals_targets`, the one live list: the targets file is written into it once (the
//! file wins on conflict), then it is watched (current values, then every change) and
//! each change goes to the scheduler as an [`Update`]. Without JetStream the prober
//! probes the file's targets and keeps trying here in the background.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vitals_protocol::{ServiceName, Target};
use vitals_runtime::Backoff;
use vitals_runtime::loglimit::LogLimiter;

use crate::metrics::Metrics;
use crate::targets::{Refusal, needs_put, parse_kv_value};

/// Between attempts at KV: JetStream may be off for a long while, so this backs off
/// further than a reconnect does, and each failure is one warning.
const KV_BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(250),
    max: Duration::from_secs(10),
};
/// At most one refusal log line this often (each refusal is counted regardless).
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(1);

/// A change of the live list.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    Put(Target),
    Delete(ServiceName),
    /// Every key the bucket held when a watch started (after its current values were
    /// read): anything else still running was removed while the watch was down.
    Present(HashSet<ServiceName>),
}

/// Runs until `cancel`: open the bucket, load the file, watch; start over on any failure.
pub async fn run(
    js: jetstream::Context,
    file: Vec<Target>,
    updates: mpsc::Sender<Update>,
    metrics: std::sync::Arc<Metrics>,
    cancel: CancellationToken,
) {
    let mut loaded = file.is_empty();
    let mut refusals = RefusalLog::default();
    let mut attempt = 0;
    loop {
        let result = async {
            let store = vitals_runtime::targets::targets_bucket(&js).await?;
            if !loaded {
                load_file(&store, &file).await?;
                loaded = true;
            }
            watch(&store, &updates, &metrics, &mut refusals, &cancel).await
        };
        let result = tokio::select! {
            r = result => r,
            () = cancel.cancelled() => return,
        };
        metrics.kv_ready.set(0);
        match result {
            Ok(()) => return,
            Err(e) => {
                attempt += 1;
                tracing::warn!(
                    error = format!("{e:#}"),
                    attempt,
                    "KV vitals_targets unavailable; probing the targets known so far and retrying"
                );
            }
        }
        tokio::select! {
            () = tokio::time::sleep(KV_BACKOFF.delay(attempt)) => {}
            () = cancel.cancelled() => return,
        }
    }
}

/// Writes each file target whose stored value differs (or is missing).
async fn load_file(store: &kv::Store, file: &[Target]) -> Result<()> {
    let mut written = 0;
    for target in file {
        let Some(service) = target.service_name() else {
            continue;
        };
        let stored = store
            .get(service.as_str())
            .await
            .with_context(|| format!("reading KV vitals_targets {service}"))?;
        if needs_put(target, stored.as_deref()) {
            store
                .put(service.as_str(), target.to_json().into())
                .await
                .with_context(|| format!("writing KV vitals_targets {service}"))?;
            written += 1;
        }
    }
    tracing::info!(
        targets = file.len(),
        written,
        "targets file loaded into KV vitals_targets"
    );
    Ok(())
}

/// Watches until cancelled (Ok) or the watch fails (Err).
async fn watch(
    store: &kv::Store,
    updates: &mpsc::Sender<Update>,
    metrics: &Metrics,
    refusals: &mut RefusalLog,
    cancel: &CancellationToken,
) -> Result<()> {
    // Fresh from the server (`Store::status` is the info cached when it was opened).
    let messages = store
        .stream
        .get_info()
        .await
        .context("KV vitals_targets info")?
        .state
        .messages;
    let mut watch = store
        .watch_with_history(">")
        .await
        .context("watching KV vitals_targets")?;
    // Until the current values are read, the keys seen; then None.
    let mut initial: Option<HashSet<ServiceName>> = Some(HashSet::new());
    if messages == 0 {
        send(updates, Update::Present(HashSet::new())).await?;
        initial = None;
    }
    metrics.kv_ready.set(1);
    tracing::info!(messages, "watching KV vitals_targets");
    loop {
        let entry = tokio::select! {
            e = watch.next() => e,
            () = cancel.cancelled() => return Ok(()),
        };
        let entry = entry.context("the KV watch ended")?.context("KV watch")?;
        let current = entry.seen_current || entry.delta == 0;
        match entry.operation {
            kv::Operation::Put => match parse_kv_value(&entry.key, &entry.value) {
                Ok(target) => {
                    if let (Some(seen), Some(s)) = (&mut initial, target.service_name()) {
                        seen.insert(s.clone());
                    }
                    send(updates, Update::Put(target)).await?;
                }
                Err(refusal) => {
                    metrics.refused(refusal.reason);
                    refusals.log(&entry.key, &refusal);
                    // A refused change leaves the last good target of that key running.
                    if let (Some(seen), Ok(s)) = (&mut initial, ServiceName::parse(&entry.key)) {
                        seen.insert(s);
                    }
                }
            },
            kv::Operation::Delete | kv::Operation::Purge => {
                if let Ok(s) = ServiceName::parse(&entry.key) {
                    send(updates, Update::Delete(s)).await?;
                }
            }
        }
        if current && let Some(seen) = initial.take() {
            send(updates, Update::Present(seen)).await?;
        }
    }
}

async fn send(updates: &mpsc::Sender<Update>, u: Update) -> Result<()> {
    updates
        .send(u)
        .await
        .map_err(|_| anyhow::anyhow!("the scheduler stopped"))
}

/// Refusals logged at a bounded rate, with how many were not.
struct RefusalLog(LogLimiter);

impl Default for RefusalLog {
    fn default() -> Self {
        Self(LogLimiter::new(REFUSAL_LOG_EVERY))
    }
}

impl RefusalLog {
    fn log(&mut self, key: &str, refusal: &Refusal) {
        let Some(suppressed) = self.0.due() else {
            return;
        };
        // The key is shown escaped: it came from whoever could write the bucket.
        tracing::warn!(key = ?key, reason = refusal.reason.as_str(), detail = %refusal.detail, suppressed, "target refused");
    }
}
