//! KV `vitals_targets`: the one live list of probe targets (key = service, value = target
//! JSON). Whoever needs it first creates it (the prober at start, the gateway on its first
//! write), so both go through [`targets_bucket`] and get the same bucket settings.

use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::{self, kv};
use vitals_protocol::subjects;
use vitals_protocol::target::MAX_TARGET_BYTES;

/// A few revisions per target, so `nats kv history vitals_targets NAME` shows what changed.
pub const TARGETS_HISTORY: i64 = 5;
/// The bucket's size limit: ~4,000 targets at the largest value, times the history.
pub const TARGETS_MAX_BYTES: i64 = 64 * 1024 * 1024;
/// A single JetStream API call should answer within this; more means it is not there.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The bucket's settings. Values larger than a target may be are refused by the server.
pub fn targets_config() -> kv::Config {
    kv::Config {
        bucket: subjects::TARGETS_BUCKET.to_owned(),
        description: "Vitals probe targets: key = service, value = target JSON".to_owned(),
        history: TARGETS_HISTORY,
        max_bytes: TARGETS_MAX_BYTES,
        max_value_size: MAX_TARGET_BYTES as i32,
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    }
}

/// KV `vitals_targets`, created if it does not exist yet (see [`open_or_create`]).
pub async fn targets_bucket(js: &jetstream::Context) -> anyhow::Result<kv::Store> {
    open_or_create(js, targets_config()).await
}

/// The bucket `config` names, created with `config` if it does not exist yet. Idempotent
/// and safe to race: when two callers create it at once, the loser finds the winner's.
///
/// Creating needs, besides the bucket's own API subjects, `$JS.API.INFO` (async-nats
/// reads the account before it creates a bucket); opening an existing one does not.
pub async fn open_or_create(
    js: &jetstream::Context,
    config: kv::Config,
) -> anyhow::Result<kv::Store> {
    let name = config.bucket.clone();
    let opened = tokio::time::timeout(CALL_TIMEOUT, js.get_key_value(name.as_str()))
        .await
        .with_context(|| format!("opening KV {name} timed out"))?;
    let get_err = match opened {
        Ok(store) => return Ok(store),
        Err(e) => e,
    };
    let created = tokio::time::timeout(CALL_TIMEOUT, js.create_key_value(config))
        .await
        .with_context(|| format!("creating KV {name} timed out"))?;
    match created {
        Ok(store) => {
            tracing::info!(bucket = %name, "created KV bucket");
            Ok(store)
        }
        // Someone else created it in between (or it exists and only the open failed
        // transiently): one more open settles which.
        Err(create_err) => js.get_key_value(name.as_str()).await.with_context(|| {
            format!("KV {name}: cannot open ({get_err}) nor create ({create_err})")
        }),
    }
}
