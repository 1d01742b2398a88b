//! Command line (every flag also reads `NOTIFIER_*`, the NATS ones the shared `NATS_*`) and
//! the receivers file (`--config`, TOML), checked whole at start: one fault and the notifier
//! refuses to start (exit 2).

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;
use vitals_protocol::AlertName;

pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:9103";

/// Delivers the monitor's alerts (stream HEALTH_EVENTS) to webhooks, Slack and Alertmanager.
#[derive(Debug, Clone, Parser)]
#[command(name = "notifier", version, about)]
pub struct Config {
    #[command(flatten)]
    pub nats: vitals_runtime::NatsArgs,
    #[command(flatten)]
    pub http: vitals_runtime::http::HttpArgs,
    /// HTTP listener: /healthz, /metrics. Port 0 picks a free one (logged as `listening addr=...`).
    #[arg(long, env = "NOTIFIER_HTTP_ADDR", default_value = DEFAULT_HTTP_ADDR)]
    pub http_addr: SocketAddr,
    /// The receivers file (TOML `[[receiver]]` and `[[route]]`, docs/ALERTING.md).
    #[arg(long, env = "NOTIFIER_CONFIG", value_name = "FILE")]
    pub config: PathBuf,
    /// Name of the durable consumer on HEALTH_EVENTS (two notifiers with one name share work).
    #[arg(long, env = "NOTIFIER_DURABLE", default_value = "vitals-notifier")]
    pub durable: String,
    /// A message not acked (nor marked in progress) within this long is redelivered.
    #[arg(long, env = "NOTIFIER_ACK_WAIT_S", default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(3..=3600))]
    pub ack_wait_s: u64,
    /// How long KV vitals_notified remembers a delivery (the dedup window).
    #[arg(long, env = "NOTIFIER_DEDUP_TTL_S", default_value_t = 7 * 86_400,
        value_parser = clap::value_parser!(u64).range(60..=365 * 86_400))]
    pub dedup_ttl_s: u64,
    /// The dashboard's URL: each alert's generatorURL is `<external>/#/service/<name>`.
    #[arg(
        long,
        env = "NOTIFIER_EXTERNAL_URL",
        default_value = "http://localhost:5173"
    )]
    pub external_url: String,
}

/// A configuration that parsed but cannot be used; the binary exits 2 on it.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

fn cerr(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Webhook,
    Slack,
    Alertmanager,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Slack => "slack",
            Self::Alertmanager => "alertmanager",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReceiver {
    name: String,
    kind: Kind,
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    bearer_token_env: Option<String>,
    #[serde(default = "d_timeout")]
    timeout_ms: u64,
    #[serde(default = "d_attempts")]
    max_attempts: u32,
    #[serde(default = "d_backoff_base")]
    backoff_base_ms: u64,
    #[serde(default = "d_backoff_max")]
    backoff_max_ms: u64,
    #[serde(default = "d_true")]
    send_resolved: bool,
    #[serde(default = "d_resend")]
    resend_s: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    receivers: Vec<String>,
    service: Option<String>,
    alert: Option<AlertName>,
    severity: Option<String>,
    #[serde(default = "d_group_wait")]
    group_wait_ms: u64,
    #[serde(default = "d_repeat")]
    repeat_s: u64,
    #[serde(default, rename = "continue")]
    continue_: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    receiver: Vec<RawReceiver>,
    #[serde(default)]
    route: Vec<RawRoute>,
}

fn d_timeout() -> u64 {
    5_000
}
/// 30 attempts, 500 ms doubling to 60 s, each wait between half of that and all of it: at
/// least 12 minutes of retries, so a receiver down for ten minutes still gets everything.
fn d_attempts() -> u32 {
    30
}
fn d_backoff_base() -> u64 {
    500
}
fn d_backoff_max() -> u64 {
    60_000
}
fn d_true() -> bool {
    true
}
fn d_resend() -> u64 {
    60
}
/// Long enough to batch what one cause fires together (a host's services closing their
/// connections land within milliseconds, a timeout's DOWNs in one tick), short enough not
/// to undo the monitor's millisecond detection.
fn d_group_wait() -> u64 {
    100
}
fn d_repeat() -> u64 {
    4 * 3_600
}

/// One receiver, checked.
#[derive(Debug, Clone)]
pub struct Receiver {
    pub name: String,
    pub kind: Kind,
    /// Where to POST (for `alertmanager`, `<url>/api/v2/alerts`).
    pub url: String,
    /// Sent with every request (the bearer token already resolved from the environment).
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub send_resolved: bool,
    pub resend: Duration,
}

/// One route, checked; `receivers` are indexes into [`Receivers::receivers`].
#[derive(Debug, Clone)]
pub struct Route {
    pub receivers: Vec<usize>,
    pub service: Option<String>,
    pub alert: Option<AlertName>,
    pub severity: Option<String>,
    pub group_wait: Duration,
    /// None: no reminders.
    pub repeat: Option<Duration>,
    pub continue_: bool,
}

/// The whole receivers file.
#[derive(Debug, Clone)]
pub struct Receivers {
    pub receivers: Vec<Receiver>,
    pub routes: Vec<Route>,
}

/// Parses and checks a receivers file; `env` looks up `bearer_token_env`.
pub fn parse_receivers(
    text: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Receivers, ConfigError> {
    let raw: RawFile = toml::from_str(text).map_err(|e| cerr(e.to_string()))?;
    if raw.receiver.is_empty() {
        return Err(cerr("no [[receiver]]"));
    }
    if raw.route.is_empty() {
        return Err(cerr("no [[route]]: nothing would be delivered"));
    }
    let mut names = HashSet::new();
    let mut receivers = Vec::new();
    for r in raw.receiver {
        let what = format!("receiver {:?}", r.name);
        if r.name.is_empty()
            || r.name.len() > 64
            || !r
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(cerr(format!(
                "{what}: a name is 1-64 of a-z, A-Z, 0-9, '_' and '-'"
            )));
        }
        if !names.insert(r.name.clone()) {
            return Err(cerr(format!("{what} is defined twice")));
        }
        crate::deliver::Url::parse(&r.url).ok_or_else(|| {
            cerr(format!(
                "{what}: url {:?} is not http(s)://host[:port][/path]",
                r.url
            ))
        })?;
        let url = match r.kind {
            Kind::Alertmanager => format!("{}/api/v2/alerts", r.url.trim_end_matches('/')),
            _ => r.url.clone(),
        };
        let mut headers = Vec::new();
        for (k, v) in &r.headers {
            if hyper::header::HeaderName::from_bytes(k.as_bytes()).is_err()
                || hyper::header::HeaderValue::from_str(v).is_err()
            {
                return Err(cerr(format!(
                    "{what}: header {k:?} is not a valid HTTP header"
                )));
            }
            headers.push((k.clone(), v.clone()));
        }
        if let Some(var) = &r.bearer_token_env {
            let token = env(var)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| cerr(format!("{what}: bearer_token_env {var} is not set")))?;
            if hyper::header::HeaderValue::from_str(&token).is_err() {
                return Err(cerr(format!("{what}: ${var} is not a valid header value")));
            }
            headers.push(("authorization".into(), format!("Bearer {token}")));
        }
        if !(100..=300_000).contains(&r.timeout_ms) {
            return Err(cerr(format!("{what}: timeout_ms must be 100-300000")));
        }
        if !(1..=1_000).contains(&r.max_attempts) {
            return Err(cerr(format!("{what}: max_attempts must be 1-1000")));
        }
        if r.backoff_base_ms == 0 || r.backoff_max_ms < r.backoff_base_ms {
            return Err(cerr(format!(
                "{what}: backoff_base_ms must be > 0 and <= backoff_max_ms"
            )));
        }
        if r.kind == Kind::Alertmanager && !(1..=86_400).contains(&r.resend_s) {
            return Err(cerr(format!("{what}: resend_s must be 1-86400")));
        }
        receivers.push(Receiver {
            name: r.name,
            kind: r.kind,
            url,
            headers,
            timeout: Duration::from_millis(r.timeout_ms),
            max_attempts: r.max_attempts,
            backoff_base: Duration::from_millis(r.backoff_base_ms),
            backoff_max: Duration::from_millis(r.backoff_max_ms),
            send_resolved: r.send_resolved,
            resend: Duration::from_secs(r.resend_s),
        });
    }
    let mut routes = Vec::new();
    for (i, r) in raw.route.into_iter().enumerate() {
        let what = format!("route {}", i + 1);
        if r.receivers.is_empty() {
            return Err(cerr(format!("{what}: receivers is empty")));
        }
        let mut idx = Vec::new();
        for name in &r.receivers {
            let n = receivers
                .iter()
                .position(|x| &x.name == name)
                .ok_or_else(|| cerr(format!("{what}: unknown receiver {name:?}")))?;
            if !idx.contains(&n) {
                idx.push(n);
            }
        }
        if let Some(g) = &r.service {
            vitals_protocol::silence::SilenceMatchers {
                service: g.clone(),
                alert: None,
            }
            .validate()
            .map_err(|e| cerr(format!("{what}: service: {e}")))?;
        }
        if r.group_wait_ms > 600_000 {
            return Err(cerr(format!(
                "{what}: group_wait_ms must be at most 600000"
            )));
        }
        routes.push(Route {
            receivers: idx,
            service: r.service,
            alert: r.alert,
            severity: r.severity,
            group_wait: Duration::from_millis(r.group_wait_ms),
            repeat: (r.repeat_s > 0).then(|| Duration::from_secs(r.repeat_s)),
            continue_: r.continue_,
        });
    }
    Ok(Receivers { receivers, routes })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn a_minimal_file_takes_the_defaults() {
        let r = parse_receivers(
            "[[receiver]]\nname=\"ops\"\nkind=\"webhook\"\nurl=\"http://127.0.0.1:9000/hook\"\n[[route]]\nreceivers=[\"ops\"]\n",
            no_env,
        )
        .unwrap();
        let ops = &r.receivers[0];
        assert_eq!(ops.max_attempts, 30);
        assert_eq!(ops.timeout, Duration::from_secs(5));
        assert!(ops.send_resolved);
        assert_eq!(r.routes[0].group_wait, Duration::from_millis(100));
        assert_eq!(r.routes[0].repeat, Some(Duration::from_secs(14_400)));
        assert!(!r.routes[0].continue_);
    }

    #[test]
    fn alertmanager_urls_and_bearer_tokens() {
        let r = parse_receivers(
            "[[receiver]]\nname=\"am\"\nkind=\"alertmanager\"\nurl=\"http://am:9093/\"\nbearer_token_env=\"TOK\"\n[[route]]\nreceivers=[\"am\"]\nrepeat_s=0\n",
            |v| (v == "TOK").then(|| "s3cret".to_owned()),
        )
        .unwrap();
        assert_eq!(r.receivers[0].url, "http://am:9093/api/v2/alerts");
        assert_eq!(
            r.receivers[0].headers,
            vec![("authorization".to_owned(), "Bearer s3cret".to_owned())]
        );
        assert_eq!(r.routes[0].repeat, None);
    }

    #[test]
    fn faults_are_refused_with_what_is_wrong() {
        let rec = "[[receiver]]\nname=\"ops\"\nkind=\"webhook\"\nurl=\"http://h/x\"\n";
        for (text, says) in [
            (format!("{rec}[[route]]\nreceivers=[\"nope\"]\n"), "unknown receiver"),
            (format!("{rec}{rec}[[route]]\nreceivers=[\"ops\"]\n"), "defined twice"),
            (
                "[[receiver]]\nname=\"ops\"\nkind=\"webhook\"\nurl=\"ftp://h\"\n[[route]]\nreceivers=[\"ops\"]\n".into(),
                "url",
            ),
            (
                "[[receiver]]\nname=\"a b\"\nkind=\"webhook\"\nurl=\"http://h\"\n[[route]]\nreceivers=[\"a b\"]\n".into(),
                "a name is",
            ),
            (
                "[[receiver]]\nname=\"x\"\nkind=\"pager\"\nurl=\"http://h\"\n[[route]]\nreceivers=[\"x\"]\n".into(),
                "unknown variant",
            ),
            (rec.to_owned(), "no [[route]]"),
            (
                format!("{rec}[[route]]\nreceivers=[\"ops\"]\nservice=\"Bad.Glob\"\n"),
                "service",
            ),
            (
                "[[receiver]]\nname=\"x\"\nkind=\"webhook\"\nurl=\"http://h\"\nbearer_token_env=\"MISSING\"\n[[route]]\nreceivers=[\"x\"]\n".into(),
                "MISSING",
            ),
            (format!("{rec}[[route]]\nreceivers=[\"ops\"]\ntypo=1\n"), "unknown field"),
        ] {
            let e = parse_receivers(&text, no_env).unwrap_err().to_string();
            assert!(e.contains(says), "{e:?} should say {says:?}");
        }
    }
}
