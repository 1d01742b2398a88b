//! KV `vitals_silences`: silences (`silence.<id>`) and acknowledgements
//! (`ack.<service>.<ALERT>.<since_ms>`). The monitor applies what the bucket holds; its
//! request handlers (`health.silence.*`, `health.alert.ack`) and the gateway's API write
//! it through these functions, so both make the same values and refuse the same bodies.

use anyhow::Context;
use async_nats::jetstream::{self, kv};
use futures::TryStreamExt;
use vitals_protocol::silence::{AlertId, MAX_BODY_BYTES};
use vitals_protocol::{Ack, AckRequest, Silence, SilenceRequest, subjects};

use crate::targets::{CALL_TIMEOUT, open_or_create};

/// Most silences and acks kept at once: a bound against a runaway script.
pub const MAX_ENTRIES: i64 = 10_000;

pub fn silences_config() -> kv::Config {
    kv::Config {
        bucket: subjects::SILENCES_BUCKET.to_owned(),
        description: "Vitals silences (silence.<id>) and acknowledgements (ack.<alert>)".into(),
        history: 5,
        max_bytes: 16 * 1024 * 1024,
        max_value_size: MAX_BODY_BYTES as i32,
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    }
}

/// KV `vitals_silences`, created if missing.
pub async fn silences_bucket(js: &jetstream::Context) -> anyhow::Result<kv::Store> {
    open_or_create(js, silences_config()).await
}

/// Why a write was not done: the caller's fault (`Invalid`, `NotFound`: tell them) or
/// the store's (`Store`: retry later).
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{0}")]
    Invalid(String),
    #[error("no such {0}")]
    NotFound(String),
    #[error("too many silences and acknowledgements ({MAX_ENTRIES})")]
    Full,
    #[error("KV vitals_silences: {0:#}")]
    Store(anyhow::Error),
}

fn store(e: impl Into<anyhow::Error>) -> WriteError {
    WriteError::Store(e.into())
}

/// A fresh silence id: 16 hex digits.
pub fn new_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Validates `req` at `now_ms` and stores it as a new silence.
pub async fn create(
    kv: &kv::Store,
    req: SilenceRequest,
    now_ms: u64,
) -> Result<Silence, WriteError> {
    let silence = req
        .into_silence(new_id(), now_ms)
        .map_err(|e| WriteError::Invalid(e.0))?;
    if count(kv).await? >= MAX_ENTRIES as usize {
        return Err(WriteError::Full);
    }
    let value = serde_json::to_vec(&silence).map_err(store)?;
    with_timeout(kv.create(subjects::silence_key(&silence.id), value.into())).await?;
    Ok(silence)
}

/// Ends a silence now by deleting it (the alerts it covered are notified if still firing).
pub async fn expire(kv: &kv::Store, id: &str) -> Result<(), WriteError> {
    let key = subjects::silence_key(id);
    let current = with_timeout(kv.get(key.as_str())).await?;
    if current.is_none() {
        return Err(WriteError::NotFound(format!("silence {id:?}")));
    }
    with_timeout(kv.delete(key.as_str())).await?;
    Ok(())
}

/// Silences not yet over (active or pending), by start. Values that fail validation are
/// skipped (counted by the caller through `refused`).
pub async fn list(kv: &kv::Store, now_ms: u64) -> anyhow::Result<(Vec<Silence>, usize)> {
    let (mut silences, refused) = load(kv).await?;
    silences.retain(|s| s.ends_ms > now_ms);
    silences.sort_by(|a, b| (a.starts_ms, &a.id).cmp(&(b.starts_ms, &b.id)));
    Ok((silences, refused))
}

/// Every silence the bucket holds (also ended ones not yet deleted) and how many values
/// under `silence.` were refused.
pub async fn load(kv: &kv::Store) -> anyhow::Result<(Vec<Silence>, usize)> {
    let keys: Vec<String> = tokio::time::timeout(CALL_TIMEOUT, async {
        let keys = kv.keys().await.context("listing KV vitals_silences")?;
        keys.try_collect::<Vec<String>>()
            .await
            .context("listing KV vitals_silences")
    })
    .await
    .context("listing KV vitals_silences timed out")??;
    let mut out = Vec::new();
    let mut refused = 0;
    for key in keys
        .iter()
        .filter(|k| k.starts_with(subjects::SILENCE_KEY_PREFIX))
    {
        let Some(value) = tokio::time::timeout(CALL_TIMEOUT, kv.get(key.as_str()))
            .await
            .context("reading KV vitals_silences timed out")??
        else {
            continue;
        };
        match Silence::from_json(&value) {
            Ok(s) if subjects::silence_key(&s.id) == *key => out.push(s),
            _ => refused += 1,
        }
    }
    Ok((out, refused))
}

/// Records who acknowledged an alert. The caller checks that the alert is firing.
pub async fn ack(kv: &kv::Store, req: AckRequest, now_ms: u64) -> Result<Ack, WriteError> {
    req.validate().map_err(|e| WriteError::Invalid(e.0))?;
    let id = AlertId::parse(&req.id).map_err(|e| WriteError::Invalid(e.0))?;
    let ack = Ack {
        id: req.id,
        by: req.by,
        at_ms: now_ms,
    };
    let value = serde_json::to_vec(&ack).map_err(store)?;
    with_timeout(kv.put(subjects::ack_key(&id), value.into())).await?;
    Ok(ack)
}

/// Forgets an acknowledgement (its alert resolved).
pub async fn forget_ack(kv: &kv::Store, alert_id: &str) -> Result<(), WriteError> {
    let id = AlertId::parse(alert_id).map_err(|e| WriteError::Invalid(e.0))?;
    with_timeout(kv.purge(subjects::ack_key(&id))).await?;
    Ok(())
}

async fn count(kv: &kv::Store) -> Result<usize, WriteError> {
    let info = with_timeout(kv.status()).await?;
    Ok(info.values() as usize)
}

async fn with_timeout<T, E: Into<anyhow::Error>>(
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, WriteError> {
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(r) => r.map_err(store),
        Err(_) => Err(WriteError::Store(anyhow::anyhow!("timed out"))),
    }
}
