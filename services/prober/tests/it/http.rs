//! An HTTP target through its whole life: 200, 503, hanging, closing, 200 again, judged by
//! the real monitor.

use anyhow::Result;
use vitals_testkit::{NatsServer, SOON};

use crate::helpers::{Mode, Server, error_of, monitor, prober, subscribe, targets_file, until};

#[tokio::test]
async fn an_http_target_goes_down_on_failures_and_comes_back() -> Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let _monitor = monitor(&nats, &[]).await?;
    let server = Server::http().await?;
    let mut samples = subscribe(&client, "metrics.shop".into()).await?;
    let mut statuses = subscribe(&client, "health.status.shop".into()).await?;
    let mut alerts = subscribe(&client, "health.alert.shop".into()).await?;
    // Probes 400 ms apart with a 300 ms timeout: room for a loaded machine, so each phase
    // fails for its own reason.
    let (_dir, file) = targets_file(&format!(
        "[[target]]\nservice = \"shop\"\nkind = \"http\"\nurl = \"{}\"\ninterval_ms = 400\ntimeout_ms = 300\napdex_t_ms = 50\n",
        server.url("http", "/health")
    ))?;
    let _prober = prober(&nats, &["--targets", &file]).await?;

    let ok = until(&mut samples, "a 200", SOON, |s| s["probe"]["ok"] == true).await?;
    let s = ok.last().unwrap_or(&serde_json::Value::Null);
    assert_eq!(s["source"], "probe");
    assert_eq!(s["probe"]["status_code"], 200);
    assert_eq!(s["probe"]["apdex_t_ms"], 50);
    assert!(
        s.get("cpu_pct").is_none() && s.get("mem_pct").is_none(),
        "{s}"
    );
    assert_eq!(s["health_url"], server.url("http", "/health"));
    assert_eq!(s["seq"], 1, "the first probe of a fresh instance");
    until(&mut statuses, "HEALTHY", SOON, |c| c["status"] == "HEALTHY").await?;

    server.set(Mode::Unavailable);
    let failing = until(&mut samples, "a 503", SOON, |s| error_of(s) == "status 503").await?;
    let s = failing.last().unwrap_or(&serde_json::Value::Null);
    assert_eq!(s["probe"]["ok"], false);
    assert_eq!(s["probe"]["status_code"], 503);
    assert!(s["error_rate"].as_f64().unwrap_or(0.0) > 0.0, "{s}");
    let down = until(&mut statuses, "DOWN", SOON, |c| c["status"] == "DOWN").await?;
    let reasons = &down.last().unwrap_or(&serde_json::Value::Null)["reasons"];
    assert_eq!(
        reasons,
        &serde_json::json!(["probe failed: status 503 (2 in a row)"]),
        "{down:#?}"
    );

    server.set(Mode::Hang);
    let hung = until(&mut samples, "a timeout", SOON, |s| {
        error_of(s) == "timeout"
    })
    .await?;
    let s = hung.last().unwrap_or(&serde_json::Value::Null);
    assert_eq!(s["latency_ms"], 300.0, "latency is the timeout: {s}");
    assert!(s["probe"].get("status_code").is_none(), "{s}");

    server.set(Mode::Close);
    until(&mut samples, "a closed connection", SOON, |s| {
        error_of(s) == "connection closed"
    })
    .await?;

    server.set(Mode::Ok);
    let back = until(&mut statuses, "HEALTHY again", SOON, |c| {
        c["status"] == "HEALTHY"
    })
    .await?;
    assert!(
        back.iter()
            .all(|c| c["status"] == "DOWN" || c["status"] == "HEALTHY"),
        "DOWN throughout the failures, then HEALTHY: {back:#?}"
    );

    // The whole run: one SERVICE_DOWN fired, one resolved (the same firing), no other.
    let fired_and_resolved = until(&mut alerts, "the SERVICE_DOWN resolve", SOON, |a| {
        a["alert"] == "SERVICE_DOWN" && a["state"] == "resolved"
    })
    .await?;
    let down_events: Vec<_> = fired_and_resolved
        .iter()
        .filter(|a| a["alert"] == "SERVICE_DOWN")
        .collect();
    assert_eq!(down_events.len(), 2, "{fired_and_resolved:#?}");
    assert_eq!(down_events[0]["state"], "firing");
    assert_eq!(down_events[0]["id"], down_events[1]["id"]);
    Ok(())
}
