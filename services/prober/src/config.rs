//! Command line and environment (every flag also reads `PROBER_*`, the NATS ones the
//! shared `NATS_*`), resolved into [`Settings`] once every cross-field rule is checked.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use vitals_protocol::source::MAX_CERT_WARN_DAYS;

pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:9101";
/// Longest `--instance` accepted (the protocol allows 128 characters).
const MAX_INSTANCE_ARG: usize = 64;

/// Probes HTTP(S) and TCP targets (from a file and KV `vitals_targets`) and publishes one
/// MetricSample per probe on `metrics.<service>`.
#[derive(Debug, Clone, Parser)]
#[command(name = "prober", version, about)]
pub struct Config {
    #[command(flatten)]
    pub nats: vitals_runtime::NatsArgs,
    #[command(flatten)]
    pub http: vitals_runtime::http::HttpArgs,
    /// HTTP listener: /healthz, /metrics. Port 0 picks a free one (logged as `listening addr=...`).
    #[arg(long, env = "PROBER_HTTP_ADDR", default_value = DEFAULT_HTTP_ADDR)]
    pub http_addr: SocketAddr,
    /// TOML file of `[[target]]` entries (each with `service`), loaded into KV
    /// vitals_targets at start (the file wins on conflict). Checked whole at start: one bad
    /// target and the prober refuses to start (exit 2).
    #[arg(long, env = "PROBER_TARGETS", value_name = "FILE")]
    pub targets: Option<PathBuf>,
    /// Probes in flight at once, over all targets.
    #[arg(long, env = "PROBER_MAX_INFLIGHT", default_value_t = 256,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=65_536))]
    pub max_inflight: usize,
    /// CERT_EXPIRING fires when a target's certificate expires within this many days.
    #[arg(long, env = "PROBER_CERT_WARN_DAYS", default_value_t = 14,
        value_parser = clap::value_parser!(u32).range(0..=MAX_CERT_WARN_DAYS as i64))]
    pub cert_warn_days: u32,
    /// PEM file of extra trusted root certificates (a private CA), besides the platform's.
    #[arg(long, env = "PROBER_CA_FILE", value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Instance id in every sample [default: prober-<random hex6>, so a restart is a new
    /// instance and its seq may start again from 1].
    #[arg(long, env = "PROBER_INSTANCE", value_name = "ID")]
    pub instance: Option<String>,
}

/// A configuration that parsed but cannot be used; the binary exits 2 on it.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

/// What [`Config`] resolves to.
#[derive(Debug, Clone)]
pub struct Settings {
    pub nats: vitals_runtime::NatsArgs,
    pub http_limits: vitals_runtime::http::Limits,
    pub targets_file: Option<PathBuf>,
    pub max_inflight: usize,
    pub cert_warn_days: u32,
    /// The extra roots, DER, read from `--ca-file`.
    pub extra_roots: Vec<CertificateDer<'static>>,
    pub instance: String,
}

impl Config {
    pub fn resolve(self) -> Result<Settings, ConfigError> {
        let instance = match self.instance {
            Some(id) => {
                if id.chars().count() > MAX_INSTANCE_ARG
                    || vitals_protocol::check_instance(&id).is_err()
                    || id.chars().any(char::is_whitespace)
                {
                    return Err(ConfigError(format!(
                        "--instance must be 1-{MAX_INSTANCE_ARG} printable characters without spaces"
                    )));
                }
                id
            }
            None => format!("prober-{:06x}", rand::random::<u32>() & 0xff_ffff),
        };
        for url in self.nats.nats_url.split(',') {
            url.trim()
                .parse::<async_nats::ServerAddr>()
                .map_err(|e| ConfigError(format!("--nats-url {url:?}: {e}")))?;
        }
        let extra_roots = match &self.ca_file {
            Some(path) => read_ca_file(path)?,
            None => Vec::new(),
        };
        Ok(Settings {
            http_limits: self
                .http
                .limits(vitals_runtime::http::DEFAULT_MAX_CONNS_PER_IP),
            nats: self.nats,
            targets_file: self.targets,
            max_inflight: self.max_inflight,
            cert_warn_days: self.cert_warn_days,
            extra_roots,
            instance,
        })
    }
}

fn read_ca_file(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let bad = |e: String| ConfigError(format!("--ca-file {}: {e}", path.display()));
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once("prober").chain(args.iter().copied()))
    }

    #[test]
    fn defaults() {
        let s = parse(&[]).unwrap().resolve().unwrap();
        assert_eq!(s.max_inflight, 256);
        assert_eq!(s.cert_warn_days, 14);
        assert!(s.instance.starts_with("prober-") && s.instance.len() == 13);
        assert!(s.targets_file.is_none() && s.extra_roots.is_empty());
    }

    #[test]
    fn refuses_nonsense() {
        for (flag, bad) in [
            ("--max-inflight", "0"),
            ("--cert-warn-days", "3651"),
            ("--http-addr", "nowhere"),
        ] {
            let e = parse(&[flag, bad]).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{flag}");
        }
        for args in [
            &["--instance", "has space"][..],
            &["--instance", "\u{200B}"],
            &["--nats-url", "nats://a:1,::bad::"],
            &["--ca-file", "/nonexistent/ca.pem"],
        ] {
            assert!(parse(args).unwrap().resolve().is_err(), "{args:?}");
        }
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        let e = parse(&["--ca-file", path.to_str().unwrap()])
            .unwrap()
            .resolve()
            .unwrap_err();
        assert!(e.0.contains("ca.pem"), "{e}");
    }
}
