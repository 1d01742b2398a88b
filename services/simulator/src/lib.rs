//! The Vitals service simulator: publishes realistic metrics for one or many services on
//! NATS, serves their `/health` and `/data`, and misbehaves on request (`chaos.<service>`
//! or `POST /faults`) so the monitor and the dashboard have something to detect.

pub mod chaos;
pub mod config;
pub mod data;
pub mod faults;
pub mod http;
pub mod model;
pub mod publisher;
pub mod schedule;
pub mod service;
pub mod shutdown;
pub mod stats;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_nats::Event;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;
use vitals_protocol::{ConnName, FaultMode};

pub use config::{Config, ConfigError, Settings};
pub use shutdown::Crash;

use crate::publisher::Publisher;
use crate::service::SimService;
use crate::stats::Stats;

static CLIENT_ERROR_LOG: stats::LogEvery = stats::LogEvery::new(5_000);

/// How long the last sample may take to reach NATS on a graceful stop.
const FLUSH_ON_STOP: Duration = Duration::from_secs(2);
/// How long in-flight HTTP requests may take to finish on a graceful stop.
const HTTP_DRAIN: Duration = Duration::from_secs(5);
/// On a crash, only the reply that asked for it is waited for.
const HTTP_DRAIN_ON_CRASH: Duration = Duration::from_secs(1);

/// How `run` ended; the binary's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Told to stop (signal): exit 0.
    Stopped,
    /// The crash fault: exit 3.
    Crashed,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Self::Stopped => 0,
            Self::Crashed => 3,
        }
    }
}

/// Wall clock, epoch ms. Read at the edges (a tick, a request) and passed inward.
pub use vitals_runtime::epoch_ms;

/// Runs the simulator until `shutdown` completes (graceful, [`Exit::Stopped`]) or a
/// crash fault is requested ([`Exit::Crashed`]). A [`ConfigError`] in the error chain
/// means the configuration was refused.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Exit> {
    let settings = config.resolve()?;
    let stop = vitals_runtime::cancel_on(shutdown);
    run_settings(settings, stop).await
}

async fn run_settings(settings: Settings, stop: CancellationToken) -> anyhow::Result<Exit> {
    let listener = tokio::net::TcpListener::bind(settings.http_addr)
        .await
        .with_context(|| format!("binding HTTP listener on {}", settings.http_addr))?;
    let local = listener
        .local_addr()
        .context("reading the bound HTTP address")?;
    tracing::info!(addr = %local, "listening");
    let public = settings
        .public_url
        .clone()
        .unwrap_or_else(|| default_public_url(local));

    let services = build_services(&settings, &public);
    let by_name: Arc<HashMap<String, Arc<SimService>>> = Arc::new(
        services
            .iter()
            .map(|s| (s.name.to_string(), s.clone()))
            .collect(),
    );
    if let Some(first) = services.first() {
        check_sample_fields(first)?;
        tracing::info!(
            services = services.len(),
            first = %first.name,
            instance = %first.instance,
            health_url = %first.health_url,
            interval_ms = settings.interval.as_millis() as u64,
            "simulating"
        );
    }
    if let Some(fault) = &settings.fault {
        if fault.mode == FaultMode::Crash {
            tracing::error!("started with --fault crash: exiting with code 3");
            return Ok(Exit::Crashed);
        }
        for svc in &services {
            svc.apply(fault).await;
        }
        tracing::info!(mode = fault.mode.as_str(), for_s = ?fault.for_s, "starting with a fault");
    }

    let stats = Arc::new(Stats::new());
    let (connected_tx, mut connected) = tokio::sync::watch::channel(false);
    let client = connect(&settings, &services, stats.clone(), connected_tx).await?;
    // Give the first connection a moment, so a healthy start does not lose seq 0; an
    // outage must not hold the simulator up, so this wait is short and bounded.
    let first_connect = settings.interval.min(Duration::from_secs(2));
    if tokio::time::timeout(first_connect, connected.wait_for(|c| *c))
        .await
        .is_err()
    {
        tracing::warn!(nats_url = %settings.nats_url, "NATS not reachable yet; publishing will start when it is");
    }
    let crash = Crash::new(stop.clone());

    let app = http::router(http::AppState {
        services: by_name.clone(),
        stats: stats.clone(),
        client: client.clone(),
        stop: stop.clone(),
        crash: crash.clone(),
        operator_token: settings.operator_token.as_deref().map(Arc::from),
    });
    let mut http_task = tokio::spawn(http::serve(
        listener,
        app,
        stop.clone(),
        settings.http_limits,
    ));

    let chaos = chaos::Chaos {
        client: client.clone(),
        services: by_name,
        stats: stats.clone(),
        crash: crash.clone(),
    };
    let chaos_stop = stop.clone();
    let chaos_task = tokio::spawn(async move {
        if let Err(e) = chaos.run(chaos_stop).await {
            tracing::error!(
                error = format!("{e:#}"),
                "chaos requests will not be served"
            );
        }
    });

    let publisher = Arc::new(Publisher::new(
        client.clone(),
        stats.clone(),
        settings.interval,
    ));
    let mut publishers = publisher.spawn_all(&services, &stop);

    if let Some(every) = settings.chaos_schedule {
        let rng = rand::rngs::StdRng::seed_from_u64(
            settings.seed.map_or_else(rand::random, |s| s ^ 0x5eed),
        );
        tokio::spawn(schedule::run(services.clone(), every, rng, stop.clone()));
    }

    // Whatever stops first: a signal, a crash fault, or a part that cannot go on.
    tokio::select! {
        // The server ends after `stop` too; that is the normal path, not a failure.
        biased;
        () = stop.cancelled() => {}
        res = &mut http_task => {
            stop.cancel();
            res.context("HTTP task")?.context("HTTP server")?;
            anyhow::bail!("HTTP server ended by itself");
        }
    }
    chaos_task.abort();

    if crash.happened() {
        let _ = tokio::time::timeout(HTTP_DRAIN_ON_CRASH, &mut http_task).await;
        return Ok(Exit::Crashed);
    }

    // No regular sample may follow the stopping one.
    let _ = tokio::time::timeout(FLUSH_ON_STOP, async {
        while publishers.join_next().await.is_some() {}
    })
    .await;
    publishers.abort_all();
    publisher.send_last(&services, FLUSH_ON_STOP).await;
    match tokio::time::timeout(HTTP_DRAIN, http_task).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "HTTP server stopped with an error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "HTTP task failed"),
        Err(_) => tracing::warn!(timeout = ?HTTP_DRAIN, "HTTP requests still open at exit"),
    }
    tracing::info!(
        samples_sent = stats.samples_sent.get(),
        samples_unsent = stats.samples_unsent.get(),
        "stopped"
    );
    Ok(Exit::Stopped)
}

/// The fields that come from configuration (instance, health URL) must pass the same
/// check the monitor applies; otherwise every sample would be refused, forever.
fn check_sample_fields(svc: &SimService) -> Result<(), ConfigError> {
    let probe = vitals_protocol::MetricSample {
        service: svc.name.clone(),
        instance: svc.instance.clone(),
        seq: 0,
        ts_ms: 0,
        cpu_pct: Some(0.0),
        mem_pct: Some(0.0),
        latency_ms: 0.0,
        error_rate: 0.0,
        health_url: svc.health_url.clone(),
        stopping: false,
        source: Default::default(),
        probe: None,
        host: None,
        interval_ms: None,
    };
    probe
        .validate()
        .map_err(|e| ConfigError(format!("samples would be refused: {e}")))
}

/// The URL a browser on this machine uses: a wildcard bind is reached via loopback.
fn default_public_url(bound: SocketAddr) -> String {
    let ip = match bound.ip() {
        ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, bound.port()))
}

fn build_services(settings: &Settings, public: &str) -> Vec<Arc<SimService>> {
    let mut rng = rand::rng();
    // A fresh suffix per start, so a restarted simulator is a new instance (seq from 0).
    // A fixed --instance keeps its id across restarts: its seq counts from the start
    // time's epoch ms, which is above anything the previous run can have reached (one
    // sample per millisecond at most), since the monitor refuses a seq that does not grow.
    let suffix = format!("{:06x}", rng.random_range(0..0x100_0000u32));
    let first_seq = if settings.instance.is_some() {
        epoch_ms()
    } else {
        0
    };
    let seed: u64 = settings.seed.unwrap_or_else(|| rng.random());
    let single = settings.services.len() == 1;
    settings
        .services
        .iter()
        .map(|name| {
            let instance = match (&settings.instance, single) {
                (Some(id), true) => id.clone(),
                (Some(id), false) => format!("{name}-{id}"),
                (None, _) => format!("{name}-{suffix}"),
            };
            let health_url = if single {
                format!("{public}/health")
            } else {
                format!("{public}/services/{name}/health")
            };
            let svc_seed = seed ^ model::fnv1a(name.as_str().as_bytes());
            Arc::new(SimService::new(
                name.clone(),
                instance,
                health_url,
                svc_seed,
                first_seq,
            ))
        })
        .collect()
}

async fn connect(
    settings: &Settings,
    services: &[Arc<SimService>],
    stats: Arc<Stats>,
    connected: tokio::sync::watch::Sender<bool>,
) -> anyhow::Result<async_nats::Client> {
    // One service: named so the monitor maps the connection to its instance and sees a
    // crash at once. Many services (`--count`, one instance each): not mapped, so their
    // crash is found by the heartbeat timeout.
    let name = match services {
        [one] => ConnName::format("simulator", &one.name, &one.instance),
        [first, ..] => format!("simulator {}+{}", first.name, services.len() - 1),
        [] => "simulator".to_owned(),
    };
    // Starts even when NATS is not up yet and never gives up reconnecting: an outage
    // must not kill the process (samples are counted as unsent meanwhile).
    let auth = vitals_runtime::NatsAuth {
        user: settings.nats_auth.as_ref().map(|(u, _)| u.clone()),
        password: settings.nats_auth.as_ref().map(|(_, p)| p.clone()),
    };
    let opts = vitals_runtime::nats_options(&name, &auth).event_callback(move |event| {
        let stats = stats.clone();
        let connected = connected.clone();
        async move {
            match event {
                Event::Connected => {
                    stats.set_connected(true);
                    connected.send_replace(true);
                    tracing::info!("NATS connected");
                }
                Event::Disconnected => {
                    stats.set_connected(false);
                    connected.send_replace(false);
                    tracing::warn!("NATS disconnected; reconnecting");
                }
                Event::Closed => tracing::info!("NATS connection closed"),
                Event::ClientError(e) => {
                    // One per reconnect attempt during an outage: bounded.
                    if let Some(held) = CLIENT_ERROR_LOG.ready(epoch_ms()) {
                        tracing::warn!(error = %e, held, "NATS client error");
                    }
                }
                other => tracing::warn!(event = %other, "NATS event"),
            }
        }
    });
    opts.connect(settings.nats_servers.clone())
        .await
        .context("connecting to NATS")
}
