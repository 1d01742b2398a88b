//! The Vitals gateway: the only thing a browser talks to for live data. One NATS
//! subscription feeds a view ([`view`], pure) and a broadcast of frames serialised once
//! ([`hub`]); each WebSocket client ([`ws`]) gets a snapshot, then live frames with a
//! per-connection `seq`, or a fresh snapshot if it falls behind.

pub mod config;
pub mod feed;
pub mod history;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod upgrade;
pub mod view;
pub mod ws;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use vitals_protocol::subjects;
use vitals_runtime::Clock;

pub use config::Config;

use crate::feed::Feed;
use crate::hub::Hub;
use crate::metrics::Metrics;

/// How long clients get to receive their close frame and in-flight writes on shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Runs the gateway until `shutdown` resolves; serves HTTP on `listener` from the start.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let metrics = Arc::new(Metrics::new());
    let hub = Arc::new(Hub::new(
        config.client_buffer,
        Clock::new(),
        metrics.clone(),
    ));
    let cancel = CancellationToken::new();
    tokio::spawn({
        let cancel = cancel.clone();
        async move {
            shutdown.await;
            cancel.cancel();
        }
    });

    let (client, conn_rx) = config.nats.connect("vitals-gateway", |o| o).await?;
    // Subscribe before anything else, so nothing published from now on is missed.
    let sub = client
        .subscribe(subjects::HEALTH_ALL)
        .await
        .context("subscribing to health.>")?;
    let feed = Feed {
        client: client.clone(),
        hub: hub.clone(),
        metrics: metrics.clone(),
        snapshot_timeout: config.snapshot_timeout(),
    };
    let feed_task = tokio::spawn(feed.run(sub, conn_rx, cancel.clone()));

    let state = Arc::new(http::AppState {
        hub,
        metrics,
        js: async_nats::jetstream::new(client.clone()),
        allowed_origins: config.allowed_origins.clone(),
        token: config.token.clone(),
        slots: Arc::new(Semaphore::new(config.max_clients)),
        limits: ws::Limits {
            write_timeout: config.write_timeout(),
            ping_interval: config.ping_interval(),
            idle_timeout: config.idle_timeout(),
            first_sync_wait: config.snapshot_timeout() + Duration::from_secs(1),
        },
        max_client_message: config.max_client_message,
        history_max: config.history_max,
        cancel: cancel.clone(),
    });
    let app = http::router(state, config.static_dir.as_deref());
    let serve_cancel = cancel.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(serve_cancel.cancelled_owned());
    tracing::info!("gateway running");
    let served = tokio::select! {
        r = server => r.context("HTTP server"),
        // Upgraded WebSocket connections keep the server open until they close; they close
        // on `cancel` (1001). Bound the wait.
        () = async { cancel.cancelled().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
            tracing::warn!("connections still open after the shutdown grace period");
            Ok(())
        }
    };
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), feed_task).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), client.drain()).await;
    served
}
