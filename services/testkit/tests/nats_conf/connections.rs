//! The repo's nats.conf for connection events: the server's client connect/disconnect
//! advisories of the VITALS account reach the monitor on vitals.conn.>, and nobody else
//! may read them or forge one.

use anyhow::{Context, Result};
use serde_json::Value;
use vitals_testkit::{NatsServer, SOON, next_within};

use super::{
    AGENT, GATEWAY, MONITOR, OPERATOR, PROBER, SIM_BILLING, SIMULATOR, VIEWER, connect, subscribe,
};

const NOTIFIER: (&str, &str) = ("notifier", "notifier-dev");

#[tokio::test]
async fn only_the_monitor_sees_connections_open_and_close() -> Result<()> {
    let nats = NatsServer::start_with_config(&vitals_testkit::repo_nats_conf()?)?;
    let monitor = connect(&nats, Some(MONITOR)).await?;
    let mut events = subscribe(&monitor, "vitals.conn.>").await?;

    // A simulator's connection, named as the sources name theirs, opens and closes.
    let (user, password) = SIM_BILLING;
    let sim = async_nats::ConnectOptions::new()
        .name("vitals:simulator:billing:billing-1")
        .user_and_password(user.into(), password.into())
        .connect(nats.url())
        .await?;
    let opened = next_within(&mut events, SOON).await?;
    assert_eq!(opened.subject.as_str(), "vitals.conn.connect");
    drop(sim);
    let closed = next_within(&mut events, SOON).await?;
    assert_eq!(closed.subject.as_str(), "vitals.conn.disconnect");
    let advisory: Value = serde_json::from_slice(&closed.payload)?;
    assert_eq!(
        advisory["client"]["name"],
        "vitals:simulator:billing:billing-1"
    );
    assert_eq!(advisory["client"]["user"], "sim-billing");
    assert_eq!(advisory["client"]["acc"], "VITALS");
    assert_eq!(advisory["reason"], "Client Closed");
    monitor.clean()?;

    // Nobody else reads them, and nobody (the monitor included) can forge one.
    for role in [
        None,
        Some(VIEWER),
        Some(GATEWAY),
        Some(OPERATOR),
        Some(PROBER),
        Some(AGENT),
        Some(SIMULATOR),
        Some(SIM_BILLING),
        Some(NOTIFIER),
    ] {
        let c = connect(&nats, role).await?;
        let _denied = c.client.subscribe("vitals.conn.>").await?;
        c.sync().await?;
        c.violation("subscription", "vitals.conn.>")
            .await
            .with_context(|| format!("{role:?} may read connection events"))?;
        c.publish_denied("vitals.conn.disconnect").await?;
    }
    monitor.publish_denied("vitals.conn.disconnect").await?;
    // The system account itself has no users.
    let sys = async_nats::ConnectOptions::new()
        .user_and_password("sys".into(), "sys".into())
        .connect(nats.url())
        .await;
    assert!(sys.is_err(), "a system-account login worked");
    Ok(())
}
