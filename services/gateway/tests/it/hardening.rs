//! Issue 11 on the gateway: shutdown that waits for every connection task, errors that are
//! counted and reported instead of swallowed, the paged snapshot, retiring a service,
//! and flags validated at start.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use anyhow::Context;
use futures::StreamExt;
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use vitals_testkit::{ChildProc, NatsServer, SOON, wait_until};

use crate::helpers::*;

/// Reads until the close frame; its code, or None if the connection ended without one.
async fn close_code(ws: &mut Ws) -> Option<u16> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            _ => return None,
        }
    }
}

fn flood_summary(n: u64, padding: &str) -> Value {
    json!({
        "service": "flood", "status": "HEALTHY", "at_ms": n, "last_seen_ms": n,
        "instance": padding, "health_url": "http://127.0.0.1:1/health",
        "figures": {"cpu_pct": 1.0, "mem_pct": 1.0, "error_rate": 0.0, "latency_ms": 1.0,
            "latency_avg_ms": 1.0, "latency_p95_ms": 1.0, "latency_p99_ms": 1.0,
            "uptime_pct": 100.0, "samples": 1, "window_s": 60}
    })
}

/// SIGTERM with many clients, one of which never reads (its TCP buffers full, so its task
/// is stuck in a write that would otherwise wait for the 60 s write timeout): every
/// reading client gets close 1001, the process exits by itself, and it reports that no
/// connection task was left behind.
#[tokio::test]
async fn sigterm_closes_every_client_and_leaves_no_task_behind() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let mut gw = gateway(&nats, &["--write-timeout-ms", "60000"]).await?;
    let mut pacer = connect(&gw.ws_url(), None).await?;
    let mut ps = 0;
    until(&mut pacer, &mut ps, SOON, |m| m["type"] == "snapshot").await?;
    let _stuck = connect(&gw.ws_url(), None).await?;
    // ~16 MB, far more than loopback socket buffers hold for the client that never reads.
    let padding = "x".repeat(1000);
    let (chunks, per_chunk) = (320u64, 50u64);
    for chunk in 0..chunks {
        for i in 0..per_chunk {
            let n = chunk * per_chunk + i;
            let body = serde_json::to_vec(&flood_summary(n, &padding))?;
            client.publish("health.metrics.flood", body.into()).await?;
        }
        client.flush().await?;
        let last = (chunk + 1) * per_chunk - 1;
        until(&mut pacer, &mut ps, SOON, |m| {
            m["type"] == "metrics" && m["data"]["last_seen_ms"] == last
        })
        .await?;
    }
    let mut readers = Vec::new();
    for _ in 0..40 {
        let mut ws = connect(&gw.ws_url(), None).await?;
        let mut seq = 0;
        until(&mut ws, &mut seq, SOON, |m| m["type"] == "snapshot").await?;
        readers.push(tokio::spawn(async move {
            tokio::time::timeout(SOON, close_code(&mut ws))
                .await
                .ok()
                .flatten()
        }));
    }
    readers.push(tokio::spawn(async move {
        tokio::time::timeout(SOON, close_code(&mut pacer))
            .await
            .ok()
            .flatten()
    }));
    assert_eq!(gw.counter("vitals_gateway_clients").await?, 42.0);

    gw.proc.signal(Signal::SIGTERM)?;
    for r in readers {
        assert_eq!(r.await?, Some(1001));
    }
    let status = gw.proc.wait_exit(SOON).await?;
    assert_eq!(status.code(), Some(0));
    // `open` is counted after the cancel, when fast clients may already be done; what
    // matters is that none is left (42 were connected: asserted above).
    let line = gw.proc.wait_for_log("websocket tasks done", SOON).await?;
    assert!(line.contains("left=0"), "{line}");
    Ok(())
}

/// The JSON of a ServiceState as the monitor stores it in KV.
fn stored_state(service: &str, status: &str) -> Value {
    json!({
        "service": service, "status": status, "since_ms": 1, "last_seen_ms": 1,
        "reasons": [], "alerts": [], "instance": format!("{service}-1"),
        "health_url": "http://127.0.0.1:1/health",
        "figures": {"cpu_pct": 1.0, "mem_pct": 1.0, "error_rate": 0.0, "latency_ms": 1.0,
            "latency_avg_ms": 1.0, "latency_p95_ms": 1.0, "latency_p99_ms": 1.0,
            "uptime_pct": 100.0, "samples": 1, "window_s": 60}
    })
}

async fn kv_with(client: &async_nats::Client, services: &[&str]) -> anyhow::Result<()> {
    let js = async_nats::jetstream::new(client.clone());
    let kv = js
        .create_key_value(async_nats::jetstream::kv::Config {
            bucket: "health_status".into(),
            ..Default::default()
        })
        .await?;
    for s in services {
        kv.put(*s, serde_json::to_vec(&stored_state(s, "HEALTHY"))?.into())
            .await?;
    }
    Ok(())
}

/// A stand-in monitor on `health.snapshot` (a real NATS responder): junk, a service-API
/// error reply, or the snapshot in pages of `per_page` services (by `after`).
fn fake_snapshot_responder(
    client: async_nats::Client,
    mode: Arc<AtomicU8>,
    services: Vec<String>,
    per_page: usize,
    asked: Arc<std::sync::Mutex<Vec<String>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(mut sub) = client.subscribe("health.snapshot").await else {
            return;
        };
        while let Some(msg) = sub.next().await {
            let Some(reply) = msg.reply.clone() else {
                continue;
            };
            let body = String::from_utf8_lossy(&msg.payload).into_owned();
            if let Ok(mut a) = asked.lock() {
                a.push(body.clone());
            }
            let _ = match mode.load(Ordering::SeqCst) {
                0 => client.publish(reply, "junk".into()).await,
                1 => {
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert("Nats-Service-Error", "snapshot too large");
                    headers.insert("Nats-Service-Error-Code", "500");
                    client
                        .publish_with_headers(reply, headers, r#"{"error":"x"}"#.into())
                        .await
                }
                _ => {
                    let after: Option<String> = serde_json::from_str::<Value>(&body)
                        .ok()
                        .and_then(|v| v["after"].as_str().map(str::to_owned));
                    let rest: Vec<&String> = services
                        .iter()
                        .filter(|s| after.as_ref().is_none_or(|a| *s > a))
                        .collect();
                    let page: Vec<Value> = rest
                        .iter()
                        .take(per_page)
                        .map(|s| stored_state(s, "DEGRADED"))
                        .collect();
                    let next = (rest.len() > per_page).then(|| rest[per_page - 1].clone());
                    let mut snap = json!({"monitor_id": "fake", "at_ms": 1, "version": 1,
                        "page": 0, "pages": 1, "total": services.len(), "services": page});
                    if let Some(n) = next {
                        snap["next_after"] = json!(n);
                    }
                    client.publish(reply, snap.to_string().into()).await
                }
            };
            let _ = client.flush().await;
        }
    })
}

/// A monitor that answers junk or a service-API error is counted by reason and the view
/// comes from KV; one that answers in pages is read to the last page.
#[tokio::test]
async fn monitor_snapshot_failures_are_counted_and_pages_are_read_to_the_end() -> anyhow::Result<()>
{
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    kv_with(&client, &["auth"]).await?;
    let mode = Arc::new(AtomicU8::new(0));
    let names: Vec<String> = (0..10).map(|i| format!("svc-{i:02}")).collect();
    let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let _responder = fake_snapshot_responder(
        nats.client().await?,
        mode.clone(),
        names.clone(),
        3,
        asked.clone(),
    );
    client.flush().await?;

    for (m, reason) in [(0, "invalid"), (1, "error_reply")] {
        mode.store(m, Ordering::SeqCst);
        let gw = gateway(&nats, &[]).await?;
        let series = format!("vitals_gateway_snapshot_failures_total{{reason=\"{reason}\"}}");
        assert_eq!(gw.counter(&series).await?, 1.0, "{reason}");
        assert_eq!(
            gw.counter("vitals_gateway_snapshot_fallbacks_total")
                .await?,
            1.0
        );
        let mut ws = connect(&gw.ws_url(), None).await?;
        let mut seq = 0;
        let snap = until(&mut ws, &mut seq, SOON, |m| m["type"] == "snapshot").await?;
        assert_eq!(snap["gateway"]["source"], "kv");
        assert_eq!(snapshot_status(&snap, "auth").as_deref(), Some("HEALTHY"));
        let health = gw.get_json("/healthz").await?;
        assert_eq!(health["live"], true, "KV keeps the view current: {health}");
    }

    mode.store(2, Ordering::SeqCst);
    if let Ok(mut a) = asked.lock() {
        a.clear();
    }
    let gw = gateway(&nats, &[]).await?;
    let mut ws = connect(&gw.ws_url(), None).await?;
    let mut seq = 0;
    let snap = until(&mut ws, &mut seq, SOON, |m| m["type"] == "snapshot").await?;
    assert_eq!(snap["gateway"]["source"], "monitor");
    let got: Vec<&str> = snap["services"]
        .as_array()
        .context("services")?
        .iter()
        .filter_map(|s| s["service"].as_str())
        .collect();
    assert_eq!(got, names, "every page, each service once");
    let asked = asked.lock().map(|a| a.clone()).unwrap_or_default();
    assert_eq!(
        asked,
        [
            "",
            r#"{"after":"svc-02"}"#,
            r#"{"after":"svc-05"}"#,
            r#"{"after":"svc-08"}"#
        ]
    );
    Ok(())
}

/// A stand-in monitor on `health.retire`: knows only `auth`.
fn fake_retire_responder(client: async_nats::Client) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(mut sub) = client.subscribe("health.retire").await else {
            return;
        };
        while let Some(msg) = sub.next().await {
            let Some(reply) = msg.reply.clone() else {
                continue;
            };
            let asked: Value = serde_json::from_slice(&msg.payload).unwrap_or_default();
            let answer = if asked["service"] == "auth" {
                json!({"ok": true, "service": "auth", "previous": "DOWN"})
            } else {
                json!({"ok": false, "service": asked["service"], "error": "unknown service"})
            };
            let _ = client.publish(reply, answer.to_string().into()).await;
            let _ = client.flush().await;
        }
    })
}

async fn delete(gw: &Proc, name: &str, token: Option<&str>) -> anyhow::Result<(u16, Value)> {
    let mut req = reqwest::Client::new().delete(gw.url(&format!("/api/services/{name}")));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await?;
    let code = resp.status().as_u16();
    Ok((code, resp.json().await?))
}

/// `DELETE /api/services/NAME`: the operator token, name validation, the monitor's answer
/// relayed (ok, unknown, no answer), and CORS only for allowed origins.
#[tokio::test]
async fn retiring_needs_the_operator_token_and_relays_the_monitors_answer() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let open = gateway(&nats, &["--retire-timeout-ms", "300"]).await?;
    let (code, body) = delete(&open, "auth", Some("anything")).await?;
    assert_eq!(code, 401);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("operator token")),
        "{body}"
    );

    let gw = gateway(
        &nats,
        &[
            "--operator-token",
            "op-s3cret",
            "--retire-timeout-ms",
            "300",
        ],
    )
    .await?;
    assert_eq!(delete(&gw, "auth", None).await?.0, 401);
    assert_eq!(delete(&gw, "auth", Some("wrong")).await?.0, 401);
    for bad in ["Auth", "a.b", "%2A"] {
        let (code, body) = delete(&gw, bad, Some("op-s3cret")).await?;
        assert_eq!(code, 400, "{bad}: {body}");
        assert!(body["error"].is_string());
    }
    let (code, body) = delete(&gw, "auth", Some("op-s3cret")).await?;
    assert_eq!(code, 503, "no monitor: {body}");

    let _monitor = fake_retire_responder(nats.client().await?);
    let client = nats.client().await?;
    client.flush().await?;
    let ok = wait_until(SOON, || async {
        let (code, body) = delete(&gw, "auth", Some("op-s3cret")).await.ok()?;
        (code == 200).then_some(body)
    })
    .await
    .context("the stand-in monitor never answered")?;
    assert_eq!(ok["ok"], true);
    assert_eq!(ok["previous"], "DOWN");
    let (code, body) = delete(&gw, "ghost", Some("op-s3cret")).await?;
    assert_eq!(code, 404, "{body}");
    assert_eq!(body["error"], "unknown service");
    assert_eq!(
        gw.counter("vitals_gateway_refusals_total{reason=\"operator_token\"}")
            .await?,
        2.0
    );

    // CORS: the allowed origin may send DELETE with Authorization, another may not.
    let http = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        http.request(reqwest::Method::OPTIONS, gw.url("/api/services/auth"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "DELETE")
            .header("Access-Control-Request-Headers", "authorization")
            .send()
    };
    let allowed = preflight("http://localhost:5173").await?;
    let h = allowed.headers();
    assert_eq!(
        h.get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("http://localhost:5173")
    );
    let methods = h
        .get("access-control-allow-methods")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(methods.contains("DELETE"), "{methods}");
    let evil = preflight("http://evil.example").await?;
    assert!(evil.headers().get("access-control-allow-origin").is_none());
    Ok(())
}

/// A RETIRED status change removes the service from the view and reaches clients as a
/// `status` frame; a later summary for that name brings it back.
#[tokio::test]
async fn a_retired_service_leaves_the_view_and_may_come_back() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let gw = gateway(&nats, &[]).await?;
    let mut ws = connect(&gw.ws_url(), None).await?;
    let mut seq = 0;
    until(&mut ws, &mut seq, SOON, |m| m["type"] == "snapshot").await?;
    let change = |status: &str, at: u64| {
        json!({"service": "billing", "status": status, "previous": "DOWN", "at_ms": at,
            "reasons": []})
        .to_string()
    };
    client
        .publish("health.status.billing", change("DOWN", 10).into())
        .await?;
    client
        .publish("health.status.billing", change("RETIRED", 20).into())
        .await?;
    client.flush().await?;
    until(&mut ws, &mut seq, SOON, |m| {
        is_status(m, "billing", "RETIRED")
    })
    .await?;
    let status = gw.get_json("/api/status").await?;
    assert_eq!(snapshot_status(&status, "billing"), None, "{status}");
    let back = flood_summary(30, "billing-2");
    let mut back = back;
    back["service"] = json!("billing");
    client
        .publish("health.metrics.billing", back.to_string().into())
        .await?;
    client.flush().await?;
    until(&mut ws, &mut seq, SOON, |m| {
        m["type"] == "metrics" && m["data"]["service"] == "billing"
    })
    .await?;
    let status = gw.get_json("/api/status").await?;
    assert_eq!(
        snapshot_status(&status, "billing").as_deref(),
        Some("HEALTHY")
    );
    Ok(())
}

/// Through the real monitor: a tracked service is retired (RETIRED reaches clients and
/// the view drops it); an unknown one gets 404.
#[tokio::test]
async fn retiring_through_the_real_monitor() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let monitor = monitor(&nats).await?;
    publish_sample(&client, "auth", 0, false).await?;
    let tracked = wait_until(SOON, || async {
        let v = monitor.get_json("/api/status").await.ok()?;
        snapshot_status(&v, "auth").map(|_| ())
    })
    .await;
    assert!(tracked.is_some(), "the monitor never tracked auth");
    let gw = gateway(&nats, &["--operator-token", "op-s3cret"]).await?;
    let mut ws = connect(&gw.ws_url(), None).await?;
    let mut seq = 0;
    let view = joined_view(&mut ws, &mut seq, &client, "marker").await?;
    assert!(view.contains_key("auth"), "{view:?}");
    let (code, body) = delete(&gw, "auth", Some("op-s3cret")).await?;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["ok"], true);
    until(&mut ws, &mut seq, SOON, |m| is_status(m, "auth", "RETIRED")).await?;
    let status = gw.get_json("/api/status").await?;
    assert_eq!(snapshot_status(&status, "auth"), None);
    let (code, body) = delete(&gw, "ghost", Some("op-s3cret")).await?;
    assert_eq!(code, 404, "{body}");
    Ok(())
}

/// Every numeric flag out of its range: exit 2, and the message names the flag.
#[tokio::test]
async fn bad_numeric_flags_exit_2_naming_the_flag() -> anyhow::Result<()> {
    for (flag, bad) in [
        ("--ping-interval-ms", "0"),
        ("--write-timeout-ms", "0"),
        ("--idle-timeout-ms", "0"),
        ("--max-clients", "0"),
        ("--client-buffer", "0"),
        ("--max-client-message", "0"),
        ("--snapshot-timeout-ms", "0"),
        ("--history-max", "0"),
    ] {
        let mut p = ChildProc::spawn("gateway", &[flag, bad], &[])?;
        let status = p.wait_exit(SOON).await?;
        assert_eq!(status.code(), Some(2), "{flag}");
        let logs = p.wait_for_log(flag, SOON).await?;
        assert!(logs.contains("invalid value"), "{logs}");
    }
    // The same from the environment.
    let mut p = ChildProc::spawn("gateway", &[], &[("GATEWAY_PING_INTERVAL_MS", "0")])?;
    assert_eq!(p.wait_exit(SOON).await?.code(), Some(2));
    p.wait_for_log("--ping-interval-ms", SOON).await?;
    Ok(())
}

/// `/metrics` says what it is: OpenMetrics text, as prometheus-client writes it.
/// Identical history requests share one JetStream read.
#[tokio::test]
async fn metrics_content_type_and_history_reads_are_shared() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let _monitor = monitor(&nats).await?;
    let gw = gateway(&nats, &["--history-cache-ms", "60000"]).await?;
    let resp = reqwest::get(gw.url("/metrics")).await?;
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(resp.text().await?.trim_end().ends_with("# EOF"));

    let mut ws = connect(&gw.ws_url(), None).await?;
    let mut seq = 0;
    publish_sample(&client, "auth", 0, false).await?;
    until(&mut ws, &mut seq, SOON, |m| is_status(m, "auth", "HEALTHY")).await?;
    let http = reqwest::Client::new();
    let asks = (0..50).map(|_| {
        let http = http.clone();
        let url = gw.url("/api/history?service=auth&limit=5");
        async move {
            let r = http.get(url).send().await?;
            anyhow::Ok((r.status().as_u16(), r.json::<Value>().await?))
        }
    });
    let answers = futures::future::join_all(asks).await;
    for a in &answers {
        let (code, body) = a.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
        assert_eq!(*code, 200);
        assert_eq!(body["events"][0]["data"]["status"], "HEALTHY", "{body}");
    }
    assert_eq!(gw.counter("vitals_gateway_history_reads_total").await?, 1.0);
    assert_eq!(
        gw.counter("vitals_gateway_history_cache_hits_total")
            .await?,
        49.0
    );
    let bad = reqwest::get(gw.url("/api/history?service=a.b")).await?;
    assert_eq!(bad.status(), 400);
    assert!(bad.json::<Value>().await?["error"].is_string());
    Ok(())
}
