//! `/api/targets` against a real nats-server: the operator token, validation with the
//! protocol's code (400 with the reason), what lands in KV vitals_targets, listing (with
//! hand-written bad values shown as refused) and removal.

use anyhow::Result;
use serde_json::{Value, json};
use vitals_protocol::{Target, subjects};
use vitals_testkit::NatsServer;

use crate::helpers::{Proc, gateway};

const TOKEN: &str = "op-s3cret";

async fn send(
    gw: &Proc,
    method: reqwest::Method,
    service: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> Result<(u16, Value)> {
    let mut req =
        reqwest::Client::new().request(method, gw.url(&format!("/api/targets/{service}")));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await?;
    let code = resp.status().as_u16();
    Ok((code, resp.json().await?))
}

fn error_of(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn targets_are_validated_written_listed_and_removed() -> Result<()> {
    let nats = NatsServer::start()?;
    let js = async_nats::jetstream::new(nats.client().await?);
    let gw = gateway(&nats, &["--operator-token", TOKEN]).await?;
    // No prober has run: the gateway creates the bucket on first use; it is empty.
    let list = gw.get_json("/api/targets").await?;
    assert_eq!(list["targets"], json!([]), "{list}");
    let kv = js.get_key_value(subjects::TARGETS_BUCKET).await?;
    let good = json!({"kind": "http", "url": "http://127.0.0.1:9/health", "interval_ms": 500});

    // Writes need the operator token.
    let (code, body) = send(&gw, reqwest::Method::PUT, "pay", Some(good.clone()), None).await?;
    assert_eq!(code, 401, "{body}");
    let (code, _) = send(
        &gw,
        reqwest::Method::PUT,
        "pay",
        Some(good.clone()),
        Some("nope"),
    )
    .await?;
    assert_eq!(code, 401);
    let (code, _) = send(&gw, reqwest::Method::DELETE, "pay", None, None).await?;
    assert_eq!(code, 401);

    // A bad body gets 400 with the protocol's reason; nothing is written.
    for (bad, why) in [
        (
            json!({"kind": "http", "url": "ftp://x"}),
            "http:// or https://",
        ),
        (
            json!({"kind": "http", "url": "http://x", "interval_ms": 1000, "timeout_ms": 1000}),
            "less than interval_ms",
        ),
        (
            json!({"kind": "tcp", "address": "nohost"}),
            "port is required",
        ),
        (
            json!({"kind": "http", "url": "http://x", "colour": "red"}),
            "unknown field",
        ),
        (
            json!({"service": "other", "kind": "http", "url": "http://x"}),
            "differs",
        ),
    ] {
        let (code, body) = send(
            &gw,
            reqwest::Method::PUT,
            "pay",
            Some(bad.clone()),
            Some(TOKEN),
        )
        .await?;
        assert_eq!(code, 400, "{bad}: {body}");
        assert!(
            error_of(&body).contains(why),
            "{bad}: {body} should say {why:?}"
        );
    }
    let (code, body) = send(
        &gw,
        reqwest::Method::PUT,
        "Bad.Name",
        Some(good.clone()),
        Some(TOKEN),
    )
    .await?;
    assert_eq!(code, 400, "{body}");
    assert!(
        kv.get("pay").await?.is_none(),
        "a refused target was written"
    );

    // A good one is written as validated, and the prober's check of the stored bytes passes.
    let (code, body) = send(
        &gw,
        reqwest::Method::PUT,
        "pay",
        Some(good.clone()),
        Some(TOKEN),
    )
    .await?;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["target"]["url"], "http://127.0.0.1:9/health");
    let stored = kv.get("pay").await?.expect("the target is in KV");
    let t = Target::from_json("pay", &stored)?;
    assert_eq!(t.interval_ms(), 500);

    // Listing shows it, and shows a value written past the API as refused, with why.
    kv.put("junk", r#"{"kind":"http"}"#.into()).await?;
    let list = gw.get_json("/api/targets").await?;
    let services: Vec<&str> = list["targets"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t["service"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(services, vec!["pay"], "{list}");
    assert_eq!(list["refused"][0]["service"], "junk", "{list}");
    assert!(
        error_of(&list["refused"][0]).contains("url is required"),
        "{list}"
    );

    // Removal deletes the key; removing it again is a 404.
    let (code, body) = send(&gw, reqwest::Method::DELETE, "pay", None, Some(TOKEN)).await?;
    assert_eq!(code, 200, "{body}");
    assert!(kv.get("pay").await?.is_none());
    let (code, body) = send(&gw, reqwest::Method::DELETE, "pay", None, Some(TOKEN)).await?;
    assert_eq!(code, 404, "{body}");

    assert_eq!(
        gw.counter("vitals_gateway_target_requests_total{op=\"put\",outcome=\"ok\"}")
            .await?,
        1.0
    );
    assert_eq!(
        gw.counter("vitals_gateway_target_requests_total{op=\"put\",outcome=\"bad_request\"}")
            .await?,
        6.0
    );
    Ok(())
}

/// Without an operator token configured, writes are disabled and say how to enable them.
#[tokio::test]
async fn target_writes_are_disabled_without_an_operator_token() -> Result<()> {
    let nats = NatsServer::start()?;
    let gw = gateway(&nats, &[]).await?;
    let body = json!({"kind": "tcp", "address": "db:5432"});
    let (code, body) = send(&gw, reqwest::Method::PUT, "db", Some(body), Some("x")).await?;
    assert_eq!(code, 401);
    assert!(error_of(&body).contains("--operator-token"), "{body}");
    Ok(())
}

/// A target server whose `/health` answers 200.
async fn target_server() -> Result<std::net::SocketAddr> {
    let app = axum::Router::new().route("/health", axum::routing::get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// The front door end to end, with the real monitor and prober: a target PUT through the
/// gateway is probed within moments and shows on the live feed as a probe-sourced service;
/// changed to a failing URL it goes DOWN with the probe's reason; removed, it is retired.
#[tokio::test]
async fn a_target_written_through_the_gateway_is_probed_changed_and_retired() -> Result<()> {
    use vitals_testkit::SOON;

    use crate::helpers::{connect, is_status, joined_view, monitor, until};

    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let _monitor = monitor(&nats).await?;
    let _prober = Proc::start("prober", &nats, &[], "prober running").await?;
    let gw = gateway(&nats, &["--operator-token", TOKEN]).await?;
    let mut ws = connect(&gw.ws_url(), None).await?;
    let mut seq = 0;
    joined_view(&mut ws, &mut seq, &client, "marker").await?;
    let addr = target_server().await?;

    let target =
        json!({"kind": "http", "url": format!("http://{addr}/health"), "interval_ms": 200});
    let (code, body) = send(&gw, reqwest::Method::PUT, "shop", Some(target), Some(TOKEN)).await?;
    assert_eq!(code, 200, "{body}");
    until(&mut ws, &mut seq, SOON, |m| is_status(m, "shop", "HEALTHY")).await?;
    let summary = until(&mut ws, &mut seq, SOON, |m| {
        m["type"] == "metrics" && m["data"]["service"] == "shop"
    })
    .await?;
    assert_eq!(summary["data"]["source"], "probe", "{summary}");
    assert_eq!(summary["data"]["probe"]["status_code"], 200, "{summary}");
    assert!(
        summary["data"]["figures"].get("cpu_pct").is_none(),
        "{summary}"
    );

    // Changed (not re-added): the new expectation applies to the running target.
    let stricter = json!({"kind": "http", "url": format!("http://{addr}/health"), "interval_ms": 200, "expect_status": 204});
    let (code, _) = send(
        &gw,
        reqwest::Method::PUT,
        "shop",
        Some(stricter),
        Some(TOKEN),
    )
    .await?;
    assert_eq!(code, 200);
    let down = until(&mut ws, &mut seq, SOON, |m| is_status(m, "shop", "DOWN")).await?;
    assert_eq!(
        down["data"]["reasons"][0], "probe failed: status 200 (2 in a row)",
        "{down}"
    );

    let (code, body) = send(&gw, reqwest::Method::DELETE, "shop", None, Some(TOKEN)).await?;
    assert_eq!(code, 200, "{body}");
    until(&mut ws, &mut seq, SOON, |m| is_status(m, "shop", "RETIRED")).await?;
    Ok(())
}
