//! The gateway through outages: nats-server killed and restarted, the monitor gone
//! (KV fallback), and its own graceful shutdown.

use std::time::Duration;

use futures::StreamExt;
use nix::sys::signal::Signal;
use tokio_tungstenite::tungstenite::Message;
use vitals_testkit::{NatsServer, SOON, wait_until};

use crate::helpers::*;

#[tokio::test]
async fn nats_restart_tells_clients_down_then_up_with_a_fresh_snapshot() -> anyhow::Result<()> {
    let mut nats = NatsServer::start()?;
    let client = nats.client().await?;
    let monitor = monitor(&nats).await?;
    publish_sample(&client, "auth", 0, false).await?;
    publish_sample(&client, "billing", 0, false).await?;
    publish_sample(&client, "billing", 1, true).await?;
    let gw = gateway(&nats, &[]).await?;
    let mut ws = connect(&gw.ws_url(), None).await?;
    let mut seq = 0;
    until(&mut ws, &mut seq, SOON, |m| m["type"] == "snapshot").await?;

    nats.kill();
    let down = until(&mut ws, &mut seq, SOON, |m| m["type"] == "gateway").await?;
    assert_eq!(down["data"]["nats_connected"], false);
    let health = gw.get_json("/healthz").await?;
    assert_eq!(health["nats_connected"], false);

    nats.restart()?;
    let up = until(&mut ws, &mut seq, Duration::from_secs(20), |m| {
        m["type"] == "gateway"
    })
    .await?;
    assert_eq!(up["data"]["nats_connected"], true);
    let fresh = until(&mut ws, &mut seq, SOON, |m| m["type"] == "snapshot").await?;
    assert_eq!(fresh["resync"], true);
    assert_eq!(fresh["gateway"]["nats_connected"], true);
    // The fresh snapshot matches the monitor's view.
    let theirs = monitor.get_json("/api/status").await?;
    for svc in ["auth", "billing"] {
        assert_eq!(
            snapshot_status(&fresh, svc),
            snapshot_status(&theirs, svc),
            "{svc}"
        );
    }
    assert_eq!(snapshot_status(&fresh, "billing").as_deref(), Some("DOWN"));
    Ok(())
}

#[tokio::test]
async fn without_a_monitor_the_view_comes_from_kv() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let mut monitor = monitor(&nats).await?;
    publish_sample(&client, "auth", 0, false).await?;
    let js = async_nats::jetstream::new(client.clone());
    let kv = js.get_key_value("health_status").await?;
    let stored = wait_until(SOON, || async { kv.get("auth").await.ok().flatten() }).await;
    assert!(stored.is_some());
    monitor.proc.kill();

    let gw = gateway(&nats, &["--snapshot-timeout-ms", "300"]).await?;
    let mut ws = connect(&gw.ws_url(), None).await?;
    let mut seq = 0;
    let snap = until(&mut ws, &mut seq, SOON, |m| m["type"] == "snapshot").await?;
    assert_eq!(snap["gateway"]["source"], "kv");
    assert_eq!(snapshot_status(&snap, "auth").as_deref(), Some("HEALTHY"));
    assert!(
        snap["monitor"].is_null(),
        "no heartbeat seen: the dashboard can tell the monitor is down"
    );
    Ok(())
}

#[tokio::test]
async fn sigterm_closes_clients_with_going_away_and_exits() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let mut gw = gateway(&nats, &[]).await?;
    let mut ws = connect(&gw.ws_url(), None).await?;
    let mut seq = 0;
    until(&mut ws, &mut seq, SOON, |m| m["type"] == "snapshot").await?;
    gw.proc.signal(Signal::SIGTERM)?;
    let close = tokio::time::timeout(SOON, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await?;
    assert_eq!(close, Some(1001));
    let status = gw.proc.wait_exit(SOON).await?;
    assert_eq!(status.code(), Some(0));
    Ok(())
}

/// The monitor stops: its heartbeats stop reaching clients (so the dashboard can say
/// "monitor down" and grey the data), and no service is reported DOWN because of it.
#[tokio::test]
async fn monitor_down_is_not_services_down() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let mut monitor = monitor(&nats).await?;
    publish_sample(&client, "auth", 0, false).await?;
    let gw = gateway(&nats, &[]).await?;
    let mut ws = connect(&gw.ws_url(), None).await?;
    let mut seq = 0;
    until(&mut ws, &mut seq, SOON, |m| m["type"] == "monitor").await?;
    monitor.proc.kill();
    // Nothing but silence: no status change, no alert, no heartbeat, for longer than the
    // heartbeat timeout.
    let quiet = tokio::time::timeout(
        Duration::from_secs(5),
        next_msg(&mut ws, Duration::from_secs(5)),
    )
    .await;
    assert!(!matches!(quiet, Ok(Ok(_))), "got {quiet:?}");
    let status = gw.get_json("/api/status").await?;
    assert_eq!(snapshot_status(&status, "auth").as_deref(), Some("HEALTHY"));
    // A client connecting now sees when the monitor was last heard of.
    let mut late = connect(&gw.ws_url(), None).await?;
    let mut ls = 0;
    let snap = until(&mut late, &mut ls, SOON, |m| m["type"] == "snapshot").await?;
    let seen = snap["monitor_seen_ms"].as_u64().unwrap_or(0);
    assert!(
        snap["at_ms"].as_u64().unwrap_or(0) >= seen + 5_000,
        "{snap}"
    );
    Ok(())
}

/// Records one connection's real frames, of every type, to `target/fixtures/feed.json`
/// (or `$FEED_FIXTURE_OUT`): the dashboard's tests parse exactly what the gateway sends.
#[tokio::test]
async fn records_a_fixture_of_real_frames_for_the_dashboard() -> anyhow::Result<()> {
    let mut nats = NatsServer::start()?;
    let client = nats.client().await?;
    let _monitor = monitor(&nats).await?;
    publish_sample(&client, "auth", 0, false).await?;
    let gw = gateway(&nats, &[]).await?;
    let mut ws = connect(&gw.ws_url(), None).await?;
    let mut seq = 0;
    let mut frames = vec![until(&mut ws, &mut seq, SOON, |_| true).await?];
    let mut record = |m: serde_json::Value| {
        frames.push(m);
    };
    publish_sample(&client, "billing", 0, false).await?;
    publish_sample(&client, "billing", 1, true).await?;
    let wanted = ["status", "alert", "metrics", "monitor"];
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < wanted.len() {
        let m = until(&mut ws, &mut seq, SOON, |_| true).await?;
        seen.insert(m["type"].as_str().unwrap_or("").to_owned());
        record(m);
    }
    send_text(&mut ws, r#"{"type":"resync"}"#).await?;
    loop {
        let m = until(&mut ws, &mut seq, SOON, |_| true).await?;
        let done = m["type"] == "snapshot";
        record(m);
        if done {
            break;
        }
    }
    nats.kill();
    loop {
        let m = until(&mut ws, &mut seq, SOON, |_| true).await?;
        let done = m["type"] == "gateway";
        record(m);
        if done {
            break;
        }
    }
    nats.restart()?;
    loop {
        let m = until(&mut ws, &mut seq, Duration::from_secs(20), |_| true).await?;
        let done = m["type"] == "snapshot";
        record(m);
        if done {
            break;
        }
    }
    let types: std::collections::BTreeSet<&str> =
        frames.iter().filter_map(|f| f["type"].as_str()).collect();
    assert_eq!(types.len(), 6, "{types:?}");
    let out = std::env::var("FEED_FIXTURE_OUT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| vitals_testkit::workspace_root().join("target/fixtures/feed.json"));
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&frames)?)?;
    Ok(())
}

/// The monitor restarts (a new `monitor_id`): its first heartbeat makes the gateway take
/// a full snapshot again, and clients get it as a resync.
#[tokio::test]
async fn a_new_monitor_brings_every_client_a_fresh_snapshot() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let mut first = monitor(&nats).await?;
    publish_sample(&client, "auth", 0, false).await?;
    let gw = gateway(&nats, &[]).await?;
    let mut ws = connect(&gw.ws_url(), None).await?;
    let mut seq = 0;
    until(&mut ws, &mut seq, SOON, |m| m["type"] == "monitor").await?;
    first.proc.kill();
    let _second = monitor(&nats).await?;
    let fresh = until(&mut ws, &mut seq, SOON, |m| m["type"] == "snapshot").await?;
    assert_eq!(fresh["resync"], true);
    assert_eq!(fresh["gateway"]["source"], "monitor");
    assert_eq!(snapshot_status(&fresh, "auth").as_deref(), Some("HEALTHY"));
    assert!(gw.proc.logs().contains("a new monitor is up"));
    Ok(())
}
