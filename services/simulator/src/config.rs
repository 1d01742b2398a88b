//! Command line and environment: every flag also reads an env var, so a container
//! is configured the same way as a shell.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{ArgGroup, Parser};
use vitals_protocol::{ChaosRequest, FaultMode, ServiceName};

/// The simulator's default HTTP listener (auth's port in the contract).
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:3001";
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
/// Longest `--instance` accepted (the protocol allows 128; room is left for a service prefix).
const MAX_INSTANCE_ARG: usize = 60;

/// Simulates one or many services: publishes their metrics on NATS and serves their
/// `/health`, `/data` and `/faults` over HTTP.
#[derive(Debug, Clone, Parser)]
#[command(name = "simulator", version, about)]
#[command(group(ArgGroup::new("which").required(true).args(["service", "services", "count"])))]
pub struct Config {
    /// The one service to simulate (e.g. auth).
    #[arg(long, env = "SERVICE", value_name = "NAME", value_parser = parse_name)]
    pub service: Option<ServiceName>,

    /// Several services in one process: a,b,c.
    #[arg(long, env = "SERVICES", value_name = "A,B,..", value_delimiter = ',', value_parser = parse_name)]
    pub services: Vec<ServiceName>,

    /// Simulate N services named <prefix>0 .. <prefix>N-1 (load tests; at most a million
    /// in one process: more is a typo).
    #[arg(long, env = "SERVICE_COUNT", value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub count: Option<u64>,

    /// Name prefix for --count.
    #[arg(long, env = "SERVICE_PREFIX", default_value = "load-")]
    pub prefix: String,

    /// Instance id [default: <service>-<random hex6>, so a restart is a new instance].
    /// With several services each gets <service>-<ID>.
    #[arg(long, env = "INSTANCE", value_name = "ID")]
    pub instance: Option<String>,

    /// Milliseconds between two samples of one service.
    #[arg(long, env = "INTERVAL_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub interval_ms: u64,

    /// HTTP listener; port 0 picks a free one (logged as `listening addr=...`).
    #[arg(long, env = "HTTP_ADDR", default_value = DEFAULT_HTTP_ADDR)]
    pub http_addr: SocketAddr,

    /// Base URL a browser uses to reach this process [default: http://<bound ip>:<port>,
    /// 127.0.0.1 when bound to 0.0.0.0].
    #[arg(long, env = "PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,

    #[arg(long, env = "NATS_URL", default_value = DEFAULT_NATS_URL)]
    pub nats_url: String,

    #[arg(long, env = "NATS_USER", requires = "nats_password")]
    pub nats_user: Option<String>,

    #[arg(
        long,
        env = "NATS_PASSWORD",
        hide_env_values = true,
        requires = "nats_user"
    )]
    pub nats_password: Option<String>,

    /// Fault to start with (cpu, memory, latency, errors, flapping, silent, hang, crash).
    #[arg(long, env = "FAULT", value_name = "MODE", value_parser = parse_fault)]
    pub fault: Option<FaultMode>,

    /// How long the starting fault lasts [default: until cleared].
    #[arg(long, env = "FAULT_FOR_S", value_name = "SECONDS", requires = "fault")]
    pub fault_for_s: Option<f64>,

    /// Demo mode: about every SECONDS, give a random service a random fault (never crash)
    /// for a random while.
    #[arg(long, env = "CHAOS_SCHEDULE", value_name = "SECONDS")]
    pub chaos_schedule: Option<f64>,

    /// Seed for the random walks (reproducible figures) [default: random].
    #[arg(long, env = "SEED")]
    pub seed: Option<u64>,

    /// When set, `POST /faults` needs `Authorization: Bearer TOKEN`. Without it, a fault
    /// is set only by a request with `Content-Type: application/json` and no `Origin`
    /// header (so by curl or a script, never by a web page).
    #[arg(long, env = "VITALS_OPERATOR_TOKEN", hide_env_values = true)]
    pub operator_token: Option<String>,

    #[command(flatten)]
    pub http: vitals_runtime::http::HttpArgs,
}

/// A configuration that parsed but makes no sense; the binary exits 2 on it.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

/// What `Config` resolves to once every cross-field rule is checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub services: Vec<ServiceName>,
    /// Set when the user fixed the instance id.
    pub instance: Option<String>,
    pub interval: Duration,
    pub http_addr: SocketAddr,
    pub public_url: Option<String>,
    pub nats_url: String,
    /// From `--nats-url`, which may list several servers separated by commas.
    pub nats_servers: Vec<async_nats::ServerAddr>,
    pub nats_auth: Option<(String, String)>,
    pub fault: Option<ChaosRequest>,
    pub chaos_schedule: Option<Duration>,
    pub seed: Option<u64>,
    pub operator_token: Option<String>,
    pub http_limits: vitals_runtime::http::Limits,
}

impl Config {
    pub fn resolve(self) -> Result<Settings, ConfigError> {
        let err = |m: String| Err(ConfigError(m));
        let services = match (self.service, self.count) {
            (Some(one), _) => vec![one],
            (None, Some(n)) => {
                let last = format!("{}{}", self.prefix, n - 1);
                if let Err(e) = ServiceName::parse(&last) {
                    return err(format!(
                        "--prefix {:?} gives bad names ({last:?}: {e})",
                        self.prefix
                    ));
                }
                (0..n)
                    .map(|i| ServiceName::parse(&format!("{}{i}", self.prefix)))
                    .collect::<Result<_, _>>()
                    .map_err(|e| ConfigError(format!("--prefix: {e}")))?
            }
            (None, None) => self.services,
        };
        if services.is_empty() {
            return err("no service given (--service, --services or --count)".into());
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = services.iter().find(|s| !seen.insert(s.as_str())) {
            return err(format!("service {dup} given twice"));
        }
        // Characters, as the protocol counts them; and its rule too (no invisible-only id).
        if let Some(id) = &self.instance
            && (id.chars().count() > MAX_INSTANCE_ARG
                || vitals_protocol::check_instance(id).is_err()
                || id.chars().any(char::is_whitespace))
        {
            return err(format!(
                "--instance must be 1-{MAX_INSTANCE_ARG} printable characters without spaces"
            ));
        }
        let public_url = match self.public_url {
            Some(url) => Some(check_public_url(&url)?),
            None => None,
        };
        let fault = match self.fault {
            Some(mode) => {
                let req = ChaosRequest {
                    mode,
                    for_s: self.fault_for_s,
                };
                req.validate()
                    .map_err(|e| ConfigError(format!("--fault-for-s: {e}")))?;
                Some(req)
            }
            None => None,
        };
        let nats_servers =
            vitals_runtime::parse_nats_servers(&self.nats_url).map_err(ConfigError)?;
        let chaos_schedule = match self.chaos_schedule {
            Some(s) if !(s.is_finite() && (1.0..=86_400.0).contains(&s)) => {
                return err("--chaos-schedule must be 1..=86400 seconds".into());
            }
            Some(s) => Some(Duration::from_secs_f64(s)),
            None => None,
        };
        Ok(Settings {
            services,
            instance: self.instance,
            interval: Duration::from_millis(self.interval_ms),
            http_addr: self.http_addr,
            public_url,
            nats_servers,
            nats_url: self.nats_url,
            nats_auth: self.nats_user.zip(self.nats_password),
            fault,
            chaos_schedule,
            seed: self.seed,
            operator_token: self.operator_token.filter(|t| !t.is_empty()),
            http_limits: self
                .http
                .limits(vitals_runtime::http::DEFAULT_MAX_CONNS_PER_IP),
        })
    }
}

/// The health URLs built from it go to a browser: the protocol's health URL rule (the one
/// the monitor applies), without a query; a trailing slash is dropped so paths join cleanly.
fn check_public_url(url: &str) -> Result<String, ConfigError> {
    let trimmed = url.trim_end_matches('/');
    match vitals_protocol::check_health_url(trimmed) {
        Ok(_) if !trimmed.contains('?') => Ok(trimmed.to_owned()),
        Ok(_) => Err(ConfigError(format!(
            "--public-url {url:?} must not have a query"
        ))),
        Err(why) => Err(ConfigError(format!(
            "--public-url {url:?} is refused: {why} (an http:// or https:// URL a browser may poll)"
        ))),
    }
}

fn parse_name(raw: &str) -> Result<ServiceName, String> {
    ServiceName::parse(raw).map_err(|e| format!("{e} (the rule is ^[a-z0-9][a-z0-9_-]{{0,62}}$)"))
}

fn parse_fault(raw: &str) -> Result<FaultMode, String> {
    FaultMode::parse(raw).ok_or_else(|| {
        let all: Vec<_> = FaultMode::ALL.iter().map(|m| m.as_str()).collect();
        format!("unknown fault mode; one of {}", all.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once("simulator").chain(args.iter().copied()))
    }

    #[test]
    fn refuses_bad_names_at_parse_time() {
        assert!(parse(&["--service", "Auth"]).is_err());
        assert!(parse(&["--service", "a.b"]).is_err());
        assert!(parse(&["--services", "ok,no way"]).is_err());
        assert!(parse(&[]).is_err(), "a service is required");
    }

    #[test]
    fn resolves_count_and_prefix() {
        let s = parse(&["--count", "3", "--prefix", "load-"])
            .unwrap()
            .resolve()
            .unwrap();
        let names: Vec<_> = s.services.iter().map(|n| n.as_str()).collect();
        assert_eq!(names, ["load-0", "load-1", "load-2"]);
        assert!(
            parse(&["--count", "3", "--prefix", "Bad"])
                .unwrap()
                .resolve()
                .is_err()
        );
        let e = parse(&["--count", "0"]).unwrap_err();
        assert!(e.to_string().contains("--count"), "{e}");
    }

    #[test]
    fn refuses_nonsense() {
        let bad: &[&[&str]] = &[
            &["--service", "a", "--public-url", "javascript:alert(1)"],
            &["--service", "a", "--fault", "cpu", "--fault-for-s=-1"],
            &["--services", "a,a"],
            &["--service", "a", "--instance", "has space"],
            &["--service", "a", "--instance", "\u{200B}"],
            &["--service", "a", "--instance", "\u{00A0}"],
            &["--service", "a", "--public-url", "http://169.254.169.254"],
            &["--service", "a", "--public-url", "http://admin:secret@h:1"],
            &["--service", "a", "--public-url", "http://2852039166"],
            &["--service", "a", "--public-url", "http:///etc"],
            &["--service", "a", "--public-url", "http://h:1/?x=1"],
        ];
        // The instance limit counts characters: 60 two-byte ones are fine.
        let long = "é".repeat(MAX_INSTANCE_ARG);
        assert!(
            parse(&["--service", "a", "--instance", &long])
                .unwrap()
                .resolve()
                .is_ok()
        );
        let longer = "é".repeat(MAX_INSTANCE_ARG + 1);
        assert!(
            parse(&["--service", "a", "--instance", &longer])
                .unwrap()
                .resolve()
                .is_err()
        );
        for args in bad {
            assert!(parse(args).unwrap().resolve().is_err(), "{args:?}");
        }
        assert!(parse(&["--service", "a", "--fault", "meltdown"]).is_err());
        for (flag, bad) in [
            ("--interval-ms", "0"),
            ("--interval-ms", "3600001"),
            ("--count", "1000001"),
        ] {
            let e = parse(&["--service", "a", flag, bad]).unwrap_err();
            assert!(e.to_string().contains(flag), "{flag}: {e}");
            assert_eq!(e.exit_code(), 2);
        }
    }

    #[test]
    fn public_url_loses_its_trailing_slash() {
        let s = parse(&["--service", "a", "--public-url", "http://h:1/"]).unwrap();
        assert_eq!(
            s.resolve().unwrap().public_url.as_deref(),
            Some("http://h:1")
        );
    }
}
