//! The Vitals notifier: reads the monitor's alert events from HEALTH_EVENTS through a
//! durable consumer and delivers them to webhooks, Slack and Alertmanager, at least once,
//! deduplicated through KV vitals_notified (docs/ALERTING.md).
//!
//! Pure: [`config`] (the receivers file), [`route`], [`payload`], [`deliver::backoff`].
//! I/O: [`worker`] (one per receiver), [`acks`], this module's consumer loop.

pub mod acks;
pub mod config;
pub mod deliver;
pub mod http;
pub mod metrics;
pub mod payload;
pub mod route;
pub mod worker;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::{self, consumer, kv, stream};
use futures::StreamExt;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;
use vitals_protocol::silence::AlertId;
use vitals_protocol::subjects::{self, HealthSubject};
use vitals_protocol::{AlertEvent, AlertState};
use vitals_runtime::{Clock, ConnEvent};

pub use config::{Config, ConfigError};

use crate::acks::Acker;
use crate::config::Receivers;
use crate::metrics::{Metrics, ReasonLabel};
use crate::worker::{Item, Origin, Queue, Shared};

pub const CLIENT_NAME: &str = "vitals-notifier";
/// Messages delivered but not yet acked, at most (the receivers' queues are bounded by it).
pub const MAX_ACK_PENDING: i64 = 20_000;
/// NOTIFY_DEAD keeps a month, at most 64 MiB.
const DEAD_MAX_AGE: Duration = Duration::from_secs(30 * 86_400);
const DEAD_MAX_BYTES: i64 = 64 * 1024 * 1024;

/// Reads and checks the receivers file; any fault is a [`ConfigError`] (exit 2).
pub fn load_receivers(path: &std::path::Path) -> Result<Receivers, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("--config {}: {e}", path.display())))?;
    config::parse_receivers(&text, |v| std::env::var(v).ok())
        .map_err(|e| ConfigError(format!("{}: {}", path.display(), e.0)))
}

/// Runs until `shutdown` resolves. HTTP is served on `listener` from the start.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let receivers = load_receivers(&config.config)?;
    if deliver::Url::parse(&config.external_url).is_none() {
        return Err(ConfigError(format!(
            "--external-url {:?} is not http(s)://host[:port][/path]",
            config.external_url
        ))
        .into());
    }
    for url in config.nats.nats_url.split(',') {
        url.trim()
            .parse::<async_nats::ServerAddr>()
            .map_err(|e| ConfigError(format!("--nats-url {url:?}: {e}")))?;
    }
    let names: Vec<String> = receivers.receivers.iter().map(|r| r.name.clone()).collect();
    let metrics = Arc::new(Metrics::new(&names));
    let cancel = vitals_runtime::cancel_on(shutdown);
    let tracker = TaskTracker::new();
    let http_state = Arc::new(http::HttpState {
        metrics: metrics.clone(),
        running: Default::default(),
    });
    let mut server = tokio::spawn(vitals_runtime::http::serve(
        listener,
        http::router(http_state.clone()),
        cancel.clone().cancelled_owned(),
        config
            .http
            .limits(vitals_runtime::http::DEFAULT_MAX_CONNS_PER_IP),
    ));

    let (client, conn) = config.nats.connect(CLIENT_NAME, |o| o).await?;
    tracker.spawn(track_connection(conn, metrics.clone(), cancel.clone()));
    let js = jetstream::new(client.clone());

    let setup = vitals_runtime::retry_until_cancelled(
        &cancel,
        "JetStream setup",
        vitals_runtime::RECONNECT_BACKOFF,
        || setup(&js, &config),
    );
    let Some((notified, consumer, first_start)) = setup.await else {
        return Ok(());
    };
    let shared = Arc::new(Shared {
        routes: receivers.routes.clone(),
        notified,
        js: js.clone(),
        client: deliver::Client::new()?,
        metrics: metrics.clone(),
        external_url: config.external_url.trim_end_matches('/').to_owned(),
        clock: Clock::new(),
    });
    let mut queues = Vec::new();
    for rc in receivers.receivers.iter().cloned() {
        let (q, w) = worker::new(rc, shared.clone());
        tracker.spawn(w.run(cancel.clone()));
        queues.push(q);
    }
    let (acker, ack_task) = Acker::new(Duration::from_secs(config.ack_wait_s), cancel.clone());
    tracker.spawn(ack_task);

    // What fires now (KV health_status), before anything the consumer brings: on a new
    // durable it is delivered if not yet, otherwise it only rebuilds the reminders.
    let firing_now = match firing_now(&js).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(
                error = format!("{e:#}"),
                "could not read KV health_status at start"
            );
            Vec::new()
        }
    };
    for event in &firing_now {
        let sev = route::severity_of(event.marks.severity.as_deref(), event.alert);
        for (rec, ri) in route::route(&receivers.routes, event.service.as_str(), event.alert, &sev)
        {
            queues[rec].push(Item {
                event: event.clone(),
                route: ri,
                origin: Origin::Start {
                    deliver: first_start,
                },
                done: None,
            });
        }
    }
    http_state.running.store(true, Ordering::Relaxed);
    tracing::info!(
        receivers = queues.len(),
        routes = receivers.routes.len(),
        durable = %config.durable,
        first_start,
        firing_now = firing_now.len(),
        "notifier running"
    );

    let http_died = tokio::select! {
        biased;
        () = cancel.cancelled() => None,
        ended = &mut server => Some(ended),
        () = consume(consumer, &receivers, &queues, &acker, &metrics, &cancel) => None,
    };
    cancel.cancel();
    vitals_runtime::lifecycle::wind_down(&tracker, &client, http_died, server).await
}

type Consumer = consumer::Consumer<consumer::pull::Config>;

/// KV vitals_notified, stream NOTIFY_DEAD, and the durable (true when it was created now).
async fn setup(js: &jetstream::Context, config: &Config) -> Result<(kv::Store, Consumer, bool)> {
    let notified = vitals_runtime::targets::open_or_create(
        js,
        kv::Config {
            bucket: subjects::NOTIFIED_BUCKET.to_owned(),
            description: "Vitals notifier: what each receiver accepted (dedup)".to_owned(),
            history: 1,
            max_age: Duration::from_secs(config.dedup_ttl_s),
            storage: stream::StorageType::File,
            ..Default::default()
        },
    )
    .await?;
    js.get_or_create_stream(stream::Config {
        name: subjects::DEAD_STREAM.to_owned(),
        description: Some("Vitals notifier: deliveries given up after max_attempts".to_owned()),
        subjects: vec![subjects::DEAD_ALL.to_owned()],
        max_age: DEAD_MAX_AGE,
        max_bytes: DEAD_MAX_BYTES,
        discard: stream::DiscardPolicy::Old,
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .context("stream NOTIFY_DEAD")?;
    let events = js
        .get_stream(subjects::EVENTS_STREAM)
        .await
        .context("stream HEALTH_EVENTS (made by the monitor)")?;
    let cfg = consumer::pull::Config {
        durable_name: Some(config.durable.clone()),
        description: Some("Vitals notifier".to_owned()),
        filter_subject: subjects::ALERT_ALL.to_owned(),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_secs(config.ack_wait_s),
        max_ack_pending: MAX_ACK_PENDING,
        // Not the history: what fires now comes from KV health_status.
        deliver_policy: consumer::DeliverPolicy::New,
        max_deliver: -1,
        ..Default::default()
    };
    if let Ok(c) = events
        .get_consumer::<consumer::pull::Config>(&config.durable)
        .await
    {
        // Resumed: --ack-wait-s may have changed since it was made (an update keeps its
        // position; if the server refuses it, the consumer as it is still works).
        if c.cached_info().config.ack_wait != cfg.ack_wait
            && let Err(e) = events.create_consumer(cfg).await
        {
            tracing::warn!(error = %e, "could not update the durable's ack_wait");
        }
        return Ok((notified, c, false));
    }
    match events.create_consumer_strict(cfg).await {
        Ok(c) => {
            tracing::info!(durable = %config.durable, "created the durable consumer");
            Ok((notified, c, true))
        }
        // Another notifier created it in between.
        Err(create) => {
            let c = events
                .get_consumer::<consumer::pull::Config>(&config.durable)
                .await
                .map_err(|e| anyhow::anyhow!("durable {}: {create}; {e}", config.durable))?;
            Ok((notified, c, false))
        }
    }
}

/// Every alert KV health_status says fires now, as its firing event.
async fn firing_now(js: &jetstream::Context) -> Result<Vec<AlertEvent>> {
    let Ok(kv) = js.get_key_value(subjects::KV_BUCKET).await else {
        return Ok(Vec::new());
    };
    let states = vitals_runtime::load_service_states(&kv).await?;
    let mut out = Vec::new();
    for s in states {
        for a in s.alerts {
            out.push(AlertEvent {
                id: a.id,
                service: s.service.clone(),
                alert: a.alert,
                state: AlertState::Firing,
                value: a.value,
                threshold: a.threshold,
                since_ms: a.since_ms,
                at_ms: a.since_ms,
                reason: None,
                marks: a.marks,
                update: None,
            });
        }
    }
    Ok(out)
}

/// What a HEALTH_EVENTS message is, for the notifier: an alert event to route, or a
/// refusal (acked and counted).
pub fn parse_message(subject: &str, payload: &[u8]) -> Result<AlertEvent, &'static str> {
    let Some(HealthSubject::Alert(service)) = subjects::parse_health(subject) else {
        return Err("not_an_alert_subject");
    };
    let event: AlertEvent = serde_json::from_slice(payload).map_err(|_| "bad_json")?;
    match AlertId::parse(&event.id) {
        Ok(id) if id.service == event.service && event.service.as_str() == service => Ok(event),
        _ => Err("bad_id"),
    }
}

async fn consume(
    consumer: Consumer,
    receivers: &Receivers,
    queues: &[Queue],
    acker: &Acker,
    metrics: &Metrics,
    cancel: &tokio_util::sync::CancellationToken,
) {
    loop {
        let messages = match consumer.messages().await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "consumer: cannot pull; retrying");
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        let mut messages = std::pin::pin!(messages);
        while let Some(msg) = messages.next().await {
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(error = %e, "consumer message error");
                    continue;
                }
            };
            let Ok(seq) = msg.info().map(|i| i.stream_sequence) else {
                continue;
            };
            let Some(msg) = acker.refresh(seq, msg) else {
                continue;
            };
            metrics.events.inc();
            let event = match parse_message(msg.subject.as_str(), &msg.payload) {
                Ok(e) => e,
                Err(reason) => {
                    metrics.refused.get_or_create(&ReasonLabel { reason }).inc();
                    tracing::debug!(subject = %msg.subject, reason, "refused");
                    let _ = msg.ack().await;
                    continue;
                }
            };
            let sev = route::severity_of(event.marks.severity.as_deref(), event.alert);
            let targets =
                route::route(&receivers.routes, event.service.as_str(), event.alert, &sev);
            if targets.is_empty() {
                metrics.unrouted.inc();
                let _ = msg.ack().await;
                continue;
            }
            let done = acker.track(seq, msg, targets.len());
            for (rec, ri) in targets {
                queues[rec].push(Item {
                    event: event.clone(),
                    route: ri,
                    origin: Origin::Stream,
                    done: Some(done.clone()),
                });
            }
        }
        tracing::warn!("consumer stream ended; pulling again");
    }
}

async fn track_connection(
    mut conn: tokio::sync::mpsc::UnboundedReceiver<ConnEvent>,
    metrics: Arc<Metrics>,
    cancel: tokio_util::sync::CancellationToken,
) {
    loop {
        let ev = tokio::select! {
            () = cancel.cancelled() => return,
            e = conn.recv() => e,
        };
        match ev {
            Some(ConnEvent::Connected) => {
                metrics.nats_connected.set(1);
            }
            Some(ConnEvent::Disconnected) => {
                metrics.nats_connected.set(0);
            }
            Some(ConnEvent::SlowConsumer) => {}
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_alert_events_are_routed() {
        let ev = r#"{"id":"auth:SERVICE_DOWN:5","service":"auth","alert":"SERVICE_DOWN","state":"firing","value":3.0,"threshold":3.0,"since_ms":5,"at_ms":6}"#;
        assert!(parse_message("health.alert.auth", ev.as_bytes()).is_ok());
        assert_eq!(
            parse_message(
                "health.alert.ack",
                br#"{"id":"auth:SERVICE_DOWN:5","by":"ann"}"#
            )
            .unwrap_err(),
            "not_an_alert_subject"
        );
        assert_eq!(
            parse_message("health.alert.auth", b"{").unwrap_err(),
            "bad_json"
        );
        assert_eq!(
            parse_message("health.alert.billing", ev.as_bytes()).unwrap_err(),
            "bad_id",
            "the subject names another service"
        );
        let bad = ev.replace("auth:SERVICE_DOWN:5", "x");
        assert_eq!(
            parse_message("health.alert.auth", bad.as_bytes()).unwrap_err(),
            "bad_id"
        );
    }
}
