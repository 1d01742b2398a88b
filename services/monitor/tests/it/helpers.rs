//! Shared set-up for the monitor's integration tests: a real nats-server, the real
//! monitor and simulator binaries, and samples crafted by hand.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use vitals_protocol::{Snapshot, Status, subjects};
use vitals_testkit::{ChildProc, NatsServer, SOON, next_json_within, wait_until};

pub const MONITOR_READY: &str = "monitor running";

/// A running monitor process and where its HTTP listener is.
pub struct Monitor {
    pub proc: ChildProc,
    pub http: SocketAddr,
}

impl Monitor {
    pub async fn start(nats: &NatsServer, extra: &[&str]) -> Result<Self> {
        let url = nats.url();
        let mut args = vec!["--nats-url", &url, "--http-addr", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let proc = ChildProc::spawn("monitor", &args, &[])?;
        let http = proc.http_addr().await?;
        proc.wait_for_log(MONITOR_READY, SOON).await?;
        Ok(Self { proc, http })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub async fn status(&self) -> Result<Snapshot> {
        Ok(reqwest::get(self.url("/api/status"))
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    pub async fn metrics_text(&self) -> Result<String> {
        Ok(reqwest::get(self.url("/metrics")).await?.text().await?)
    }

    /// A counter from /metrics (the sum over label sets matching `series`).
    pub async fn counter(&self, series: &str) -> Result<f64> {
        let text = self.metrics_text().await?;
        Ok(vitals_testkit::metric_sum(&text, series))
    }

    /// Waits until the counter reaches at least `at_least`.
    pub async fn wait_counter(&self, series: &str, at_least: f64) -> Result<f64> {
        let got = wait_until(SOON, || async {
            self.counter(series).await.ok().filter(|v| *v >= at_least)
        })
        .await;
        match got {
            Some(v) => Ok(v),
            None => bail!(
                "{series} did not reach {at_least}: {}",
                self.counter(series).await?
            ),
        }
    }
}

/// A simulator process for one service.
pub async fn simulator(nats: &NatsServer, service: &str, extra: &[&str]) -> Result<ChildProc> {
    let url = nats.url();
    let mut args = vec![
        "--service",
        service,
        "--nats-url",
        &url,
        "--http-addr",
        "127.0.0.1:0",
    ];
    if !extra.contains(&"--interval-ms") {
        args.extend(["--interval-ms", "200"]);
    }
    args.extend_from_slice(extra);
    let proc = ChildProc::spawn("simulator", &args, &[])?;
    proc.http_addr().await?;
    Ok(proc)
}

/// Subscribes to everything the monitor publishes (status, alerts, summaries, heartbeat).
pub async fn events(client: &async_nats::Client) -> Result<async_nats::Subscriber> {
    let sub = client.subscribe("health.*.*").await?;
    client.flush().await?;
    Ok(sub)
}

/// Reads events until `service` reaches `status`; returns every event seen on the way.
pub async fn wait_status(
    sub: &mut async_nats::Subscriber,
    service: &str,
    status: Status,
    timeout: Duration,
) -> Result<Vec<(String, Value)>> {
    let want = json!(status);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let (subject, body) = next_json_within(sub, left)
            .await
            .with_context(|| format!("{service} never became {status}; saw {seen:#?}"))?;
        if subject.starts_with("health.metrics.") || subject == subjects::HEARTBEAT {
            continue;
        }
        let hit = subject == format!("health.status.{service}") && body["status"] == want;
        seen.push((subject, body));
        if hit {
            return Ok(seen);
        }
    }
}

/// Waits until every named service is `status` in the monitor's snapshot.
pub async fn wait_all(monitor: &Monitor, services: &[&str], status: Status) -> Result<Snapshot> {
    let got = wait_until(Duration::from_secs(15), || async {
        let snap = monitor.status().await.ok()?;
        let all = services.iter().all(|name| {
            snap.services
                .iter()
                .any(|s| s.service.as_str() == *name && s.status == status)
        });
        all.then_some(snap)
    })
    .await;
    match got {
        Some(s) => Ok(s),
        None => bail!(
            "not all of {services:?} became {status}: {:#?}",
            monitor.status().await?
        ),
    }
}

/// Status changes and alert events about `service` among `events`.
pub fn about<'a>(events: &'a [(String, Value)], service: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|(subject, _)| {
            subject == &format!("health.status.{service}")
                || subject == &format!("health.alert.{service}")
        })
        .map(|(_, v)| v)
        .collect()
}

pub fn count(events: &[&Value], field: &str, value: &str) -> usize {
    events.iter().filter(|e| e[field] == value).count()
}

/// A well-formed sample, as JSON, to mutate in hostile-input tests.
pub fn good_sample(service: &str, seq: u64) -> Value {
    json!({
        "service": service, "instance": format!("{service}-hand"), "seq": seq,
        "ts_ms": vitals_runtime::epoch_ms(),
        "cpu_pct": 10.0, "mem_pct": 30.0, "latency_ms": 20.0, "error_rate": 0.0,
        "health_url": "http://127.0.0.1:3999/health"
    })
}

pub async fn publish_json(client: &async_nats::Client, service: &str, body: &Value) -> Result<()> {
    let name = vitals_protocol::ServiceName::parse(service)?;
    client
        .publish(subjects::metrics(&name), serde_json::to_vec(body)?.into())
        .await?;
    Ok(())
}

/// A request to `health.snapshot` over NATS, parsed.
pub async fn nats_snapshot(client: &async_nats::Client) -> Result<Snapshot> {
    let msg = tokio::time::timeout(SOON, client.request(subjects::SNAPSHOT, "".into()))
        .await
        .context("snapshot request timed out")??;
    Ok(serde_json::from_slice(&msg.payload)?)
}
