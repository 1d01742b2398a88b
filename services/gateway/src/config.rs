//! Gateway configuration: flags, each also from env.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use clap::builder::RangedU64ValueParser;

pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";
/// The dashboard's origins (vite on 5173, or served by the gateway itself on 8080).
pub const DEFAULT_ORIGINS: &str =
    "http://localhost:5173,http://127.0.0.1:5173,http://localhost:8080,http://127.0.0.1:8080";

/// The stack's own simulators: what the dashboard may poll by default (see
/// [`vitals_protocol::url`]).
pub const DEFAULT_HEALTH_ORIGINS: &str = "http://127.0.0.1:3001,http://127.0.0.1:3002,\
http://127.0.0.1:3003,http://127.0.0.1:3004,http://localhost:3001,http://localhost:3002,\
http://localhost:3003,http://localhost:3004";

/// One `--health-origins` entry, checked at start (a bad one exits 2 naming the flag).
fn parse_health_origin(raw: &str) -> Result<String, String> {
    vitals_protocol::OriginPattern::parse(raw).map(|_| raw.trim().to_owned())
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "gateway",
    version,
    about = "Vitals gateway: the live feed from NATS to browsers"
)]
pub struct Config {
    #[command(flatten)]
    pub nats: vitals_runtime::NatsArgs,
    #[command(flatten)]
    pub http: vitals_runtime::http::HttpArgs,
    #[arg(long, env = "GATEWAY_HTTP_ADDR", default_value = DEFAULT_HTTP_ADDR)]
    pub http_addr: SocketAddr,
    /// Origins allowed to open `/ws` and call `/api` from a browser (comma-separated).
    /// An upgrade with any other Origin gets 403. Requests without an Origin header
    /// (non-browser clients) are allowed; use --token to restrict those.
    #[arg(long, env = "GATEWAY_ALLOWED_ORIGINS", value_delimiter = ',', default_value = DEFAULT_ORIGINS)]
    pub allowed_origins: Vec<String>,
    /// Origins whose health URLs the dashboard may poll itself when the live feed is down
    /// (sent to it in every snapshot; comma-separated): `scheme://host:port`,
    /// `scheme://host:*` for any port, or `*` for any URL that passes the health URL rule.
    #[arg(long, env = "GATEWAY_HEALTH_ORIGINS", value_delimiter = ',',
        default_value = DEFAULT_HEALTH_ORIGINS, value_parser = parse_health_origin)]
    pub health_origins: Vec<String>,
    /// When set, `/ws` and `/api/*` need `Authorization: Bearer TOKEN` or `?token=TOKEN`.
    #[arg(long, env = "GATEWAY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Needed as `Authorization: Bearer TOKEN` by `DELETE /api/services/NAME` (retire a
    /// service). Without it, that endpoint always answers 401.
    #[arg(long, env = "VITALS_OPERATOR_TOKEN", hide_env_values = true)]
    pub operator_token: Option<String>,
    /// Serve the local inbox: `POST /api/inbox` takes the notifier's webhook JSON,
    /// `GET /api/inbox` lists the last 200 (memory only).
    #[arg(long, env = "GATEWAY_INBOX", default_value_t = true, action = clap::ArgAction::Set)]
    pub inbox: bool,
    /// When set, `POST /api/inbox` needs `Authorization: Bearer TOKEN`.
    #[arg(long, env = "GATEWAY_INBOX_TOKEN", hide_env_values = true)]
    pub inbox_token: Option<String>,
    /// Serve the built dashboard from this directory (index.html for unknown paths).
    #[arg(long, env = "GATEWAY_STATIC_DIR")]
    pub static_dir: Option<PathBuf>,
    /// Most WebSocket clients at once; more are refused with 503 (counted).
    #[arg(long, env = "GATEWAY_MAX_CLIENTS", default_value_t = 10_000,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub max_clients: usize,
    /// Messages a client may fall behind before it gets a fresh snapshot instead.
    #[arg(long, env = "GATEWAY_CLIENT_BUFFER", default_value_t = 4_096,
        value_parser = RangedU64ValueParser::<usize>::new().range(16..=1_048_576))]
    pub client_buffer: usize,
    /// A write to a client that takes longer than this drops the client.
    #[arg(long, env = "GATEWAY_WRITE_TIMEOUT_MS", default_value_t = 5_000,
        value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub write_timeout_ms: u64,
    /// How often each client is pinged.
    #[arg(long, env = "GATEWAY_PING_INTERVAL_MS", default_value_t = 15_000,
        value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub ping_interval_ms: u64,
    /// A client that sends nothing (not even a pong) for this long is closed.
    #[arg(long, env = "GATEWAY_IDLE_TIMEOUT_MS", default_value_t = 45_000,
        value_parser = clap::value_parser!(u64).range(200..=86_400_000))]
    pub idle_timeout_ms: u64,
    /// Largest frame or message a client may send (it only ever needs a resync request).
    #[arg(long, env = "GATEWAY_MAX_CLIENT_MESSAGE", default_value_t = 4_096,
        value_parser = RangedU64ValueParser::<usize>::new().range(64..=16_777_216))]
    pub max_client_message: usize,
    /// How long to wait for the monitor's snapshot before reading KV instead.
    /// (Each page of a paged snapshot adds a little, up to ten times this in all.)
    #[arg(long, env = "GATEWAY_SNAPSHOT_TIMEOUT_MS", default_value_t = 2_000,
        value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub snapshot_timeout_ms: u64,
    /// Largest `limit` the history API accepts.
    #[arg(long, env = "GATEWAY_HISTORY_MAX", default_value_t = 1_000,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    pub history_max: usize,
    /// One history read answers every identical request for this long (0: only those
    /// arriving while it runs).
    #[arg(long, env = "GATEWAY_HISTORY_CACHE_MS", default_value_t = 1_500,
        value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub history_cache_ms: u64,
    /// How long `DELETE /api/services/NAME` waits for the monitor's answer (then 503).
    #[arg(long, env = "GATEWAY_RETIRE_TIMEOUT_MS", default_value_t = 3_000,
        value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub retire_timeout_ms: u64,
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
    pub fn history_cache(&self) -> Duration {
        Duration::from_millis(self.history_cache_ms)
    }
    pub fn retire_timeout(&self) -> Duration {
        Duration::from_millis(self.retire_timeout_ms)
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
        assert!(c.inbox, "the inbox is on by default");
        let off = Config::try_parse_from(["gateway", "--inbox", "false"]).unwrap();
        assert!(!off.inbox);
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

    #[test]
    fn health_origins_default_to_the_stacks_simulators_and_are_checked() {
        let c = Config::try_parse_from(["gateway"]).unwrap();
        assert_eq!(c.health_origins.len(), 8);
        assert!(
            c.health_origins
                .contains(&"http://localhost:3002".to_owned())
        );
        let c =
            Config::try_parse_from(["gateway", "--health-origins", "http://10.0.0.1:*,*"]).unwrap();
        assert_eq!(c.health_origins, vec!["http://10.0.0.1:*", "*"]);
        for bad in [
            "http://169.254.169.254",
            "http://a@b",
            "localhost:3001",
            "http://h/x",
        ] {
            let e = Config::try_parse_from(["gateway", "--health-origins", bad]).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
            assert!(e.to_string().contains("--health-origins"), "{bad}: {e}");
        }
    }

    #[test]
    fn numeric_flags_out_of_range_are_refused_naming_the_flag() {
        for (flag, bad) in [
            ("--ping-interval-ms", "0"),
            ("--write-timeout-ms", "0"),
            ("--idle-timeout-ms", "0"),
            ("--max-clients", "0"),
            ("--client-buffer", "1"),
            ("--max-client-message", "0"),
            ("--snapshot-timeout-ms", "0"),
            ("--history-max", "0"),
            ("--retire-timeout-ms", "0"),
            ("--history-cache-ms", "9999999999"),
        ] {
            let e = Config::try_parse_from(["gateway", flag, bad]).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{flag}");
            assert!(e.to_string().contains(flag), "{flag}: {e}");
        }
    }
}
