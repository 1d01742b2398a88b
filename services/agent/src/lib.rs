//! The Vitals host agent: publishes the real figures of the host it runs on (CPU overall
//! and per core, memory, load averages, disk, process count, the five busiest processes)
//! as MetricSamples with `source: "agent"`, so the monitor judges a real machine the way
//! it judges a simulated service.

pub mod collect;
pub mod config;
pub mod http;
pub mod metrics;
pub mod publisher;
pub mod sample;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_nats::Event;
use rand::Rng;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use vitals_protocol::ConnName;

pub use config::{Config, ConfigError, Settings};

use crate::collect::Collector;
use crate::metrics::Metrics;
use crate::publisher::Publisher;
use crate::sample::Identity;

/// How long the stopping sample may take to reach NATS.
const FLUSH_ON_STOP: Duration = Duration::from_secs(2);
/// How long open HTTP requests may take to finish on a stop.
const HTTP_DRAIN: Duration = Duration::from_secs(5);

/// Runs the agent until `shutdown` completes. A [`ConfigError`] in the error chain means
/// the configuration was refused (exit 2).
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let settings = config.resolve()?;
    let listener = TcpListener::bind(settings.http_addr)
        .await
        .with_context(|| format!("binding HTTP listener on {}", settings.http_addr))?;
    serve(settings, listener, vitals_runtime::cancel_on(shutdown)).await
}

/// Runs the agent on a bound listener until `stop`.
pub async fn serve(
    settings: Settings,
    listener: TcpListener,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let local = listener
        .local_addr()
        .context("reading the bound HTTP address")?;
    tracing::info!(addr = %local, "listening");

    let (id, first_seq) = identity(&settings);
    let id = Arc::new(id);
    let metrics = Arc::new(Metrics::new());
    let client = connect(&settings, &id, metrics.clone()).await?;
    // The first counters, off the async thread: the first sample's CPU is measured from here.
    let collector = tokio::task::spawn_blocking(Collector::new)
        .await
        .context("reading the host")?;
    tracing::info!(
        service = %id.service,
        instance = %id.instance,
        interval_ms = settings.interval.as_millis() as u64,
        nats_url = %settings.nats_url,
        "agent running"
    );

    let app = http::router(http::AppState {
        metrics: metrics.clone(),
        id: id.clone(),
        client: client.clone(),
    });
    let mut http_task = tokio::spawn(vitals_runtime::http::serve(
        listener,
        app,
        stop.clone().cancelled_owned(),
        settings.http_limits,
    ));

    let mut publisher = Publisher::new(client, metrics.clone(), (*id).clone(), first_seq);
    let published = tokio::select! {
        // The server ends after `stop` too; that is the normal path, not a failure.
        biased;
        r = publisher.run(collector, settings.interval, &stop) => r,
        res = &mut http_task => {
            stop.cancel();
            res.context("HTTP task")?.context("HTTP server")?;
            anyhow::bail!("HTTP server ended by itself");
        }
    };
    let (collector, last) = published?;
    // The stopping sample carries figures too; a stop before the first tick reads them now.
    let last = match last {
        Some(r) => r,
        None => publisher.collect(collector).await?.1,
    };
    publisher.send_last(&last, FLUSH_ON_STOP).await;
    match tokio::time::timeout(HTTP_DRAIN, http_task).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "HTTP server stopped with an error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "HTTP task failed"),
        Err(_) => tracing::warn!(timeout = ?HTTP_DRAIN, "HTTP requests still open at exit"),
    }
    tracing::info!(
        samples_sent = metrics.samples_sent.get(),
        samples_unsent = metrics.samples_unsent.get(),
        publish_failures = metrics.publish_failures.get(),
        "stopped"
    );
    Ok(())
}

/// The instance id and the first seq. A drawn id is new per start, so seq starts at 1; a
/// fixed one keeps its id across restarts, so its seq starts at the start time's epoch ms,
/// above anything an earlier run reached (one sample per 100 ms at most), since the
/// monitor refuses a seq that does not grow.
fn identity(settings: &Settings) -> (Identity, u64) {
    let (instance, first_seq) = match &settings.instance {
        Some(fixed) => (fixed.clone(), vitals_runtime::epoch_ms().max(1)),
        None => {
            let suffix = rand::rng().random_range(0..0x100_0000u32);
            (format!("agent-{}-{suffix:06x}", settings.service), 1)
        }
    };
    let id = Identity {
        interval_ms: settings.interval.as_millis() as u64,
        service: settings.service.clone(),
        instance,
    };
    (id, first_seq)
}

async fn connect(
    settings: &Settings,
    id: &Identity,
    metrics: Arc<Metrics>,
) -> anyhow::Result<async_nats::Client> {
    // Starts even when NATS is not up yet and never gives up reconnecting: an outage must
    // not end the agent (samples are counted as unsent meanwhile).
    let opts = vitals_runtime::nats_options(
        // The monitor maps this connection to the host's instance: a killed agent is DOWN at once.
        &ConnName::format("agent", &id.service, &id.instance),
        &settings.nats_auth,
    )
    .event_callback(move |event| {
        let metrics = metrics.clone();
        async move {
            match event {
                Event::Connected => {
                    metrics.nats_connected.set(1);
                    tracing::info!("NATS connected");
                }
                Event::Disconnected => {
                    metrics.nats_connected.set(0);
                    tracing::warn!("NATS disconnected; reconnecting");
                }
                // One per failed reconnect attempt during an outage: not worth more.
                Event::ClientError(e) => tracing::debug!(error = %e, "NATS client error"),
                other => tracing::info!(event = %other, "NATS event"),
            }
        }
    });
    opts.connect(settings.nats_servers.clone())
        .await
        .context("connecting to NATS")
}
