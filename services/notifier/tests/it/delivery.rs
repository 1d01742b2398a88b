//! Delivery against webhook receivers started by the test: once per transition, SIGKILL in
//! the middle of a burst, a receiver down for 30 s, an always-failing receiver.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use anyhow::{Result, ensure};
use async_nats::jetstream;
use vitals_protocol::DeadLetter;
use vitals_testkit::wait_until;

use crate::helpers::*;

/// In every accepted request order, each alert's firing comes before its resolve.
fn in_order_per_alert(sink: &Sink) -> Result<()> {
    let mut fired: HashSet<String> = HashSet::new();
    for (n, id, st, _) in sink.alerts() {
        match st.as_str() {
            "firing" => {
                fired.insert(id);
            }
            "resolved" => ensure!(
                fired.contains(&id),
                "request {n}: {id} resolved before it fired"
            ),
            other => anyhow::bail!("request {n}: status {other:?}"),
        }
    }
    Ok(())
}

#[tokio::test]
async fn every_transition_arrives_once() -> Result<()> {
    let nats = server()?;
    let mon = monitor_client(&nats).await?;
    events_stream(&mon).await?;
    let sink = Sink::start().await?;
    let cfg = format!(
        "{}[[route]]\nreceivers = [\"ops\"]\ngroup_wait_ms = 200\n",
        webhook("ops", &sink.url("/hook"), "")
    );
    let n = Notifier::start(&nats, &cfg, &[]).await?;
    let svcs = ["auth", "billing", "notifications", "analytics", "search"];
    for (i, s) in svcs.iter().enumerate() {
        publish(&mon, &fire(s, 1_000 + i as u64)).await?;
    }
    sink.wait_distinct(5, SOON_X2).await?;
    for (i, s) in svcs.iter().enumerate() {
        publish(&mon, &resolve(s, 1_000 + i as u64)).await?;
    }
    sink.wait_distinct(10, SOON_X2).await?;
    // The ack request shares the subject space; it is refused, not delivered.
    mon.publish(
        "health.alert.ack",
        br#"{"id":"auth:SERVICE_DOWN:1000","by":"x"}"#.as_ref().into(),
    )
    .await?;
    mon.flush().await?;
    wait_until(SOON_X2, || async {
        (n.metric("vitals_notifier_refused_events_total{reason=\"not_an_alert_subject\"}")
            .await
            .ok()?
            >= 1.0)
            .then_some(())
    })
    .await
    .ok_or_else(|| anyhow::anyhow!("the ack request was not counted as refused"))?;
    let counts = sink.counts();
    ensure!(
        counts.len() == 10 && counts.values().all(|&c| c == 1),
        "{counts:?}"
    );
    in_order_per_alert(&sink)?;
    let first = &sink.accepted()[0].body;
    ensure!(
        first["version"] == "4" && first["receiver"] == "ops",
        "{first}"
    );
    ensure!(
        first["alerts"][0]["generatorURL"]
            .as_str()
            .is_some_and(|u| u.starts_with("http://dash.test:5173/#/service/")),
        "{first}"
    );
    ensure!(
        n.metric("vitals_notifier_sent_total{receiver=\"ops\"}")
            .await?
            == 10.0
    );
    ensure!(
        n.metric("vitals_notifier_delivery_latency_seconds_count{receiver=\"ops\"}")
            .await?
            == 10.0
    );
    Ok(())
}

const SOON_X2: Duration = Duration::from_secs(20);

#[tokio::test]
async fn sigkill_mid_burst_loses_nothing_and_repeats_at_most_one_batch() -> Result<()> {
    let nats = server()?;
    let mon = monitor_client(&nats).await?;
    events_stream(&mon).await?;
    let sink = Sink::start().await?;
    // Slow enough that the burst is still being delivered when the notifier is killed.
    sink.set_delay(30);
    let cfg = format!(
        "{}[[route]]\nreceivers = [\"ops\"]\ngroup_wait_ms = 20\n",
        webhook("ops", &sink.url("/hook"), "")
    );
    let mut n = Notifier::start(&nats, &cfg, &[]).await?;
    for i in 0..100u64 {
        publish(&mon, &fire(&format!("svc-{i:03}"), 10_000 + i)).await?;
        publish(&mon, &resolve(&format!("svc-{i:03}"), 10_000 + i)).await?;
    }
    // Killed once some, not all, of the burst arrived.
    wait_until(SOON_X2, || async {
        (sink.counts().len() >= 60).then_some(())
    })
    .await
    .ok_or_else(|| anyhow::anyhow!("nothing arrived"))?;
    n.proc.kill();
    let requests_at_kill = sink.attempts();
    let before = sink.counts().len();
    ensure!(
        before < 200,
        "the burst was over before the kill ({before})"
    );
    n.restart(&nats).await?;
    sink.wait_distinct(200, Duration::from_secs(60)).await?;
    // Everything redelivered is skipped by now; give stragglers a moment to show.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counts = sink.counts();
    let dups: HashSet<(String, String)> = counts
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(k, _)| k.clone())
        .collect();
    ensure!(counts.values().all(|&c| c <= 2), "{counts:?}");
    // Whatever repeated was one request the receiver had answered around the kill.
    if !dups.is_empty() {
        let mut by_request: HashMap<u64, HashSet<(String, String)>> = HashMap::new();
        for (req, id, st, _) in sink.alerts() {
            by_request.entry(req).or_default().insert((id, st));
        }
        let holder = by_request
            .iter()
            .filter(|(req, _)| **req < requests_at_kill)
            .find(|(_, set)| dups.is_subset(set));
        ensure!(
            holder.is_some(),
            "duplicates {dups:?} are not all from one request before the kill"
        );
    }
    in_order_per_alert(&sink)?;
    // The figure for the report.
    #[allow(clippy::print_stdout)]
    {
        println!(
            "kill-mid-burst: {before}/200 before the kill, all 200 after restart, {} duplicated",
            dups.len()
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_receiver_down_for_30_s_gets_everything_in_order() -> Result<()> {
    let nats = server()?;
    let mon = monitor_client(&nats).await?;
    events_stream(&mon).await?;
    let sink = Sink::start().await?;
    let cfg = format!(
        "{}[[route]]\nreceivers = [\"ops\"]\ngroup_wait_ms = 100\n",
        webhook("ops", &sink.url("/hook"), "backoff_max_ms = 2000")
    );
    let n = Notifier::start(&nats, &cfg, &[]).await?;
    sink.set_status(503);
    for i in 0..10u64 {
        publish(&mon, &fire(&format!("svc-{i}"), 500 + i)).await?;
        if i % 2 == 0 {
            publish(&mon, &resolve(&format!("svc-{i}"), 500 + i)).await?;
        }
    }
    wait_until(SOON_X2, || async { (sink.attempts() >= 3).then_some(()) })
        .await
        .ok_or_else(|| anyhow::anyhow!("the notifier did not retry"))?;
    tokio::time::sleep(Duration::from_secs(30)).await;
    ensure!(sink.accepted().is_empty());
    sink.set_status(OK);
    sink.wait_distinct(15, SOON_X2).await?;
    let counts = sink.counts();
    ensure!(
        counts.len() == 15 && counts.values().all(|&c| c == 1),
        "{counts:?}"
    );
    in_order_per_alert(&sink)?;
    ensure!(
        n.metric("vitals_notifier_retried_total{receiver=\"ops\"}")
            .await?
            >= 3.0
    );
    ensure!(
        n.metric("vitals_notifier_dead_lettered_total{receiver=\"ops\"}")
            .await?
            == 0.0
    );
    Ok(())
}

#[tokio::test]
async fn an_always_failing_receiver_is_dead_lettered_and_the_other_unaffected() -> Result<()> {
    let nats = server()?;
    let mon = monitor_client(&nats).await?;
    events_stream(&mon).await?;
    let good = Sink::start().await?;
    let bad = Sink::start().await?;
    bad.set_status(500);
    let cfg = format!(
        "{}{}[[route]]\nreceivers = [\"bad\", \"good\"]\ngroup_wait_ms = 0\n",
        webhook("good", &good.url("/hook"), ""),
        webhook("bad", &bad.url("/hook"), "max_attempts = 3")
    );
    let n = Notifier::start(&nats, &cfg, &[]).await?;
    publish(&mon, &fire("auth", 42)).await?;
    publish(&mon, &fire("billing", 43)).await?;
    good.wait_distinct(2, SOON_X2).await?;
    let dead = wait_until(SOON_X2, || async {
        let v = n
            .metric("vitals_notifier_dead_lettered_total{receiver=\"bad\"}")
            .await
            .ok()?;
        (v >= 2.0).then_some(v)
    })
    .await
    .ok_or_else(|| anyhow::anyhow!("nothing dead-lettered"))?;
    ensure!(dead == 2.0);
    // group_wait 0 still sends what is already queued together: one or two requests.
    ensure!(
        [3, 6].contains(&bad.attempts()),
        "3 attempts per request: {}",
        bad.attempts()
    );
    // The dead letters, as `nats stream view NOTIFY_DEAD` shows them.
    let js = jetstream::new(mon.clone());
    let stream = js.get_stream("NOTIFY_DEAD").await?;
    let msgs = vitals_runtime::read_stream(&stream, 1, u64::MAX, &[]).await?;
    let letters: Vec<DeadLetter> = msgs
        .iter()
        .map(|m| serde_json::from_slice(&m.payload))
        .collect::<Result<_, _>>()?;
    ensure!(letters.len() == 2, "{letters:?}");
    ensure!(msgs.iter().all(|m| m.subject == "notify.dead.bad"));
    ensure!(
        letters
            .iter()
            .all(|l| l.attempts == 3 && l.reason == "status 500"),
        "{letters:?}"
    );
    let ids: HashSet<_> = letters.iter().map(|l| l.alert_id.as_str()).collect();
    ensure!(ids.contains("auth:SERVICE_DOWN:42") && ids.contains("billing:SERVICE_DOWN:43"));
    // Their messages were acked: nothing is waiting on the durable.
    let events = js.get_stream("HEALTH_EVENTS").await?;
    let pending = wait_until(SOON_X2, || async {
        let mut c: async_nats::jetstream::consumer::PullConsumer =
            events.get_consumer("vitals-notifier").await.ok()?;
        let info = c.info().await.ok()?;
        (info.num_ack_pending == 0).then_some(())
    })
    .await;
    ensure!(pending.is_some(), "messages left unacked");
    Ok(())
}
