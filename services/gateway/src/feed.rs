//! NATS -> view: one subscription to `health.>` for the whole gateway.
//!
//! On start and after every reconnect: subscribe first (already done, the client keeps
//! the subscription across reconnects), fetch the snapshot (the monitor's, or KV's if the
//! monitor does not answer), replay what arrived meanwhile, then go live.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vitals_protocol::{ServiceState, Snapshot, subjects};
use vitals_runtime::ConnEvent;

use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::view::Update;

/// Updates buffered during one sync, at most (then the sync starts over).
const MAX_BUFFERED: usize = 200_000;

/// Parses a message from `health.>`; None for what the view does not track
/// (snapshot requests, unknown subjects) or what does not parse (counted).
pub fn parse(subject: &str, payload: &[u8], metrics: &Metrics) -> Option<Update> {
    fn decode<T: serde::de::DeserializeOwned>(payload: &[u8], metrics: &Metrics) -> Option<T> {
        let parsed = serde_json::from_slice(payload).ok();
        if parsed.is_none() {
            metrics.feed_invalid.inc();
        }
        parsed
    }
    let (kind, service) = match subject.strip_prefix("health.")?.split_once('.') {
        Some(("monitor", "heartbeat")) => return decode(payload, metrics).map(Update::Heartbeat),
        Some((kind, service)) => (kind, service),
        None => return None,
    };
    // The subject names the service; a payload about another one is refused.
    let update = match kind {
        "status" => decode(payload, metrics).map(Update::Status),
        "alert" => decode(payload, metrics).map(Update::Alert),
        "metrics" => decode(payload, metrics).map(Update::Summary),
        _ => None,
    }?;
    let about = match &update {
        Update::Status(c) => c.service.as_str(),
        Update::Alert(a) => a.service.as_str(),
        Update::Summary(s) => s.service.as_str(),
        Update::Heartbeat(_) => service,
    };
    if about != service {
        metrics.feed_invalid.inc();
        return None;
    }
    Some(update)
}

pub struct Feed {
    pub client: async_nats::Client,
    pub hub: Arc<Hub>,
    pub metrics: Arc<Metrics>,
    pub snapshot_timeout: Duration,
}

type Sync = JoinHandle<(Vec<ServiceState>, &'static str)>;

impl Feed {
    pub async fn run(
        self,
        mut sub: async_nats::Subscriber,
        mut conn: mpsc::UnboundedReceiver<ConnEvent>,
        cancel: CancellationToken,
    ) {
        let mut syncing: Option<(Sync, Vec<Update>)> = None;
        // A heartbeat from a monitor other than the last one seen (a restart, or the
        // first monitor after starting empty) means a new full state: sync again.
        let mut monitor_id: Option<String> = None;
        if self.client.connection_state() == async_nats::connection::State::Connected {
            syncing = Some((self.start_sync(), Vec::new()));
        }
        loop {
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                Some(change) = conn.recv() => match change {
                    ConnEvent::SlowConsumer => {
                        self.metrics.feed_slow_consumer.inc();
                        tracing::warn!("the gateway fell behind NATS; messages dropped");
                    }
                    ConnEvent::Disconnected => {
                        self.metrics.nats_connected.set(0);
                        if let Some((task, _)) = syncing.take() {
                            task.abort();
                        }
                        self.hub.disconnected();
                    }
                    ConnEvent::Connected => {
                        self.metrics.nats_connected.set(1);
                        if let Some((task, _)) = syncing.take() {
                            task.abort();
                        }
                        syncing = Some((self.start_sync(), Vec::new()));
                    }
                },
                done = async { (&mut syncing.as_mut()?.0).await.ok() }, if syncing.is_some() => {
                    let buffered = syncing.take().map(|(_, b)| b).unwrap_or_default();
                    if let Some((services, source)) = done {
                        tracing::info!(services = services.len(), source, replayed = buffered.len(), "view synced");
                        self.hub.replace(services, source, buffered);
                    }
                }
                msg = sub.next() => {
                    let Some(msg) = msg else { break };
                    self.metrics.feed_in.inc();
                    let Some(update) = parse(&msg.subject, &msg.payload, &self.metrics) else { continue };
                    if let Update::Heartbeat(hb) = &update
                        && monitor_id.as_deref() != Some(hb.monitor_id.as_str())
                    {
                        let first = monitor_id.is_none();
                        monitor_id = Some(hb.monitor_id.clone());
                        if !first && syncing.is_none() {
                            tracing::info!(monitor_id = %hb.monitor_id, "a new monitor is up; syncing");
                            syncing = Some((self.start_sync(), Vec::new()));
                        }
                    }
                    match syncing.as_mut() {
                        Some((_, buffer)) if buffer.len() < MAX_BUFFERED => buffer.push(update),
                        Some(_) => {
                            tracing::warn!("too much arrived during a sync; starting over");
                            if let Some((task, _)) = syncing.take() {
                                task.abort();
                            }
                            syncing = Some((self.start_sync(), Vec::new()));
                        }
                        None => self.hub.publish(update),
                    }
                }
            }
        }
    }

    fn start_sync(&self) -> Sync {
        let client = self.client.clone();
        let metrics = self.metrics.clone();
        let timeout = self.snapshot_timeout;
        tokio::spawn(async move {
            if let Some(snapshot) = request_snapshot(&client, timeout).await {
                return (snapshot.services, "monitor");
            }
            metrics.snapshot_fallbacks.inc();
            match read_kv(&client).await {
                Ok(states) => (states, "kv"),
                // No monitor has ever run here: start empty. When a monitor appears, its
                // first heartbeat triggers a new sync.
                Err(e) => {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "no snapshot from the monitor or KV; starting empty"
                    );
                    (Vec::new(), "none")
                }
            }
        })
    }
}

/// Asks the monitor; "no responders" (it may be resubscribing after the same reconnect)
/// is retried until `timeout`.
async fn request_snapshot(client: &async_nats::Client, timeout: Duration) -> Option<Snapshot> {
    let ask = async {
        loop {
            match client.request(subjects::SNAPSHOT, "".into()).await {
                Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => return other,
            }
        }
    };
    let reply = tokio::time::timeout(timeout, ask).await;
    match reply {
        Ok(Ok(msg)) => serde_json::from_slice(&msg.payload).ok(),
        Ok(Err(e)) => {
            tracing::info!(error = %e, "monitor did not answer the snapshot request; reading KV");
            None
        }
        Err(_) => {
            tracing::info!("snapshot request timed out; reading KV");
            None
        }
    }
}

async fn read_kv(client: &async_nats::Client) -> anyhow::Result<Vec<ServiceState>> {
    use anyhow::Context;
    let js = async_nats::jetstream::new(client.clone());
    let kv = js
        .get_key_value(subjects::KV_BUCKET)
        .await
        .context("opening KV health_status")?;
    vitals_runtime::load_service_states(&kv).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_by_subject_and_refuses_mismatches() {
        let m = Metrics::new();
        let change = r#"{"service":"auth","status":"DOWN","previous":"HEALTHY","at_ms":5,"reasons":["stopped"]}"#;
        assert!(matches!(
            parse("health.status.auth", change.as_bytes(), &m),
            Some(Update::Status(_))
        ));
        assert!(parse("health.status.billing", change.as_bytes(), &m).is_none());
        assert!(parse("health.status.auth", b"junk", &m).is_none());
        assert!(parse("health.snapshot", b"", &m).is_none());
        assert!(parse("health.other.auth", change.as_bytes(), &m).is_none());
        assert_eq!(m.feed_invalid.get(), 2);
    }
}
