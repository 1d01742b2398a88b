//! Reads at scale: `health.snapshot` always answers (paged to fit max_payload), and a
//! client reading snapshots in a tight loop never slows ingestion down.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use async_nats::service::{NATS_SERVICE_ERROR, NATS_SERVICE_ERROR_CODE};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use vitals_protocol::{ServiceName, Snapshot, subjects};
use vitals_testkit::{ChildProc, NatsServer, SOON, wait_until};

use crate::helpers::*;

/// One `health.snapshot` request with `body`; the reply's payload and whether it carried
/// the service API's error headers.
async fn ask(client: &async_nats::Client, body: &str) -> Result<(Bytes, Option<String>)> {
    let msg = tokio::time::timeout(
        SOON,
        client.request(subjects::SNAPSHOT, body.to_owned().into()),
    )
    .await
    .context("snapshot request timed out")??;
    let error = msg.headers.as_ref().and_then(|h| {
        let code = h.get(NATS_SERVICE_ERROR_CODE)?;
        let text = h
            .get(NATS_SERVICE_ERROR)
            .map(|v| v.to_string())
            .unwrap_or_default();
        Some(format!("{code}: {text}"))
    });
    Ok((msg.payload, error))
}

/// Publishes one good sample for each of `names`.
async fn publish_all(client: &async_nats::Client, names: &[String], seq: u64) -> Result<()> {
    for name in names {
        publish_json(client, name, &good_sample(name, seq)).await?;
    }
    client.flush().await?;
    Ok(())
}

#[tokio::test]
async fn the_snapshot_at_20000_services_answers_in_pages_that_fit() -> Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let monitor = Monitor::start(&nats, &[]).await?;
    let names: Vec<String> = (0..20_000).map(|i| format!("svc-{i:05}")).collect();
    publish_all(&client, &names, 0).await?;
    monitor
        .wait_counter("vitals_monitor_samples_total", 20_000.0)
        .await?;
    let max_payload = client.server_info().max_payload;

    // What `nats req health.snapshot ''` gets: the first page, not a timeout.
    let started = Instant::now();
    let (first, error) = ask(&client, "").await?;
    let first_ms = started.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(error, None);
    assert!(first.len() <= max_payload);
    let page0: Snapshot = serde_json::from_slice(&first)?;
    assert_eq!(page0.total, 20_000);
    assert!(page0.pages > 1, "20,000 services cannot fit one reply");
    assert!(page0.next_after.is_some());

    // Walking the cursor gives every service exactly once, each page within the limit.
    let started = Instant::now();
    let mut seen = BTreeSet::new();
    let mut page = page0.clone();
    let mut replies = 1;
    let mut largest = first.len();
    loop {
        for s in &page.services {
            assert!(seen.insert(s.service.clone()), "{} twice", s.service);
        }
        let Some(after) = page.next_after.clone() else {
            break;
        };
        let (bytes, error) = ask(&client, &format!("{{\"after\":\"{after}\"}}")).await?;
        assert_eq!(error, None);
        assert!(bytes.len() <= max_payload);
        largest = largest.max(bytes.len());
        page = serde_json::from_slice(&bytes)?;
        replies += 1;
    }
    let walk_ms = started.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(seen.len(), 20_000);
    let want: BTreeSet<ServiceName> = names
        .iter()
        .map(|n| ServiceName::parse(n))
        .collect::<Result<_, _>>()?;
    assert_eq!(seen, want);

    // Page numbers give the same pages of one copy.
    let (last, error) = ask(&client, &format!("{{\"page\":{}}}", page0.pages - 1)).await?;
    assert_eq!(error, None);
    let last: Snapshot = serde_json::from_slice(&last)?;
    assert!(last.next_after.is_none());
    assert_eq!(
        last.services.last().map(|s| s.service.as_str()),
        Some("svc-19999")
    );

    // What cannot be answered gets a clear error reply, never silence.
    let (body, error) = ask(&client, &format!("{{\"page\":{}}}", page0.pages + 5)).await?;
    assert!(
        error.as_deref().is_some_and(|e| e.starts_with("404")),
        "{error:?}"
    );
    assert!(String::from_utf8_lossy(&body).contains("does not exist"));
    let (_, error) = ask(&client, "{\"pgae\":1}").await?;
    assert!(
        error.as_deref().is_some_and(|e| e.starts_with("400")),
        "{error:?}"
    );

    // HTTP has no such limit: the whole document at once.
    let all = monitor.status().await?;
    assert_eq!(all.services.len(), 20_000);
    eprintln!(
        "snapshot at 20,000 services: first page {} bytes in {first_ms:.1} ms; {replies} pages \
         (largest {largest} bytes, max_payload {max_payload}) walked in {walk_ms:.0} ms",
        first.len()
    );
    Ok(())
}

/// 10,000 services at 1 Hz while clients read snapshots (NATS and HTTP) as fast as they
/// can for 30 s: nothing refused, dropped or missed, and nobody goes DOWN.
#[tokio::test]
async fn a_snapshot_loop_never_starves_ingestion() -> Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    // The rate limits are lifted: this is about the read path itself being cheap.
    let monitor = Monitor::start(
        &nats,
        &[
            "--snapshot-rate-per-client",
            "100000",
            "--snapshot-rate-total",
            "1000000",
        ],
    )
    .await?;
    let url = nats.url();
    let _load = ChildProc::spawn(
        "simulator",
        &[
            "--count",
            "10000",
            "--prefix",
            "load-",
            "--nats-url",
            &url,
            "--http-addr",
            "127.0.0.1:0",
            "--interval-ms",
            "1000",
        ],
        &[],
    )?;
    let ready = wait_until(Duration::from_secs(30), || async {
        let snap = monitor.status().await.ok()?;
        (snap.services.len() == 10_000).then_some(())
    })
    .await;
    if ready.is_none() {
        bail!(
            "10,000 services never tracked: {}",
            monitor.status().await?.services.len()
        );
    }
    let mut downs = client.subscribe("health.status.>").await?;
    client.flush().await?;
    let base = monitor.counter("vitals_monitor_samples_total").await?;

    let until = Instant::now() + Duration::from_secs(30);
    let mut readers = Vec::new();
    for _ in 0..4 {
        let client = client.clone();
        readers.push(tokio::spawn(async move {
            let mut replies = 0u64;
            while Instant::now() < until {
                if let Ok(Ok(_)) =
                    tokio::time::timeout(SOON, client.request(subjects::SNAPSHOT, "".into())).await
                {
                    replies += 1;
                }
            }
            replies
        }));
    }
    let http = reqwest::Client::new();
    let status_url = monitor.url("/api/status");
    let mut http_replies = 0u64;
    let mut transitions = Vec::new();
    while Instant::now() < until {
        if http
            .get(&status_url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            http_replies += 1;
        }
        while let Some(Some(msg)) = downs.next().now_or_never() {
            transitions.push(msg);
        }
    }
    let mut nats_replies = 0;
    for r in readers {
        nats_replies += r.await?;
    }
    let down: Vec<String> = transitions
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .filter(|p| p.contains("\"DOWN\""))
        .collect();
    assert!(
        down.is_empty(),
        "false DOWN under a snapshot loop: {down:?}"
    );
    let accepted = monitor.counter("vitals_monitor_samples_total").await? - base;
    for series in [
        "vitals_monitor_refused_samples_total",
        "vitals_monitor_slow_consumer_drops_total",
        "vitals_monitor_samples_missed_total",
        "vitals_monitor_publish_drops_total",
    ] {
        assert_eq!(monitor.counter(series).await?, 0.0, "{series}");
    }
    assert!(nats_replies > 0 && http_replies > 0);
    eprintln!(
        "snapshot loop, 10,000 services at 1 Hz for 30 s: {accepted} samples accepted, \
         {nats_replies} NATS + {http_replies} HTTP snapshots served, 0 refused/dropped/missed, 0 DOWN"
    );
    Ok(())
}

/// The confused deputy: a request whose reply subject points into the system. The monitor
/// must answer only on inboxes: nothing lands on health.>, $KV.>, $JS.> or metrics.>, and
/// nothing is stored in KV or HEALTH_EVENTS.
#[tokio::test]
async fn forged_reply_subjects_are_refused_and_nothing_is_published_or_stored() -> Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let monitor = Monitor::start(&nats, &[]).await?;
    publish_json(&client, "alpha", &good_sample("alpha", 0)).await?;
    client.flush().await?;
    wait_all(&monitor, &["alpha"], vitals_protocol::Status::Healthy).await?;
    let js = async_nats::jetstream::new(client.clone());
    let mut stream = js.get_stream(subjects::EVENTS_STREAM).await?;
    let events_before = stream.info().await?.state.messages;
    let kv = js.get_key_value(subjects::KV_BUCKET).await?;
    let alpha_before = kv.entry("alpha").await?.map(|e| e.revision);

    let watcher = nats.client().await?;
    let mut everything = watcher.subscribe(">").await?;
    watcher.flush().await?;
    let forged = [
        "health.status.alpha",
        "health.alert.alpha",
        "$KV.health_status.alpha",
        "$KV.health_status.junk",
        "$JS.API.STREAM.PURGE.HEALTH_EVENTS",
        "metrics.alpha",
    ];
    for reply in forged {
        for (subject, body) in [
            (subjects::SNAPSHOT, "".to_owned()),
            (subjects::RETIRE, "{\"service\":\"alpha\"}".to_owned()),
        ] {
            client
                .publish_with_reply(subject, reply, body.into())
                .await?;
        }
    }
    client.flush().await?;
    monitor
        .wait_counter(
            "vitals_monitor_request_refusals_total{endpoint=\"snapshot\",reason=\"reply_subject\"}",
            forged.len() as f64,
        )
        .await?;
    monitor
        .wait_counter(
            "vitals_monitor_request_refusals_total{endpoint=\"retire\",reason=\"reply_subject\"}",
            forged.len() as f64,
        )
        .await?;
    let seen = vitals_testkit::collect_for(&mut everything, Duration::from_secs(2)).await;
    let landed: Vec<&str> = seen
        .iter()
        .map(|m| m.subject.as_str())
        .filter(|s| forged.contains(s))
        .collect();
    assert!(
        landed.is_empty(),
        "published on forged reply subjects: {landed:?}"
    );
    assert_eq!(
        stream.info().await?.state.messages,
        events_before,
        "nothing stored in HEALTH_EVENTS"
    );
    assert_eq!(kv.entry("alpha").await?.map(|e| e.revision), alpha_before);
    assert!(kv.entry("junk").await?.is_none());
    // alpha was not retired, and an honest request still works.
    assert_eq!(nats_snapshot(&client).await?.services.len(), 1);
    Ok(())
}

/// A flood of snapshot requests from one client is held to its rate with clear 429
/// replies; another client is still served; ingestion goes on.
#[tokio::test]
async fn a_snapshot_flood_is_rate_limited_per_client_and_others_are_served() -> Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let monitor = Monitor::start(&nats, &["--snapshot-rate-per-client", "5"]).await?;
    publish_all(&client, &["a".to_owned()], 0).await?;
    let flooder = nats.client().await?;
    let mut limited = 0;
    for _ in 0..60 {
        let msg =
            tokio::time::timeout(SOON, flooder.request(subjects::SNAPSHOT, "".into())).await??;
        let code = msg
            .headers
            .as_ref()
            .and_then(|h| h.get(NATS_SERVICE_ERROR_CODE).map(|v| v.to_string()));
        if code.as_deref() == Some("429") {
            limited += 1;
        }
    }
    assert!(limited > 0, "a client over its rate is told so");
    monitor
        .wait_counter(
            "vitals_monitor_request_refusals_total{endpoint=\"snapshot\",reason=\"asker_rate\"}",
            f64::from(limited),
        )
        .await?;
    let (_, error) = ask(&client, "").await?;
    assert_eq!(error, None, "another client is served");
    publish_all(&client, &["a".to_owned()], 1).await?;
    monitor
        .wait_counter("vitals_monitor_samples_total", 2.0)
        .await?;
    Ok(())
}
