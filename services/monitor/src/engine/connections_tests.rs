use vitals_protocol::conn::{ADVISORY_CONNECT, ADVISORY_DISCONNECT};
use vitals_protocol::{AdvisoryClient, AdvisoryServer, AlertName, AlertState, MetricSample};

use super::*;
use crate::engine::EngineConfig;

fn engine() -> Engine {
    Engine::new(EngineConfig::default(), 0)
}

fn sample(service: &str, instance: &str, seq: u64) -> MetricSample {
    let raw = format!(
        r#"{{"service":"{service}","instance":"{instance}","seq":{seq},"ts_ms":1,
        "cpu_pct":10,"mem_pct":10,"latency_ms":5,"error_rate":0,"health_url":"http://127.0.0.1:3001/health"}}"#
    );
    vitals_protocol::parse_sample(service, raw.as_bytes()).unwrap()
}

fn feed(e: &mut Engine, s: &MetricSample, now: u64) -> Vec<Event> {
    let mut out = Vec::new();
    e.on_sample(s, now, &mut out).unwrap();
    out
}

/// A service `name` HEALTHY with instance `instance`, at 1 s.
fn healthy(e: &mut Engine, name: &str, instance: &str) {
    for seq in 1..=3 {
        feed(e, &sample(name, instance, seq), seq * 300);
    }
}

struct Adv {
    server: &'static str,
    cluster: Option<&'static str>,
    cid: u64,
    name: String,
    user: &'static str,
}

fn adv(cid: u64, name: &str) -> Adv {
    Adv {
        server: "S1",
        cluster: None,
        cid,
        name: name.to_owned(),
        user: "sim-billing",
    }
}

impl Adv {
    fn build(&self, kind: &str, reason: Option<&str>) -> ConnAdvisory {
        ConnAdvisory {
            kind: kind.to_owned(),
            server: AdvisoryServer {
                id: self.server.to_owned(),
                name: self.server.to_owned(),
                cluster: self.cluster.map(str::to_owned),
            },
            client: AdvisoryClient {
                id: self.cid,
                name: Some(self.name.clone()),
                user: Some(self.user.to_owned()),
                acc: Some("VITALS".to_owned()),
            },
            reason: reason.map(str::to_owned),
        }
    }

    fn connect(&self, e: &mut Engine, now: u64) -> ConnOutcome {
        e.on_conn_advisory(&self.build(ADVISORY_CONNECT, None), now, &mut Vec::new())
    }

    fn disconnect(&self, e: &mut Engine, reason: &str, now: u64) -> (ConnOutcome, Vec<Event>) {
        let mut out = Vec::new();
        let o = e.on_conn_advisory(
            &self.build(ADVISORY_DISCONNECT, Some(reason)),
            now,
            &mut out,
        );
        (o, out)
    }
}

fn down_reasons(events: &[Event]) -> Vec<(String, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Status(c) if c.status == Status::Down => {
                Some((c.service.to_string(), c.reasons.join("; ")))
            }
            _ => None,
        })
        .collect()
}

fn fired_down(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| {
            matches!(e, Event::Alert(a) if a.alert == AlertName::ServiceDown && a.state == AlertState::Firing)
        })
        .count()
}

const BILLING: &str = "vitals:simulator:billing:billing-1";

#[test]
fn a_closed_connection_is_down_at_once() {
    let mut e = engine();
    healthy(&mut e, "billing", "billing-1");
    let c = adv(7, BILLING);
    assert_eq!(c.connect(&mut e, 950), ConnOutcome::Connected);
    let (o, events) = c.disconnect(&mut e, "Client Closed", 1_000);
    assert_eq!(o, ConnOutcome::Down);
    assert_eq!(
        down_reasons(&events),
        [(
            "billing".to_owned(),
            "connection lost (Client Closed)".to_owned()
        )]
    );
    assert_eq!(fired_down(&events), 1);
    assert_eq!(e.status_of("billing"), Some(Status::Down));
    // A sample that was on its way when the process died does not bring it back.
    feed(&mut e, &sample("billing", "billing-1", 4), 1_001);
    assert_eq!(e.status_of("billing"), Some(Status::Down));
}

#[test]
fn a_disconnect_never_seen_connecting_counts_too() {
    // The monitor (re)started after the source connected: the name alone maps it.
    let mut e = engine();
    healthy(&mut e, "billing", "billing-1");
    let (o, _) = adv(7, BILLING).disconnect(&mut e, "Client Closed", 1_000);
    assert_eq!(o, ConnOutcome::Down);
}

#[test]
fn a_graceful_stop_keeps_its_reason() {
    let mut e = engine();
    healthy(&mut e, "billing", "billing-1");
    let mut last = sample("billing", "billing-1", 4);
    last.stopping = true;
    feed(&mut e, &last, 1_000);
    let (o, events) = adv(7, BILLING).disconnect(&mut e, "Client Closed", 1_001);
    assert_eq!(o, ConnOutcome::AlreadyDown);
    assert!(events.is_empty());
}

#[test]
fn other_reasons_are_left_to_the_timeout() {
    for reason in [
        "Server Shutdown",
        "Stale Connection",
        "Slow Consumer (Pending Bytes)",
        "",
    ] {
        let mut e = engine();
        healthy(&mut e, "billing", "billing-1");
        let (o, events) = adv(7, BILLING).disconnect(&mut e, reason, 1_000);
        assert_eq!(o, ConnOutcome::OtherReason, "{reason:?}");
        assert!(events.is_empty());
        assert_eq!(e.status_of("billing"), Some(Status::Healthy));
    }
}

#[test]
fn a_live_replica_keeps_the_service_up_until_it_goes_too() {
    let mut e = engine();
    healthy(&mut e, "billing", "billing-1");
    feed(&mut e, &sample("billing", "billing-2", 1), 950);
    let (o, events) = adv(7, BILLING).disconnect(&mut e, "Client Closed", 1_000);
    assert_eq!(o, ConnOutcome::Replica);
    assert!(events.is_empty());
    // The closed instance does not count as alive for the other's loss.
    let second = adv(8, "vitals:simulator:billing:billing-2");
    let (o, events) = second.disconnect(&mut e, "Client Closed", 1_100);
    assert_eq!(o, ConnOutcome::Down);
    assert_eq!(fired_down(&events), 1);
}

#[test]
fn a_silent_replica_does_not_count_as_alive() {
    let mut e = engine();
    feed(&mut e, &sample("billing", "billing-old", 1), 0);
    for seq in 1..=3 {
        feed(
            &mut e,
            &sample("billing", "billing-1", seq),
            4_000 + seq * 300,
        );
    }
    let (o, _) = adv(7, BILLING).disconnect(&mut e, "Client Closed", 5_000);
    assert_eq!(o, ConnOutcome::Down);
}

#[test]
fn in_a_cluster_a_reconnect_within_the_grace_is_no_loss() {
    let mut e = engine();
    healthy(&mut e, "billing", "billing-1");
    let mut on_a = adv(7, BILLING);
    on_a.cluster = Some("vitals");
    let (o, events) = on_a.disconnect(&mut e, "Client Closed", 1_000);
    assert_eq!(o, ConnOutcome::Pending);
    assert!(events.is_empty());
    let mut on_b = adv(3, BILLING);
    on_b.server = "S2";
    on_b.cluster = Some("vitals");
    assert_eq!(on_b.connect(&mut e, 1_040), ConnOutcome::Reconnected);
    let mut out = Vec::new();
    assert!(e.judge_pending_losses(2_000, &mut out).is_empty());
    assert!(out.is_empty());
    assert_eq!(e.status_of("billing"), Some(Status::Healthy));
}

#[test]
fn in_a_cluster_no_reconnect_within_the_grace_is_down() {
    let mut e = engine();
    healthy(&mut e, "billing", "billing-1");
    let mut on_a = adv(7, BILLING);
    on_a.cluster = Some("vitals");
    assert_eq!(
        on_a.disconnect(&mut e, "Client Closed", 1_000).0,
        ConnOutcome::Pending
    );
    let mut out = Vec::new();
    assert!(
        e.judge_pending_losses(1_499, &mut out).is_empty(),
        "not due yet"
    );
    assert_eq!(e.judge_pending_losses(1_500, &mut out), [ConnOutcome::Down]);
    assert_eq!(fired_down(&out), 1);
}

#[test]
fn a_reset_waits_for_a_reconnect_even_on_one_server() {
    let mut e = engine();
    healthy(&mut e, "billing", "billing-1");
    let (o, _) = adv(7, BILLING).disconnect(&mut e, "Read Error", 1_000);
    assert_eq!(o, ConnOutcome::Pending);
}

#[test]
fn the_old_connection_of_a_reconnected_instance_is_superseded() {
    // A frozen server comes back: the client already reconnected, then the old socket's
    // close is processed.
    let mut e = engine();
    healthy(&mut e, "billing", "billing-1");
    let old = adv(7, BILLING);
    old.connect(&mut e, 900);
    adv(12, BILLING).connect(&mut e, 950);
    let (o, events) = old.disconnect(&mut e, "Client Closed", 1_000);
    assert_eq!(o, ConnOutcome::Superseded);
    assert!(events.is_empty());
}

#[test]
fn nothing_is_judged_while_or_just_after_the_monitor_lost_nats() {
    let mut e = engine();
    healthy(&mut e, "billing", "billing-1");
    e.on_disconnected();
    assert_eq!(
        adv(7, BILLING).disconnect(&mut e, "Client Closed", 1_000).0,
        ConnOutcome::NotJudging
    );
    e.on_reconnected(2_000);
    assert_eq!(
        adv(8, BILLING).disconnect(&mut e, "Client Closed", 2_500).0,
        ConnOutcome::NotJudging
    );
    e.on_feed_stalled();
    assert_eq!(
        adv(9, BILLING).disconnect(&mut e, "Client Closed", 9_000).0,
        ConnOutcome::NotJudging
    );
    e.on_feed_resumed(9_000);
    assert_eq!(e.status_of("billing"), Some(Status::Healthy));
    // After the grace (the heartbeat timeout), a loss counts again.
    feed(&mut e, &sample("billing", "billing-1", 10), 12_100);
    assert_eq!(
        adv(10, BILLING)
            .disconnect(&mut e, "Client Closed", 12_200)
            .0,
        ConnOutcome::Down
    );
}

#[test]
fn pending_losses_are_dropped_if_the_monitor_lost_nats_meanwhile() {
    let mut e = engine();
    healthy(&mut e, "billing", "billing-1");
    let mut on_a = adv(7, BILLING);
    on_a.cluster = Some("vitals");
    on_a.disconnect(&mut e, "Client Closed", 1_000);
    e.on_disconnected();
    let mut out = Vec::new();
    assert_eq!(
        e.judge_pending_losses(1_600, &mut out),
        [ConnOutcome::NotJudging]
    );
    assert!(out.is_empty());
}

#[test]
fn unmapped_prober_anonymous_and_unknown_connections_change_nothing() {
    let mut e = engine();
    healthy(&mut e, "billing", "billing-1");
    let cases = [
        (adv(1, "simulator billing"), ConnOutcome::Unmapped),
        (adv(2, "vitals:prober:*:billing-1"), ConnOutcome::Prober),
        (
            Adv {
                user: "viewer",
                ..adv(3, BILLING)
            },
            ConnOutcome::IgnoredUser,
        ),
        // The right service, another instance (a guess): not the service's.
        (
            adv(4, "vitals:simulator:billing:billing-9"),
            ConnOutcome::Unknown,
        ),
        (adv(5, "vitals:simulator:auth:auth-1"), ConnOutcome::Unknown),
    ];
    for (a, want) in cases {
        let (o, events) = a.disconnect(&mut e, "Client Closed", 1_000);
        assert_eq!(o, want, "{}", a.name);
        assert!(events.is_empty());
    }
    assert_eq!(e.status_of("billing"), Some(Status::Healthy));
}

#[test]
fn a_many_service_connection_takes_down_every_service_of_its_instance() {
    let mut e = engine();
    healthy(&mut e, "a", "proc-1");
    healthy(&mut e, "b", "proc-1");
    healthy(&mut e, "c", "proc-2");
    let (o, events) = adv(7, "vitals:app:*:proc-1").disconnect(&mut e, "Client Closed", 1_000);
    assert_eq!(o, ConnOutcome::Down);
    let mut down: Vec<String> = down_reasons(&events).into_iter().map(|(s, _)| s).collect();
    down.sort();
    assert_eq!(down, ["a", "b"]);
    assert_eq!(e.status_of("c"), Some(Status::Healthy));
}

#[test]
fn a_service_that_never_reported_is_not_judged() {
    let mut e = engine();
    let (o, events) = adv(7, BILLING).disconnect(&mut e, "Client Closed", 1_000);
    assert_eq!(o, ConnOutcome::Unknown);
    assert!(events.is_empty());
}

#[test]
fn the_first_connect_is_no_reconnect() {
    let mut e = engine();
    healthy(&mut e, "billing", "billing-1");
    e.on_reconnected(1_000);
    assert_eq!(
        adv(7, BILLING).disconnect(&mut e, "Client Closed", 1_100).0,
        ConnOutcome::Down
    );
}
