use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use notifier::{Config, ConfigError};

#[tokio::main]
async fn main() -> ExitCode {
    // Clap prints its own usage errors and exits 2.
    let config = Config::parse();
    vitals_runtime::init_tracing();
    let addr = config.http_addr;
    let listener = match tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))
    {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "notifier failed");
            return ExitCode::from(1);
        }
    };
    if let Ok(local) = listener.local_addr() {
        tracing::info!(addr = %local, "listening");
    }
    match notifier::run(config, listener, vitals_runtime::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<ConfigError>() => {
            tracing::error!(error = %e, "refused to start");
            ExitCode::from(2)
        }
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "notifier failed");
            ExitCode::from(1)
        }
    }
}
