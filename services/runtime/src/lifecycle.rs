//! The start and the end every service binary shares: binding its HTTP listener, winding
//! down in order (background tasks, then NATS, then the HTTP server) and the exit code.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::{JoinError, JoinHandle};
use tokio_util::task::TaskTracker;

/// How long background tasks and the HTTP server get to finish after the signal.
pub const STOP_WITHIN: Duration = Duration::from_secs(5);

/// Binds the HTTP listener and logs `listening addr=IP:PORT` (how a test learns port 0).
pub async fn bind_http(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    if let Ok(local) = listener.local_addr() {
        tracing::info!(addr = %local, "listening");
    }
    Ok(listener)
}

/// 0 on success, 2 when `is_config` says the configuration was refused (like clap's usage
/// errors), 1 for anything else; logs why.
pub fn exit_code(
    binary: &str,
    result: anyhow::Result<()>,
    is_config: impl Fn(&anyhow::Error) -> bool,
) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_config(&e) => {
            tracing::error!(error = %e, "refused to start");
            ExitCode::from(2)
        }
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "{binary} failed");
            ExitCode::from(1)
        }
    }
}

/// The end of a run, once everything was told to stop: waits (bounded) for the background
/// tasks, drains NATS (bounded: during an outage it would wait forever), then reports the
/// HTTP server: an error if it had died on its own (`http_died`), else its own result.
pub async fn wind_down(
    tracker: &TaskTracker,
    client: &async_nats::Client,
    http_died: Option<Result<std::io::Result<()>, JoinError>>,
    server: JoinHandle<std::io::Result<()>>,
) -> anyhow::Result<()> {
    tracker.close();
    if tokio::time::timeout(STOP_WITHIN, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("background tasks did not finish in time");
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), client.drain()).await;
    if let Some(ended) = http_died {
        let why = match ended {
            Ok(Ok(())) => "it stopped".to_owned(),
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        anyhow::bail!("HTTP server died: {why}");
    }
    match tokio::time::timeout(STOP_WITHIN, server).await {
        Ok(Ok(Err(e))) => Err(e).context("HTTP server"),
        _ => Ok(()),
    }
}
