//! Retiring a service: automatically after a long DOWN, and on request over NATS and HTTP.

use std::time::Duration;

use anyhow::Result;
use serde_json::{Value, json};
use vitals_protocol::{RetireReply, Status, subjects};
use vitals_testkit::{NatsServer, SOON, next_json_within};

use crate::helpers::*;

const TOKEN: &str = "test-operator-token";

async fn retire_over_nats(client: &async_nats::Client, body: Value) -> Result<RetireReply> {
    let msg = tokio::time::timeout(
        SOON,
        client.request(subjects::RETIRE, serde_json::to_vec(&body)?.into()),
    )
    .await??;
    Ok(serde_json::from_slice(&msg.payload)?)
}

/// Reads status and alert events for `service` until its RETIRED status arrives.
async fn until_retired(
    sub: &mut async_nats::Subscriber,
    service: &str,
) -> Result<Vec<(String, Value)>> {
    let events = wait_status(sub, service, Status::Retired, Duration::from_secs(15)).await?;
    Ok(events)
}

#[tokio::test]
async fn a_service_down_past_retire_after_is_retired_and_forgotten() -> Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let monitor = Monitor::start(&nats, &["--retire-after-s", "2"]).await?;
    let mut sub = events(&client).await?;
    let mut sim = simulator(&nats, "gone", &[]).await?;
    wait_status(&mut sub, "gone", Status::Healthy, SOON).await?;
    sim.kill();
    let seen = until_retired(&mut sub, "gone").await?;
    let about_gone = about(&seen, "gone");
    assert_eq!(count(&about_gone, "status", "DOWN"), 1);
    let resolved: Vec<&&Value> = about_gone
        .iter()
        .filter(|e| e["alert"] == "SERVICE_DOWN" && e["state"] == "resolved")
        .collect();
    assert_eq!(resolved.len(), 1, "{about_gone:#?}");
    assert_eq!(resolved[0]["reason"], "retired");
    let retired = about_gone.last().expect("the RETIRED change");
    assert_eq!(retired["previous"], "DOWN");
    assert_eq!(retired["reasons"][0], "retired: DOWN for 2 s");
    // Gone from every read path and from KV, so a restart does not bring it back.
    assert!(monitor.status().await?.services.is_empty());
    assert!(nats_snapshot(&client).await?.services.is_empty());
    let js = async_nats::jetstream::new(client.clone());
    let kv = js.get_key_value(subjects::KV_BUCKET).await?;
    let gone = vitals_testkit::wait_until(SOON, || async {
        kv.get("gone").await.ok().flatten().is_none().then_some(())
    })
    .await;
    assert!(gone.is_some(), "the KV entry was deleted");
    monitor
        .wait_counter(
            "vitals_monitor_retired_total{reason=\"down_too_long\"}",
            1.0,
        )
        .await?;
    // Publishing again, it is simply new.
    let _sim = simulator(&nats, "gone", &[]).await?;
    let back = wait_status(&mut sub, "gone", Status::Healthy, SOON).await?;
    let change = about(&back, "gone")
        .into_iter()
        .last()
        .cloned()
        .unwrap_or_default();
    assert_eq!(change["previous"], "UNKNOWN");
    assert_eq!(change["reasons"][0], "first sample");
    Ok(())
}

#[tokio::test]
async fn retire_on_request_over_nats_and_http_says_what_happened_or_why_not() -> Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let monitor = Monitor::start(&nats, &["--operator-token", TOKEN]).await?;
    let mut sub = events(&client).await?;
    let mut sim = simulator(&nats, "billing", &[]).await?;
    let _other = simulator(&nats, "auth", &[]).await?;
    wait_status(&mut sub, "billing", Status::Healthy, SOON).await?;
    wait_all(&monitor, &["billing", "auth"], Status::Healthy).await?;
    sim.kill();
    wait_status(&mut sub, "billing", Status::Down, SOON).await?;

    // Why not: a bad name, an unknown service, a malformed request.
    let bad = retire_over_nats(&client, json!({"service": "Bad.Name"})).await?;
    assert!(
        !bad.ok
            && bad
                .error
                .as_deref()
                .is_some_and(|e| e.starts_with("bad name")),
        "{bad:?}"
    );
    let unknown = retire_over_nats(&client, json!({"service": "nobody"})).await?;
    assert_eq!(unknown.error.as_deref(), Some("unknown service"));
    let malformed = retire_over_nats(&client, json!({"svc": "billing"})).await?;
    assert!(
        !malformed.ok
            && malformed
                .error
                .as_deref()
                .is_some_and(|e| e.starts_with("bad request"))
    );

    // What happened.
    let done = retire_over_nats(&client, json!({"service": "billing"})).await?;
    assert!(done.ok, "{done:?}");
    assert_eq!(done.previous, Some(Status::Down));
    assert_eq!(done.resolved.len(), 1, "its SERVICE_DOWN");
    let seen = until_retired(&mut sub, "billing").await?;
    let retired = about(&seen, "billing")
        .into_iter()
        .last()
        .cloned()
        .unwrap_or_default();
    assert_eq!(retired["reasons"][0], "retired by operator");
    let again = retire_over_nats(&client, json!({"service": "billing"})).await?;
    assert_eq!(again.error.as_deref(), Some("unknown service"));

    // HTTP: the operator token or 401; then the same answers.
    let http = reqwest::Client::new();
    let url = monitor.url("/api/services/auth");
    assert_eq!(http.delete(&url).send().await?.status(), 401);
    let wrong = http.delete(&url).bearer_auth("nope").send().await?;
    assert_eq!(wrong.status(), 401);
    let missing = http
        .delete(monitor.url("/api/services/nobody"))
        .bearer_auth(TOKEN)
        .send()
        .await?;
    assert_eq!(missing.status(), 404);
    let bad = http
        .delete(monitor.url("/api/services/Bad.Name"))
        .bearer_auth(TOKEN)
        .send()
        .await?;
    assert_eq!(bad.status(), 400);
    let ok = http.delete(&url).bearer_auth(TOKEN).send().await?;
    assert_eq!(ok.status(), 200);
    let reply: RetireReply = ok.json().await?;
    assert_eq!(reply.previous, Some(Status::Healthy));
    until_retired(&mut sub, "auth").await?;
    // A live service comes back as new with its next samples.
    wait_status(&mut sub, "auth", Status::Healthy, SOON).await?;
    monitor
        .wait_counter("vitals_monitor_retired_total{reason=\"request\"}", 2.0)
        .await?;
    Ok(())
}

#[tokio::test]
async fn without_an_operator_token_http_retire_is_refused() -> Result<()> {
    let nats = NatsServer::start()?;
    let monitor = Monitor::start(&nats, &[]).await?;
    let reply = reqwest::Client::new()
        .delete(monitor.url("/api/services/auth"))
        .bearer_auth("anything")
        .send()
        .await?;
    assert_eq!(reply.status(), 401);
    let body: Value = reply.json().await?;
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("--operator-token"))
    );
    // The heartbeat still flows: nothing else was affected.
    let client = nats.client().await?;
    let mut hb = client.subscribe(subjects::HEARTBEAT).await?;
    next_json_within(&mut hb, SOON).await?;
    Ok(())
}
