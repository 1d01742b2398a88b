//! The Vitals monitor: judges each service's health from its samples on NATS and
//! republishes what changed (status, alerts, summaries, heartbeat, snapshot, KV state).
//!
//! Pure core: [`rules`], [`window`], [`engine`]. I/O around it: [`ingest`] (the task
//! that owns the engine), [`publish`], [`store`], [`http`].

pub mod config;
pub mod deps;
pub mod engine;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod publish;
pub mod read;
pub mod reconcile;
pub mod requests;
pub mod rules;
pub mod silences;
pub mod store;
pub mod window;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::service::ServiceExt;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::task::TaskTracker;
use vitals_protocol::subjects;
use vitals_runtime::requests::{RateLimiter, Rates};
use vitals_runtime::{Clock, RECONNECT_BACKOFF};

pub use config::Config;

use crate::engine::Engine;
use crate::ingest::{Ingest, Inputs};
use crate::metrics::Metrics;
use crate::requests::Handlers;

/// Retiring is an operator's act: a few a second is plenty, and a loop is refused.
const RETIRE_RATES: Rates = Rates {
    per_asker: 5.0,
    total: 20.0,
};

/// Silence and ack requests are operators' acts too.
const SILENCE_RATES: Rates = Rates {
    per_asker: 5.0,
    total: 20.0,
};

/// Name under which the monitor registers with the NATS service API (`nats micro ls`).
pub const SERVICE_NAME: &str = "vitals-monitor";

/// Runs the monitor until `shutdown` resolves. HTTP is served on `listener` from the
/// start (so `/healthz` answers while NATS is still coming up).
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let engine_config = config.engine()?;
    let clock = Clock::new();
    let started_ms = clock.now_ms();
    let metrics = Arc::new(Metrics::new());
    let cancel = vitals_runtime::cancel_on(shutdown);
    let tracker = TaskTracker::new();

    let (commands_tx, commands_rx) = mpsc::channel(64);
    let http_state = Arc::new(http::HttpState {
        metrics: metrics.clone(),
        handlers: Default::default(),
        operator_token: config.operator_token.clone(),
        allowed_origins: config.allowed_origins.clone(),
    });
    let app = http::router(http_state.clone());
    let http_cancel = cancel.clone();
    let limits = config
        .http
        .limits(vitals_runtime::http::DEFAULT_MAX_CONNS_PER_IP);
    let mut server = tokio::spawn(vitals_runtime::http::serve(
        listener,
        app,
        http_cancel.cancelled_owned(),
        limits,
    ));

    let pending_limit = config.pending_limit as usize;
    let (client, conn_rx) = config
        .nats
        .connect(SERVICE_NAME, |o| o.subscription_capacity(pending_limit))
        .await?;
    let js = async_nats::jetstream::new(client.clone());
    let limits = store::Limits {
        events_max_age: Duration::from_secs(config.events_max_age_s),
        events_max_bytes: config.events_max_bytes,
        kv_max_bytes: config.kv_max_bytes,
    };
    // Subscribe first, so samples that arrive while state loads wait in the subscription.
    let samples = client
        .subscribe(subjects::METRICS_ALL)
        .await
        .context("subscribing to metrics.*")?;
    let echo = client
        .subscribe(subjects::HEARTBEAT)
        .await
        .context("subscribing to the heartbeat echo")?;
    // Nothing arrives here unless nats.conf imports the system account's connection
    // events (both stacks do); then a crash is seen at once, else by the timeout.
    let conn_events = client
        .subscribe(subjects::CONN_EVENTS)
        .await
        .context("subscribing to connection events")?;
    let setup = vitals_runtime::retry_until_cancelled(
        &cancel,
        "setting up JetStream",
        RECONNECT_BACKOFF,
        || store::ensure(&js, &limits),
    );
    let Some(kv) = setup.await else {
        return finish(client, server, tracker).await;
    };
    let silences_setup = vitals_runtime::retry_until_cancelled(
        &cancel,
        "opening KV vitals_silences",
        RECONNECT_BACKOFF,
        || vitals_runtime::silences::silences_bucket(&js),
    );
    let Some(silences_kv) = silences_setup.await else {
        return finish(client, server, tracker).await;
    };
    // KV and HEALTH_EVENTS reconciled service by service (see `reconcile`).
    let restored = match store::restore(&js, &kv, &metrics, clock.now_ms()).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "could not load saved state; starting empty");
            store::Restored::default()
        }
    };
    let service = client
        .service_builder()
        .description("Vitals health monitor; health.snapshot returns the current state (paged)")
        .start(SERVICE_NAME, env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| anyhow::anyhow!("registering the service API: {e}"))?;
    let snapshot_requests = service
        .endpoint_builder()
        .name("snapshot")
        .add(subjects::SNAPSHOT)
        .await
        .map_err(|e| anyhow::anyhow!("adding the snapshot endpoint: {e}"))?;
    let retire_requests = service
        .endpoint_builder()
        .name("retire")
        .add(subjects::RETIRE)
        .await
        .map_err(|e| anyhow::anyhow!("adding the retire endpoint: {e}"))?;
    let mut silence_endpoints = Vec::new();
    for (kind, subject) in [
        (requests::SilenceEndpoint::Create, subjects::SILENCE_CREATE),
        (requests::SilenceEndpoint::List, subjects::SILENCE_LIST),
        (requests::SilenceEndpoint::Expire, subjects::SILENCE_EXPIRE),
        (requests::SilenceEndpoint::Ack, subjects::ALERT_ACK),
    ] {
        let endpoint = service
            .endpoint_builder()
            .name(kind.as_str())
            .add(subject)
            .await
            .map_err(|e| anyhow::anyhow!("adding the {} endpoint: {e}", kind.as_str()))?;
        silence_endpoints.push((kind, endpoint));
    }

    let mut engine = Engine::new(engine_config, clock.now_ms());
    let store::Restored {
        states,
        repairs,
        looked_up,
        diverged,
        unreadable,
    } = restored;
    let skipped = engine.restore(states, clock.now_ms());
    tracing::info!(
        services = engine.len(),
        skipped,
        unreadable = unreadable.len(),
        looked_up,
        diverged,
        repairs = repairs.len(),
        "state restored from KV"
    );

    let kv_writes = Arc::new(store::PendingWrites::default());
    let (outbox, outbox_rx) = publish::Outbox::new(config.publish_queue as usize, metrics.clone());
    tracker.spawn(publish::run_publisher(
        client.clone(),
        outbox_rx,
        kv_writes.clone(),
        metrics.clone(),
    ));
    tracker.spawn(store::run_writer(
        kv,
        kv_writes,
        metrics.clone(),
        cancel.clone(),
    ));

    for event in repairs {
        tracing::warn!(id = %event.id, state = ?event.state, "repairing the alert history after a restart");
        outbox.send(publish::Outbound::Event(Box::new(engine::Event::Alert(
            event,
        ))));
    }
    let monitor_id = config.monitor_id();
    let (mut read_publisher, reads) = read::channel(monitor_id.as_str().into());
    read_publisher.publish(clock.now_ms(), engine.snapshot(clock.now_ms()));
    let handlers = Arc::new(Handlers {
        client: client.clone(),
        reads,
        slots: Arc::new(Semaphore::new(config.max_snapshot_replies as usize)),
        commands: commands_tx,
        metrics: metrics.clone(),
        clock,
        snapshot_rates: std::sync::Mutex::new(RateLimiter::new(
            Rates {
                per_asker: config.snapshot_rate_per_client as f64,
                total: config.snapshot_rate_total as f64,
            },
            clock.now_ms(),
        )),
        retire_rates: std::sync::Mutex::new(RateLimiter::new(RETIRE_RATES, clock.now_ms())),
        silences: silences_kv.clone(),
        silence_rates: std::sync::Mutex::new(RateLimiter::new(SILENCE_RATES, clock.now_ms())),
        refusal_logged: std::sync::Mutex::new(None),
    });
    tracker.spawn(handlers.clone().serve_snapshots(
        snapshot_requests,
        tracker.clone(),
        cancel.clone(),
    ));
    tracker.spawn(
        handlers
            .clone()
            .serve_retire(retire_requests, tracker.clone(), cancel.clone()),
    );
    for (kind, endpoint) in silence_endpoints {
        tracker.spawn(handlers.clone().serve_silences(
            kind,
            endpoint,
            tracker.clone(),
            cancel.clone(),
        ));
    }
    // The watch sends through the engine's command queue, so it starts with the engine.
    let commands = handlers.commands.clone();
    tracker.spawn(silences::run_watch(
        silences_kv.clone(),
        commands,
        metrics.clone(),
        cancel.clone(),
    ));
    let (forget_acks, forget_rx) = mpsc::channel(silences::FORGET_QUEUE);
    tracker.spawn(silences::run_forgetter(
        silences_kv,
        forget_rx,
        metrics.clone(),
        cancel.clone(),
    ));
    let ingest = Ingest {
        engine,
        feed_stall: Duration::from_millis(config.feed_stall_ms),
        clock,
        metrics: metrics.clone(),
        outbox,
        monitor_id: monitor_id.clone(),
        tick: Duration::from_millis(config.tick_ms),
        started_ms,
        reads: read_publisher,
        forget_acks,
        conn_log: vitals_runtime::loglimit::LogLimiter::new(Duration::from_secs(10)),
    };
    let inputs = Inputs {
        samples,
        echo,
        commands: commands_rx,
        conn: conn_rx,
        conn_events,
    };
    let _ = http_state.handlers.set(handlers);
    tracing::info!(%monitor_id, "monitor running");
    // Owns the engine until shutdown; dropping it closes the outbox, which lets the
    // publisher drain what is queued and finish. An HTTP server that dies stops the
    // monitor with an error: a monitor nobody can check is not left running.
    let http_died = tokio::select! {
        () = ingest.run(inputs, cancel.clone()) => None,
        ended = &mut server => Some(ended),
    };
    cancel.cancel();
    if let Err(e) = service.stop().await {
        tracing::debug!(error = %e, "stopping service API");
    }
    if let Some(ended) = http_died {
        metrics.http_server_failures.inc();
        let why = match ended {
            Ok(Ok(())) => "it stopped".to_owned(),
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        tracing::error!(error = %why, "the HTTP server died; stopping");
        let _ = finish(client, tokio::spawn(async { Ok(()) }), tracker).await;
        anyhow::bail!("HTTP server died: {why}");
    }
    finish(client, server, tracker).await
}

type Server = tokio::task::JoinHandle<std::io::Result<()>>;

/// Waits (bounded) for background work, then drains the NATS connection.
async fn finish(client: async_nats::Client, server: Server, tracker: TaskTracker) -> Result<()> {
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(5), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("background tasks did not finish in time");
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), client.drain()).await;
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(Err(e))) => Err(e).context("HTTP server"),
        _ => Ok(()),
    }
}
