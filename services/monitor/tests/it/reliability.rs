//! Faults under load: a frozen NATS, a flapping service, every simulator restarted at
//! once, a simulator whose clock jumps, a flood of new names.

use std::time::Duration;

use serde_json::Value;
use vitals_protocol::{Status, subjects};
use vitals_testkit::{ChildProc, NatsServer, SOON, collect_for, next_json_within, wait_until};

use crate::helpers::*;

fn statuses(msgs: &[async_nats::Message]) -> Vec<(String, String)> {
    msgs.iter()
        .filter(|m| m.subject.starts_with("health.status."))
        .filter_map(|m| serde_json::from_slice::<Value>(&m.payload).ok())
        .map(|v| {
            (
                v["service"].as_str().unwrap_or("").to_owned(),
                v["status"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn load(nats: &NatsServer, count: usize, prefix: &str) -> anyhow::Result<ChildProc> {
    let url = nats.url();
    let count = count.to_string();
    ChildProc::spawn(
        "simulator",
        &[
            "--count",
            &count,
            "--prefix",
            prefix,
            "--nats-url",
            &url,
            "--http-addr",
            "127.0.0.1:0",
            "--interval-ms",
            "500",
        ],
        &[],
    )
}

/// nats-server frozen (SIGSTOP) for 5 s under load: the monitor notices its own
/// heartbeat no longer comes back and judges nobody meanwhile; after SIGCONT everything
/// recovers by itself and no service was reported DOWN.
#[tokio::test]
async fn nats_frozen_for_5s_under_load_recovers_without_false_downs() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let monitor = Monitor::start(&nats, &[]).await?;
    let _load = load(&nats, 200, "load-")?;
    let names: Vec<String> = (0..200).map(|i| format!("load-{i}")).collect();
    let wanted: Vec<&str> = names.iter().map(String::as_str).collect();
    wait_all(&monitor, &wanted, Status::Healthy).await?;
    let watcher = nats.client().await?;
    let mut events = watcher.subscribe("health.status.>").await?;
    watcher.flush().await?;

    nats.pause()?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    nats.resume()?;

    // Back: the heartbeat flows again and everyone is still HEALTHY.
    let client = nats.client().await?;
    let mut hb = client.subscribe(subjects::HEARTBEAT).await?;
    next_json_within(&mut hb, Duration::from_secs(20)).await?;
    let after = collect_for(&mut events, Duration::from_secs(6)).await;
    let downs: Vec<_> = statuses(&after)
        .into_iter()
        .filter(|(_, s)| s == "DOWN")
        .collect();
    assert!(
        downs.is_empty(),
        "false DOWNs after a frozen NATS: {downs:?}"
    );
    wait_all(&monitor, &wanted, Status::Healthy).await?;
    assert!(
        monitor
            .proc
            .logs()
            .contains("own heartbeat no longer echoes"),
        "the stall was noticed"
    );
    Ok(())
}

/// A flapping service (healthy and erroring every few samples) produces transitions
/// bounded by the hysteresis: never more than one edge per for/clear count of samples.
#[tokio::test]
async fn a_flapping_service_has_bounded_transitions() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let monitor = Monitor::start(&nats, &[]).await?;
    let mut events = client.subscribe("health.*.flappy").await?;
    client.flush().await?;
    let _sim = simulator(
        &nats,
        "flappy",
        &["--interval-ms", "100", "--fault", "flapping"],
    )
    .await?;
    let seen = collect_for(&mut events, Duration::from_secs(6)).await;
    let sent = monitor.counter("vitals_monitor_samples_total").await?;
    let edges = seen
        .iter()
        .filter(|m| m.subject.starts_with("health.alert."))
        .count() as f64;
    // Each alert edge needs at least 3 consecutive samples (for/clear counts).
    assert!(
        edges <= sent / 3.0 + 1.0,
        "{edges} alert edges for {sent} samples"
    );
    assert!(edges >= 1.0, "flapping never fired an alert");
    let st = statuses(&seen);
    assert!(
        st.windows(2).all(|w| w[0].1 != w[1].1),
        "no repeated status: {st:?}"
    );
    Ok(())
}

/// Every simulator restarted at once (new instances, seq from 0): no alert at all.
#[tokio::test]
async fn all_simulators_restarted_at_once_raise_no_alerts() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let monitor = Monitor::start(&nats, &[]).await?;
    let names = ["auth", "billing", "notifications", "analytics"];
    let mut sims = Vec::new();
    for n in names {
        sims.push(simulator(&nats, n, &[]).await?);
    }
    wait_all(&monitor, &names, Status::Healthy).await?;
    let mut events = client.subscribe("health.*.*").await?;
    client.flush().await?;
    // SIGKILL all, restart all at once, well within the heartbeat timeout.
    for s in &mut sims {
        s.kill();
    }
    let mut again = Vec::new();
    for n in names {
        again.push(simulator(&nats, n, &[]).await?);
    }
    let seen = collect_for(&mut events, Duration::from_secs(5)).await;
    let alerts: Vec<_> = seen
        .iter()
        .filter(|m| m.subject.starts_with("health.alert."))
        .collect();
    assert!(alerts.is_empty(), "{} alerts", alerts.len());
    assert!(statuses(&seen).is_empty());
    Ok(())
}

/// A simulator whose clock is an hour off changes nothing (health is judged on the
/// monitor's receive clock); its samples are counted as skewed.
#[tokio::test]
async fn a_clock_jump_has_no_effect_on_status_and_is_counted() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let monitor = Monitor::start(&nats, &[]).await?;
    let mut events = client.subscribe("health.status.skewed").await?;
    client.flush().await?;
    let hour = 3_600_000;
    for seq in 0..12u64 {
        let mut s = good_sample("skewed", seq);
        let now = s["ts_ms"].as_u64().unwrap_or(0);
        s["ts_ms"] = (if seq < 6 { now + hour } else { now - hour }).into();
        publish_json(&client, "skewed", &s).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let seen = collect_for(&mut events, Duration::from_millis(500)).await;
    assert_eq!(
        statuses(&seen),
        vec![("skewed".to_owned(), "HEALTHY".to_owned())]
    );
    assert_eq!(
        monitor
            .counter("vitals_monitor_clock_skew_samples_total")
            .await?,
        12.0
    );
    Ok(())
}

/// A flood of new names: the cap holds, memory stays bounded, tracked services keep
/// being judged.
#[tokio::test]
async fn a_flood_of_new_names_is_capped_and_memory_stays_bounded() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let monitor = Monitor::start(&nats, &["--max-services", "100"]).await?;
    let _sim = simulator(&nats, "steady", &[]).await?;
    wait_all(&monitor, &["steady"], Status::Healthy).await?;
    let before = vitals_testkit::rss_bytes(monitor.proc.pid()) / 1024;
    for i in 0..50_000u64 {
        let name = format!("flood-{i}");
        publish_json(&client, &name, &good_sample(&name, 0)).await?;
    }
    client.flush().await?;
    monitor
        .wait_counter(
            "vitals_monitor_refused_samples_total{reason=\"service_cap\"}",
            49_901.0,
        )
        .await?;
    let snap = monitor.status().await?;
    assert_eq!(snap.services.len(), 100);
    let grown_kib = (vitals_testkit::rss_bytes(monitor.proc.pid()) / 1024).saturating_sub(before);
    // 100 tracked services cost well under 10 MiB; 50,000 untracked ones cost nothing.
    assert!(grown_kib < 10 * 1024, "RSS grew by {grown_kib} KiB");
    let steady = wait_until(SOON, || async {
        monitor
            .status()
            .await
            .ok()?
            .services
            .iter()
            .find(|s| s.service.as_str() == "steady")
            .map(|s| s.status)
    })
    .await;
    assert_eq!(steady, Some(Status::Healthy));
    Ok(())
}
