//! Gateway configuration: flags, each also from env.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";
/// The dashboard's origins (vite on 5173, or served by the gateway itself on 8080).
pub const DEFAULT_ORIGINS: &str =
    "http://localhost:5173,http://127.0.0.1:5173,http://localhost:8080,http://127.0.0.1:8080";

#[derive(Debug, Clone, Parser)]
#[command(
    name = "gateway",
    version,
    about = "Vitals gateway: the live feed from NATS to browsers"
)]
pub struct Config {
    #[command(flatten)]
    pub nats: vitals_runtime::NatsArgs,
    #[arg(long, env = "GATEWAY_HTTP_ADDR", default_value = DEFAULT_HTTP_ADDR)]
    pub http_addr: SocketAddr,
    /// Origins allowed to open `/ws` and call `/api` from a browser (comma-separated).
    /// An upgrade with any other Origin gets 403. Requests without an Origin header
    /// (non-browser clients) are allowed; use --token to restrict those.
    #[arg(long, env = "GATEWAY_ALLOWED_ORIGINS", value_delimiter = ',', default_value = DEFAULT_ORIGINS)]
    pub allowed_origins: Vec<String>,
    /// When set, `/ws` and `/api/*` need `Authorization: Bearer TOKEN` or `?token=TOKEN`.
    #[arg(long, env = "GATEWAY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Serve the built dashboard from this directory (index.html for unknown paths).
    #[arg(long, env = "GATEWAY_STATIC_DIR")]
    pub static_dir: Option<PathBuf>,
    /// Most WebSocket clients at once; more are refused with 503 (counted).
    #[arg(long, env = "GATEWAY_MAX_CLIENTS", default_value_t = 10_000)]
    pub max_clients: usize,
    /// Messages a client may fall behind before it gets a fresh snapshot instead.
    #[arg(long, env = "GATEWAY_CLIENT_BUFFER", default_value_t = 4_096)]
    pub client_buffer: usize,
    /// A write to a client that takes longer than this drops the client.
    #[arg(long, env = "GATEWAY_WRITE_TIMEOUT_MS", default_value_t = 5_000)]
    pub write_timeout_ms: u64,
    #[arg(long, env = "GATEWAY_PING_INTERVAL_MS", default_value_t = 15_000)]
    pub ping_interval_ms: u64,
    /// A client that sends nothing (not even a pong) for this long is closed.
    #[arg(long, env = "GATEWAY_IDLE_TIMEOUT_MS", default_value_t = 45_000)]
    pub idle_timeout_ms: u64,
    /// Largest frame or message a client may send (it only ever needs a resync request).
    #[arg(long, env = "GATEWAY_MAX_CLIENT_MESSAGE", default_value_t = 4_096)]
    pub max_client_message: usize,
    /// How long to wait for the monitor's snapshot before reading KV instead.
    #[arg(long, env = "GATEWAY_SNAPSHOT_TIMEOUT_MS", default_value_t = 2_000)]
    pub snapshot_timeout_ms: u64,
    /// Largest `limit` the history API accepts.
    #[arg(long, env = "GATEWAY_HISTORY_MAX", default_value_t = 1_000)]
    pub history_max: usize,
}

impl Config {
    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }
    pub fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.ping_interval_ms)
    }
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
    pub fn snapshot_timeout(&self) -> Duration {
        Duration::from_millis(self.snapshot_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_contract() {
        let c = Config::try_parse_from(["gateway"]).unwrap();
        assert_eq!(c.http_addr.port(), 8080);
        assert!(
            c.allowed_origins
                .contains(&"http://localhost:5173".to_owned())
        );
        assert!(c.token.is_none());
        let c = Config::try_parse_from([
            "gateway",
            "--allowed-origins",
            "https://a.example,https://b.example",
        ])
        .unwrap();
        assert_eq!(
            c.allowed_origins,
            vec!["https://a.example", "https://b.example"]
        );
    }
}
