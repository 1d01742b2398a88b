//! What every Vitals binary shares: one shutdown signal, tracing setup, the NATS
//! connection policy and an epoch-aligned monotonic clock.

pub mod http;
pub mod lifecycle;
pub mod loglimit;
pub mod requests;
pub mod silences;
pub mod targets;

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use async_nats::jetstream::kv;
use futures::StreamExt;
use vitals_protocol::ServiceState;

/// Resolves on ctrl-c (SIGINT) or SIGTERM (`docker stop`), whichever comes first.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!(signal = "SIGINT", "shutting down"),
        () = term => tracing::info!(signal = "SIGTERM", "shutting down"),
    }
}

/// A token cancelled when `shutdown` completes: the one bridge from a shutdown future to
/// the tasks that watch a [`tokio_util::sync::CancellationToken`].
pub fn cancel_on(
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        shutdown.await;
        t.cancel();
    });
    token
}

/// Exponential backoff with jitter: `base` doubling per attempt up to `max`, plus up to a
/// quarter of that at random, so many clients retrying do not retry in step.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The delay before retry number `attempt` (1 = the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let doubled = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let d = doubled.min(self.max);
        let quarter = d.as_nanos() as u64 / 4;
        let jitter = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |t| u64::from(t.subsec_nanos()) % (quarter + 1));
        d + Duration::from_nanos(jitter)
    }
}

/// Runs `f` until it succeeds, waiting a [`Backoff`] between failures (each logged), or
/// until `cancel`: then None.
pub async fn retry_until_cancelled<T, F, Fut>(
    cancel: &tokio_util::sync::CancellationToken,
    what: &str,
    backoff: Backoff,
    mut f: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let mut attempt = 0;
    loop {
        tokio::select! {
            r = f() => match r {
                Ok(v) => return Some(v),
                Err(e) => tracing::warn!(error = format!("{e:#}"), attempt, "{what} failed; retrying"),
            },
            () = cancel.cancelled() => return None,
        }
        attempt += 1;
        tokio::select! {
            () = tokio::time::sleep(backoff.delay(attempt)) => {}
            () = cancel.cancelled() => return None,
        }
    }
}

/// Compares two secrets in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info,async_nats=warn`: the client
/// repeats at info what the services already log about their connection); colour only
/// on a terminal. An empty `RUST_LOG` (e.g. `RUST_LOG=` in compose) means the default.
pub fn init_tracing() {
    let directives = std::env::var("RUST_LOG")
        .ok()
        .filter(|d| !d.trim().is_empty())
        .unwrap_or_else(|| "info,async_nats=warn".to_owned());
    let filter = tracing_subscriber::EnvFilter::try_new(&directives).unwrap_or_else(|e| {
        // Tracing is not up yet; this is the one place stderr is written directly.
        #[allow(clippy::print_stderr)]
        {
            eprintln!("RUST_LOG={directives:?} is not a valid filter ({e}); using info");
        }
        tracing_subscriber::EnvFilter::new("info")
    });
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}

/// The NATS flags every binary takes (the contract's `--nats-url`, plus credentials).
#[derive(Debug, Clone, clap::Args)]
pub struct NatsArgs {
    /// One URL, or a comma-separated list (a cluster's servers: the client fails over).
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    #[arg(long, env = "NATS_USER")]
    pub nats_user: Option<String>,
    #[arg(long, env = "NATS_PASSWORD", hide_env_values = true)]
    pub nats_password: Option<String>,
}

impl NatsArgs {
    pub fn auth(&self) -> NatsAuth {
        NatsAuth {
            user: self.nats_user.clone(),
            password: self.nats_password.clone(),
        }
    }

    /// [`connect_nats`] with these flags.
    pub async fn connect(
        &self,
        client_name: &str,
        tweak: impl FnOnce(async_nats::ConnectOptions) -> async_nats::ConnectOptions,
    ) -> anyhow::Result<(
        async_nats::Client,
        tokio::sync::mpsc::UnboundedReceiver<ConnEvent>,
    )> {
        connect_nats(client_name, &self.auth(), &self.nats_url, tweak).await
    }
}

/// A `--nats-url` value: one URL or a comma-separated list (the servers of a cluster,
/// tried in turn and failed over between). The error names the bad entry.
pub fn parse_nats_servers(list: &str) -> Result<Vec<async_nats::ServerAddr>, String> {
    let servers = list
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            u.parse::<async_nats::ServerAddr>()
                .map_err(|e| format!("--nats-url {list:?}: {u:?}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if servers.is_empty() {
        return Err(format!("--nats-url {list:?}: no server"));
    }
    Ok(servers)
}

/// Credentials for a NATS user, when the server requires them.
#[derive(Debug, Clone, Default)]
pub struct NatsAuth {
    pub user: Option<String>,
    pub password: Option<String>,
}

/// The connection policy every part uses: connect even if the server is not up yet,
/// reconnect forever with a short capped backoff, and notice a dead server within
/// seconds (pings), so outages are short and visible.
pub fn nats_options(client_name: &str, auth: &NatsAuth) -> async_nats::ConnectOptions {
    let mut opts = async_nats::ConnectOptions::new()
        .name(client_name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .ping_interval(Duration::from_secs(2))
        .reconnect_delay_callback(reconnect_delay);
    if let (Some(user), Some(password)) = (&auth.user, &auth.password) {
        opts = opts.user_and_password(user.clone(), password.clone());
    }
    opts
}

/// What a part needs to know about its NATS connection, in the order it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnEvent {
    Connected,
    Disconnected,
    /// The client dropped a message because the part read a subscription too slowly.
    SlowConsumer,
}

/// Connects with [`nats_options`] (plus `tweak`) and returns the connection's changes as
/// a channel, logged once here, so each part's own loop decides what they mean.
pub async fn connect_nats(
    client_name: &str,
    auth: &NatsAuth,
    url: &str,
    tweak: impl FnOnce(async_nats::ConnectOptions) -> async_nats::ConnectOptions,
) -> anyhow::Result<(
    async_nats::Client,
    tokio::sync::mpsc::UnboundedReceiver<ConnEvent>,
)> {
    let servers = parse_nats_servers(url).map_err(anyhow::Error::msg)?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let client = tweak(nats_options(client_name, auth))
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                let change = match event {
                    async_nats::Event::Connected => {
                        tracing::info!("connected to NATS");
                        ConnEvent::Connected
                    }
                    async_nats::Event::Disconnected => {
                        tracing::warn!("lost NATS");
                        ConnEvent::Disconnected
                    }
                    async_nats::Event::SlowConsumer(_) => ConnEvent::SlowConsumer,
                    // One per failed reconnect attempt during an outage: not worth info.
                    async_nats::Event::ClientError(e) => {
                        tracing::debug!(error = %e, "NATS client error");
                        return;
                    }
                    other => {
                        tracing::info!(event = %other, "NATS event");
                        return;
                    }
                };
                let _ = tx.send(change);
            }
        })
        .connect(servers)
        .await
        .with_context(|| format!("connecting to NATS at {url}"))?;
    Ok((client, rx))
}

/// How every part reconnects to NATS and retries its setup: 50 ms doubling to 1 s.
pub const RECONNECT_BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(50),
    max: Duration::from_secs(1),
};

/// The first attempt at once; then [`RECONNECT_BACKOFF`].
fn reconnect_delay(attempts: usize) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    RECONNECT_BACKOFF.delay(u32::try_from(attempts - 1).unwrap_or(u32::MAX))
}

/// The `health_status` KV bucket's current values, one per service. Unreadable entries
/// are left out, and how many is logged (see [`load_service_states_checked`]).
pub async fn load_service_states(kv: &kv::Store) -> anyhow::Result<Vec<ServiceState>> {
    let loaded = load_service_states_checked(kv).await?;
    if !loaded.unreadable.is_empty() {
        tracing::warn!(
            unreadable = loaded.unreadable.len(),
            "KV entries that could not be read were left out"
        );
    }
    Ok(loaded.states)
}

/// What [`load_service_states_checked`] found.
#[derive(Debug, Default)]
pub struct LoadedStates {
    pub states: Vec<ServiceState>,
    /// Keys whose value could not be read at all (left out; each logged).
    pub unreadable: Vec<String>,
    /// Entries read only after their `null` numbers were taken as 0 (written by a monitor
    /// that let a non-finite figure through, which JSON writes as `null`).
    pub repaired: usize,
}

/// The bucket's current values, with every entry accounted for: read, repaired or
/// unreadable (logged one by one, and listed, so a caller can count them and leave those
/// services alone rather than take them for absent).
pub async fn load_service_states_checked(kv: &kv::Store) -> anyhow::Result<LoadedStates> {
    let status = kv.status().await.context("KV status")?;
    if status.values() == 0 {
        return Ok(LoadedStates::default());
    }
    let mut watch = kv.watch_with_history(">").await.context("KV watch")?;
    let mut latest: HashMap<String, Option<(ServiceState, bool)>> = HashMap::new();
    loop {
        let entry = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .context("KV load timed out")?;
        let Some(entry) = entry else { break };
        let entry = entry.context("KV watch entry")?;
        let delta = entry.delta;
        match entry.operation {
            kv::Operation::Put => {
                let parsed = parse_stored_state(&entry.key, &entry.value);
                latest.insert(entry.key, parsed);
            }
            _ => {
                latest.remove(&entry.key);
            }
        }
        if delta == 0 {
            break;
        }
    }
    let mut out = LoadedStates::default();
    for (key, value) in latest {
        match value {
            Some((state, repaired)) => {
                out.repaired += usize::from(repaired);
                out.states.push(state);
            }
            None => {
                tracing::warn!(key = %key, "unreadable KV entry");
                out.unreadable.push(key);
            }
        }
    }
    out.unreadable.sort_unstable();
    Ok(out)
}

/// A stored state, or None when it cannot be read for `key`. A value whose only fault is
/// `null` where a number belongs (in `figures` or an alert's `value`/`threshold`) is read
/// with 0 there, and flagged as repaired: its status and firing alerts are what matter.
pub fn parse_stored_state(key: &str, bytes: &[u8]) -> Option<(ServiceState, bool)> {
    if let Ok(s) = serde_json::from_slice::<ServiceState>(bytes) {
        return (s.service.as_str() == key).then_some((s, false));
    }
    let mut v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let zero_nulls = |obj: &mut serde_json::Value, fields: &[&str]| {
        if let Some(obj) = obj.as_object_mut() {
            for f in fields {
                if obj.get(*f).is_some_and(serde_json::Value::is_null) {
                    obj.insert((*f).to_owned(), serde_json::json!(0.0));
                }
            }
        }
    };
    if let Some(figures) = v.get_mut("figures") {
        let fields: Vec<String> = figures
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
        zero_nulls(figures, &fields);
    }
    if let Some(alerts) = v
        .get_mut("alerts")
        .and_then(serde_json::Value::as_array_mut)
    {
        for a in alerts {
            zero_nulls(a, &["value", "threshold"]);
        }
    }
    let s: ServiceState = serde_json::from_value(v).ok()?;
    (s.service.as_str() == key).then_some((s, true))
}

/// One message read back from a JetStream stream.
#[derive(Debug, Clone)]
pub struct StreamMessage {
    pub seq: u64,
    pub subject: String,
    pub payload: bytes::Bytes,
}

/// The messages with stream sequence in [start, last] on `filter` (all subjects if
/// empty), oldest first, through a short-lived pull consumer that is deleted afterwards.
pub async fn read_stream(
    stream: &async_nats::jetstream::stream::Stream,
    start: u64,
    last: u64,
    filter: &[String],
) -> anyhow::Result<Vec<StreamMessage>> {
    use async_nats::jetstream::consumer;
    let mut consumer = stream
        .create_consumer(consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: start,
            },
            ack_policy: consumer::AckPolicy::None,
            filter_subjects: filter.to_vec(),
            memory_storage: true,
            inactive_threshold: Duration::from_secs(10),
            ..Default::default()
        })
        .await
        .context("creating a reader consumer")?;
    let name = consumer.cached_info().name.clone();
    let mut pending = consumer.info().await.context("consumer info")?.num_pending;
    let mut out = Vec::new();
    'read: while pending > 0 {
        let mut batch = consumer
            .fetch()
            .max_messages(pending.min(1_000) as usize)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .context("fetching from the stream")?;
        let mut got = 0;
        while let Some(msg) = batch.next().await {
            let msg = msg.map_err(|e| anyhow::anyhow!("stream message: {e}"))?;
            got += 1;
            let Ok(info) = msg.info() else { continue };
            let seq = info.stream_sequence;
            if seq > last {
                break 'read;
            }
            pending = info.pending;
            out.push(StreamMessage {
                seq,
                subject: msg.subject.to_string(),
                payload: msg.payload.clone(),
            });
        }
        if got == 0 {
            break;
        }
    }
    let _ = stream.delete_consumer(&name).await;
    Ok(out)
}

/// Wall-clock epoch milliseconds that never go backwards: a monotonic clock anchored
/// to the epoch once at start. Uses tokio's clock, so `tokio::time::pause` drives it.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: tokio::time::Instant,
    start_epoch_ms: u64,
}

impl Clock {
    pub fn new() -> Self {
        Self {
            start: tokio::time::Instant::now(),
            start_epoch_ms: epoch_ms(),
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.start_epoch_ms + self.start.elapsed().as_millis() as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// The system's wall clock, epoch ms (may jump; use [`Clock`] for judging time).
pub fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_url_takes_one_server_or_a_list() {
        assert_eq!(
            parse_nats_servers("nats://127.0.0.1:4222").map(|v| v.len()),
            Ok(1)
        );
        let three = "nats://127.0.0.1:4222, nats://127.0.0.1:4223,nats://127.0.0.1:4224";
        assert_eq!(parse_nats_servers(three).map(|v| v.len()), Ok(3));
        assert_eq!(parse_nats_servers("nats://a:4222,").map(|v| v.len()), Ok(1));
        for bad in ["", " , ", "nats://a:notaport", "nats://a:4222,nats://b:x"] {
            let err = parse_nats_servers(bad).expect_err(bad);
            assert!(err.starts_with("--nats-url"), "{err}");
        }
    }

    #[test]
    fn stored_states_with_null_figures_are_repaired_and_junk_is_unreadable() {
        let good = serde_json::json!({
            "service": "a", "status": "DOWN", "since_ms": 1, "last_seen_ms": 1,
            "reasons": ["no sample for 3.1 s"], "instance": "a-1",
            "health_url": "http://127.0.0.1:3001/health",
            "alerts": [{"id": "a:SERVICE_DOWN:1", "alert": "SERVICE_DOWN", "value": 3.1,
                        "threshold": 3.0, "since_ms": 1}],
            "figures": {"cpu_pct": 1.0, "mem_pct": 1.0, "error_rate": 0.0, "latency_ms": 1.0,
                        "latency_avg_ms": 1.0, "latency_p95_ms": 1.0, "latency_p99_ms": 1.0,
                        "uptime_pct": 100.0, "samples": 1, "window_s": 60}
        });
        let bytes = serde_json::to_vec(&good).unwrap();
        assert!(matches!(parse_stored_state("a", &bytes), Some((_, false))));
        assert!(
            parse_stored_state("b", &bytes).is_none(),
            "key and service differ"
        );
        // What a 1e39 latency left behind: infinities written as null.
        let mut poisoned = good.clone();
        poisoned["figures"]["latency_avg_ms"] = serde_json::Value::Null;
        poisoned["figures"]["latency_p95_ms"] = serde_json::Value::Null;
        poisoned["alerts"][0]["value"] = serde_json::Value::Null;
        let (s, repaired) =
            parse_stored_state("a", &serde_json::to_vec(&poisoned).unwrap()).unwrap();
        assert!(repaired);
        assert_eq!(s.alerts.len(), 1, "the firing alert survives");
        assert_eq!(s.figures.latency_p95_ms, 0.0);
        for junk in [&b"not json"[..], b"{}", b"[1]", b"null"] {
            assert!(parse_stored_state("a", junk).is_none());
        }
    }

    #[test]
    fn reconnect_delay_is_short_capped_and_jittered() {
        assert_eq!(reconnect_delay(1), Duration::ZERO);
        assert!(reconnect_delay(2) >= Duration::from_millis(50));
        assert!(reconnect_delay(2) < Duration::from_millis(70));
        for n in [7, 10, 1000, usize::MAX] {
            let d = reconnect_delay(n);
            assert!(
                d >= Duration::from_secs(1) && d <= Duration::from_millis(1_250),
                "{d:?}"
            );
        }
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_bounded_jitter() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        for (attempt, floor) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (5, 1600),
            (6, 2000),
            (99, 2000),
        ] {
            let d = b.delay(attempt);
            let floor = Duration::from_millis(floor);
            assert!(d >= floor && d <= floor + floor / 4, "{attempt}: {d:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retry_stops_on_success_or_cancel() {
        let cancel = tokio_util::sync::CancellationToken::new();
        let mut calls = 0;
        let got = retry_until_cancelled(&cancel, "test", RECONNECT_BACKOFF, || {
            calls += 1;
            let n = calls;
            async move {
                if n < 3 {
                    anyhow::bail!("not yet")
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(got, Some(3));
        cancel.cancel();
        let never = retry_until_cancelled(&cancel, "test", RECONNECT_BACKOFF, || async {
            anyhow::bail!("down")
        })
        .await;
        assert_eq!(never, None::<()>);
    }

    #[test]
    fn secrets_compare_by_value() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[tokio::test(start_paused = true)]
    async fn clock_follows_tokio_time() {
        let c = Clock::new();
        let t0 = c.now_ms();
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(c.now_ms() - t0, 5_000);
    }
}
