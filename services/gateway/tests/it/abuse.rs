//! Refusals at the door: foreign Origin, wrong token, too many clients, oversize frames.

use std::time::Duration;

use futures::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use vitals_testkit::{NatsServer, SOON};

use crate::helpers::*;

#[tokio::test]
async fn foreign_origin_gets_403_and_allowed_ones_connect() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let gw = gateway(
        &nats,
        &[
            "--allowed-origins",
            "http://localhost:5173,https://dash.example",
        ],
    )
    .await?;
    assert_eq!(
        refused_status(&gw.ws_url(), Some("http://evil.example")).await?,
        403
    );
    assert_eq!(
        refused_status(&gw.ws_url(), Some("https://dash.example.evil.example")).await?,
        403
    );
    connect(&gw.ws_url(), Some("https://dash.example")).await?;
    connect(&gw.ws_url(), Some("http://localhost:5173")).await?;
    assert_eq!(
        gw.counter("vitals_gateway_refusals_total{reason=\"origin\"}")
            .await?,
        2.0
    );
    Ok(())
}

#[tokio::test]
async fn a_configured_token_is_required_for_ws_and_api() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let gw = gateway(&nats, &["--token", "s3cret"]).await?;
    assert_eq!(refused_status(&gw.ws_url(), None).await?, 401);
    assert_eq!(
        refused_status(&format!("{}?token=wrong", gw.ws_url()), None).await?,
        401
    );
    connect(&format!("{}?token=s3cret", gw.ws_url()), None).await?;
    let http = reqwest::Client::new();
    assert_eq!(http.get(gw.url("/api/status")).send().await?.status(), 401);
    let ok = http
        .get(gw.url("/api/status"))
        .bearer_auth("s3cret")
        .send()
        .await?;
    assert_eq!(ok.status(), 200);
    // Health and metrics stay open for probes.
    assert_eq!(http.get(gw.url("/healthz")).send().await?.status(), 200);
    assert_eq!(
        gw.counter("vitals_gateway_refusals_total{reason=\"token\"}")
            .await?,
        3.0
    );
    Ok(())
}

#[tokio::test]
async fn the_connection_cap_refuses_cleanly_and_frees_slots() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let gw = gateway(&nats, &["--max-clients", "2"]).await?;
    let a = connect(&gw.ws_url(), None).await?;
    let _b = connect(&gw.ws_url(), None).await?;
    assert_eq!(refused_status(&gw.ws_url(), None).await?, 503);
    assert_eq!(
        gw.counter("vitals_gateway_refusals_total{reason=\"capacity\"}")
            .await?,
        1.0
    );
    drop(a);
    // The slot comes back once the gateway notices the close.
    let back =
        vitals_testkit::wait_until(SOON, || async { connect(&gw.ws_url(), None).await.ok() }).await;
    assert!(back.is_some());
    Ok(())
}

#[tokio::test]
async fn an_oversize_client_frame_closes_that_client_only() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let _monitor = monitor(&nats).await?;
    let gw = gateway(&nats, &["--max-client-message", "1024"]).await?;
    let mut bad = connect(&gw.ws_url(), None).await?;
    let mut good = connect(&gw.ws_url(), None).await?;
    let (mut bs, mut gs) = (0, 0);
    until(&mut bad, &mut bs, SOON, |m| m["type"] == "snapshot").await?;
    until(&mut good, &mut gs, SOON, |m| m["type"] == "snapshot").await?;
    bad.send(Message::Text("x".repeat(64 * 1024).into()))
        .await?;
    // The oversize client is disconnected...
    let ended = tokio::time::timeout(SOON, async {
        loop {
            if next_msg(&mut bad, SOON).await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "oversize client still connected");
    // ...the other one keeps getting the feed.
    publish_sample(&client, "auth", 0, false).await?;
    until(&mut good, &mut gs, SOON, |m| {
        is_status(m, "auth", "HEALTHY")
    })
    .await?;
    Ok(())
}

/// Thousands of connections: the cap holds (refusals counted), memory stays bounded,
/// and a reading client keeps getting the feed.
#[tokio::test]
async fn thousands_of_connections_are_capped_with_bounded_memory() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let _monitor = monitor(&nats).await?;
    let gw = gateway(&nats, &["--max-clients", "1000"]).await?;
    let mut reader = connect(&gw.ws_url(), None).await?;
    let mut rs = 0;
    until(&mut reader, &mut rs, SOON, |m| m["type"] == "snapshot").await?;
    let rss = || vitals_testkit::rss_bytes(gw.proc.pid()) / 1024;
    let before_kib = rss();
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..2_000 {
        match connect(&gw.ws_url(), None).await {
            Ok(ws) => held.push(ws),
            Err(_) => refused += 1,
        }
    }
    assert_eq!(held.len(), 999, "the reader holds one slot");
    assert_eq!(refused, 1_001);
    assert_eq!(
        gw.counter("vitals_gateway_refusals_total{reason=\"capacity\"}")
            .await?,
        1_001.0
    );
    let grown_kib = rss().saturating_sub(before_kib);
    // The contract's budget is 64 KiB per idle client; the held ones read nothing.
    assert!(
        grown_kib < 999 * 64,
        "RSS grew {grown_kib} KiB for 999 clients"
    );
    publish_sample(&client, "auth", 0, false).await?;
    until(&mut reader, &mut rs, SOON, |m| {
        is_status(m, "auth", "HEALTHY")
    })
    .await?;
    Ok(())
}

/// A client that answers nothing (not even pings) is closed after the idle timeout,
/// counted; one that keeps reading (and so answers pings) stays.
#[tokio::test]
async fn a_silent_client_is_closed_after_the_idle_timeout() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let gw = gateway(
        &nats,
        &["--ping-interval-ms", "200", "--idle-timeout-ms", "700"],
    )
    .await?;
    let mut reader = connect(&gw.ws_url(), None).await?;
    let mut silent = connect(&gw.ws_url(), None).await?;
    let (mut rs, mut ss) = (0, 0);
    until(&mut reader, &mut rs, SOON, |m| m["type"] == "snapshot").await?;
    until(&mut silent, &mut ss, SOON, |m| m["type"] == "snapshot").await?;
    // The reader keeps reading (its client answers each ping); the other does not read.
    let keep_reading = tokio::spawn(async move {
        while let Ok(_m) = next_msg(&mut reader, Duration::from_secs(3)).await {}
        reader
    });
    let dropped = vitals_testkit::wait_until(SOON, || async {
        let n = gw
            .counter("vitals_gateway_client_drops_total{reason=\"idle\"}")
            .await
            .ok()?;
        (n >= 1.0).then_some(())
    })
    .await;
    assert!(dropped.is_some(), "the silent client was not closed");
    assert_eq!(
        gw.counter("vitals_gateway_clients").await?,
        1.0,
        "the reader stays"
    );
    keep_reading.abort();
    drop(silent);
    Ok(())
}
