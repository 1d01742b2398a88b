//! How the agent starts and stops: the stopping sample on SIGTERM/SIGINT (exit 0), exit 2
//! on a refused configuration, its own /healthz and /metrics, and an outage of NATS.

use nix::sys::signal::Signal;
use vitals_testkit::{ChildProc, NatsServer, SOON, metric_sum, wait_until};

use crate::support::{Agent, next_sample, sample_where, subscribe};

async fn stops_with_a_stopping_sample(signal: Signal) {
    let nats = NatsServer::start().expect("setup");
    let client = nats.client().await.expect("setup");
    let mut sub = subscribe(&client, "stop-host").await;
    let mut agent = Agent::start(
        &nats.url(),
        &["--service", "stop-host", "--interval-ms", "200"],
    )
    .await
    .expect("setup");
    let first = next_sample(&mut sub).await;
    assert_eq!(first.seq, 1, "a drawn instance starts at seq 1");
    assert!(
        first.instance.starts_with("agent-stop-host-"),
        "{}",
        first.instance
    );
    assert!(!first.stopping);

    agent.proc.signal(signal).expect("signal");
    let last = sample_where(&mut sub, "stopping", |s| s.stopping).await;
    assert_eq!(last.instance, first.instance);
    assert!(last.host.is_some(), "the last sample has figures too");
    let status = agent.proc.wait_exit(SOON).await.expect("exit");
    assert_eq!(status.code(), Some(0), "{}", agent.proc.logs());
}

#[tokio::test]
async fn sigterm_sends_a_stopping_sample_and_exits_0() {
    stops_with_a_stopping_sample(Signal::SIGTERM).await;
}

#[tokio::test]
async fn sigint_is_a_graceful_stop_too() {
    stops_with_a_stopping_sample(Signal::SIGINT).await;
}

#[tokio::test]
async fn a_refused_configuration_exits_2_with_the_reason() {
    // (args, env, what the output must say)
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case<'_>] = &[
        (&["--service", "Web.1"], &[], "^[a-z0-9][a-z0-9_-]{0,62}$"),
        (&["--service", &"a".repeat(64)], &[], "at most 63"),
        (&[], &[("AGENT_SERVICE", "no spaces")], "may only contain"),
        (
            &["--service", "a", "--interval-ms", "99"],
            &[],
            "--interval-ms",
        ),
        (
            &["--service", "a", "--instance", "has space"],
            &[],
            "--instance",
        ),
    ];
    for (args, env, says) in cases {
        let mut p = ChildProc::spawn("agent", args, env).unwrap();
        let status = p.wait_exit(SOON).await.unwrap();
        assert_eq!(status.code(), Some(2), "{args:?} {env:?}: {}", p.logs());
        assert!(
            p.logs().contains(says),
            "{args:?}: expected {says:?} in {}",
            p.logs()
        );
    }
}

#[tokio::test]
async fn healthz_and_metrics_count_what_was_sent() {
    let nats = NatsServer::start().unwrap();
    let client = nats.client().await.unwrap();
    let mut sub = subscribe(&client, "counted-host").await;
    let agent = Agent::start(
        &nats.url(),
        &["--service", "counted-host", "--interval-ms", "200"],
    )
    .await
    .unwrap();
    let first = next_sample(&mut sub).await;
    next_sample(&mut sub).await;

    let health = agent.get_json("/healthz").await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["service"], "counted-host");
    assert_eq!(health["instance"], first.instance.as_str());
    assert_eq!(health["nats_connected"], true);
    assert!(health["samples_sent"].as_u64().unwrap() >= 2, "{health}");

    let text = agent.metrics_text().await.unwrap();
    assert!(
        metric_sum(&text, "agent_samples_sent_total") >= 2.0,
        "{text}"
    );
    assert_eq!(
        metric_sum(&text, "agent_publish_failures_total"),
        0.0,
        "{text}"
    );
    assert!(text.contains("agent_collect_duration_seconds "), "{text}");
    assert!(text.contains("agent_nats_connected 1"), "{text}");
}

#[tokio::test]
async fn an_outage_of_nats_is_counted_and_publishing_resumes() {
    let mut nats = NatsServer::start().unwrap();
    let agent = Agent::start(
        &nats.url(),
        &["--service", "outage-host", "--interval-ms", "200"],
    )
    .await
    .unwrap();
    nats.kill();
    let unsent = wait_until(SOON, || async {
        let text = agent.metrics_text().await.ok()?;
        (metric_sum(&text, "agent_samples_unsent_total") >= 1.0).then_some(())
    })
    .await;
    assert!(
        unsent.is_some(),
        "no unsent sample counted during the outage"
    );

    nats.restart().unwrap();
    let client = nats.client().await.unwrap();
    let mut sub = subscribe(&client, "outage-host").await;
    let back = next_sample(&mut sub).await;
    let after = next_sample(&mut sub).await;
    assert_eq!(after.seq, back.seq + 1);
    assert!(agent.proc.logs().contains("NATS not connected"));
}
