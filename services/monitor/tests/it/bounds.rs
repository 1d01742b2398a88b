//! Issue 12's input bounds against real processes: no accepted sample can poison a figure,
//! a health URL cannot point a browser anywhere, duplicates need evidence, and instance ids
//! must be visible.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{Value, json};
use vitals_protocol::{Snapshot, Status, subjects};
use vitals_testkit::{NatsServer, SOON, collect_for, wait_until};

use crate::helpers::*;

fn refused(reason: &str) -> String {
    format!("vitals_monitor_refused_samples_total{{reason=\"{reason}\"}}")
}

/// Every f64 in a JSON value is a number (a non-finite figure is written as `null`).
fn no_nulls(v: &Value, path: &str) -> Result<(), String> {
    match v {
        Value::Null => Err(path.to_owned()),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .try_for_each(|(i, x)| no_nulls(x, &format!("{path}[{i}]"))),
        Value::Object(o) => o.iter().try_for_each(|(k, x)| {
            // `last_seen_ms` is legitimately null before a first sample.
            if k == "last_seen_ms" {
                return Ok(());
            }
            no_nulls(x, &format!("{path}.{k}"))
        }),
        _ => Ok(()),
    }
}

#[tokio::test]
async fn a_huge_latency_is_refused_and_the_largest_accepted_values_keep_every_figure_finite()
-> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let mut monitor = Monitor::start(&nats, &["--summary-interval-ms", "100"]).await?;
    let mut summaries = client.subscribe("health.metrics.big").await?;
    let mut alerts = client.subscribe("health.alert.big").await?;
    client.flush().await?;

    // What once overflowed the window's f32 to infinity.
    let mut poison = good_sample("big", 1);
    poison["latency_ms"] = json!(1e39);
    publish_json(&client, "big", &poison).await?;
    client.flush().await?;
    monitor.wait_counter(&refused("out_of_range"), 1.0).await?;

    // The largest value of every field, enough times to fire HIGH_LATENCY.
    for seq in 1..=6u64 {
        let mut max = good_sample("big", seq);
        max["latency_ms"] = json!(vitals_protocol::MAX_LATENCY_MS);
        max["cpu_pct"] = json!(100.0);
        max["mem_pct"] = json!(100.0);
        max["error_rate"] = json!(1.0);
        max["ts_ms"] = json!(vitals_protocol::MAX_JSON_INT);
        publish_json(&client, "big", &max).await?;
    }
    client.flush().await?;
    let deadline = tokio::time::Instant::now() + SOON;
    let mut fired: Vec<Value> = Vec::new();
    while !fired.iter().any(|a| a["alert"] == "HIGH_LATENCY")
        && tokio::time::Instant::now() < deadline
    {
        fired.extend(
            collect_for(&mut alerts, Duration::from_millis(200))
                .await
                .iter()
                .filter_map(|m| serde_json::from_slice::<Value>(&m.payload).ok()),
        );
    }
    assert!(
        fired.iter().any(|a| a["alert"] == "HIGH_LATENCY"),
        "HIGH_LATENCY fires with a finite value: {fired:?}"
    );
    for a in &fired {
        no_nulls(a, "alert").map_err(|p| anyhow::anyhow!("null at {p}: {a}"))?;
    }
    let summary = vitals_testkit::next_json_within(&mut summaries, SOON)
        .await?
        .1;
    no_nulls(&summary, "summary").map_err(|p| anyhow::anyhow!("null at {p}: {summary}"))?;
    assert_eq!(summary["figures"]["latency_p99_ms"], json!(3_600_000.0));

    // The snapshot parses as the typed Snapshot (as the gateway reads it), over HTTP and NATS.
    let snap = monitor.status().await?;
    assert_eq!(snap.services.len(), 1);
    let page = nats_snapshot(&client).await?;
    assert_eq!(page.services[0].status, Status::Degraded);
    let raw: Value = reqwest::get(monitor.url("/api/status"))
        .await?
        .json()
        .await?;
    no_nulls(&raw, "snapshot").map_err(|p| anyhow::anyhow!("null at {p}"))?;

    // A restart reads every KV entry back: none unreadable, the service and its alerts kept.
    let js = async_nats::jetstream::new(client.clone());
    let kv = js.get_key_value(subjects::KV_BUCKET).await?;
    let written = wait_until(SOON, || async {
        let entry = kv.get("big").await.ok()??;
        let state: Value = serde_json::from_slice(&entry).ok()?;
        (state["alerts"].as_array()?.len() >= 3).then_some(state)
    })
    .await;
    let written = written.ok_or_else(|| anyhow::anyhow!("alerts never reached KV"))?;
    no_nulls(&written, "kv").map_err(|p| anyhow::anyhow!("null at {p}: {written}"))?;
    monitor.proc.signal(Signal::SIGKILL)?;
    monitor.proc.kill();
    let restarted = Monitor::start(&nats, &[]).await?;
    assert_eq!(
        restarted
            .counter("vitals_monitor_kv_unreadable_total")
            .await?,
        0.0
    );
    let line = restarted.proc.wait_for_log("state restored", SOON).await?;
    assert!(line.contains("unreadable=0"), "{line}");
    let snap: Snapshot = restarted.status().await?;
    assert_eq!(snap.services.len(), 1);
    assert_eq!(
        snap.services[0].alerts.len(),
        written["alerts"].as_array().map_or(0, Vec::len)
    );
    Ok(())
}

/// A KV entry written by an older monitor with `null` figures, and one that is junk: the
/// first is read (its firing kept, so no false resolve), the second is counted and logged,
/// and nothing is published about either.
#[tokio::test]
async fn unreadable_kv_entries_are_counted_and_never_resolved_or_fired_for() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let mut first = Monitor::start(&nats, &[]).await?; // creates the bucket and the stream
    first.proc.signal(Signal::SIGKILL)?;
    first.proc.kill();
    let js = async_nats::jetstream::new(client.clone());
    let kv = js.get_key_value(subjects::KV_BUCKET).await?;
    let now = vitals_runtime::epoch_ms();
    let state = |service: &str, id: &str| {
        json!({
            "service": service, "status": "DOWN", "since_ms": now - 60_000,
            "last_seen_ms": now - 60_000, "reasons": ["no sample for 3.1 s"],
            "alerts": [{"id": id, "alert": "SERVICE_DOWN", "value": 3.1, "threshold": 3.0,
                        "since_ms": now - 60_000}],
            "instance": format!("{service}-1"), "health_url": "http://127.0.0.1:3001/health",
            "figures": {"cpu_pct": 1.0, "mem_pct": 1.0, "error_rate": 0.0, "latency_ms": null,
                        "latency_avg_ms": null, "latency_p95_ms": null, "latency_p99_ms": null,
                        "uptime_pct": 0.0, "samples": 0, "window_s": 60}
        })
    };
    let mut published = Vec::new();
    for service in ["poisoned", "junk"] {
        let id = format!("{service}:SERVICE_DOWN:{}", now - 60_000);
        let firing = json!({
            "id": id, "service": service, "alert": "SERVICE_DOWN", "state": "firing",
            "value": 3.1, "threshold": 3.0, "since_ms": now - 60_000, "at_ms": now - 60_000
        });
        // HEALTH_EVENTS sends no acks (no_ack): publish, then see it stored.
        client
            .publish(
                format!("health.alert.{service}"),
                serde_json::to_vec(&firing)?.into(),
            )
            .await?;
        client.flush().await?;
        let subject = format!("health.alert.{service}");
        let stream = js.get_stream(subjects::EVENTS_STREAM).await?;
        let stored = vitals_testkit::wait_until(SOON, || async {
            stream
                .get_last_raw_message_by_subject(&subject)
                .await
                .ok()
                .map(drop)
        })
        .await;
        anyhow::ensure!(stored.is_some(), "{subject} never reached HEALTH_EVENTS");
        published.push(id.clone());
        if service == "poisoned" {
            kv.put(service, serde_json::to_vec(&state(service, &id))?.into())
                .await?;
        } else {
            kv.put(service, "{\"service\":\"junk\",\"status\":".into())
                .await?;
        }
    }
    let mut alerts = client.subscribe("health.alert.*").await?;
    client.flush().await?;
    let second = Monitor::start(&nats, &[]).await?;
    assert_eq!(
        second.counter("vitals_monitor_kv_unreadable_total").await?,
        1.0
    );
    assert_eq!(
        second.counter("vitals_monitor_kv_repaired_total").await?,
        1.0
    );
    let line = second.proc.wait_for_log("state restored", SOON).await?;
    assert!(line.contains("unreadable=1"), "{line}");
    assert!(second.proc.logs().contains("unreadable KV entry"));
    let repairs = collect_for(&mut alerts, Duration::from_secs(2)).await;
    assert!(
        repairs.is_empty(),
        "nothing published about either: {:?}",
        repairs
            .iter()
            .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
            .collect::<Vec<_>>()
    );
    let snap = second.status().await?;
    let poisoned = snap
        .services
        .iter()
        .find(|s| s.service.as_str() == "poisoned")
        .ok_or_else(|| anyhow::anyhow!("poisoned not restored: {snap:#?}"))?;
    assert_eq!(poisoned.status, Status::Down);
    assert_eq!(poisoned.alerts[0].id, published[0]);
    Ok(())
}

#[tokio::test]
async fn health_urls_that_point_a_browser_anywhere_are_refused() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let monitor = Monitor::start(&nats, &[]).await?;
    let bad = [
        "http://169.254.169.254/latest/meta-data/",
        "http://2852039166/",
        "http://0xa9.0xfe.0xa9.0xfe/",
        "http://admin:secret@host/",
        "http:///etc/passwd",
        "http://xn--pple-43d.com/health",
        "http://\u{0430}pple.com/health",
        "http://example.com/\u{200B}health",
        "http://example.com/\u{202E}htlaeh",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://100.100.100.200/latest/meta-data/",
        "http://[fe80::1]/health",
    ];
    for (i, url) in bad.iter().enumerate() {
        let mut s = good_sample("url", i as u64 + 1);
        s["health_url"] = json!(url);
        publish_json(&client, "url", &s).await?;
    }
    client.flush().await?;
    monitor
        .wait_counter(&refused("bad_health_url"), bad.len() as f64)
        .await?;
    assert_eq!(
        monitor.counter(&refused("bad_health_url")).await?,
        bad.len() as f64
    );
    assert!(monitor.status().await?.services.is_empty(), "none stored");
    // The stack's own form is still fine.
    publish_json(&client, "url", &good_sample("url", 100)).await?;
    client.flush().await?;
    monitor
        .wait_counter("vitals_monitor_samples_total", 1.0)
        .await?;
    Ok(())
}

/// A repeated `seq: 0` is a duplicate, not a restart: replaying a healthy sample twice does
/// not bring a DOWN service back. More instances than the cap are refused and counted.
#[tokio::test]
async fn a_replayed_seq_zero_does_not_recover_a_down_service_and_instances_are_capped()
-> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let monitor = Monitor::start(
        &nats,
        &[
            "--heartbeat-timeout-ms",
            "500",
            "--grace-ms",
            "0",
            "--max-instances",
            "4",
        ],
    )
    .await?;
    let mut sub = events(&client).await?;
    let sample = good_sample("replay", 0);
    publish_json(&client, "replay", &sample).await?;
    client.flush().await?;
    wait_status(&mut sub, "replay", Status::Healthy, SOON).await?;
    wait_status(&mut sub, "replay", Status::Down, SOON).await?;
    // The captured sample, replayed twice (two would be enough to recover).
    for _ in 0..2 {
        publish_json(&client, "replay", &sample).await?;
    }
    client.flush().await?;
    monitor.wait_counter(&refused("duplicate"), 2.0).await?;
    let after = collect_for(&mut sub, Duration::from_millis(700)).await;
    assert!(
        after
            .iter()
            .all(|m| !m.subject.starts_with("health.status.")),
        "no status change from a replay"
    );
    let snap = monitor.status().await?;
    assert_eq!(snap.services[0].status, Status::Down);

    // Rotating instance ids: four are tracked, the fifth and later are refused while all live.
    for i in 0..8u64 {
        let mut s = good_sample("rotate", 0);
        s["instance"] = json!(format!("rotate-{i}"));
        publish_json(&client, "rotate", &s).await?;
    }
    client.flush().await?;
    monitor.wait_counter(&refused("instance_cap"), 4.0).await?;
    assert_eq!(monitor.counter(&refused("instance_cap")).await?, 4.0);
    // Replaying an earlier instance's seq 0 is still a duplicate: it was not forgotten.
    let mut s = good_sample("rotate", 0);
    s["instance"] = json!("rotate-0");
    publish_json(&client, "rotate", &s).await?;
    client.flush().await?;
    monitor.wait_counter(&refused("duplicate"), 3.0).await?;
    Ok(())
}

#[tokio::test]
async fn invisible_instance_ids_and_unterminated_json_are_refused_for_what_they_are()
-> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let monitor = Monitor::start(&nats, &[]).await?;
    let ids = [
        "\u{200B}",
        "\u{00A0}",
        "\u{2028}",
        "   ",
        "\u{FEFF}\u{200B}",
    ];
    for (i, id) in ids.iter().enumerate() {
        let mut s = good_sample("inv", i as u64 + 1);
        s["instance"] = json!(id);
        publish_json(&client, "inv", &s).await?;
    }
    // 128 two-byte characters are 128 characters: accepted.
    let mut s = good_sample("inv", 50);
    s["instance"] = json!("é".repeat(128));
    publish_json(&client, "inv", &s).await?;
    client.publish("metrics.inv", "[[[[".into()).await?;
    client.flush().await?;
    monitor.wait_counter(&refused("bad_instance"), 5.0).await?;
    monitor.wait_counter(&refused("invalid_json"), 1.0).await?;
    assert_eq!(monitor.counter(&refused("schema")).await?, 0.0);
    monitor
        .wait_counter("vitals_monitor_samples_total", 1.0)
        .await?;
    Ok(())
}
