//! NATS going away never blocks or kills the simulator.

use vitals_testkit::{NatsServer, SOON, wait_until};

use crate::support::{Sim, next_sample, subscribe};

#[tokio::test]
async fn starts_before_nats_and_publishes_once_it_is_up() {
    let mut nats = NatsServer::start().unwrap();
    let url = nats.url();
    nats.kill();
    let sim = Sim::start(&url, &[]).await;

    // Alive and serving while NATS is down; samples are counted, not queued.
    let unsent = wait_until(SOON, || async {
        let (_, h) = sim.get("/healthz").await;
        (h["samples_unsent"].as_u64() > Some(0)).then_some(h)
    })
    .await
    .expect("samples counted as unsent while NATS is down");
    assert_eq!(unsent["nats_connected"], false);
    assert_eq!(sim.get("/health").await.0, 200);

    nats.restart().unwrap();
    let client = nats.client().await.unwrap();
    let mut sub = subscribe(&client, "auth").await;
    let s = next_sample(&mut sub).await;
    assert!(s.seq > 0, "the unsent samples used their seqs: {s:?}");
    assert_eq!(sim.healthz_field("nats_connected").await, true);
}

#[tokio::test]
async fn resumes_after_nats_restarts_mid_run() {
    let mut nats = NatsServer::start().unwrap();
    let client = nats.client().await.unwrap();
    let mut sub = subscribe(&client, "auth").await;
    let sim = Sim::start(&nats.url(), &[]).await;
    let before = next_sample(&mut sub).await;

    nats.kill();
    wait_until(SOON, || async {
        (sim.healthz_field("nats_connected").await == false).then_some(())
    })
    .await
    .expect("the simulator notices the outage");
    nats.restart().unwrap();

    let client = nats.client().await.unwrap();
    let mut sub = subscribe(&client, "auth").await;
    let after = next_sample(&mut sub).await;
    assert_eq!(after.instance, before.instance, "same process");
    assert!(after.seq > before.seq);
    // Chaos is served again too: the subscription came back with the connection.
    let reply = crate::support::chaos(&client, "auth", r#"{"mode":"clear"}"#).await;
    assert!(reply.ok);
}
