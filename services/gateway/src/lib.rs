//! The Vitals gateway: the only thing a browser talks to for live data. One NATS
//! subscription feeds a view ([`view`], pure) and a broadcast of frames serialised once
//! ([`hub`]); each WebSocket client ([`ws`]) gets a snapshot, then live frames with a
//! per-connection `seq`, or a fresh snapshot if it falls behind.

pub mod config;
pub mod feed;
pub mod history;
pub mod http;
pub mod hub;
pub mod inbox;
pub mod metrics;
pub mod silences;
pub mod targets;
pub mod upgrade;
pub mod view;
pub mod ws;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use vitals_protocol::subjects;
use vitals_runtime::Clock;

pub use config::Config;

use crate::feed::Feed;
use crate::hub::Hub;
use crate::metrics::Metrics;

/// After the connection tasks are done, how long plain HTTP requests still get.
const HTTP_GRACE: Duration = Duration::from_secs(2);

/// Runs the gateway until `shutdown` resolves; serves HTTP on `listener` from the start.
///
/// On shutdown every WebSocket task sends its client a 1001 close (each write bounded)
/// and ends; the gateway waits for exactly those tasks, then drains NATS and returns.
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
    hub.set_health_origins(config.health_origins.clone());
    let cancel = vitals_runtime::cancel_on(shutdown);

    let (client, conn_rx) = config.nats.connect("vitals-gateway", |o| o).await?;
    // Subscribe before anything else, so nothing published from now on is missed.
    let sub = client
        .subscribe(subjects::HEALTH_ALL)
        .await
        .context("subscribing to health.>")?;
    let feed = Feed::new(
        client.clone(),
        hub.clone(),
        metrics.clone(),
        config.snapshot_timeout(),
    );
    let feed_task = tokio::spawn(feed.run(sub, conn_rx, cancel.clone()));

    let tracker = TaskTracker::new();
    let state = Arc::new(http::AppState {
        hub,
        metrics,
        client: client.clone(),
        js: async_nats::jetstream::new(client.clone()),
        allowed_origins: config.allowed_origins.clone(),
        token: config.token.clone(),
        operator_token: config.operator_token.clone(),
        inbox: config
            .inbox
            .then(|| inbox::InboxState::new(config.inbox_token.clone())),
        retire_timeout: config.retire_timeout(),
        slots: Arc::new(Semaphore::new(config.max_clients)),
        limits: ws::Limits {
            write_timeout: config.write_timeout(),
            ping_interval: config.ping_interval(),
            idle_timeout: config.idle_timeout(),
            first_sync_wait: config.snapshot_timeout() + Duration::from_secs(1),
        },
        max_client_message: config.max_client_message,
        history_max: config.history_max,
        history: history::HistoryCache::new(config.history_cache()),
        cancel: cancel.clone(),
        tracker: tracker.clone(),
    });
    let app = http::router(state, config.static_dir.as_deref());
    // A reverse proxy brings every viewer from one address: room for all the WebSocket
    // clients plus the HTTP requests beside them.
    let limits = config.http.limits(config.max_clients.saturating_add(256));
    let server =
        vitals_runtime::http::serve(listener, app, cancel.clone().cancelled_owned(), limits);
    let mut server = tokio::spawn(server);
    tracing::info!("gateway running");
    let served = tokio::select! {
        r = &mut server => Some(r),
        () = cancel.cancelled() => None,
    };
    cancel.cancel();
    // Each task's writes and its close are bounded, so this wait is too.
    tracker.close();
    let open = tracker.len();
    tracker.wait().await;
    tracing::info!(open, left = tracker.len(), "websocket tasks done");
    let served = match served {
        Some(r) => r,
        None => match tokio::time::timeout(HTTP_GRACE, &mut server).await {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!("HTTP requests still open after the grace period");
                server.abort();
                Ok(Ok(()))
            }
        },
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), feed_task).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), client.drain()).await;
    served.context("HTTP server task")?.context("HTTP server")
}
