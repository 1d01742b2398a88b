use std::future::Future;
use std::time::Duration;

use anyhow::{Context, Result};
use futures::{Stream, StreamExt};
use serde_json::Value;

/// Polls `check` every 20 ms until it returns Some, or `timeout` passes.
pub async fn wait_until<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    tokio::time::timeout(timeout, async {
        loop {
            if let Some(v) = check().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .ok()
}

/// The next item of a subscription (or any stream), within `timeout`.
pub async fn next_within<S, T>(stream: &mut S, timeout: Duration) -> Result<T>
where
    S: Stream<Item = T> + Unpin,
{
    tokio::time::timeout(timeout, stream.next())
        .await
        .with_context(|| format!("nothing arrived within {timeout:?}"))?
        .context("stream ended")
}

/// The next NATS message parsed as JSON, with its subject, within `timeout`.
pub async fn next_json_within(
    sub: &mut async_nats::Subscriber,
    timeout: Duration,
) -> Result<(String, Value)> {
    let msg = next_within(sub, timeout).await?;
    let json = serde_json::from_slice(&msg.payload)
        .with_context(|| format!("payload on {} is not JSON", msg.subject))?;
    Ok((msg.subject.to_string(), json))
}

/// Everything a stream yields during `window` (for "nothing else happened" checks).
pub async fn collect_for<S, T>(stream: &mut S, window: Duration) -> Vec<T>
where
    S: Stream<Item = T> + Unpin,
{
    let mut out = Vec::new();
    let _ = tokio::time::timeout(window, async {
        while let Some(item) = stream.next().await {
            out.push(item);
        }
    })
    .await;
    out
}
