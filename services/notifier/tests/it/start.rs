//! Started while alerts already fire: a new durable notifies what fires now (KV
//! health_status), not the history; a restart resumes where the durable stopped.

use std::time::Duration;

use anyhow::{Result, ensure};
use async_nats::jetstream::{self, kv};
use nix::sys::signal::Signal;
use vitals_protocol::{ActiveAlert, AlertName, Figures, ServiceName, ServiceState, Status};

use crate::helpers::*;

const WITHIN: Duration = Duration::from_secs(20);

fn down_state(service: &str, since_ms: u64) -> Result<ServiceState> {
    Ok(ServiceState {
        service: ServiceName::parse(service)?,
        status: Status::Down,
        since_ms,
        last_seen_ms: Some(since_ms),
        reasons: vec!["no sample for 3.0 s".into()],
        alerts: vec![ActiveAlert {
            id: format!("{service}:SERVICE_DOWN:{since_ms}"),
            alert: AlertName::ServiceDown,
            value: 3.0,
            threshold: 3.0,
            since_ms,
            marks: Default::default(),
        }],
        instance: "i-1".into(),
        health_url: String::new(),
        figures: Figures::default(),
        last_alert: None,
        interval_ms: None,
        source: Default::default(),
        probe: None,
        host: None,
    })
}

#[tokio::test]
async fn a_new_durable_notifies_what_fires_now_not_the_history() -> Result<()> {
    let nats = server()?;
    let mon = monitor_client(&nats).await?;
    events_stream(&mon).await?;
    // History: an alert that fired and resolved long ago, and one that fires now.
    publish(&mon, &fire("old", 1)).await?;
    publish(&mon, &resolve("old", 1)).await?;
    publish(&mon, &fire("billing", 2)).await?;
    let status = jetstream::new(mon.clone())
        .create_key_value(kv::Config {
            bucket: "health_status".into(),
            ..Default::default()
        })
        .await?;
    status
        .put(
            "billing",
            serde_json::to_vec(&down_state("billing", 2)?)?.into(),
        )
        .await?;
    let sink = Sink::start().await?;
    let cfg = format!(
        "{}[[route]]\nreceivers = [\"ops\"]\ngroup_wait_ms = 0\n",
        webhook("ops", &sink.url("/hook"), "")
    );
    let mut n = Notifier::start(&nats, &cfg, &[]).await?;
    ensure!(
        n.proc.logs().contains("first_start=true"),
        "{}",
        n.proc.logs()
    );
    sink.wait_distinct(1, WITHIN).await?;
    // What is published from now on is delivered.
    publish(&mon, &fire("auth", 3)).await?;
    sink.wait_distinct(2, WITHIN).await?;
    let c = sink.counts();
    ensure!(
        c.len() == 2
            && c.contains_key(&("billing:SERVICE_DOWN:2".into(), "firing".into()))
            && c.contains_key(&("auth:SERVICE_DOWN:3".into(), "firing".into())),
        "{c:?}"
    );

    // A clean stop, events while it is away, a restart: they arrive; nothing twice.
    n.proc.signal(Signal::SIGTERM)?;
    let exit = n.proc.wait_exit(WITHIN).await?;
    ensure!(exit.success(), "{exit:?}");
    publish(&mon, &resolve("auth", 3)).await?;
    publish(&mon, &resolve("billing", 2)).await?;
    n.restart(&nats).await?;
    ensure!(
        n.proc.logs().contains("first_start=false"),
        "{}",
        n.proc.logs()
    );
    sink.wait_distinct(4, WITHIN).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let c = sink.counts();
    ensure!(c.len() == 4 && c.values().all(|&v| v == 1), "{c:?}");

    // A changed --ack-wait-s is applied to the existing durable.
    n.proc.kill();
    n.restart_with(&nats, &["--ack-wait-s", "45"]).await?;
    let events = jetstream::new(mon.clone())
        .get_stream("HEALTH_EVENTS")
        .await?;
    let mut durable: async_nats::jetstream::consumer::PullConsumer = events
        .get_consumer("vitals-notifier")
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let ack_wait = durable.info().await?.config.ack_wait;
    ensure!(ack_wait == Duration::from_secs(45), "{ack_wait:?}");
    Ok(())
}
