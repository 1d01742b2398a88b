//! Issue 12, point 4: a monitor killed with 20,000 services (most DOWN) and restarted
//! repeats no firing and drops no resolve. The old reconciliation read only the last
//! ~10,000 alert events and re-announced 5,461 firings it had not seen there.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sys::signal::Signal;
use serde_json::Value;
use vitals_protocol::subjects;
use vitals_testkit::{NatsServer, SOON, wait_until};

use crate::helpers::*;

const SERVICES: usize = 20_000;
/// Kept alive throughout (the rest go DOWN).
const ALIVE: usize = 2_000;
/// DOWN before the kill, brought back after the restart: each must get its one resolve.
const REVIVED: usize = 1_000;

fn name(i: usize) -> String {
    format!("s{i:05}")
}

/// Every alert event stored in HEALTH_EVENTS with a stream sequence above `after`, read
/// to the stream's end (a read cut short by a slow fetch is retried).
async fn alerts_after(client: &async_nats::Client, after: u64) -> anyhow::Result<Vec<Value>> {
    let js = async_nats::jetstream::new(client.clone());
    let mut stream = js.get_stream(subjects::EVENTS_STREAM).await?;
    let last = stream.info().await?.state.last_sequence;
    if last <= after {
        return Ok(Vec::new());
    }
    for _ in 0..5 {
        let messages = vitals_runtime::read_stream(&stream, after + 1, last, &[]).await?;
        if messages.last().is_some_and(|m| m.seq == last) {
            return Ok(messages
                .iter()
                .filter(|m| m.subject.starts_with("health.alert."))
                .filter_map(|m| serde_json::from_slice(&m.payload).ok())
                .collect());
        }
    }
    bail!("HEALTH_EVENTS could not be read to its end ({last})")
}

async fn last_seq(client: &async_nats::Client) -> anyhow::Result<u64> {
    let js = async_nats::jetstream::new(client.clone());
    let mut stream = js.get_stream(subjects::EVENTS_STREAM).await?;
    Ok(stream.info().await?.state.last_sequence)
}

/// Publishes one sample to each of `names` (seq per service from `seqs`).
async fn publish_round(
    client: &async_nats::Client,
    names: &[String],
    seqs: &mut HashMap<String, u64>,
) -> anyhow::Result<()> {
    for n in names {
        let seq = seqs.entry(n.clone()).or_insert(0);
        *seq += 1;
        publish_json(client, n, &good_sample(n, *seq)).await?;
    }
    client.flush().await?;
    Ok(())
}

#[tokio::test]
async fn restart_with_twenty_thousand_services_repeats_no_firing_and_drops_no_resolve()
-> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let args = ["--heartbeat-timeout-ms", "1500", "--retire-after-s", "0"];
    let mut monitor = Monitor::start(&nats, &args).await?;
    let names: Vec<String> = (0..SERVICES).map(name).collect();
    let alive: Vec<String> = names[..ALIVE].to_vec();
    let revived: Vec<String> = names[ALIVE..ALIVE + REVIVED].to_vec();

    let mut seqs = HashMap::new();
    publish_round(&client, &names, &mut seqs).await?;
    monitor
        .wait_counter("vitals_monitor_services", SERVICES as f64)
        .await?;

    // The live ones keep publishing, every 300 ms, through both monitors.
    let stop = Arc::new(AtomicBool::new(false));
    let keep = |names: Vec<String>, mut seqs: HashMap<String, u64>| {
        let (client, stop) = (client.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if publish_round(&client, &names, &mut seqs).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    let keeper = keep(alive.clone(), seqs.clone());
    let down = (SERVICES - ALIVE) as f64;
    let fired = "vitals_monitor_alert_events_total{alert=\"SERVICE_DOWN\",state=\"firing\"}";
    let got = wait_until(Duration::from_secs(60), || async {
        monitor.counter(fired).await.ok().filter(|v| *v >= down)
    })
    .await;
    if got.is_none() {
        bail!(
            "not every silent service went DOWN: {}",
            monitor.counter(fired).await?
        );
    }
    // Let the states reach KV (the restart must also cope when they have not: see the
    // reconcile unit tests), then kill without warning.
    let js = async_nats::jetstream::new(client.clone());
    let kv = js.get_key_value(subjects::KV_BUCKET).await?;
    let last_name = names[SERVICES - 1].clone();
    wait_until(SOON, || async {
        let v = kv.get(&last_name).await.ok()??;
        let state: Value = serde_json::from_slice(&v).ok()?;
        (state["status"] == "DOWN").then_some(())
    })
    .await
    .context("KV never showed the last service DOWN")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    monitor.proc.signal(Signal::SIGKILL)?;
    monitor.proc.kill();

    let before = alerts_after(&client, 0).await?;
    let fired_before: HashSet<String> = before
        .iter()
        .filter(|e| e["state"] == "firing")
        .filter_map(|e| e["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(fired_before.len(), SERVICES - ALIVE);
    let cut = last_seq(&client).await?;

    let restarted = Monitor::start(&nats, &args).await?;
    let line = restarted.proc.wait_for_log("state restored", SOON).await?;
    // The revived ones publish again from now on (two samples recover a service).
    let reviver = keep(revived.clone(), seqs.clone());
    let resolved = "vitals_monitor_alert_events_total{alert=\"SERVICE_DOWN\",state=\"resolved\"}";
    restarted.wait_counter(resolved, REVIVED as f64).await?;
    // Past the grace period and a few heartbeat timeouts: a repeat would be out by now.
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::time::timeout(SOON, keeper).await;
    let _ = tokio::time::timeout(SOON, reviver).await;

    let after = alerts_after(&client, cut).await?;
    let repeated: Vec<&Value> = after
        .iter()
        .filter(|e| e["state"] == "firing")
        .filter(|e| e["id"].as_str().is_some_and(|id| fired_before.contains(id)))
        .collect();
    assert!(
        repeated.is_empty(),
        "{} firings repeated after the restart (log: {line}), e.g. {:?}",
        repeated.len(),
        repeated.first()
    );
    let new_firings = after.iter().filter(|e| e["state"] == "firing").count();
    assert_eq!(new_firings, 0, "nobody alive went DOWN");
    // Every revived service got exactly one resolve, with its firing's id.
    let mut resolves: HashMap<&str, usize> = HashMap::new();
    for e in after.iter().filter(|e| e["state"] == "resolved") {
        *resolves.entry(e["id"].as_str().unwrap_or("")).or_default() += 1;
    }
    for n in &revived {
        let id = before
            .iter()
            .find(|e| e["service"] == n.as_str() && e["state"] == "firing")
            .and_then(|e| e["id"].as_str())
            .unwrap_or("");
        assert_eq!(resolves.get(id), Some(&1), "{n}: resolves {resolves:?}");
    }
    assert_eq!(
        resolves.len(),
        REVIVED,
        "no other resolve (e.g. a false repair)"
    );
    // The stream and the monitor agree: what the history leaves unresolved is exactly
    // what the monitor holds firing.
    let mut open: HashSet<String> = HashSet::new();
    for e in before.iter().chain(&after) {
        let id = e["id"].as_str().unwrap_or("").to_owned();
        if e["state"] == "firing" {
            open.insert(id);
        } else {
            open.remove(&id);
        }
    }
    let snap = restarted.status().await?;
    let held: HashSet<String> = snap
        .services
        .iter()
        .flat_map(|s| s.alerts.iter().map(|a| a.id.clone()))
        .collect();
    assert_eq!(snap.services.len(), SERVICES);
    assert_eq!(open.len(), SERVICES - ALIVE - REVIVED);
    let only_stream: Vec<&String> = open.difference(&held).take(5).collect();
    let only_monitor: Vec<&String> = held.difference(&open).take(5).collect();
    assert!(
        only_stream.is_empty() && only_monitor.is_empty(),
        "stream and monitor disagree: unresolved only in the stream {only_stream:?}, held only by the monitor {only_monitor:?}"
    );
    Ok(())
}
