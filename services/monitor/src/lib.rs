//! The Vitals monitor: judges each service's health from its samples on NATS and
//! republishes what changed (status, alerts, summaries, heartbeat, snapshot, KV state).
//!
//! Pure core: [`rules`], [`window`], [`engine`]. I/O around it: [`ingest`] (the task
//! that owns the engine), [`publish`], [`store`], [`http`].

pub mod config;
pub mod engine;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod publish;
pub mod reconcile;
pub mod rules;
pub mod store;
pub mod window;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::service::ServiceExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use vitals_protocol::subjects;
use vitals_runtime::Clock;

pub use config::Config;

use crate::engine::Engine;
use crate::ingest::{Ingest, Inputs};
use crate::metrics::Metrics;

/// Alert events read back from HEALTH_EVENTS on start to reconcile with the KV state.
const RECONCILE_ALERTS: u64 = 10_000;

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
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    tokio::spawn({
        let cancel = cancel.clone();
        async move {
            shutdown.await;
            cancel.cancel();
        }
    });

    let (commands_tx, commands_rx) = mpsc::channel(64);
    let http_state = Arc::new(http::HttpState {
        metrics: metrics.clone(),
        commands: commands_tx,
        ready: false.into(),
    });
    let app = http::router(http_state.clone());
    let http_cancel = cancel.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(http_cancel.cancelled_owned())
            .await
    });

    let pending_limit = config.pending_limit;
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
    let Some(kv) = retry_until_cancelled(&cancel, "setting up JetStream", || {
        store::ensure(&js, &limits)
    })
    .await
    else {
        return finish(client, server, tracker).await;
    };
    let mut restored = match store::load(&kv).await {
        Ok(states) => states,
        Err(e) => {
            tracing::warn!(error = %e, "could not load saved state; starting empty");
            Vec::new()
        }
    };
    let service = client
        .service_builder()
        .description("Vitals health monitor; health.snapshot returns the current state")
        .start(SERVICE_NAME, env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| anyhow::anyhow!("registering the service API: {e}"))?;
    let snapshot_requests = service
        .endpoint_builder()
        .name("snapshot")
        .add(subjects::SNAPSHOT)
        .await
        .map_err(|e| anyhow::anyhow!("adding the snapshot endpoint: {e}"))?;

    let repairs = match store::recent_alerts(&js, RECONCILE_ALERTS).await {
        Ok((history, from_ms)) => {
            reconcile::reconcile(&mut restored, &history, from_ms, clock.now_ms())
        }
        Err(e) => {
            tracing::warn!(
                error = format!("{e:#}"),
                "could not read the alert history; not reconciling"
            );
            Vec::new()
        }
    };
    let mut engine = Engine::new(engine_config, clock.now_ms());
    let skipped = engine.restore(restored, clock.now_ms());
    tracing::info!(
        services = engine.len(),
        skipped,
        repairs = repairs.len(),
        "state restored from KV"
    );

    let kv_writes = Arc::new(store::PendingWrites::default());
    let (outbox, outbox_rx) = publish::Outbox::new(config.publish_queue, metrics.clone());
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
        outbox.send(publish::Outbound::Event(engine::Event::Alert(event)));
    }
    let ingest = Ingest {
        engine,
        feed_stall: Duration::from_millis(config.feed_stall_ms),
        clock,
        metrics: metrics.clone(),
        outbox,
        monitor_id: config.monitor_id(),
        tick: Duration::from_millis(config.tick_ms),
        started_ms,
    };
    let inputs = Inputs {
        samples,
        echo,
        snapshot_requests,
        commands: commands_rx,
        conn: conn_rx,
    };
    http_state.ready.store(true, Ordering::Relaxed);
    tracing::info!(monitor_id = %config.monitor_id(), "monitor running");
    // Owns the engine until shutdown; dropping it closes the outbox, which lets the
    // publisher drain what is queued and finish.
    ingest.run(inputs, cancel.clone()).await;
    cancel.cancel();
    if let Err(e) = service.stop().await {
        tracing::debug!(error = %e, "stopping service API");
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

async fn retry_until_cancelled<T, F, Fut>(
    cancel: &CancellationToken,
    what: &str,
    mut f: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut delay = Duration::from_millis(100);
    loop {
        tokio::select! {
            r = f() => match r {
                Ok(v) => return Some(v),
                Err(e) => tracing::warn!(error = format!("{e:#}"), "{what} failed; retrying"),
            },
            () = cancel.cancelled() => return None,
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = cancel.cancelled() => return None,
        }
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}
