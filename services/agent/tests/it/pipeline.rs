//! The agent feeding the real monitor: its samples are accepted, the service is HEALTHY
//! with `source: "agent"` and its host figures, a stop marks it DOWN at once, and with the
//! repo's nats.conf the `agent` user may publish.

use nix::sys::signal::Signal;
use vitals_testkit::{NatsServer, SOON};

use crate::support::{Agent, Monitor, proc_stat};

const REFUSED: &str = "vitals_monitor_refused_samples_total";

#[tokio::test]
async fn the_monitor_accepts_the_agents_samples() {
    let nats = NatsServer::start().unwrap();
    let monitor = Monitor::start(&nats, &[]).await.unwrap();
    let mut agent = Agent::start(
        &nats.url(),
        &["--service", "real-host", "--interval-ms", "200"],
    )
    .await
    .unwrap();

    let entry = monitor
        .service_where("real-host", "HEALTHY", |s| s["status"] == "HEALTHY")
        .await
        .unwrap();
    assert_eq!(entry["source"], "agent", "{entry}");
    assert!(
        entry["instance"]
            .as_str()
            .unwrap()
            .starts_with("agent-real-host-")
    );
    let host = &entry["host"];
    assert_eq!(
        host["cores"].as_array().map(Vec::len),
        Some(proc_stat().cores),
        "{entry}"
    );
    assert!(host["procs"].as_u64().unwrap() > 0, "{entry}");
    assert!(!host["top"].as_array().unwrap().is_empty(), "{entry}");
    assert!(entry["figures"]["cpu_pct"].is_number(), "{entry}");
    assert_eq!(monitor.counter(REFUSED).await.unwrap(), 0.0);

    agent.proc.signal(Signal::SIGTERM).unwrap();
    let down = monitor
        .service_where("real-host", "DOWN (stopped)", |s| s["status"] == "DOWN")
        .await
        .unwrap();
    assert_eq!(down["reasons"][0], "stopped", "{down}");
    assert_eq!(agent.proc.wait_exit(SOON).await.unwrap().code(), Some(0));
    assert_eq!(monitor.counter(REFUSED).await.unwrap(), 0.0);
}

#[tokio::test]
async fn with_the_repos_nats_conf_the_agent_user_can_publish() {
    let nats = NatsServer::start_with_config(&vitals_testkit::repo_nats_conf().unwrap()).unwrap();
    let monitor = Monitor::start(
        &nats,
        &["--nats-user", "monitor", "--nats-password", "monitor-dev"],
    )
    .await
    .unwrap();
    let _agent = Agent::start(
        &nats.url(),
        &[
            "--service",
            "conf-host",
            "--interval-ms",
            "200",
            "--nats-user",
            "agent",
            "--nats-password",
            "agent-dev",
        ],
    )
    .await
    .unwrap();
    let entry = monitor
        .service_where("conf-host", "HEALTHY", |s| s["status"] == "HEALTHY")
        .await
        .unwrap();
    assert_eq!(entry["source"], "agent", "{entry}");
}
