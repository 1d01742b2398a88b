//! Crash detection from the server's connection events, on a server laid out like the
//! stacks' nats.conf (account VITALS, the system account's connect/disconnect events
//! imported on vitals.conn.>): a killed source is DOWN with `connection lost`, at once;
//! hangs, graceful stops, replicas and the server's own trouble keep their old meaning.

use std::time::Duration;

use anyhow::Result;
use futures::StreamExt;
use nix::sys::signal::Signal;
use serde_json::Value;
use vitals_protocol::Status;
use vitals_testkit::{ChildProc, NatsCluster, NatsServer, SOON, collect_for};

use crate::helpers::*;

const DOWN_NOW: &str = r#"vitals_monitor_conn_events_total{outcome="down"}"#;
const DOWNS: &str = r#"vitals_monitor_transitions_total{status="DOWN"}"#;
const RECONNECTS: &str = "vitals_monitor_nats_reconnects_total";

/// The `reasons[0]` of the one DOWN of `service` among `events`.
fn down_reason(events: &[(String, Value)], service: &str) -> String {
    let downs: Vec<&Value> = about(events, service)
        .into_iter()
        .filter(|e| e["status"] == "DOWN")
        .collect();
    assert_eq!(downs.len(), 1, "{events:#?}");
    downs[0]["reasons"][0]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn healthy_pair(
    nats: &NatsServer,
) -> Result<(async_nats::Subscriber, Monitor, ChildProc, ChildProc)> {
    let client = nats.client().await?;
    let sub = events(&client).await?;
    let monitor = Monitor::start(nats, &[]).await?;
    let auth = simulator(nats, "auth", &[]).await?;
    let billing = simulator(nats, "billing", &[]).await?;
    wait_all(&monitor, &["auth", "billing"], Status::Healthy).await?;
    Ok((sub, monitor, auth, billing))
}

#[tokio::test]
async fn a_killed_source_is_down_at_once_with_connection_lost() -> Result<()> {
    let nats = NatsServer::start_with_accounts()?;
    let (mut sub, monitor, mut auth, _billing) = healthy_pair(&nats).await?;
    auth.signal(Signal::SIGKILL)?;
    auth.kill();
    let seen = wait_status(&mut sub, "auth", Status::Down, SOON).await?;
    assert_eq!(
        down_reason(&seen, "auth"),
        "connection lost (Client Closed)"
    );
    let fired: Vec<&Value> = about(&seen, "auth")
        .into_iter()
        .filter(|e| e["alert"] == "SERVICE_DOWN" && e["state"] == "firing")
        .collect();
    assert_eq!(fired.len(), 1, "{seen:#?}");
    assert_eq!(monitor.counter(DOWN_NOW).await?, 1.0);

    // The timeout that would have fired later does not fire again; a new process recovers it.
    let _again = simulator(&nats, "auth", &[]).await?;
    let up = wait_status(&mut sub, "auth", Status::Healthy, SOON).await?;
    assert_eq!(count(&about(&up, "auth"), "status", "DOWN"), 0, "{up:#?}");
    let snap = monitor.status().await?;
    let billing = snap
        .services
        .iter()
        .find(|s| s.service.as_str() == "billing");
    assert_eq!(billing.map(|s| s.status), Some(Status::Healthy));
    Ok(())
}

#[tokio::test]
async fn a_hang_and_a_graceful_stop_keep_their_old_signals() -> Result<()> {
    let nats = NatsServer::start_with_accounts()?;
    let (mut sub, monitor, auth, billing) = healthy_pair(&nats).await?;
    // SIGSTOP: the connection stays open, so only the heartbeat timeout can tell.
    auth.signal(Signal::SIGSTOP)?;
    let seen = wait_status(&mut sub, "auth", Status::Down, SOON).await?;
    assert!(
        down_reason(&seen, "auth").starts_with("no sample for"),
        "{seen:#?}"
    );
    auth.signal(Signal::SIGCONT)?;
    wait_status(&mut sub, "auth", Status::Healthy, SOON).await?;

    // SIGTERM: the last sample says `stopping`; the close that follows changes nothing.
    billing.signal(Signal::SIGTERM)?;
    let seen = wait_status(&mut sub, "billing", Status::Down, SOON).await?;
    assert_eq!(down_reason(&seen, "billing"), "stopped");
    monitor
        .wait_counter(
            r#"vitals_monitor_conn_events_total{outcome="already_down"}"#,
            1.0,
        )
        .await?;
    assert_eq!(monitor.counter(DOWN_NOW).await?, 0.0);
    Ok(())
}

#[tokio::test]
async fn a_second_replica_still_connected_keeps_the_service_up() -> Result<()> {
    let nats = NatsServer::start_with_accounts()?;
    let client = nats.client().await?;
    let mut sub = events(&client).await?;
    let monitor = Monitor::start(&nats, &[]).await?;
    let mut one = simulator(&nats, "auth", &["--instance", "auth-one"]).await?;
    let _two = simulator(&nats, "auth", &["--instance", "auth-two"]).await?;
    wait_all(&monitor, &["auth"], Status::Healthy).await?;
    one.signal(Signal::SIGKILL)?;
    one.kill();
    monitor
        .wait_counter(
            r#"vitals_monitor_conn_events_total{outcome="replica"}"#,
            1.0,
        )
        .await?;
    // Past a whole heartbeat timeout: the survivor's samples keep it up.
    let after: Vec<Value> = collect_for(&mut sub, Duration::from_secs(4))
        .await
        .into_iter()
        .filter(|m| m.subject.as_str() == "health.status.auth")
        .filter_map(|m| serde_json::from_slice(&m.payload).ok())
        .collect();
    assert!(after.iter().all(|e| e["status"] != "DOWN"), "{after:#?}");
    assert_eq!(monitor.counter(DOWN_NOW).await?, 0.0);
    Ok(())
}

/// The server freezes for longer than the clients' ping timeout: every client gives up
/// and reconnects when it thaws, and the server then processes the old sockets' close.
/// None of that is a crash.
#[tokio::test]
async fn a_frozen_or_restarted_server_raises_no_down() -> Result<()> {
    let mut nats = NatsServer::start_with_accounts()?;
    let (_sub, monitor, _auth, _billing) = healthy_pair(&nats).await?;
    let reconnects = monitor.counter(RECONNECTS).await?;
    nats.pause()?;
    tokio::time::sleep(Duration::from_secs(7)).await;
    nats.resume()?;
    monitor.wait_counter(RECONNECTS, reconnects + 1.0).await?;
    wait_all(&monitor, &["auth", "billing"], Status::Healthy).await?;
    let reconnects = monitor.counter(RECONNECTS).await?;
    nats.restart()?;
    monitor.wait_counter(RECONNECTS, reconnects + 1.0).await?;
    // A whole heartbeat timeout after both: still no DOWN, by the monitor's own count.
    tokio::time::sleep(Duration::from_secs(4)).await;
    wait_all(&monitor, &["auth", "billing"], Status::Healthy).await?;
    assert_eq!(monitor.counter(DOWNS).await?, 0.0);
    assert_eq!(monitor.counter(DOWN_NOW).await?, 0.0);
    Ok(())
}

/// A client on a 3-node cluster drops its connection and reconnects (to any node) while it
/// keeps publishing: each loss waits `--reconnect-grace-ms` for the reconnect and is no
/// DOWN. The time from the server's disconnect to the reconnect's connect is printed: what
/// the 500 ms default is measured against.
#[tokio::test]
async fn in_a_cluster_a_quick_reconnect_is_no_down_and_a_crash_is() -> Result<()> {
    let cluster = NatsCluster::start(3).await?;
    let node0 = &cluster.nodes[0];
    let monitor = Monitor::start(node0, &[]).await?;
    let watcher = node0.client().await?;
    let mut advisories = watcher.subscribe("vitals.conn.>").await?;
    watcher.flush().await?;

    let name = "vitals:test:svc:svc-hand";
    let publisher = async_nats::ConnectOptions::new()
        .name(name)
        .connect(
            cluster
                .nodes
                .iter()
                .map(|n| n.url().parse())
                .collect::<Result<Vec<async_nats::ServerAddr>, _>>()?,
        )
        .await?;
    let sending = tokio::spawn({
        let publisher = publisher.clone();
        async move {
            for seq in 1u64.. {
                let body = good_sample("svc", seq).to_string();
                let _ = publisher.publish("metrics.svc", body.into()).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    wait_all(&monitor, &["svc"], Status::Healthy).await?;

    let mut gaps_ms = Vec::new();
    for _ in 0..5 {
        let lost_at = tokio::time::Instant::now();
        publisher.force_reconnect().await?;
        let mut saw_disconnect = None;
        let deadline = lost_at + SOON;
        while let Ok(Some(m)) = tokio::time::timeout_at(deadline, advisories.next()).await {
            let v: Value = serde_json::from_slice(&m.payload)?;
            if v["client"]["name"] != name {
                continue;
            }
            match m.subject.as_str() {
                "vitals.conn.disconnect" => saw_disconnect = Some(tokio::time::Instant::now()),
                "vitals.conn.connect" if saw_disconnect.is_some() => {
                    let gap = saw_disconnect.map(|d| d.elapsed().as_millis());
                    gaps_ms.extend(gap);
                    break;
                }
                _ => {}
            }
        }
    }
    eprintln!("disconnect -> reconnect seen by a subscriber, ms: {gaps_ms:?}");
    assert_eq!(gaps_ms.len(), 5, "every reconnect seen");
    // Past the grace and a whole heartbeat timeout: no DOWN, and every loss was held.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(monitor.counter(DOWNS).await?, 0.0);
    let held = monitor
        .counter(r#"vitals_monitor_conn_events_total{outcome="reconnected"}"#)
        .await?
        + monitor
            .counter(r#"vitals_monitor_conn_events_total{outcome="superseded"}"#)
            .await?;
    assert!(held >= 5.0, "reconnected + superseded = {held}");

    // A crash on a cluster: DOWN once the grace has passed without a reconnect.
    sending.abort();
    drop(publisher);
    monitor.wait_counter(DOWN_NOW, 1.0).await?;
    let snap = monitor.status().await?;
    let svc = snap.services.iter().find(|s| s.service.as_str() == "svc");
    assert_eq!(svc.map(|s| s.status), Some(Status::Down));
    assert_eq!(
        svc.and_then(|s| s.reasons.first().cloned()).as_deref(),
        Some("connection lost (Client Closed)")
    );
    Ok(())
}
