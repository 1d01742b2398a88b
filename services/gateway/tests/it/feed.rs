//! The live feed: snapshot first, contiguous seq, every change to every client,
//! consistent state mid-stream, history, and a fresh snapshot for a client that lags.

use std::time::Duration;

use serde_json::{Value, json};
use vitals_testkit::{NatsServer, SOON, wait_until};

use crate::helpers::*;

#[tokio::test]
async fn snapshot_first_then_every_change_reaches_every_client_in_order() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let monitor = monitor(&nats).await?;
    publish_sample(&client, "auth", 0, false).await?;
    let judged = wait_until(SOON, || async {
        let v = monitor.get_json("/api/status").await.ok()?;
        (snapshot_status(&v, "auth").as_deref() == Some("HEALTHY")).then_some(())
    })
    .await;
    assert!(judged.is_some());
    let gw = gateway(&nats, &[]).await?;

    let mut a = connect(&gw.ws_url(), Some("http://localhost:5173")).await?;
    let mut b = connect(&gw.ws_url(), None).await?;
    let (mut sa, mut sb) = (0, 0);
    for (ws, seq) in [(&mut a, &mut sa), (&mut b, &mut sb)] {
        let first = until(ws, seq, SOON, |_| true).await?;
        assert_eq!(first["type"], "snapshot");
        assert_eq!(first["seq"], 0);
        assert_eq!(first["resync"], false);
        assert_eq!(first["gateway"]["nats_connected"], true);
        // The monitor had judged auth before the gateway started.
        assert_eq!(
            snapshot_status(&first, "auth").as_deref(),
            Some("HEALTHY"),
            "{first}"
        );
        assert_eq!(first["gateway"]["source"], "monitor");
    }
    // A change published by the monitor reaches both, seq contiguous.
    publish_sample(&client, "billing", 0, false).await?;
    publish_sample(&client, "billing", 1, true).await?;
    for (ws, seq) in [(&mut a, &mut sa), (&mut b, &mut sb)] {
        until(ws, seq, SOON, |m| is_status(m, "billing", "HEALTHY")).await?;
        let down = until(ws, seq, SOON, |m| is_status(m, "billing", "DOWN")).await?;
        assert_eq!(down["data"]["reasons"], json!(["stopped"]));
        until(ws, seq, SOON, |m| {
            m["type"] == "alert" && m["data"]["alert"] == "SERVICE_DOWN"
        })
        .await?;
        // Monitor heartbeats are relayed.
        let beat = until(ws, seq, SOON, |m| m["type"] == "monitor").await?;
        assert!(beat["data"]["monitor_id"].is_string());
    }
    // A client connecting now sees the same state from its snapshot on.
    let mut c = connect(&gw.ws_url(), None).await?;
    let mut sc = 0;
    let view = joined_view(&mut c, &mut sc, &client, "marker").await?;
    let billing = view.get("billing").cloned().unwrap_or_default();
    assert_eq!(billing["status"], "DOWN", "{view:?}");
    assert_eq!(billing["alerts"][0]["alert"], json!("SERVICE_DOWN"));
    // ... and the gateway's /api/status agrees with the monitor's.
    let mine = gw.get_json("/api/status").await?;
    let theirs = monitor.get_json("/api/status").await?;
    let statuses = |v: &Value| -> Vec<(String, String)> {
        v["services"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| (s["service"].to_string(), s["status"].to_string()))
            .collect()
    };
    assert_eq!(statuses(&mine), statuses(&theirs));
    let health = gw.get_json("/healthz").await?;
    assert_eq!(health["nats_connected"], true);
    Ok(())
}

#[tokio::test]
async fn a_client_asking_for_resync_gets_a_fresh_snapshot_and_junk_is_ignored() -> anyhow::Result<()>
{
    let nats = NatsServer::start()?;
    let _monitor = monitor(&nats).await?;
    let gw = gateway(&nats, &[]).await?;
    let mut ws = connect(&gw.ws_url(), None).await?;
    let mut seq = 0;
    until(&mut ws, &mut seq, SOON, |m| m["type"] == "snapshot").await?;
    send_text(&mut ws, "hello").await?;
    send_text(&mut ws, r#"{"type":"subscribe","topic":"*"}"#).await?;
    send_text(&mut ws, r#"{"type":"resync"}"#).await?;
    let again = until(&mut ws, &mut seq, SOON, |m| m["type"] == "snapshot").await?;
    assert_eq!(again["resync"], true);
    assert_eq!(
        gw.counter("vitals_gateway_client_messages_ignored_total")
            .await?,
        2.0
    );
    Ok(())
}

#[tokio::test]
async fn history_returns_the_monitors_events_newest_first_bounded_by_limit() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let _monitor = monitor(&nats).await?;
    let gw = gateway(&nats, &[]).await?;
    let mut ws = connect(&gw.ws_url(), None).await?;
    let mut seq = 0;
    // auth: HEALTHY, DOWN (+ firing); billing: HEALTHY. Wait until the gateway saw them all.
    publish_sample(&client, "auth", 0, false).await?;
    publish_sample(&client, "auth", 1, true).await?;
    until(&mut ws, &mut seq, SOON, |m| {
        m["type"] == "alert" && m["data"]["service"] == "auth"
    })
    .await?;
    publish_sample(&client, "billing", 0, false).await?;
    until(&mut ws, &mut seq, SOON, |m| {
        is_status(m, "billing", "HEALTHY")
    })
    .await?;

    let all = gw.get_json("/api/history?limit=10").await?;
    let events = all["events"].as_array().expect("events");
    assert_eq!(events.len(), 4, "{all}");
    let seqs: Vec<u64> = events
        .iter()
        .filter_map(|e| e["stream_seq"].as_u64())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seqs:?}"
    );
    assert_eq!(events[0]["kind"], "status");
    assert_eq!(events[0]["data"]["service"], "billing");

    let two = gw.get_json("/api/history?limit=2").await?;
    assert_eq!(two["events"].as_array().map(Vec::len), Some(2));
    assert_eq!(two["events"][0], events[0]);

    let auth = gw.get_json("/api/history?service=auth&limit=10").await?;
    let auth = auth["events"].as_array().expect("events");
    assert_eq!(auth.len(), 3);
    assert!(auth.iter().all(|e| e["data"]["service"] == "auth"));
    let kinds: Vec<&str> = auth.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(kinds, ["status", "alert", "status"]);
    assert_eq!(auth[0]["data"]["status"], "DOWN");

    let bad = reqwest::get(gw.url("/api/history?service=a.b")).await?;
    assert_eq!(bad.status(), 400);
    Ok(())
}

/// A client that stops reading while much happens falls behind; when it reads again it
/// gets a fresh snapshot (`resync: true`) instead of what it missed, its seq stays
/// contiguous, and a client that kept reading got every message.
#[tokio::test]
async fn a_lagging_client_gets_a_resync_while_a_reading_client_gets_everything()
-> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let _monitor = monitor(&nats).await?;
    let gw = gateway(
        &nats,
        &["--client-buffer", "64", "--write-timeout-ms", "60000"],
    )
    .await?;
    let mut reader = connect(&gw.ws_url(), None).await?;
    let mut lagger = connect(&gw.ws_url(), None).await?;
    let (mut rs, mut ls) = (0, 0);
    until(&mut reader, &mut rs, SOON, |m| m["type"] == "snapshot").await?;
    until(&mut lagger, &mut ls, SOON, |m| m["type"] == "snapshot").await?;

    // Summaries straight on NATS (the gateway relays what the monitor would publish):
    // ~25 MB, far more than the socket buffers hold for the lagger.
    // Each chunk is smaller than the client buffer (64), so the reader never lags.
    let padding = "x".repeat(1000);
    let chunks = 400;
    let per_chunk = 50;
    for chunk in 0..chunks {
        for i in 0..per_chunk {
            let n = chunk * per_chunk + i;
            client
                .publish(
                    "health.metrics.flood",
                    serde_json::to_vec(&summary(n, &padding))?.into(),
                )
                .await?;
        }
        client.flush().await?;
        // Pace by the reader: it must have everything before the next chunk.
        let last = (chunk + 1) * per_chunk - 1;
        until(&mut reader, &mut rs, SOON, |m| {
            m["type"] == "metrics" && m["data"]["last_seen_ms"] == last
        })
        .await?;
    }
    // The lagger reads again: somewhere in its stream is a resync snapshot, no gap.
    let resync = until(&mut lagger, &mut ls, Duration::from_secs(30), |m| {
        m["type"] == "snapshot"
    })
    .await?;
    assert_eq!(resync["resync"], true);
    assert!(gw.counter("vitals_gateway_resyncs_total").await? >= 1.0);
    Ok(())
}

/// A ServiceSummary as the monitor would publish it, padded to a chosen size.
fn summary(n: u64, padding: &str) -> Value {
    json!({
        "service": "flood", "status": "HEALTHY", "at_ms": n, "last_seen_ms": n,
        "instance": padding, "health_url": "http://127.0.0.1:1/health",
        "figures": {"cpu_pct": 1.0, "mem_pct": 1.0, "error_rate": 0.0, "latency_ms": 1.0,
            "latency_avg_ms": 1.0, "latency_p95_ms": 1.0, "latency_p99_ms": 1.0,
            "uptime_pct": 100.0, "samples": 1, "window_s": 60}
    })
}

/// A client that never reads is dropped after the write timeout; the others never wait.
#[tokio::test]
async fn a_client_that_never_reads_is_dropped_and_others_are_unaffected() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let _monitor = monitor(&nats).await?;
    let gw = gateway(&nats, &["--write-timeout-ms", "500"]).await?;
    let mut reader = connect(&gw.ws_url(), None).await?;
    let _stuck = connect(&gw.ws_url(), None).await?;
    let mut rs = 0;
    until(&mut reader, &mut rs, SOON, |m| m["type"] == "snapshot").await?;
    let padding = "x".repeat(1000);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut n = 0u64;
    loop {
        for _ in 0..200 {
            client
                .publish(
                    "health.metrics.flood",
                    serde_json::to_vec(&summary(n, &padding))?.into(),
                )
                .await?;
            n += 1;
        }
        client.flush().await?;
        until(&mut reader, &mut rs, SOON, |m| {
            m["data"]["last_seen_ms"] == n - 1
        })
        .await?;
        if gw
            .counter("vitals_gateway_client_drops_total{reason=\"write_timeout\"}")
            .await?
            >= 1.0
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stuck client was never dropped"
        );
    }
    let clients = gw.counter("vitals_gateway_clients").await?;
    assert_eq!(clients, 1.0);
    Ok(())
}

/// A snapshot far larger than one WebSocket fragment arrives as one whole message.
#[tokio::test]
async fn a_large_snapshot_arrives_whole() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let _monitor = monitor(&nats).await?;
    let gw = gateway(&nats, &[]).await?;
    for i in 0..300 {
        publish_sample(&client, &format!("svc-{i}"), 0, false).await?;
    }
    let grown = wait_until(SOON, || async {
        let v = gw.get_json("/api/status").await.ok()?;
        (v["services"].as_array().map_or(0, Vec::len) == 300).then_some(())
    })
    .await;
    assert!(grown.is_some());
    let mut ws = connect(&gw.ws_url(), None).await?;
    let mut seq = 0;
    let snap = until(&mut ws, &mut seq, SOON, |_| true).await?;
    assert_eq!(snap["type"], "snapshot");
    assert_eq!(snap["services"].as_array().map(Vec::len), Some(300));
    assert!(
        snap.to_string().len() > 8 * 1024 * 10,
        "the snapshot spans many fragments"
    );
    Ok(())
}
