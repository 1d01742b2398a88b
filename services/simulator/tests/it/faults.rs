//! Faults switched at run time, over NATS and over HTTP.

use vitals_protocol::FaultMode;
use vitals_testkit::{NatsServer, SOON, collect_for};

use crate::support::{
    QUIET_WINDOW, Sim, chaos, drain, get_json, next_sample, sample_where, subscribe,
};

#[tokio::test]
async fn chaos_over_nats_changes_samples_and_health() {
    let nats = NatsServer::start().unwrap();
    let client = nats.client().await.unwrap();
    let mut sub = subscribe(&client, "auth").await;
    let sim = Sim::start(&nats.url(), &[]).await;
    next_sample(&mut sub).await;

    let reply = chaos(&client, "auth", r#"{"mode":"cpu","for_s":60}"#).await;
    assert!(reply.ok, "{reply:?}");
    assert_eq!(reply.mode, FaultMode::Cpu);
    assert!(reply.until_ms.is_some());
    sample_where(&mut sub, "cpu > 85", |s| {
        s.cpu_pct.is_some_and(|c| c > 85.0)
    })
    .await;
    let (code, body) = sim.get("/health").await;
    assert_eq!(
        (code, body["status"].as_str()),
        (200, Some("degraded")),
        "{body}"
    );
    assert_eq!(body["mode"], "cpu");

    let reply = chaos(&client, "auth", r#"{"mode":"error_burst"}"#).await;
    assert_eq!(reply.mode, FaultMode::Errors);
    assert_eq!(reply.until_ms, None);
    sample_where(&mut sub, "error_rate >= 0.2", |s| s.error_rate >= 0.2).await;
    let (code, body) = sim.get("/health").await;
    assert_eq!(
        (code, body["status"].as_str()),
        (503, Some("error")),
        "{body}"
    );
    let (code, _) = sim.get("/data").await;
    assert_eq!(code, 503);

    // Refusals are answered, counted, and change nothing.
    for bad in [
        "{not json",
        r#"{"mode":"meltdown"}"#,
        r#"{"mode":"cpu","for_s":-5}"#,
        "",
    ] {
        let reply = chaos(&client, "auth", bad).await;
        assert!(!reply.ok, "{bad:?} -> {reply:?}");
        assert!(reply.error.is_some());
        assert_eq!(reply.mode, FaultMode::Errors, "fault unchanged");
    }
    next_sample(&mut sub).await;
    assert_eq!(sim.healthz_field("chaos_errors").await, 4);

    let reply = chaos(&client, "auth", r#"{"mode":"clear"}"#).await;
    assert!(reply.ok && reply.mode == FaultMode::Clear);
    sample_where(&mut sub, "healthy figures", |s| {
        s.error_rate < 0.1 && s.cpu_pct.is_some_and(|c| c < 85.0)
    })
    .await;
    let (code, body) = sim.get("/health").await;
    assert_eq!((code, body["status"].as_str()), (200, Some("ok")));
}

#[tokio::test]
async fn silent_and_hang_stop_the_samples() {
    let nats = NatsServer::start().unwrap();
    let client = nats.client().await.unwrap();
    let mut sub = subscribe(&client, "auth").await;
    let sim = Sim::start(&nats.url(), &[]).await;
    next_sample(&mut sub).await;

    assert!(chaos(&client, "auth", r#"{"mode":"silent"}"#).await.ok);
    drain(&mut sub);
    assert!(
        collect_for(&mut sub, QUIET_WINDOW).await.is_empty(),
        "silent publishes nothing"
    );
    let (code, body) = sim.get("/health").await;
    assert_eq!(code, 200, "the process is alive");
    assert_eq!(body["mode"], "silent");

    assert!(chaos(&client, "auth", r#"{"mode":"hang"}"#).await.ok);
    drain(&mut sub);
    assert!(
        collect_for(&mut sub, QUIET_WINDOW).await.is_empty(),
        "hang publishes nothing"
    );
    let short = get_json(&sim.url("/health"), std::time::Duration::from_millis(300)).await;
    assert!(
        short.as_ref().is_err_and(|e| e.is_timeout()),
        "/health must not answer: {short:?}"
    );

    // A request parked by the hang is answered once the fault is cleared.
    let health_url = sim.url("/health");
    let parked = tokio::spawn(async move { get_json(&health_url, SOON).await });
    let (code, body) = sim.get("/faults").await;
    assert_eq!(
        (code, body["mode"].as_str()),
        (200, Some("hang")),
        "/faults still answers"
    );
    assert!(chaos(&client, "auth", r#"{"mode":"clear"}"#).await.ok);
    let (code, body) = parked.await.unwrap().expect("parked /health answered");
    assert_eq!((code, body["status"].as_str()), (200, Some("ok")));
    let resumed = next_sample(&mut sub).await;
    assert!(!resumed.stopping);
}

#[tokio::test]
async fn faults_over_http() {
    let nats = NatsServer::start().unwrap();
    let client = nats.client().await.unwrap();
    let mut sub = subscribe(&client, "auth").await;
    let sim = Sim::start(&nats.url(), &[]).await;
    next_sample(&mut sub).await;

    let (code, reply) = sim.post("/faults", r#"{"mode":"latency"}"#).await;
    assert_eq!(code, 200, "{reply}");
    assert_eq!(reply["ok"], true);
    sample_where(&mut sub, "latency >= 600", |s| s.latency_ms >= 600.0).await;
    let (_, current) = sim.get("/faults").await;
    assert_eq!(current["mode"], "latency");
    let (code, body) = sim.get("/health").await;
    assert_eq!((code, body["status"].as_str()), (200, Some("degraded")));

    for bad in [
        "nope",
        r#"{"mode":"latency","for_s":0}"#,
        r#"{"mode":"cpu","extra":1}"#,
    ] {
        let (code, reply) = sim.post("/faults", bad).await;
        assert_eq!(code, 400, "{bad}");
        assert_eq!(reply["ok"], false);
        assert!(reply["error"].is_string());
    }

    let (code, _) = sim.post("/faults", r#"{"mode":"memory_leak"}"#).await;
    assert_eq!(code, 200);
    let a = sample_where(&mut sub, "a leaking sample", |s| s.latency_ms < 600.0).await;
    let b = next_sample(&mut sub).await;
    let c = next_sample(&mut sub).await;
    assert!(
        a.mem_pct <= b.mem_pct && b.mem_pct <= c.mem_pct && a.mem_pct < c.mem_pct,
        "{a:?} {b:?} {c:?}"
    );

    // A timed fault ends by itself.
    let (code, reply) = sim.post("/faults", r#"{"mode":"cpu","for_s":0.5}"#).await;
    assert_eq!(code, 200);
    assert!(reply["until_ms"].is_u64());
    sample_where(&mut sub, "cpu > 85", |s| {
        s.cpu_pct.is_some_and(|c| c > 85.0)
    })
    .await;
    sample_where(&mut sub, "cpu back to normal", |s| {
        s.cpu_pct.is_some_and(|c| c < 85.0)
    })
    .await;
    let (_, current) = sim.get("/faults").await;
    assert_eq!(current["mode"], "clear");

    let (code, _) = sim.post("/faults", r#"{"mode":"silent"}"#).await;
    assert_eq!(code, 200);
    // One sample may already be on its way when the answer comes back over HTTP.
    drain(&mut sub);
    assert!(collect_for(&mut sub, QUIET_WINDOW).await.len() <= 1);
    let (code, _) = sim.post("/faults", r#"{"mode":"clear"}"#).await;
    assert_eq!(code, 200);
    next_sample(&mut sub).await;
}
