//! The happy path and the feature set: four simulators become HEALTHY, each chaos mode
//! raises its alert, snapshots agree, JetStream state is kept, the service API answers.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use vitals_protocol::{ServiceState, Snapshot, Status, subjects};
use vitals_testkit::{NatsServer, SOON, collect_for, next_json_within};

use crate::helpers::*;

const FOUR: [&str; 4] = ["auth", "billing", "notifications", "analytics"];

/// The parts of a service's state that do not move between two reads a moment apart.
fn stable(snapshot: &Snapshot) -> Vec<(String, Status, u64, Vec<String>, usize)> {
    snapshot
        .services
        .iter()
        .map(|s: &ServiceState| {
            (
                s.service.to_string(),
                s.status,
                s.since_ms,
                s.reasons.clone(),
                s.alerts.len(),
            )
        })
        .collect()
}

#[tokio::test]
async fn four_simulators_become_healthy_and_every_view_agrees() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let mut sub = events(&client).await?;
    let monitor = Monitor::start(&nats, &[]).await?;
    let mut sims = Vec::new();
    for name in FOUR {
        sims.push(simulator(&nats, name, &[]).await?);
    }
    for name in FOUR {
        let seen = wait_status(&mut sub, name, Status::Healthy, SOON).await?;
        let change = &seen.last().expect("status event").1;
        assert_eq!(change["previous"], "UNKNOWN");
        assert_eq!(change["reasons"], json!(["first sample"]));
    }
    let snap = wait_all(&monitor, &FOUR, Status::Healthy).await?;
    assert_eq!(snap.services.len(), 4);
    for s in &snap.services {
        assert!(
            s.health_url.starts_with("http://127.0.0.1:"),
            "{}",
            s.health_url
        );
        assert!(s.last_seen_ms.is_some() && s.alerts.is_empty());
    }

    // `nats req health.snapshot ''` and GET /api/status give the same snapshot.
    let over_nats = nats_snapshot(&client).await?;
    let over_http = monitor.status().await?;
    assert_eq!(stable(&over_nats), stable(&over_http));
    assert_eq!(over_nats.monitor_id, over_http.monitor_id);

    // KV holds each service's state, written on change.
    let js = async_nats::jetstream::new(client.clone());
    let kv = js.get_key_value(subjects::KV_BUCKET).await?;
    for name in FOUR {
        let raw = kv.get(name).await?.expect("state in KV");
        let state: ServiceState = serde_json::from_slice(&raw)?;
        assert_eq!(state.status, Status::Healthy);
    }
    // The stream holds the status history.
    let mut stream = js.get_stream(subjects::EVENTS_STREAM).await?;
    let info = stream.info().await?;
    assert!(info.state.messages >= 4, "{:?}", info.state);
    assert_eq!(
        info.config.subjects,
        vec!["health.status.>", "health.alert.>"]
    );

    // Summaries and the monitor's heartbeat.
    let mut summaries = client.subscribe("health.metrics.auth").await?;
    let (_, summary) = next_json_within(&mut summaries, SOON).await?;
    assert_eq!(summary["service"], "auth");
    assert!(summary["figures"]["samples"].as_u64() > Some(0));
    let mut hb = client.subscribe(subjects::HEARTBEAT).await?;
    let (_, beat) = next_json_within(&mut hb, SOON).await?;
    assert_eq!(beat["services"], 4);
    assert!(beat["samples_total"].as_u64() > Some(4));
    assert_eq!(beat["heartbeat_timeout_ms"], 3000);

    // Registered with the service API, so `nats micro ls` lists it.
    let info =
        tokio::time::timeout(SOON, client.request("$SRV.INFO.vitals-monitor", "".into())).await??;
    let info: Value = serde_json::from_slice(&info.payload)?;
    assert_eq!(info["name"], "vitals-monitor");
    let mut endpoints: Vec<&str> = info["endpoints"]
        .as_array()
        .map(|e| e.iter().filter_map(|e| e["subject"].as_str()).collect())
        .unwrap_or_default();
    endpoints.sort_unstable();
    assert_eq!(
        endpoints,
        [
            "health.alert.ack",
            "health.retire",
            "health.silence.create",
            "health.silence.expire",
            "health.silence.list",
            "health.snapshot"
        ]
    );

    // Nothing went DOWN along the way.
    let later = collect_for(&mut sub, Duration::from_secs(1)).await;
    assert!(
        later
            .iter()
            .all(|m| !m.subject.starts_with("health.alert."))
    );
    Ok(())
}

/// Each fault mode, switched by a `chaos.<service>` request, raises the alert it should.
#[tokio::test]
async fn each_chaos_mode_raises_its_alert() -> anyhow::Result<()> {
    let cases = [
        ("c-cpu", "cpu", "HIGH_CPU"),
        ("c-memory", "memory", "HIGH_MEMORY"),
        ("c-latency", "latency", "HIGH_LATENCY"),
        ("c-errors", "errors", "HIGH_ERROR_RATE"),
        ("c-flapping", "flapping", "HIGH_ERROR_RATE"),
        ("c-silent", "silent", "SERVICE_DOWN"),
        ("c-hang", "hang", "SERVICE_DOWN"),
        ("c-crash", "crash", "SERVICE_DOWN"),
    ];
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let _monitor = Monitor::start(&nats, &[]).await?;
    let mut alerts = client.subscribe("health.alert.>").await?;
    let mut statuses = client.subscribe("health.status.>").await?;
    client.flush().await?;
    let mut sims = Vec::new();
    for (name, _, _) in cases {
        sims.push(simulator(&nats, name, &[]).await?);
    }
    for (name, _, _) in cases {
        wait_status(&mut statuses, name, Status::Healthy, SOON).await?;
    }
    for (name, mode, _) in cases {
        let reply = tokio::time::timeout(
            SOON,
            client.request(
                format!("chaos.{name}"),
                json!({ "mode": mode }).to_string().into(),
            ),
        )
        .await??;
        let reply: Value = serde_json::from_slice(&reply.payload)?;
        assert_eq!(reply["ok"], true, "{name}: {reply}");
    }
    let mut missing: Vec<(&str, &str)> = cases.iter().map(|(n, _, a)| (*n, *a)).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !missing.is_empty() {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let (_, ev) = next_json_within(&mut alerts, left)
            .await
            .map_err(|e| anyhow::anyhow!("{e}; still waiting for {missing:?}"))?;
        if ev["state"] == "firing" {
            missing.retain(|(n, a)| !(ev["service"] == *n && ev["alert"] == *a));
        }
    }
    // Clearing the fault resolves the alert and the service is HEALTHY again.
    tokio::time::timeout(
        SOON,
        client.request("chaos.c-cpu", json!({"mode": "clear"}).to_string().into()),
    )
    .await??;
    wait_status(
        &mut statuses,
        "c-cpu",
        Status::Healthy,
        Duration::from_secs(20),
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_second_monitor_start_finds_jetstream_ready_and_keeps_it() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let first = Monitor::start(&nats, &["--events-max-age-s", "3600"]).await?;
    drop(first);
    // The same stream and bucket, created again: no error, limits from the flags.
    let second = Monitor::start(&nats, &["--events-max-age-s", "7200"]).await?;
    let js = async_nats::jetstream::new(client.clone());
    let mut stream = js.get_stream(subjects::EVENTS_STREAM).await?;
    assert_eq!(
        stream.info().await?.config.max_age,
        Duration::from_secs(7200)
    );
    let kv = js.get_key_value(subjects::KV_BUCKET).await?;
    assert_eq!(kv.status().await?.history(), 1);
    // Watching the bucket works for outside clients (`nats kv watch health_status`).
    let mut watch = kv.watch_all().await?;
    publish_json(&client, "kvwatch", &good_sample("kvwatch", 0)).await?;
    let entry = tokio::time::timeout(SOON, watch.next())
        .await?
        .expect("entry")?;
    assert_eq!(entry.key, "kvwatch");
    drop(second);
    Ok(())
}
