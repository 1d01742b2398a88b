//! Silences, inhibition and acknowledgement as the monitor marks them on AlertEvents:
//! a silenced or inhibited firing is not notified, its `unsilenced`/`uninhibited` update
//! is; an ack stops reminders and the resolve says who acked.

use std::time::Duration;

use anyhow::{Result, ensure};
use vitals_protocol::{AlertUpdate, ServiceName};
use vitals_testkit::wait_until;

use crate::helpers::*;

const WITHIN: Duration = Duration::from_secs(20);

#[tokio::test]
async fn silenced_and_inhibited_wait_for_their_update_and_acks_stop_reminders() -> Result<()> {
    let nats = server()?;
    let mon = monitor_client(&nats).await?;
    events_stream(&mon).await?;
    let sink = Sink::start().await?;
    let cfg = format!(
        "{}[[route]]\nreceivers = [\"ops\"]\ngroup_wait_ms = 0\nrepeat_s = 1\n",
        webhook("ops", &sink.url("/hook"), "")
    );
    let n = Notifier::start(&nats, &cfg, &[]).await?;

    let mut silenced = fire("billing", 100);
    silenced.marks.silenced = true;
    let mut inhibited = fire("notifications", 101);
    inhibited.marks.inhibited_by = Some(ServiceName::parse("auth")?);
    publish(&mon, &silenced).await?;
    publish(&mon, &inhibited).await?;
    // A later, plain firing arriving proves the two before it were judged (FIFO).
    publish(&mon, &fire("marker", 1)).await?;
    sink.wait_distinct(1, WITHIN).await?;
    let ids: Vec<String> = sink.alerts().into_iter().map(|a| a.1).collect();
    ensure!(ids.iter().all(|i| i.starts_with("marker:")), "{ids:?}");
    ensure!(
        n.metric("vitals_notifier_suppressed_total{receiver=\"ops\"}")
            .await?
            == 2.0
    );

    let mut unsilenced = silenced.clone();
    unsilenced.marks.silenced = false;
    publish(&mon, &updated(unsilenced, AlertUpdate::Unsilenced)).await?;
    let mut uninhibited = inhibited.clone();
    uninhibited.marks.inhibited_by = None;
    publish(&mon, &updated(uninhibited, AlertUpdate::Uninhibited)).await?;
    let found = wait_until(WITHIN, || async {
        let c = sink.counts();
        (c.contains_key(&("billing:SERVICE_DOWN:100".into(), "firing".into()))
            && c.contains_key(&("notifications:SERVICE_DOWN:101".into(), "firing".into())))
        .then_some(())
    })
    .await;
    ensure!(
        found.is_some(),
        "not notified after the update: {:?}",
        sink.counts()
    );

    // Reminders every second while nobody acked...
    let billing = ("billing:SERVICE_DOWN:100".to_owned(), "firing".to_owned());
    let reminded = wait_until(WITHIN, || async {
        (sink.counts().get(&billing).copied().unwrap_or(0) >= 3).then_some(())
    })
    .await;
    ensure!(reminded.is_some(), "no reminders: {:?}", sink.counts());
    // ...until the ack.
    let mut acked = silenced.clone();
    acked.marks.silenced = false;
    acked.marks.acked_by = Some("ann".into());
    publish(&mon, &updated(acked.clone(), AlertUpdate::Acked)).await?;
    publish(&mon, &fire("marker2", 2)).await?;
    wait_until(WITHIN, || async {
        sink.counts()
            .contains_key(&("marker2:SERVICE_DOWN:2".into(), "firing".into()))
            .then_some(())
    })
    .await
    .ok_or_else(|| anyhow::anyhow!("marker2 did not arrive"))?;
    let after_ack = sink.counts().get(&billing).copied().unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    ensure!(
        sink.counts().get(&billing).copied().unwrap_or(0) == after_ack,
        "reminded after the ack"
    );
    ensure!(
        n.metric("vitals_notifier_repeats_total{receiver=\"ops\"}")
            .await?
            >= 2.0
    );

    let mut resolved = resolve("billing", 100);
    resolved.marks.acked_by = Some("ann".into());
    publish(&mon, &resolved).await?;
    let summary = wait_until(WITHIN, || async {
        sink.alerts()
            .into_iter()
            .find(|a| a.1 == "billing:SERVICE_DOWN:100" && a.2 == "resolved")
            .map(|a| {
                a.3["annotations"]["summary"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned()
            })
    })
    .await
    .ok_or_else(|| anyhow::anyhow!("no resolve"))?;
    ensure!(summary.contains("acked by ann"), "{summary}");
    Ok(())
}

/// A silenced firing that resolves while silenced was never notified: nor is its resolve.
#[tokio::test]
async fn a_resolve_without_a_notified_firing_is_not_sent() -> Result<()> {
    let nats = server()?;
    let mon = monitor_client(&nats).await?;
    events_stream(&mon).await?;
    let sink = Sink::start().await?;
    let cfg = format!(
        "{}[[route]]\nreceivers = [\"ops\"]\ngroup_wait_ms = 0\n",
        webhook("ops", &sink.url("/hook"), "")
    );
    let _n = Notifier::start(&nats, &cfg, &[]).await?;
    let mut silenced = fire("billing", 7);
    silenced.marks.silenced = true;
    publish(&mon, &silenced).await?;
    publish(&mon, &resolve("billing", 7)).await?;
    publish(&mon, &fire("marker", 1)).await?;
    sink.wait_distinct(1, WITHIN).await?;
    let c = sink.counts();
    ensure!(
        c.len() == 1 && c.keys().all(|k| k.0.starts_with("marker:")),
        "{c:?}"
    );
    Ok(())
}
