use std::process::ExitCode;

use clap::Parser;
use simulator::{Config, ConfigError};

#[tokio::main]
async fn main() -> ExitCode {
    // Clap prints its own usage errors and exits 2.
    let config = Config::parse();
    vitals_runtime::init_tracing();
    match simulator::run(config, vitals_runtime::shutdown_signal()).await {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(e) if e.is::<ConfigError>() => {
            tracing::error!(error = %e, "refused to start");
            ExitCode::from(2)
        }
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "simulator failed");
            ExitCode::from(1)
        }
    }
}
