//! Command line and environment: every flag also reads an env var (prefixed `AGENT_`, so an
//! agent and a simulator configured in one environment do not read each other's).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use vitals_protocol::ServiceName;
use vitals_runtime::NatsAuth;

use crate::sample::service_from_host;

/// The agent's default HTTP listener (the monitor has 9100, the prober 9101).
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:9102";
/// Fastest accepted interval. Below sysinfo's 200 ms minimum between CPU reads a sample
/// repeats the previous CPU figures.
pub const MIN_INTERVAL_MS: u64 = 100;

/// Publishes the real figures of the host it runs on (CPU per core, memory, load, disk,
/// processes) as MetricSamples on `metrics.<service>`, with `source: "agent"`.
#[derive(Debug, Clone, Parser)]
#[command(name = "agent", version, about)]
pub struct Config {
    /// The service name this host is published as (^[a-z0-9][a-z0-9_-]{0,62}$) [default,
    /// also when empty: the host name, lower-cased, each character outside a-z 0-9 _ -
    /// replaced by '-', trimmed, cut to 63].
    #[arg(long, env = "AGENT_SERVICE", value_name = "NAME")]
    pub service: Option<String>,

    /// Milliseconds between two samples.
    #[arg(long, env = "AGENT_INTERVAL_MS", default_value_t = 1000,
        value_parser = clap::value_parser!(u64).range(MIN_INTERVAL_MS..=3_600_000))]
    pub interval_ms: u64,

    /// Instance id [default: agent-<service>-<random hex6>, so a restart is a new instance
    /// and seq starts at 1]. A fixed id counts seq from the start time's epoch ms instead,
    /// so it still grows across restarts.
    #[arg(long, env = "AGENT_INSTANCE", value_name = "ID")]
    pub instance: Option<String>,

    /// HTTP listener for /healthz and /metrics; port 0 picks a free one (logged as
    /// `listening addr=...`).
    #[arg(long, env = "AGENT_HTTP_ADDR", default_value = DEFAULT_HTTP_ADDR)]
    pub http_addr: SocketAddr,

    #[command(flatten)]
    pub nats: vitals_runtime::NatsArgs,

    #[command(flatten)]
    pub http: vitals_runtime::http::HttpArgs,
}

/// A configuration that parsed but cannot be used; the binary exits 2 on it.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

/// What `Config` resolves to once every rule is checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub service: ServiceName,
    /// Set when the user fixed the instance id.
    pub instance: Option<String>,
    pub interval: Duration,
    pub http_addr: SocketAddr,
    pub nats_url: String,
    /// From `--nats-url`, which may list several servers separated by commas.
    pub nats_servers: Vec<async_nats::ServerAddr>,
    pub nats_auth: NatsAuth,
    pub http_limits: vitals_runtime::http::Limits,
}

impl Config {
    pub fn resolve(self) -> Result<Settings, ConfigError> {
        // Empty counts as absent, so `AGENT_SERVICE=` in a compose file means the default.
        let service = match self.service.as_deref().filter(|s| !s.is_empty()) {
            Some(raw) => ServiceName::parse(raw).map_err(|e| {
                ConfigError(format!(
                    "--service {raw:?}: {e} (the rule is ^[a-z0-9][a-z0-9_-]{{0,62}}$)"
                ))
            })?,
            None => {
                service_from_host(sysinfo::System::host_name().as_deref()).map_err(ConfigError)?
            }
        };
        if let Some(id) = &self.instance
            && (vitals_protocol::check_instance(id).is_err() || id.chars().any(char::is_whitespace))
        {
            return Err(ConfigError(
                "--instance must be 1-128 printable characters without spaces".into(),
            ));
        }
        let nats_servers =
            vitals_runtime::parse_nats_servers(&self.nats.nats_url).map_err(ConfigError)?;
        if self.nats.nats_user.is_some() != self.nats.nats_password.is_some() {
            return Err(ConfigError(
                "--nats-user and --nats-password go together".into(),
            ));
        }
        Ok(Settings {
            service,
            instance: self.instance,
            interval: Duration::from_millis(self.interval_ms),
            http_addr: self.http_addr,
            nats_auth: self.nats.auth(),
            nats_url: self.nats.nats_url,
            nats_servers,
            http_limits: self
                .http
                .limits(vitals_runtime::http::DEFAULT_MAX_CONNS_PER_IP),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once("agent").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = parse(&["--service", "web-1"]).unwrap().resolve().unwrap();
        assert_eq!(s.service.as_str(), "web-1");
        assert_eq!(s.interval, Duration::from_millis(1000));
        assert_eq!(s.http_addr.to_string(), DEFAULT_HTTP_ADDR);
        assert_eq!(s.nats_servers.len(), 1);
        assert!(s.instance.is_none());
    }

    #[test]
    fn the_host_name_is_the_default_service_also_when_empty() {
        // Whatever this machine is called, it resolves or is refused with a reason.
        let from_host = service_from_host(sysinfo::System::host_name().as_deref());
        for args in [&[][..], &["--service", ""]] {
            match (parse(args).unwrap().resolve(), &from_host) {
                (Ok(s), Ok(want)) => assert_eq!(&s.service, want),
                (Err(e), Err(_)) => assert!(e.to_string().contains("--service"), "{e}"),
                (got, want) => panic!("{got:?} vs {want:?}"),
            }
        }
    }

    #[test]
    fn refuses_bad_flags_with_exit_2() {
        for args in [
            &["--service", "a", "--interval-ms", "99"][..],
            &["--service", "a", "--interval-ms", "3600001"],
            &["--service", "a", "--http-addr", "nowhere"],
        ] {
            let e = parse(args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}");
        }
        for args in [
            &["--service", "Web.1"][..],
            &["--service=-web"],
            &["--service", "a", "--instance", "has space"],
            &["--service", "a", "--instance", "\u{200B}"],
            &["--service", "a", "--nats-url", "nats://a:1,::bad::"],
            &["--service", "a", "--nats-user", "agent"],
        ] {
            assert!(parse(args).unwrap().resolve().is_err(), "{args:?}");
        }
    }

    #[test]
    fn nats_url_may_list_several_servers() {
        let s = parse(&[
            "--service",
            "a",
            "--nats-url",
            "nats://a:4222, nats://b:4223",
        ])
        .unwrap()
        .resolve()
        .unwrap();
        assert_eq!(s.nats_servers.len(), 2);
    }
}
