//! How the process ends: a signal (0), the crash fault (3), a bad configuration (2).

use nix::sys::signal::Signal;
use vitals_protocol::FaultMode;
use vitals_testkit::{ChildProc, NatsServer, SOON};

use crate::support::{Sim, chaos, next_sample, sample_where, subscribe};

#[tokio::test]
async fn sigterm_sends_a_last_stopping_sample_and_exits_0() {
    let nats = NatsServer::start().unwrap();
    let client = nats.client().await.unwrap();
    let mut sub = subscribe(&client, "auth").await;
    let mut sim = Sim::start(&nats.url(), &[]).await;
    let first = next_sample(&mut sub).await;

    sim.proc.signal(Signal::SIGTERM).unwrap();
    let last = sample_where(&mut sub, "stopping", |s| s.stopping).await;
    assert_eq!(last.instance, first.instance);
    let status = sim.proc.wait_exit(SOON).await.unwrap();
    assert_eq!(status.code(), Some(0), "{}", sim.proc.logs());
}

#[tokio::test]
async fn sigint_is_a_graceful_stop_too() {
    let nats = NatsServer::start().unwrap();
    let client = nats.client().await.unwrap();
    let mut sub = subscribe(&client, "auth").await;
    let mut sim = Sim::start(&nats.url(), &[]).await;
    next_sample(&mut sub).await;
    sim.proc.signal(Signal::SIGINT).unwrap();
    sample_where(&mut sub, "stopping", |s| s.stopping).await;
    assert_eq!(sim.proc.wait_exit(SOON).await.unwrap().code(), Some(0));
}

#[tokio::test]
async fn crash_fault_over_nats_exits_3_after_replying() {
    let nats = NatsServer::start().unwrap();
    let client = nats.client().await.unwrap();
    let mut sim = Sim::start(&nats.url(), &[]).await;
    let reply = chaos(&client, "auth", r#"{"mode":"crash"}"#).await;
    assert!(reply.ok, "{reply:?}");
    assert_eq!(reply.mode, FaultMode::Crash);
    let status = sim.proc.wait_exit(SOON).await.unwrap();
    assert_eq!(status.code(), Some(3), "{}", sim.proc.logs());
}

#[tokio::test]
async fn crash_fault_over_http_exits_3_after_replying() {
    let nats = NatsServer::start().unwrap();
    let mut sim = Sim::start(&nats.url(), &[]).await;
    let (code, reply) = sim.post("/faults", r#"{"mode":"crash"}"#).await;
    assert_eq!((code, reply["mode"].as_str()), (200, Some("crash")));
    assert_eq!(sim.proc.wait_exit(SOON).await.unwrap().code(), Some(3));
}

#[tokio::test]
async fn bad_configuration_exits_2() {
    let cases: &[&[&str]] = &[
        &["--service", "Auth"],
        &["--service", "a.b"],
        &["--service", "auth", "--interval-ms", "0"],
        &["--service", "auth", "--fault", "meltdown"],
        &["--service", "auth", "--public-url", "javascript:alert(1)"],
        &["--count", "3", "--prefix", "UPPER-"],
        &[],
    ];
    for args in cases {
        let mut p = ChildProc::spawn("simulator", args, &[]).unwrap();
        let status = p.wait_exit(SOON).await.unwrap();
        assert_eq!(status.code(), Some(2), "{args:?}: {}", p.logs());
    }
}
