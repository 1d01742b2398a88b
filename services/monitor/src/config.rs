//! Monitor configuration: flags (each also from env) and the optional TOML rules file.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Parser;
use vitals_protocol::ServiceName;

use crate::deps::Dependencies;
use crate::engine::{DEFAULT_RECONNECT_GRACE_MS, EngineConfig};
use crate::rules::Rules;

pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:9100";
/// The dashboard's origins (vite on 5173, or served by the gateway on 8080).
pub const DEFAULT_ORIGINS: &str =
    "http://localhost:5173,http://127.0.0.1:5173,http://localhost:8080,http://127.0.0.1:8080";

#[derive(Debug, Clone, Parser)]
#[command(
    name = "monitor",
    version,
    about = "Vitals monitor: judges service health from metrics on NATS"
)]
pub struct Config {
    #[command(flatten)]
    pub nats: vitals_runtime::NatsArgs,
    #[command(flatten)]
    pub http: vitals_runtime::http::HttpArgs,
    /// HTTP listener: /healthz, /metrics, /api/status.
    #[arg(long, env = "MONITOR_HTTP_ADDR", default_value = DEFAULT_HTTP_ADDR)]
    pub http_addr: SocketAddr,
    /// TOML file with rule defaults and per-service overrides (see docs/PROTOCOL.md).
    #[arg(long, env = "MONITOR_RULES")]
    pub rules: Option<PathBuf>,
    /// SERVICE_DOWN after this long without a sample (overrides the rules file default).
    #[arg(long, env = "MONITOR_HEARTBEAT_TIMEOUT_MS", value_parser = clap::value_parser!(u64).range(100..=86_400_000))]
    pub heartbeat_timeout_ms: Option<u64>,
    /// How often silence is judged and summaries are sent.
    #[arg(long, env = "MONITOR_TICK_MS", default_value_t = 250, value_parser = clap::value_parser!(u64).range(10..=250))]
    pub tick_ms: u64,
    /// No one is judged DOWN for this long after start or a NATS reconnect (default: the heartbeat timeout).
    #[arg(long, env = "MONITOR_GRACE_MS", value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    pub grace_ms: Option<u64>,
    /// No echo of the monitor's own heartbeat (sent every second) through NATS for this
    /// long means the feed is stalled: silence is not judged until it moves again. Keep it
    /// below the heartbeat timeout minus one sample interval.
    #[arg(long, env = "MONITOR_FEED_STALL_MS", default_value_t = 1_500, value_parser = clap::value_parser!(u64).range(1_100..=600_000))]
    pub feed_stall_ms: u64,
    /// Rolling window for summaries (latency percentiles, uptime).
    #[arg(long, env = "MONITOR_WINDOW_S", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub window_s: u64,
    /// Most services tracked; samples from more are refused and counted.
    #[arg(long, env = "MONITOR_MAX_SERVICES", default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub max_services: u64,
    /// Instances (replicas) tracked per service for duplicate detection; a new one beyond
    /// this is refused (`instance_cap`) unless one has been silent for a window.
    #[arg(long, env = "MONITOR_MAX_INSTANCES", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub max_instances: u64,
    /// A service DOWN for this long is retired: its alerts resolve, its KV entry is deleted
    /// and RETIRED is published. 0 never retires.
    #[arg(long, env = "MONITOR_RETIRE_AFTER_S", default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(0..=31_536_000))]
    pub retire_after_s: u64,
    /// Browser origins allowed to call the HTTP API (CORS), comma-separated.
    #[arg(long, env = "MONITOR_ALLOWED_ORIGINS", value_delimiter = ',', default_value = DEFAULT_ORIGINS)]
    pub allowed_origins: Vec<String>,
    /// Bearer token for `DELETE /api/services/NAME` (without it that endpoint answers 401).
    #[arg(long, env = "VITALS_OPERATOR_TOKEN", hide_env_values = true)]
    pub operator_token: Option<String>,
    /// Messages buffered for the metrics subscription before the client drops (counted).
    #[arg(long, env = "MONITOR_PENDING_LIMIT", default_value_t = 65_536, value_parser = clap::value_parser!(u64).range(64..=16_777_216))]
    pub pending_limit: u64,
    /// Outbound events buffered while NATS is slow or away before they are dropped (counted).
    #[arg(long, env = "MONITOR_PUBLISH_QUEUE", default_value_t = 65_536, value_parser = clap::value_parser!(u64).range(64..=16_777_216))]
    pub publish_queue: u64,
    #[arg(long, env = "MONITOR_SUMMARY_INTERVAL_MS", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub summary_interval_ms: u64,
    /// HEALTH_EVENTS stream limits.
    #[arg(long, env = "MONITOR_EVENTS_MAX_AGE_S", default_value_t = 7 * 86_400, value_parser = clap::value_parser!(u64).range(60..=3_153_600_000))]
    pub events_max_age_s: u64,
    #[arg(long, env = "MONITOR_EVENTS_MAX_BYTES", default_value_t = 256 * 1024 * 1024, value_parser = clap::value_parser!(i64).range(1_048_576..))]
    pub events_max_bytes: i64,
    /// health_status KV bucket size limit.
    #[arg(long, env = "MONITOR_KV_MAX_BYTES", default_value_t = 64 * 1024 * 1024, value_parser = clap::value_parser!(i64).range(1_048_576..))]
    pub kv_max_bytes: i64,
    /// Snapshot replies (NATS and HTTP) being sent at once; more are refused with 503.
    #[arg(long, env = "MONITOR_MAX_SNAPSHOT_REPLIES", default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub max_snapshot_replies: u64,
    /// `health.snapshot` requests a second one client (one inbox prefix) may make; bursts
    /// of twice that. More get a 429 error reply.
    #[arg(long, env = "MONITOR_SNAPSHOT_RATE_PER_CLIENT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub snapshot_rate_per_client: u64,
    /// `health.snapshot` requests a second from everyone together; bursts of twice that.
    #[arg(long, env = "MONITOR_SNAPSHOT_RATE_TOTAL", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub snapshot_rate_total: u64,
    /// How long a lost connection may take to reconnect (to another server of a cluster,
    /// or after a reset) before its service is judged DOWN. A crash on a single server
    /// is judged at once.
    #[arg(long, env = "MONITOR_RECONNECT_GRACE_MS", default_value_t = DEFAULT_RECONNECT_GRACE_MS, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub reconnect_grace_ms: u64,
    /// NATS users whose connections never stand for a service, comma-separated (anyone
    /// may name a connection; the anonymous viewer must not take a service DOWN).
    #[arg(
        long,
        env = "MONITOR_CONN_IGNORE_USERS",
        value_delimiter = ',',
        default_value = "viewer"
    )]
    pub conn_ignore_users: Vec<String>,
    /// Name in heartbeats and snapshots (default: monitor-<pid>).
    #[arg(long, env = "MONITOR_ID")]
    pub monitor_id: Option<String>,
}

impl Config {
    pub fn monitor_id(&self) -> String {
        self.monitor_id
            .clone()
            .unwrap_or_else(|| format!("monitor-{}", std::process::id()))
    }

    /// The engine's settings: rules from the file (if any) and the flags.
    pub fn engine(&self) -> Result<EngineConfig> {
        let text = match &self.rules {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("reading rules file {}", path.display()))?,
            None => String::new(),
        };
        let (defaults, overrides, depends_on) = parse_rules(&text, self.heartbeat_timeout_ms)?;
        let timeout = defaults.heartbeat_timeout_ms;
        Ok(EngineConfig {
            defaults,
            overrides,
            max_services: self.max_services as usize,
            window_ms: self.window_s * 1000,
            max_window_points: 600,
            grace_ms: self.grace_ms.unwrap_or(timeout),
            summary_interval_ms: self.summary_interval_ms,
            stall_ms: (self.tick_ms * 6).max(1_500),
            retire_after_ms: self.retire_after_s * 1000,
            max_instances: self.max_instances as usize,
            depends_on: Arc::new(depends_on),
            reconnect_grace_ms: self.reconnect_grace_ms,
            conn_ignore_users: self.conn_ignore_users.clone(),
        })
    }
}

type RuleSets = (Arc<Rules>, HashMap<String, Arc<Rules>>, Dependencies);

/// Parses a rules file: top-level keys set the defaults, `[services.NAME...]` tables
/// override them for one service (only the keys given), and `depends_on` in a service's
/// table lists what it depends on (for inhibition; a cycle is refused).
pub fn parse_rules(text: &str, timeout_override: Option<u64>) -> Result<RuleSets> {
    let mut file: toml::Table = text.parse().context("rules file is not valid TOML")?;
    if file.contains_key("depends_on") {
        bail!("depends_on belongs in a [services.NAME] table, not at the top level");
    }
    let services = match file.remove("services") {
        Some(toml::Value::Table(t)) => t,
        Some(_) => bail!("`services` must be a table of per-service overrides"),
        None => toml::Table::new(),
    };
    let mut base = toml::Table::try_from(Rules::default()).context("encoding default rules")?;
    merge(&mut base, file);
    if let Some(ms) = timeout_override {
        base.insert(
            "heartbeat_timeout_ms".into(),
            toml::Value::Integer(ms as i64),
        );
    }
    let defaults: Rules = base.clone().try_into().context("invalid rules")?;
    defaults.validate().map_err(anyhow::Error::msg)?;
    let mut overrides = HashMap::new();
    let mut depends_on = std::collections::BTreeMap::new();
    for (name, patch) in services {
        let service =
            ServiceName::parse(&name).with_context(|| format!("rules override for {name:?}"))?;
        let toml::Value::Table(mut patch) = patch else {
            bail!("services.{name} must be a table");
        };
        if let Some(deps) = patch.remove("depends_on") {
            depends_on.insert(service, parse_depends_on(&name, deps)?);
        }
        if patch.is_empty() {
            continue;
        }
        let mut merged = base.clone();
        merge(&mut merged, patch);
        let rules: Rules = merged
            .try_into()
            .with_context(|| format!("invalid rules for service {name}"))?;
        rules
            .validate()
            .map_err(|e| anyhow::anyhow!("service {name}: {e}"))?;
        overrides.insert(name, Arc::new(rules));
    }
    let depends_on = Dependencies::new(depends_on).map_err(anyhow::Error::msg)?;
    Ok((Arc::new(defaults), overrides, depends_on))
}

fn parse_depends_on(service: &str, value: toml::Value) -> Result<Vec<ServiceName>> {
    let toml::Value::Array(items) = value else {
        bail!("services.{service}.depends_on must be a list of service names");
    };
    items
        .into_iter()
        .map(|item| match item {
            toml::Value::String(s) => ServiceName::parse(&s)
                .with_context(|| format!("services.{service}.depends_on: {s:?}")),
            other => bail!("services.{service}.depends_on: {other} is not a service name"),
        })
        .collect()
}

/// Deep-merges `patch` into `base` (tables merge, other values replace).
fn merge(base: &mut toml::Table, patch: toml::Table) {
    for (k, v) in patch {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(p)) => merge(b, p),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_the_documented_defaults() {
        let (d, o, deps) = parse_rules("", None).unwrap();
        assert!(deps.is_empty());
        assert_eq!(*d, Rules::default());
        assert!(o.is_empty());
    }

    #[test]
    fn file_sets_defaults_and_per_service_overrides() {
        let text = r#"
            heartbeat_timeout_ms = 5000
            [cpu]
            fire_above = 90.0
            [services.billing.latency]
            fire_above = 800.0
            clear_below = 600.0
        "#;
        let (d, o, _) = parse_rules(text, None).unwrap();
        assert_eq!(d.heartbeat_timeout_ms, 5000);
        assert_eq!(d.cpu.fire_above, 90.0);
        assert_eq!(d.cpu.clear_below, 75.0, "unset keys keep their default");
        let b = &o["billing"];
        assert_eq!(b.latency.fire_above, 800.0);
        assert_eq!(
            b.cpu.fire_above, 90.0,
            "overrides start from the file's defaults"
        );
        assert_eq!(b.heartbeat_timeout_ms, 5000);
    }

    #[test]
    fn severity_defaults_and_merges_per_service() {
        use vitals_protocol::AlertName;
        let text = r#"
            [severity]
            HIGH_CPU = "page"
            [services.billing.severity]
            HIGH_LATENCY = "critical"
        "#;
        let (d, o, _) = parse_rules(text, None).unwrap();
        assert_eq!(d.severity_of(AlertName::ServiceDown), "critical");
        assert_eq!(d.severity_of(AlertName::HighCpu), "page");
        assert_eq!(d.severity_of(AlertName::HighLatency), "warning");
        let b = &o["billing"];
        assert_eq!(b.severity_of(AlertName::HighLatency), "critical");
        assert_eq!(
            b.severity_of(AlertName::HighCpu),
            "page",
            "merged with the defaults"
        );
    }

    #[test]
    fn depends_on_is_read_per_service_and_a_cycle_is_refused_by_name() {
        let text = r#"
            [services.billing]
            depends_on = ["auth", "db"]
            [services.notifications]
            depends_on = ["auth"]
            [services.notifications.cpu]
            fire_above = 95.0
            clear_below = 90.0
        "#;
        let (_, o, deps) = parse_rules(text, None).unwrap();
        let names: Vec<&str> = deps.of("billing").iter().map(|n| n.as_str()).collect();
        assert_eq!(names, ["auth", "db"]);
        assert!(
            !o.contains_key("billing"),
            "a table with only depends_on overrides nothing"
        );
        assert_eq!(o["notifications"].cpu.fire_above, 95.0);
        let cycle = "[services.a]\ndepends_on = [\"b\"]\n[services.b]\ndepends_on = [\"c\"]\n[services.c]\ndepends_on = [\"a\"]";
        let err = parse_rules(cycle, None).unwrap_err().to_string();
        assert_eq!(err, "depends_on has a cycle: a -> b -> c -> a");
        let err = parse_rules("[services.a]\ndepends_on = [\"a\"]", None).unwrap_err();
        assert!(err.to_string().contains("a -> a"), "{err}");
    }

    #[test]
    fn the_stacks_rules_file_parses() {
        let text = include_str!("../../../config/rules.toml");
        let (_, _, deps) = parse_rules(text, None).unwrap();
        assert_eq!(deps.of("billing")[0].as_str(), "auth");
    }

    #[test]
    fn flag_overrides_the_file_timeout() {
        let (d, _, _) = parse_rules("heartbeat_timeout_ms = 5000", Some(1500)).unwrap();
        assert_eq!(d.heartbeat_timeout_ms, 1500);
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        for bad in [
            "cpu = 3",
            "[cpu]\nfire_above = 50.0\nclear_below = 60.0",
            "[services.\"a.b\".cpu]\nfire_above = 90.0",
            "unknown_key = 1",
            "[cpu]\nfor_samples = 0",
            "not toml [",
            "depends_on = [\"a\"]",
            "[services.a]\ndepends_on = \"b\"",
            "[services.a]\ndepends_on = [\"B!\"]",
            "[services.a]\ndepends_on = [1]",
            "[severity]\nSERVICE_DOWN = \"Critical\"",
            "[severity]\nNOT_AN_ALERT = \"page\"",
            "[services.a.severity]\nHIGH_CPU = \"\"",
        ] {
            assert!(parse_rules(bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_parse_with_defaults() {
        let c = Config::try_parse_from(["monitor"]).unwrap();
        assert_eq!(c.http_addr.port(), 9100);
        assert_eq!(c.nats.nats_url, "nats://127.0.0.1:4222");
        let e = c.engine().unwrap();
        assert_eq!(e.grace_ms, 3000);
        assert_eq!(e.window_ms, 60_000);
        assert_eq!(e.retire_after_ms, 86_400_000);
    }

    #[test]
    fn numeric_flags_out_of_range_are_refused_naming_the_flag() {
        for (flag, bad) in [
            ("--tick-ms", "0"),
            ("--heartbeat-timeout-ms", "0"),
            ("--feed-stall-ms", "0"),
            ("--window-s", "0"),
            ("--max-services", "0"),
            ("--max-instances", "0"),
            ("--retire-after-s", "99999999999"),
            ("--pending-limit", "0"),
            ("--publish-queue", "0"),
            ("--summary-interval-ms", "0"),
            ("--events-max-age-s", "0"),
            ("--events-max-bytes", "0"),
            ("--kv-max-bytes", "5"),
            ("--max-snapshot-replies", "0"),
        ] {
            let err = Config::try_parse_from(["monitor", flag, bad]).unwrap_err();
            assert!(err.to_string().contains(flag), "{flag}: {err}");
            assert_eq!(err.exit_code(), 2, "{flag}");
        }
    }
}
