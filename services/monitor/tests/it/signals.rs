//! A simulator killed, stopped or terminated by PID: exactly one DOWN and one
//! SERVICE_DOWN, then exactly one recovery and one resolve.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;
use vitals_protocol::Status;
use vitals_testkit::{NatsServer, SOON, collect_for};

use crate::helpers::*;

/// Events about `service` from `seen` plus whatever arrives in the next `settle`.
async fn with_aftermath(
    sub: &mut async_nats::Subscriber,
    mut seen: Vec<(String, Value)>,
    settle: Duration,
) -> Vec<(String, Value)> {
    for msg in collect_for(sub, settle).await {
        if let Ok(v) = serde_json::from_slice(&msg.payload) {
            seen.push((msg.subject.to_string(), v));
        }
    }
    seen
}

fn alert_ids(events: &[&Value], state: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["alert"] == "SERVICE_DOWN" && e["state"] == state)
        .filter_map(|e| e["id"].as_str().map(str::to_owned))
        .collect()
}

async fn outage_and_recovery(signal: Signal) -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let mut sub = client.subscribe("health.*.auth").await?;
    client.flush().await?;
    let _monitor = Monitor::start(&nats, &[]).await?;
    let mut sim = simulator(&nats, "auth", &[]).await?;
    let _witness = simulator(&nats, "billing", &[]).await?;
    wait_status(&mut sub, "auth", Status::Healthy, SOON).await?;

    sim.signal(signal)?;
    if signal == Signal::SIGKILL {
        sim.kill(); // reap
    }
    let down = wait_status(&mut sub, "auth", Status::Down, SOON).await?;
    let down = with_aftermath(&mut sub, down, Duration::from_secs(2)).await;
    let events = about(&down, "auth");
    assert_eq!(count(&events, "status", "DOWN"), 1, "{events:#?}");
    let fired = alert_ids(&events, "firing");
    assert_eq!(fired.len(), 1, "{events:#?}");
    let change = events.iter().find(|e| e["status"] == "DOWN").expect("DOWN");
    assert!(
        change["reasons"][0]
            .as_str()
            .is_some_and(|r| r.starts_with("no sample for")),
        "{change}"
    );

    // Back: a new process (after SIGKILL) or the same one continued (after SIGSTOP).
    let _restarted = if signal == Signal::SIGSTOP {
        sim.signal(Signal::SIGCONT)?;
        None
    } else {
        Some(simulator(&nats, "auth", &[]).await?)
    };
    let up = wait_status(&mut sub, "auth", Status::Healthy, SOON).await?;
    let up = with_aftermath(&mut sub, up, Duration::from_secs(2)).await;
    let events = about(&up, "auth");
    assert_eq!(count(&events, "status", "HEALTHY"), 1, "{events:#?}");
    assert_eq!(count(&events, "status", "DOWN"), 0, "{events:#?}");
    assert_eq!(
        alert_ids(&events, "resolved"),
        fired,
        "one resolve, same id"
    );
    assert!(alert_ids(&events, "firing").is_empty());
    Ok(())
}

#[tokio::test]
async fn sigkill_gives_one_down_and_restart_one_recovery() -> anyhow::Result<()> {
    outage_and_recovery(Signal::SIGKILL).await
}

#[tokio::test]
async fn sigstop_gives_one_down_and_sigcont_one_recovery() -> anyhow::Result<()> {
    outage_and_recovery(Signal::SIGSTOP).await
}

/// SIGTERM: the simulator's last sample says `stopping`, so DOWN comes at once with reason
/// `stopped`. The heartbeat timeout is set to a minute here: a DOWN within the test's
/// wait can only have come from the stopping sample.
#[tokio::test]
async fn sigterm_is_down_at_once_with_reason_stopped() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let mut sub = client.subscribe("health.*.auth").await?;
    client.flush().await?;
    let _monitor = Monitor::start(&nats, &["--heartbeat-timeout-ms", "60000"]).await?;
    let mut sim = simulator(&nats, "auth", &[]).await?;
    wait_status(&mut sub, "auth", Status::Healthy, SOON).await?;
    sim.signal(Signal::SIGTERM)?;
    let status = sim.wait_exit(SOON).await?;
    assert_eq!(status.code(), Some(0), "exits cleanly");
    let seen = wait_status(&mut sub, "auth", Status::Down, SOON).await?;
    let events = about(&seen, "auth");
    let change = events.iter().find(|e| e["status"] == "DOWN").expect("DOWN");
    assert_eq!(change["reasons"], serde_json::json!(["stopped"]));
    assert_eq!(alert_ids(&events, "firing").len(), 1);
    Ok(())
}

/// A numeric flag out of range is refused at start, naming the flag, with exit code 2.
#[tokio::test]
async fn out_of_range_flags_exit_2_naming_the_flag() -> anyhow::Result<()> {
    for (flag, bad) in [
        ("--tick-ms", "0"),
        ("--window-s", "0"),
        ("--pending-limit", "1"),
        ("--retire-after-s", "-3"),
    ] {
        let arg = format!("{flag}={bad}");
        let mut proc = vitals_testkit::ChildProc::spawn("monitor", &[&arg], &[])?;
        let status = proc.wait_exit(vitals_testkit::SOON).await?;
        assert_eq!(status.code(), Some(2), "{flag}: {}", proc.logs());
        assert!(proc.logs().contains(flag), "{flag}: {}", proc.logs());
    }
    Ok(())
}
