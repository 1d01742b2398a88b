use std::process::ExitCode;

use clap::Parser;
use notifier::{Config, ConfigError};

#[tokio::main]
async fn main() -> ExitCode {
    // Clap prints its own usage errors and exits 2.
    let config = Config::parse();
    vitals_runtime::init_tracing();
    let result = match vitals_runtime::lifecycle::bind_http(config.http_addr).await {
        Ok(listener) => notifier::run(config, listener, vitals_runtime::shutdown_signal()).await,
        Err(e) => Err(e),
    };
    vitals_runtime::lifecycle::exit_code("notifier", result, |e| e.is::<ConfigError>())
}
