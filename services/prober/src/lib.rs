//! The Vitals prober: checks real HTTP(S) and TCP targets and publishes one MetricSample
//! per probe on `metrics.<service>` (`source: "probe"`), so the monitor judges them like
//! any other service. Targets come from a file and from KV `vitals_targets`, watched live.
//!
//! Pure: [`targets`] (loading, refusing, planning a change), [`sample`] (an outcome to a
//! sample). Timing: [`schedule`]. I/O: [`http_probe`], [`tcp_probe`], [`kv`], [`retire`].

pub mod config;
pub mod http;
pub mod http_probe;
pub mod kv;
pub mod metrics;
pub mod retire;
pub mod sample;
pub mod schedule;
pub mod targets;
pub mod tcp_probe;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Result;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::task::TaskTracker;
use vitals_protocol::{ConnName, MetricSample, Target, TargetKind, subjects};
use vitals_runtime::{Clock, ConnEvent};

pub use config::{Config, ConfigError, Settings};

use crate::http_probe::HttpProber;
use crate::kv::Update;
use crate::metrics::Metrics;
use crate::sample::Outcome;
use crate::schedule::{Applied, BoxFuture, Ctx, Runner, Scheduler, Sink};

/// Reads and checks the targets file; any fault is a [`ConfigError`] (exit 2).
pub fn load_targets_file(path: &std::path::Path) -> Result<Vec<Target>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("--targets {}: {e}", path.display())))?;
    targets::parse_file(&text).map_err(|e| ConfigError(format!("{}: {e}", path.display())))
}

/// Runs until `shutdown` resolves. HTTP is served on `listener` from the start.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let settings = config.resolve()?;
    let file_targets = match &settings.targets_file {
        Some(path) => load_targets_file(path)?,
        None => Vec::new(),
    };
    let metrics = Arc::new(Metrics::new());
    let cancel = vitals_runtime::cancel_on(shutdown);
    let tracker = TaskTracker::new();

    let http_state = Arc::new(http::HttpState {
        metrics: metrics.clone(),
        instance: settings.instance.clone(),
        running: Default::default(),
    });
    let mut server = tokio::spawn(vitals_runtime::http::serve(
        listener,
        http::router(http_state.clone()),
        cancel.clone().cancelled_owned(),
        settings.http_limits,
    ));

    let (client, conn) = settings
        .nats
        // `vitals:prober:*:<instance>`: the monitor knows it is a prober and never takes
        // the targets DOWN for the prober's own loss (the timeout still does, later).
        .connect(&ConnName::format_many("prober", &settings.instance), |o| o)
        .await?;
    tracker.spawn(track_connection(conn, metrics.clone(), cancel.clone()));
    let ctx = Arc::new(Ctx {
        runner: Probes {
            http: HttpProber::new(settings.extra_roots.clone())?,
        },
        sink: Nats {
            client: client.clone(),
            metrics: metrics.clone(),
        },
        slots: Arc::new(Semaphore::new(settings.max_inflight)),
        metrics: metrics.clone(),
        clock: Clock::new(),
        instance: settings.instance.clone(),
        cert_warn_days: settings.cert_warn_days,
        start_spread: Duration::from_secs(1),
    });
    let mut scheduler = Scheduler::new(ctx);
    // The file's targets are probed at once, whether KV is there or not.
    for t in &file_targets {
        if let Some(s) = t.service_name() {
            scheduler.apply(s, Some(t.clone())).await;
        }
    }

    let (updates_tx, mut updates) = mpsc::channel(1024);
    tracker.spawn(kv::run(
        async_nats::jetstream::new(client.clone()),
        file_targets,
        updates_tx,
        metrics.clone(),
        cancel.clone(),
    ));
    let (retire_tx, retire_rx) = mpsc::unbounded_channel();
    tracker.spawn(retire::run(
        client.clone(),
        retire_rx,
        metrics.clone(),
        cancel.clone(),
    ));
    http_state.running.store(true, Ordering::Relaxed);
    tracing::info!(
        instance = %settings.instance,
        targets = scheduler.len(),
        max_inflight = settings.max_inflight,
        "prober running"
    );

    let http_died = loop {
        let update = tokio::select! {
            // The server also ends once cancelled: that is the normal way, not a death.
            biased;
            () = cancel.cancelled() => break None,
            ended = &mut server => break Some(ended),
            u = updates.recv() => u,
        };
        let Some(update) = update else { break None };
        for stopped in apply(&mut scheduler, update).await {
            let _ = retire_tx.send(stopped);
        }
    };
    cancel.cancel();
    // Probing stops first (every task awaited: nothing is sent after), then NATS drains.
    // No retire on shutdown: the targets are still wanted.
    scheduler.stop_all().await;
    vitals_runtime::lifecycle::wind_down(&tracker, &client, http_died, server).await
}

/// Applies one update; returns the services whose target was removed (to retire).
async fn apply<R: Runner, S: Sink>(
    scheduler: &mut Scheduler<R, S>,
    update: Update,
) -> Vec<vitals_protocol::ServiceName> {
    match update {
        Update::Put(target) => {
            let Some(service) = target.service_name().cloned() else {
                return Vec::new();
            };
            let endpoint = target.endpoint().to_owned();
            let interval_ms = target.interval_ms();
            match scheduler.apply(&service, Some(target)).await {
                Applied::Started => {
                    tracing::info!(service = %service, endpoint = %endpoint, interval_ms, "target added")
                }
                Applied::Replaced => {
                    tracing::info!(service = %service, endpoint = %endpoint, interval_ms, "target changed")
                }
                _ => {}
            }
            Vec::new()
        }
        Update::Delete(service) => match scheduler.apply(&service, None).await {
            Applied::Stopped => {
                tracing::info!(service = %service, "target removed");
                vec![service]
            }
            _ => Vec::new(),
        },
        Update::Present(present) => {
            let gone = scheduler.retain(&present).await;
            for s in &gone {
                tracing::info!(service = %s, "target removed (while KV was not watched)");
            }
            gone
        }
    }
}

async fn track_connection(
    mut conn: mpsc::UnboundedReceiver<ConnEvent>,
    metrics: Arc<Metrics>,
    cancel: tokio_util::sync::CancellationToken,
) {
    loop {
        let event = tokio::select! {
            e = conn.recv() => e,
            () = cancel.cancelled() => return,
        };
        match event {
            Some(ConnEvent::Connected) => metrics.nats_connected.set(1),
            Some(ConnEvent::Disconnected) => metrics.nats_connected.set(0),
            Some(ConnEvent::SlowConsumer) => continue,
            None => return,
        };
    }
}

/// The real probes.
struct Probes {
    http: HttpProber,
}

impl Runner for Probes {
    fn probe<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            match target.kind {
                TargetKind::Http => self.http.probe(target).await,
                TargetKind::Tcp => {
                    tcp_probe::probe(target.address.as_deref().unwrap_or_default()).await
                }
            }
        })
    }
}

/// Samples to `metrics.<service>`.
struct Nats {
    client: async_nats::Client,
    metrics: Arc<Metrics>,
}

impl Sink for Nats {
    fn send(&self, sample: MetricSample) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let payload = match serde_json::to_vec(&sample) {
                Ok(p) => p,
                Err(e) => {
                    self.metrics.invalid_samples.inc();
                    tracing::error!(error = %e, "encoding a sample");
                    return;
                }
            };
            match self
                .client
                .publish(subjects::metrics(&sample.service), payload.into())
                .await
            {
                Ok(()) => {
                    self.metrics.published.inc();
                }
                Err(e) => {
                    self.metrics.publish_errors.inc();
                    tracing::debug!(error = %e, "publishing a sample");
                }
            };
        })
    }
}
