//! /healthz, the body check and HEAD, and a graceful stop on SIGTERM: probing stops, the
//! process exits 0, and the services are not retired (their targets are still wanted).

use std::time::Duration;

use anyhow::Result;
use nix::sys::signal::Signal;
use vitals_testkit::{NatsServer, SOON, collect_for};

use crate::helpers::{Server, error_of, monitor, prober, subscribe, targets_file, until};

#[tokio::test]
async fn healthz_body_checks_and_a_graceful_stop() -> Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let _monitor = monitor(&nats, &[]).await?;
    let server = Server::http().await?;
    let url = server.url("http", "/health");
    let (_dir, file) = targets_file(&format!(
        "[[target]]\nservice = \"body-ok\"\nkind = \"http\"\nurl = \"{url}\"\ninterval_ms = 1000\nbody_contains = \"status: ok\"\n\
         [[target]]\nservice = \"body-bad\"\nkind = \"http\"\nurl = \"{url}\"\ninterval_ms = 1000\nbody_contains = \"nope\"\n\
         [[target]]\nservice = \"head\"\nkind = \"http\"\nurl = \"{url}\"\ninterval_ms = 1000\nmethod = \"HEAD\"\n"
    ))?;
    let mut samples = subscribe(&client, "metrics.*".into()).await?;
    let mut statuses = subscribe(&client, "health.status.*".into()).await?;
    let mut p = prober(&nats, &["--targets", &file, "--instance", "prober-test"]).await?;

    let health: serde_json::Value = reqwest::get(format!("http://{}/healthz", p.http))
        .await?
        .json()
        .await?;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["instance"], "prober-test");
    assert_eq!(health["targets"], 3);

    for (service, error) in [("body-ok", ""), ("body-bad", "body mismatch"), ("head", "")] {
        let got = until(&mut samples, service, SOON, |s| s["service"] == service).await?;
        let s = got.last().cloned().unwrap_or_default();
        assert_eq!(error_of(&s), error, "{s}");
        assert_eq!(s["instance"], "prober-test");
        assert_eq!(s["probe"]["status_code"], 200, "{s}");
    }
    p.wait_counter(
        r#"vitals_prober_probe_failures_total{reason="body_mismatch"}"#,
        1.0,
    )
    .await?;
    p.wait_counter(r#"vitals_prober_probes_total{result="ok"}"#, 2.0)
        .await?;
    let text = p.metrics().await?;
    for series in [
        "vitals_prober_probes_in_flight",
        "vitals_prober_probe_duration_seconds_bucket",
        "vitals_prober_targets_active 3",
        "vitals_prober_nats_connected 1",
    ] {
        assert!(text.contains(series), "{series} missing:\n{text}");
    }

    p.proc.signal(Signal::SIGTERM)?;
    let status = p.proc.wait_exit(SOON).await?;
    assert_eq!(status.code(), Some(0), "{}", p.proc.logs());
    // Whatever was sent before the exit has arrived by now; nothing follows it, and no
    // service was retired.
    while let Ok(Some(_)) =
        tokio::time::timeout(Duration::ZERO, futures::StreamExt::next(&mut samples)).await
    {}
    assert!(
        collect_for(&mut samples, Duration::from_millis(800))
            .await
            .is_empty()
    );
    let changes = collect_for(&mut statuses, Duration::from_millis(200)).await;
    for msg in changes {
        let c: serde_json::Value = serde_json::from_slice(&msg.payload)?;
        assert_ne!(c["status"], "RETIRED", "{c}");
    }
    Ok(())
}
