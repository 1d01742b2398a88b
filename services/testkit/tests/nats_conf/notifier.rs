//! The repo's nats.conf for the notifier user: what it needs (a durable consumer on
//! HEALTH_EVENTS, KV health_status read-only, its KV vitals_notified, stream NOTIFY_DEAD)
//! works; everything else is refused, and nobody else may write its dead letters.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use async_nats::jetstream::{self, consumer, kv, stream};
use futures::StreamExt;
use vitals_testkit::{NatsServer, SOON};

use super::{GATEWAY, MONITOR, SIMULATOR, connect};

const NOTIFIER: (&str, &str) = ("notifier", "notifier-dev");

#[tokio::test]
async fn the_notifier_reads_alerts_and_writes_only_its_own_state() -> Result<()> {
    let nats = NatsServer::start_with_config(&vitals_testkit::repo_nats_conf()?)?;
    // What the monitor owns, made as the monitor makes it.
    let monitor = connect(&nats, Some(MONITOR)).await?;
    let mjs = jetstream::new(monitor.client.clone());
    mjs.create_stream(stream::Config {
        name: "HEALTH_EVENTS".into(),
        subjects: vec!["health.status.>".into(), "health.alert.>".into()],
        no_ack: true,
        ..Default::default()
    })
    .await?;
    let status = mjs
        .create_key_value(kv::Config {
            bucket: "health_status".into(),
            ..Default::default()
        })
        .await?;
    status.put("billing", "{}".into()).await?;

    let n = connect(&nats, Some(NOTIFIER)).await?;
    let js = jetstream::new(n.client.clone());
    // The durable consumer, a message through it, its ack.
    let events = js.get_stream("HEALTH_EVENTS").await?;
    let c: consumer::PullConsumer = events
        .create_consumer(consumer::pull::Config {
            durable_name: Some("vitals-notifier".into()),
            filter_subject: "health.alert.>".into(),
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await?;
    monitor
        .client
        .publish("health.alert.billing", "{}".into())
        .await?;
    monitor.client.flush().await?;
    let mut msgs = c.messages().await?;
    let m = tokio::time::timeout(SOON, msgs.next())
        .await?
        .context("no message")??;
    m.double_ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    // KV health_status, read.
    let skv = js.get_key_value("health_status").await?;
    ensure!(skv.get("billing").await?.is_some());
    let states = vitals_runtime::load_service_states(&skv).await?;
    ensure!(states.is_empty(), "'{{}}' is no state");
    // Its own bucket and stream.
    let notified = vitals_runtime::targets::open_or_create(
        &js,
        kv::Config {
            bucket: "vitals_notified".into(),
            max_age: Duration::from_secs(3600),
            ..Default::default()
        },
    )
    .await?;
    notified
        .put("ops.billing.SERVICE_DOWN.1.firing", "1".into())
        .await?;
    ensure!(
        notified
            .get("ops.billing.SERVICE_DOWN.1.firing")
            .await?
            .is_some()
    );
    js.get_or_create_stream(stream::Config {
        name: "NOTIFY_DEAD".into(),
        subjects: vec!["notify.dead.>".into()],
        ..Default::default()
    })
    .await?;
    js.publish("notify.dead.ops", "{}".into()).await?.await?;

    for subject in [
        "health.alert.billing",
        "health.status.billing",
        "health.alert.ack",
        "health.silence.create",
        "metrics.billing",
        "chaos.billing",
        "$KV.health_status.billing",
        "$KV.vitals_silences.ack.x",
        "$KV.vitals_targets.x",
        "$JS.API.STREAM.DELETE.HEALTH_EVENTS",
        "$JS.API.STREAM.PURGE.HEALTH_EVENTS",
        "$JS.API.STREAM.CREATE.HEALTH_EVENTS",
        "$JS.API.CONSUMER.DELETE.HEALTH_EVENTS.vitals-notifier",
        "$JS.API.STREAM.DELETE.KV_health_status",
        "$JS.API.STREAM.DELETE.NOTIFY_DEAD",
    ] {
        n.publish_denied(subject).await?;
    }
    let _sub = n.client.subscribe("health.>").await?;
    n.client.flush().await?;
    n.violation("subscription", "health.>").await?;

    // Dead letters are the notifier's alone.
    for user in [None, Some(GATEWAY), Some(SIMULATOR)] {
        connect(&nats, user)
            .await?
            .publish_denied("notify.dead.ops")
            .await?;
    }
    Ok(())
}
