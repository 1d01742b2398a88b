//! Bad input gets a clear, counted refusal and nothing else is lost.

use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use vitals_protocol::{Status, subjects};
use vitals_testkit::{NatsServer, SOON, collect_for, next_json_within, wait_until};

use crate::helpers::*;

fn with(field: &str, value: Value) -> Value {
    let mut v = good_sample("auth", 1);
    v[field] = value;
    v
}

#[tokio::test]
async fn malformed_and_hostile_samples_are_refused_and_counted_while_good_ones_flow()
-> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let monitor = Monitor::start(&nats, &[]).await?;
    let mut sub = client.subscribe("health.*.auth").await?;
    client.flush().await?;
    let _sim = simulator(&nats, "auth", &[]).await?;
    wait_status(&mut sub, "auth", Status::Healthy, SOON).await?;
    let before = monitor.counter("vitals_monitor_samples_total").await?;

    let raw: Vec<(&str, Vec<u8>)> = vec![
        ("metrics.auth", b"{not json".to_vec()),
        ("metrics.auth", b"{\"cpu_pct\": NaN}".to_vec()),
        ("metrics.auth", Vec::new()),
        ("metrics.auth", vec![b'x'; 1024 * 1024 - 4096]),
        (
            "metrics.auth",
            serde_json::to_vec(&with("cpu_pct", json!("high")))?,
        ),
        ("metrics.auth", serde_json::to_vec(&with("seq", json!(-1)))?),
        (
            "metrics.auth",
            serde_json::to_string(&with("cpu_pct", json!(1.0)))?
                .replace("\"cpu_pct\":1.0", "\"cpu_pct\":1e400")
                .into_bytes(),
        ),
        (
            "metrics.auth",
            serde_json::to_vec(&with("cpu_pct", json!(101.0)))?,
        ),
        (
            "metrics.auth",
            serde_json::to_vec(&with("mem_pct", json!(-5.0)))?,
        ),
        (
            "metrics.auth",
            serde_json::to_vec(&with("error_rate", json!(2.0)))?,
        ),
        (
            "metrics.auth",
            serde_json::to_vec(&with("latency_ms", json!(-1.0)))?,
        ),
        (
            "metrics.auth",
            serde_json::to_vec(&with("service", json!("billing")))?,
        ),
        (
            "metrics.auth",
            serde_json::to_vec(&with("health_url", json!("javascript:alert(1)")))?,
        ),
        (
            "metrics.<script>",
            serde_json::to_vec(&with("service", json!("<script>")))?,
        ),
        (
            "metrics.AUTH",
            serde_json::to_vec(&with("service", json!("AUTH")))?,
        ),
        (
            "metrics.zürich",
            serde_json::to_vec(&with("service", json!("zürich")))?,
        ),
    ];
    let long = "a".repeat(300);
    let long_subject = format!("metrics.{long}");
    let mut raw = raw;
    raw.push((
        &long_subject,
        serde_json::to_vec(&with("service", json!(long)))?,
    ));
    // `a.b` and `*` cannot even be a subject token; sent in the payload they are refused too.
    raw.push((
        "metrics.x",
        serde_json::to_vec(&with("service", json!("a.b")))?,
    ));
    raw.push((
        "metrics.x",
        serde_json::to_vec(&with("service", json!("*")))?,
    ));
    for (subject, payload) in &raw {
        client
            .publish(subject.to_string(), payload.clone().into())
            .await?;
    }
    // And many of one kind, to see the log stays bounded.
    for _ in 0..200 {
        client.publish("metrics.auth", "garbage".into()).await?;
    }
    client.flush().await?;

    let expect = [
        ("invalid_json", 202.0),
        ("empty", 1.0),
        ("too_large", 1.0),
        ("schema", 2.0),
        ("not_finite", 1.0),
        ("out_of_range", 4.0),
        ("subject_mismatch", 1.0),
        ("bad_health_url", 1.0),
        ("bad_name", 6.0),
    ];
    for (reason, n) in expect {
        let series = format!("vitals_monitor_refused_samples_total{{reason=\"{reason}\"}}");
        monitor.wait_counter(&series, n).await?;
        assert_eq!(monitor.counter(&series).await?, n, "{reason}");
    }
    // Good samples keep flowing; nothing hostile is stored; auth never left HEALTHY.
    monitor
        .wait_counter("vitals_monitor_samples_total", before + 10.0)
        .await?;
    let snap = monitor.status().await?;
    let names: Vec<&str> = snap.services.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(names, vec!["auth"]);
    assert_eq!(snap.services[0].status, Status::Healthy);
    let noise = collect_for(&mut sub, Duration::from_millis(500)).await;
    assert!(
        noise
            .iter()
            .all(|m| m.subject.starts_with("health.metrics."))
    );
    // Refusals are logged at a bounded rate, not once per message.
    let logged = monitor
        .proc
        .logs()
        .lines()
        .filter(|l| l.contains("refused sample") && l.contains("invalid_json"))
        .count();
    assert!(
        (1..=2).contains(&logged),
        "{logged} log lines for invalid_json"
    );
    // The heartbeat carries the same refusal counts.
    let mut hb = client.subscribe(subjects::HEARTBEAT).await?;
    let (_, beat) = next_json_within(&mut hb, SOON).await?;
    assert_eq!(beat["refusals"]["invalid_json"], 202);
    Ok(())
}

#[tokio::test]
async fn the_service_cap_holds_and_tracked_services_are_unaffected() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let monitor = Monitor::start(&nats, &["--max-services", "3"]).await?;
    for (i, name) in ["a", "b", "c", "d", "e", "f"].iter().enumerate() {
        publish_json(&client, name, &good_sample(name, i as u64)).await?;
    }
    client.flush().await?;
    monitor
        .wait_counter(
            "vitals_monitor_refused_samples_total{reason=\"service_cap\"}",
            3.0,
        )
        .await?;
    let snap = monitor.status().await?;
    assert_eq!(snap.services.len(), 3);
    // A tracked service still gets its samples through.
    publish_json(&client, "a", &good_sample("a", 100)).await?;
    monitor
        .wait_counter("vitals_monitor_samples_total", 4.0)
        .await?;
    Ok(())
}

#[tokio::test]
async fn duplicate_and_replayed_seq_are_counted_not_double_counted() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let monitor = Monitor::start(&nats, &[]).await?;
    for seq in [5, 6, 6, 4, 7] {
        publish_json(&client, "dup", &good_sample("dup", seq)).await?;
    }
    client.flush().await?;
    monitor
        .wait_counter(
            "vitals_monitor_refused_samples_total{reason=\"duplicate\"}",
            2.0,
        )
        .await?;
    monitor
        .wait_counter("vitals_monitor_samples_total", 3.0)
        .await?;
    let snap = monitor.status().await?;
    assert_eq!(snap.services[0].figures.samples, 3);
    Ok(())
}

/// The monitor is frozen (SIGSTOP) while a burst arrives; when it continues, its client
/// reads faster than the engine drains a tiny pending limit: the overflow is counted as
/// slow-consumer drops (in /metrics and the heartbeat), and exactly, from the gaps in the
/// samples' seq, as missed samples; the monitor keeps working.
#[tokio::test]
async fn overload_shows_as_counted_slow_consumer_drops() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let monitor = Monitor::start(&nats, &["--pending-limit", "64"]).await?;
    monitor.proc.signal(Signal::SIGSTOP)?;
    for seq in 0..20_000u64 {
        publish_json(&client, "burst", &good_sample("burst", seq)).await?;
    }
    client.flush().await?;
    monitor.proc.signal(Signal::SIGCONT)?;
    let drops = monitor
        .wait_counter("vitals_monitor_slow_consumer_drops_total", 1.0)
        .await?;
    let mut hb = client.subscribe(subjects::HEARTBEAT).await?;
    let deadline = tokio::time::Instant::now() + SOON;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let (_, beat) = next_json_within(&mut hb, left).await?;
        if beat["slow_consumer_drops"].as_u64() >= Some(1) {
            break;
        }
    }
    // Still serving, still judging.
    publish_json(&client, "after", &good_sample("after", 0)).await?;
    let seen = wait_until(SOON, || async {
        monitor
            .status()
            .await
            .ok()?
            .services
            .iter()
            .any(|s| s.service.as_str() == "after")
            .then_some(())
    })
    .await;
    assert!(seen.is_some());
    // One more burst sample closes any gap at the end of the burst.
    publish_json(&client, "burst", &good_sample("burst", 20_000)).await?;
    let accepted = monitor
        .wait_counter("vitals_monitor_samples_total", 2.0)
        .await?;
    let exact = wait_until(SOON, || async {
        let accepted = monitor.counter("vitals_monitor_samples_total").await.ok()?;
        let missed = monitor
            .counter("vitals_monitor_samples_missed_total")
            .await
            .ok()?;
        // Every burst sample was either judged or counted missed ("after" is the +1).
        (accepted - 1.0 + missed == 20_001.0).then_some(missed)
    })
    .await;
    let missed = exact.with_context(|| format!("accepted {accepted} and missed do not add up"))?;
    assert!(missed >= 1.0, "the overflow was missed, and counted");
    assert!(
        drops <= missed,
        "slow-consumer events are a lower bound: {drops} > {missed}"
    );
    Ok(())
}
