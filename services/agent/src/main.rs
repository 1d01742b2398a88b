use std::process::ExitCode;

use agent::{Config, ConfigError};
use clap::Parser;

// One thread is plenty for one sample a second and a small HTTP server, and keeps the
// agent's own footprint small on the host it measures; readings run on the blocking pool.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // Clap prints its own usage errors and exits 2.
    let config = Config::parse();
    vitals_runtime::init_tracing();
    let result = agent::run(config, vitals_runtime::shutdown_signal()).await;
    vitals_runtime::lifecycle::exit_code("agent", result, |e| e.is::<ConfigError>())
}
