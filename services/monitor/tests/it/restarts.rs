//! The monitor and nats-server restarted under traffic: state comes back from KV and
//! nobody alive is called DOWN.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;
use vitals_protocol::{Status, subjects};
use vitals_testkit::{NatsServer, SOON, collect_for, next_json_within, wait_until};

use crate::helpers::*;

fn downs(msgs: &[async_nats::Message]) -> Vec<String> {
    msgs.iter()
        .filter(|m| m.subject.starts_with("health.status."))
        .filter_map(|m| serde_json::from_slice::<serde_json::Value>(&m.payload).ok())
        .filter(|v| v["status"] == "DOWN")
        .filter_map(|v| v["service"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn monitor_killed_and_restarted_restores_state_without_false_alarms() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let mut monitor = Monitor::start(&nats, &[]).await?;
    // 200 services from one process, plus one that will die while the monitor is away.
    let url = nats.url();
    let load = vitals_testkit::ChildProc::spawn(
        "simulator",
        &[
            "--count",
            "200",
            "--prefix",
            "load-",
            "--nats-url",
            &url,
            "--http-addr",
            "127.0.0.1:0",
            "--interval-ms",
            "200",
        ],
        &[],
    )?;
    let mut victim = simulator(&nats, "victim", &[]).await?;
    let names: Vec<String> = (0..200).map(|i| format!("load-{i}")).collect();
    let wanted: Vec<&str> = names.iter().map(String::as_str).chain(["victim"]).collect();
    wait_all(&monitor, &wanted, Status::Healthy).await?;

    let mut events = client.subscribe("health.*.*").await?;
    client.flush().await?;
    monitor.proc.signal(Signal::SIGKILL)?;
    monitor.proc.kill();
    victim.kill(); // a real outage while nobody watches

    let restarted = Monitor::start(&nats, &[]).await?;
    // Restored from KV: every service is known at once, with its old status.
    let snap = restarted.status().await?;
    assert_eq!(snap.services.len(), 201, "{snap:#?}");
    assert!(snap.services.iter().all(|s| s.status == Status::Healthy));
    // The real outage is still found; the live services are left alone.
    let seen = wait_status(&mut events, "victim", Status::Down, Duration::from_secs(15)).await?;
    let later = collect_for(&mut events, Duration::from_secs(4)).await;
    let seen_downs: Vec<String> = seen
        .iter()
        .filter(|(s, v)| s.starts_with("health.status.") && v["status"] == "DOWN")
        .filter_map(|(_, v)| v["service"].as_str().map(str::to_owned))
        .chain(downs(&later))
        .collect();
    assert_eq!(seen_downs, vec!["victim"]);
    let firing: Vec<_> = seen
        .iter()
        .filter(|(s, v)| s.starts_with("health.alert.") && v["state"] == "firing")
        .collect();
    assert_eq!(firing.len(), 1, "{firing:?}");
    drop(load);
    Ok(())
}

#[tokio::test]
async fn nats_server_restart_reconnects_everyone_without_a_down_storm() -> anyhow::Result<()> {
    let mut nats = NatsServer::start()?;
    let monitor = Monitor::start(&nats, &[]).await?;
    let names = ["auth", "billing", "notifications", "analytics"];
    let mut sims = Vec::new();
    for name in names {
        sims.push(simulator(&nats, name, &[]).await?);
    }
    wait_all(&monitor, &names, Status::Healthy).await?;
    let before = {
        let client = nats.client().await?;
        let js = async_nats::jetstream::new(client);
        let mut stream = js.get_stream(subjects::EVENTS_STREAM).await?;
        stream.info().await?.state.last_sequence
    };

    nats.kill();
    // The outage lasts longer than the heartbeat timeout.
    tokio::time::sleep(Duration::from_secs(4)).await;
    nats.restart()?;
    let client = nats.client().await?;
    // The monitor is back when its heartbeat is.
    let mut hb = client.subscribe(subjects::HEARTBEAT).await?;
    next_json_within(&mut hb, SOON).await?;
    // Samples flow again from every simulator.
    let fresh = wait_until(SOON, || async {
        let snap = monitor.status().await.ok()?;
        let now = vitals_runtime::epoch_ms();
        snap.services
            .iter()
            .all(|s| {
                s.last_seen_ms
                    .is_some_and(|t| now.saturating_sub(t) < 1_000)
            })
            .then_some(())
    })
    .await;
    assert!(
        fresh.is_some(),
        "samples did not resume: {:#?}",
        monitor.status().await?
    );
    // Past the grace period: a storm would have been published by now.
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Read what the monitor published from the outage on, as HEALTH_EVENTS stored it:
    // a DOWN storm at reconnect that healed at once is there even if no subscriber saw it.
    let js = async_nats::jetstream::new(client.clone());
    let mut stream = js.get_stream(subjects::EVENTS_STREAM).await?;
    let last = stream.info().await?.state.last_sequence;
    let stored = if last > before {
        vitals_runtime::read_stream(&stream, before + 1, last, &[]).await?
    } else {
        Vec::new()
    };
    let changes: Vec<(String, Value)> = stored
        .iter()
        .filter_map(|m| Some((m.subject.clone(), serde_json::from_slice(&m.payload).ok()?)))
        .collect();
    let stored_downs: Vec<&Value> = changes
        .iter()
        .filter(|(s, v)| s.starts_with("health.status.") && v["status"] == "DOWN")
        .map(|(_, v)| v)
        .collect();
    assert!(
        stored_downs.is_empty(),
        "stored after the outage: {changes:?}"
    );
    assert!(
        changes
            .iter()
            .all(|(s, v)| !(s.starts_with("health.alert.") && v["alert"] == "SERVICE_DOWN")),
        "no SERVICE_DOWN fired or resolved around the outage: {changes:?}"
    );
    let snap = monitor.status().await?;
    assert!(
        snap.services.iter().all(|s| s.status == Status::Healthy),
        "{snap:#?}"
    );
    // JetStream is on disk: the KV state survived the server restart.
    let js = async_nats::jetstream::new(client.clone());
    let kv = js.get_key_value(subjects::KV_BUCKET).await?;
    assert!(kv.get("auth").await?.is_some());
    Ok(())
}

/// A monitor killed between publishing a firing and writing it to KV leaves a firing
/// nobody holds: the next monitor finds it in HEALTH_EVENTS and resolves it, once.
#[tokio::test]
async fn a_firing_the_state_lost_is_resolved_by_the_next_monitor() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let mut first = Monitor::start(&nats, &[]).await?; // creates the stream
    first.proc.kill();
    let alert = |id: &str, state: &str| {
        serde_json::json!({
            "id": id, "service": "ghost", "alert": "SERVICE_DOWN", "state": state,
            "value": 3.2, "threshold": 3.0, "since_ms": 1000, "at_ms": 1000
        })
    };
    for (id, state) in [
        ("ghost:SERVICE_DOWN:1000", "firing"),
        ("ghost:HIGH_CPU:900", "firing"),
        ("ghost:HIGH_CPU:900", "resolved"),
    ] {
        client
            .publish(
                "health.alert.ghost",
                serde_json::to_vec(&alert(id, state))?.into(),
            )
            .await?;
    }
    client.flush().await?;
    let mut alerts = client.subscribe("health.alert.ghost").await?;
    client.flush().await?;
    let second = Monitor::start(&nats, &[]).await?;
    let (_, repaired) = next_json_within(&mut alerts, SOON).await?;
    assert_eq!(repaired["id"], "ghost:SERVICE_DOWN:1000");
    assert_eq!(repaired["state"], "resolved");
    let more = collect_for(&mut alerts, Duration::from_secs(1)).await;
    assert!(more.is_empty(), "exactly one repair");
    assert!(second.proc.logs().contains("repairing the alert history"));
    Ok(())
}
