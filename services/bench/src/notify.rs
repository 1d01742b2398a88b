//! Alert delivery latency: from an alert event's time (its publish on `health.alert.*`,
//! which stamps `at_ms`) to the receiver's handler answering 2xx, through the real
//! `notifier` (durable consumer on HEALTH_EVENTS, KV dedup check, HTTP POST). Open loop:
//! events go out on a fixed schedule whatever the deliveries do. Measured with the default
//! `group_wait_ms` (1000: batching is the point) and with 0, beside a baseline measured in
//! the same run: the bench itself POSTing the same JSON to the same receiver on the same
//! schedule, a fresh connection each time as the notifier opens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use async_nats::jetstream::{self, stream};
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;
use vitals_testkit::{NatsServer, wait_until};

use crate::util::{self, Part, Percentiles};

#[derive(Debug, Serialize)]
pub struct Notify {
    pub events: usize,
    pub rate_per_s: u64,
    /// The bench POSTing the notifier's own JSON straight to the receiver.
    pub baseline: Percentiles,
    /// Through the notifier, `group_wait_ms = 1000` (the default).
    pub group_wait_1000: Percentiles,
    /// Through the notifier, `group_wait_ms = 0`.
    pub group_wait_0: Percentiles,
    pub ratio_p50_vs_baseline_gw0: f64,
    pub ratio_p99_vs_baseline_gw0: f64,
    pub ratio_p99_vs_baseline_gw1000: f64,
    /// Events that never arrived (must be 0).
    pub lost: usize,
}

/// When the receiver's handler saw each alert id (first time), and one body it got.
#[derive(Default)]
struct Seen {
    at: HashMap<String, Instant>,
    body: Option<Value>,
}

type Shared = Arc<Mutex<Seen>>;

async fn receive(
    axum::extract::State(seen): axum::extract::State<Shared>,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    let now = Instant::now();
    if let Ok(v) = serde_json::from_slice::<Value>(&body)
        && let Ok(mut s) = seen.lock()
    {
        for a in v["alerts"].as_array().into_iter().flatten() {
            if let Some(id) = a["labels"]["vitals_id"].as_str() {
                s.at.entry(id.to_owned()).or_insert(now);
            }
        }
        if s.body.is_none() && v["alerts"].as_array().is_some_and(|a| a.len() == 1) {
            s.body = Some(v);
        }
    }
    axum::http::StatusCode::OK
}

async fn receiver() -> Result<(String, Shared)> {
    let seen: Shared = Arc::default();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, seen))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn event(id_prefix: &str, i: usize) -> (String, Value) {
    let service = format!("{id_prefix}-{i}");
    let since = 1_000 + i as u64;
    let id = format!("{service}:SERVICE_DOWN:{since}");
    let v = serde_json::json!({
        "id": id, "service": service, "alert": "SERVICE_DOWN", "state": "firing",
        "value": 5.0, "threshold": 3.0, "since_ms": since, "at_ms": now_ms(),
        "severity": "critical",
    });
    (id, v)
}

/// Waits until every id arrived; the latencies from each `sent` instant.
async fn collect(
    seen: &Shared,
    sent: &HashMap<String, Instant>,
    within: Duration,
) -> Result<(Percentiles, usize)> {
    let _ = wait_until(within, || async {
        let s = seen.lock().ok()?;
        sent.keys().all(|id| s.at.contains_key(id)).then_some(())
    })
    .await;
    let mut h = util::histogram()?;
    let s = seen
        .lock()
        .map_err(|_| anyhow::anyhow!("receiver lock poisoned"))?;
    let mut lost = 0;
    for (id, t0) in sent {
        match s.at.get(id) {
            Some(t) => util::record(&mut h, t.saturating_duration_since(*t0)),
            None => lost += 1,
        }
    }
    Ok((util::percentiles(&h), lost))
}

/// One run through the notifier with `group_wait_ms`.
async fn through_notifier(
    nats: &NatsServer,
    client: &async_nats::Client,
    group_wait_ms: u64,
    events: usize,
    rate: u64,
) -> Result<(Percentiles, usize, Option<Value>)> {
    let (url, seen) = receiver().await?;
    let dir = std::env::temp_dir().join(format!(
        "vitals-bench-notify-{}-{group_wait_ms}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("notifier.toml");
    std::fs::write(
        &config,
        format!(
            "[[receiver]]\nname = \"bench\"\nkind = \"webhook\"\nurl = \"{url}\"\n[[route]]\nreceivers = [\"bench\"]\ngroup_wait_ms = {group_wait_ms}\nrepeat_s = 0\n"
        ),
    )?;
    let cfg = config.to_string_lossy().into_owned();
    let durable = format!("bench-gw{group_wait_ms}");
    let part = Part::start(
        "notifier",
        nats,
        &["--config", &cfg, "--durable", &durable],
        "notifier running",
    )
    .await?;
    let prefix = format!("gw{group_wait_ms}");
    let mut sent = HashMap::new();
    let start = Instant::now();
    let every = Duration::from_secs_f64(1.0 / rate as f64);
    for i in 0..events {
        tokio::time::sleep_until(start + every * i as u32).await;
        let (id, mut v) = event(&prefix, i);
        v["at_ms"] = now_ms().into();
        let subject = format!("health.alert.{prefix}-{i}");
        sent.insert(id, Instant::now());
        client
            .publish(subject, serde_json::to_vec(&v)?.into())
            .await?;
    }
    client.flush().await?;
    let (p, lost) = collect(&seen, &sent, Duration::from_secs(30)).await?;
    let body = seen.lock().ok().and_then(|s| s.body.clone());
    drop(part);
    let _ = std::fs::remove_dir_all(&dir);
    Ok((p, lost, body))
}

/// The bench POSTing `body` (one alert, its id swapped) on the same schedule.
async fn baseline(body: &Value, events: usize, rate: u64) -> Result<(Percentiles, usize)> {
    let (url, seen) = receiver().await?;
    // No pool: a fresh connection per POST, as the notifier makes.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let mut sent = HashMap::new();
    let mut tasks = Vec::new();
    let start = Instant::now();
    let every = Duration::from_secs_f64(1.0 / rate as f64);
    for i in 0..events {
        tokio::time::sleep_until(start + every * i as u32).await;
        let id = format!("base-{i}:SERVICE_DOWN:{i}");
        let mut b = body.clone();
        b["alerts"][0]["labels"]["vitals_id"] = id.clone().into();
        sent.insert(id, Instant::now());
        let (http, url) = (http.clone(), url.clone());
        // Open loop: each POST on its own task, the schedule never waits for one.
        tasks.push(tokio::spawn(async move {
            http.post(url).json(&b).send().await.map(|r| r.status())
        }));
    }
    for t in tasks {
        let status = t.await??;
        ensure!(status.is_success(), "baseline POST got {status}");
    }
    collect(&seen, &sent, Duration::from_secs(30)).await
}

pub async fn run(events: usize, rate: u64) -> Result<Notify> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    jetstream::new(client.clone())
        .create_or_update_stream(stream::Config {
            name: "HEALTH_EVENTS".into(),
            subjects: vec!["health.status.>".into(), "health.alert.>".into()],
            no_ack: true,
            ..Default::default()
        })
        .await?;
    let (gw1000, lost_a, _) = through_notifier(&nats, &client, 1_000, events, rate).await?;
    let (gw0, lost_b, body) = through_notifier(&nats, &client, 0, events, rate).await?;
    let body = body.context("no single-alert request arrived to replay")?;
    let (base, lost_c) = baseline(&body, events, rate).await?;
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    Ok(Notify {
        events,
        rate_per_s: rate,
        ratio_p50_vs_baseline_gw0: ratio(gw0.p50_ms, base.p50_ms),
        ratio_p99_vs_baseline_gw0: ratio(gw0.p99_ms, base.p99_ms),
        ratio_p99_vs_baseline_gw1000: ratio(gw1000.p99_ms, base.p99_ms),
        baseline: base,
        group_wait_1000: gw1000,
        group_wait_0: gw0,
        lost: lost_a + lost_b + lost_c,
    })
}
