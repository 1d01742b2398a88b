//! Severity, inhibition, silences and acknowledgements in the engine.

use std::collections::BTreeMap;

use vitals_protocol::SilenceMatchers;

use super::*;

fn name(s: &str) -> ServiceName {
    ServiceName::parse(s).unwrap()
}

fn with_deps(pairs: &[(&str, &[&str])]) -> Engine {
    let map: BTreeMap<ServiceName, Vec<ServiceName>> = pairs
        .iter()
        .map(|(s, d)| (name(s), d.iter().map(|d| name(d)).collect()))
        .collect();
    let cfg = EngineConfig {
        depends_on: Arc::new(Dependencies::new(map).unwrap()),
        grace_ms: 0,
        ..EngineConfig::default()
    };
    Engine::new(cfg, 0)
}

/// Sends samples; each service keeps its own seq.
struct Feeder {
    seq: HashMap<String, u64>,
}

impl Feeder {
    fn new() -> Self {
        Self {
            seq: HashMap::new(),
        }
    }

    fn send(
        &mut self,
        e: &mut Engine,
        service: &str,
        now: u64,
        f: impl FnOnce(&mut MetricSample),
    ) -> Vec<Event> {
        let seq = self.seq.entry(service.to_owned()).or_insert(0);
        *seq += 1;
        let mut s = MetricSample {
            service: name(service),
            instance: format!("{service}-1"),
            seq: *seq,
            ts_ms: now,
            cpu_pct: Some(20.0),
            mem_pct: Some(40.0),
            latency_ms: 30.0,
            error_rate: 0.0,
            health_url: String::new(),
            stopping: false,
            source: Default::default(),
            probe: None,
            host: None,
            interval_ms: None,
        };
        f(&mut s);
        let mut out = Vec::new();
        e.on_sample(&s, now, &mut out).unwrap();
        out
    }

    fn healthy(&mut self, e: &mut Engine, service: &str, now: u64) -> Vec<Event> {
        self.send(e, service, now, |_| {})
    }

    fn stop(&mut self, e: &mut Engine, service: &str, now: u64) -> Vec<Event> {
        self.send(e, service, now, |s| s.stopping = true)
    }

    /// Two good samples: a stopped service recovers (`recover_samples` = 2).
    fn recover(&mut self, e: &mut Engine, service: &str, now: u64) -> Vec<Event> {
        let mut out = self.healthy(e, service, now);
        out.extend(self.healthy(e, service, now + 1));
        out
    }
}

fn alert_events(events: &[Event]) -> Vec<&AlertEvent> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Alert(a) => Some(a),
            _ => None,
        })
        .collect()
}

/// (service, state, update, inhibited_by) of each alert event.
fn summary(events: &[Event]) -> Vec<(String, AlertState, Option<AlertUpdate>, Option<String>)> {
    alert_events(events)
        .into_iter()
        .map(|a| {
            (
                a.service.to_string(),
                a.state,
                a.update,
                a.marks.inhibited_by.as_ref().map(|n| n.to_string()),
            )
        })
        .collect()
}

fn fired(
    service: &str,
    by: Option<&str>,
) -> (String, AlertState, Option<AlertUpdate>, Option<String>) {
    (service.into(), AlertState::Firing, None, by.map(Into::into))
}

fn resolved(
    service: &str,
    by: Option<&str>,
) -> (String, AlertState, Option<AlertUpdate>, Option<String>) {
    (
        service.into(),
        AlertState::Resolved,
        None,
        by.map(Into::into),
    )
}

fn uninhibited(service: &str) -> (String, AlertState, Option<AlertUpdate>, Option<String>) {
    (
        service.into(),
        AlertState::Firing,
        Some(AlertUpdate::Uninhibited),
        None,
    )
}

/// The inhibited_by its stored state holds for `service`'s SERVICE_DOWN.
fn stored_root(e: &mut Engine, service: &str) -> Option<String> {
    e.snapshot(0)
        .into_iter()
        .find(|s| s.service.as_str() == service)
        .and_then(|s| {
            s.alerts
                .into_iter()
                .find(|a| a.alert == AlertName::ServiceDown)
        })
        .and_then(|a| a.marks.inhibited_by.map(|n| n.to_string()))
}

fn start(e: &mut Engine, f: &mut Feeder, names: &[&str]) {
    for n in names {
        f.healthy(e, n, 0);
    }
}

#[test]
fn every_alert_carries_its_severity() {
    let mut e = engine_plain();
    let mut f = Feeder::new();
    let mut events = Vec::new();
    for i in 0..3 {
        events.extend(f.send(&mut e, "auth", i, |s| s.cpu_pct = Some(99.0)));
    }
    events.extend(f.stop(&mut e, "auth", 10));
    let got: Vec<(AlertName, AlertState, Option<&str>)> = alert_events(&events)
        .into_iter()
        .map(|a| (a.alert, a.state, a.marks.severity.as_deref()))
        .collect();
    assert_eq!(
        got,
        vec![
            (AlertName::HighCpu, AlertState::Firing, Some("warning")),
            (AlertName::HighCpu, AlertState::Resolved, Some("warning")),
            (AlertName::ServiceDown, AlertState::Firing, Some("critical")),
        ]
    );
}

fn engine_plain() -> Engine {
    with_deps(&[])
}

#[test]
fn chain_with_the_root_recovering_first() {
    // a <- b <- c
    let mut e = with_deps(&[("b", &["a"]), ("c", &["b"])]);
    let mut f = Feeder::new();
    start(&mut e, &mut f, &["a", "b", "c"]);
    let mut ev = f.stop(&mut e, "a", 100);
    ev.extend(f.stop(&mut e, "b", 200));
    ev.extend(f.stop(&mut e, "c", 300));
    assert_eq!(
        summary(&ev),
        vec![
            fired("a", None),
            fired("b", Some("a")),
            fired("c", Some("a"))
        ]
    );
    // a recovers: b has nothing DOWN above it now; c still has b.
    let ev = f.recover(&mut e, "a", 400);
    assert_eq!(summary(&ev), vec![resolved("a", None), uninhibited("b")]);
    assert_eq!(
        stored_root(&mut e, "c").as_deref(),
        Some("b"),
        "re-rooted, not announced"
    );
    assert_eq!(stored_root(&mut e, "b"), None);
    // b recovers: c is notifiable now.
    let ev = f.recover(&mut e, "b", 500);
    assert_eq!(summary(&ev), vec![resolved("b", None), uninhibited("c")]);
    let ev = f.recover(&mut e, "c", 600);
    assert_eq!(summary(&ev), vec![resolved("c", None)]);
}

#[test]
fn chain_with_the_root_recovering_last() {
    let mut e = with_deps(&[("b", &["a"]), ("c", &["b"])]);
    let mut f = Feeder::new();
    start(&mut e, &mut f, &["a", "b", "c"]);
    f.stop(&mut e, "a", 100);
    f.stop(&mut e, "b", 200);
    f.stop(&mut e, "c", 300);
    // Dependants recover first: their resolves carry the marks they had.
    let ev = f.recover(&mut e, "c", 400);
    assert_eq!(summary(&ev), vec![resolved("c", Some("a"))]);
    let ev = f.recover(&mut e, "b", 500);
    assert_eq!(summary(&ev), vec![resolved("b", Some("a"))]);
    let ev = f.recover(&mut e, "a", 600);
    assert_eq!(
        summary(&ev),
        vec![resolved("a", None)],
        "nothing left to uninhibit"
    );
}

#[test]
fn diamond() {
    // d depends on b and c, both depend on a.
    let mut e = with_deps(&[("d", &["b", "c"]), ("b", &["a"]), ("c", &["a"])]);
    let mut f = Feeder::new();
    start(&mut e, &mut f, &["a", "b", "c", "d"]);
    let mut ev = f.stop(&mut e, "a", 100);
    for s in ["b", "c", "d"] {
        ev.extend(f.stop(&mut e, s, 200));
    }
    assert_eq!(
        summary(&ev),
        vec![
            fired("a", None),
            fired("b", Some("a")),
            fired("c", Some("a")),
            fired("d", Some("a"))
        ]
    );
    let ev = f.recover(&mut e, "a", 300);
    assert_eq!(
        summary(&ev),
        vec![resolved("a", None), uninhibited("b"), uninhibited("c")]
    );
    assert_eq!(
        stored_root(&mut e, "d").as_deref(),
        Some("b"),
        "nearest, ties by name"
    );
    let ev = f.recover(&mut e, "b", 400);
    assert_eq!(summary(&ev), vec![resolved("b", None)]);
    assert_eq!(stored_root(&mut e, "d").as_deref(), Some("c"));
    let ev = f.recover(&mut e, "c", 500);
    assert_eq!(summary(&ev), vec![resolved("c", None), uninhibited("d")]);
}

#[test]
fn a_retired_root_uninhibits_its_dependants() {
    let mut e = with_deps(&[("b", &["a"])]);
    let mut f = Feeder::new();
    start(&mut e, &mut f, &["a", "b"]);
    f.stop(&mut e, "a", 100);
    let ev = f.stop(&mut e, "b", 200);
    assert_eq!(summary(&ev), vec![fired("b", Some("a"))]);
    let mut ev = Vec::new();
    e.retire(&name("a"), "retired by operator".into(), 300, &mut ev)
        .unwrap();
    assert_eq!(summary(&ev), vec![resolved("a", None), uninhibited("b")]);
    assert!(
        ev.iter().any(|x| matches!(x, Event::Stored(s) if s.service.as_str() == "b" && s.alerts[0].marks.inhibited_by.is_none()))
    );
}

#[test]
fn services_going_down_together_are_judged_roots_first() {
    let mut e = with_deps(&[("billing", &["auth"]), ("notifications", &["auth"])]);
    let mut f = Feeder::new();
    // Names chosen so that neither map order nor name order puts auth first by luck alone.
    start(&mut e, &mut f, &["notifications", "billing", "auth"]);
    let mut ev = Vec::new();
    let mut now = 0;
    while now <= 4_000 {
        ev.extend(tick_at(&mut e, now));
        now += 250;
    }
    let mut got = summary(&ev);
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![
            fired("auth", None),
            fired("billing", Some("auth")),
            fired("notifications", Some("auth"))
        ]
    );
}

fn tick_at(e: &mut Engine, now: u64) -> Vec<Event> {
    let mut out = Vec::new();
    e.on_tick(now, &mut out);
    out
}

fn silence(
    id: &str,
    service: &str,
    alert: Option<AlertName>,
    starts_ms: u64,
    ends_ms: u64,
) -> Silence {
    Silence {
        id: id.into(),
        matchers: SilenceMatchers {
            service: service.into(),
            alert,
        },
        starts_ms,
        ends_ms,
        created_by: "ann".into(),
        comment: String::new(),
    }
}

fn updates(events: &[Event]) -> Vec<(String, Option<AlertUpdate>, bool)> {
    alert_events(events)
        .into_iter()
        .map(|a| (a.id.clone(), a.update, a.marks.silenced))
        .collect()
}

#[test]
fn silences_mark_firing_alerts_when_they_start_and_end() {
    let mut e = engine_plain();
    let mut f = Feeder::new();
    start(&mut e, &mut f, &["billing", "auth"]);
    f.stop(&mut e, "billing", 100);
    let id = "billing:SERVICE_DOWN:100".to_owned();
    // Pending: nothing changes until it starts.
    let mut ev = Vec::new();
    e.set_silences(
        vec![silence("s1", "bill*", None, 1_000, 2_000)],
        500,
        &mut ev,
    );
    assert!(ev.is_empty());
    assert!(
        tick_at(&mut e, 750)
            .iter()
            .all(|x| !matches!(x, Event::Alert(_)))
    );
    let ev = tick_at(&mut e, 1_000);
    assert_eq!(
        updates(&ev),
        vec![(id.clone(), Some(AlertUpdate::Silenced), true)]
    );
    assert!(
        ev.iter()
            .any(|x| matches!(x, Event::Stored(s) if s.alerts[0].marks.silenced))
    );
    // A new firing while silenced is marked from the start.
    let ev = f.send(&mut e, "auth", 1_100, |s| s.stopping = true);
    assert_eq!(
        updates(&ev),
        vec![("auth:SERVICE_DOWN:1100".into(), None, false)],
        "auth is not matched"
    );
    assert!(
        tick_at(&mut e, 1_500)
            .iter()
            .all(|x| !matches!(x, Event::Alert(_)))
    );
    let ev = tick_at(&mut e, 2_000);
    assert_eq!(
        updates(&ev),
        vec![(id.clone(), Some(AlertUpdate::Unsilenced), false)]
    );
    assert!(e.silences().is_empty(), "an ended silence is dropped");
    // Created and expired by hand.
    let mut ev = Vec::new();
    e.set_silences(
        vec![silence("s2", "*", Some(AlertName::ServiceDown), 0, 9_000)],
        2_100,
        &mut ev,
    );
    let mut got = updates(&ev);
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![
            (
                "auth:SERVICE_DOWN:1100".into(),
                Some(AlertUpdate::Silenced),
                true
            ),
            (id.clone(), Some(AlertUpdate::Silenced), true)
        ]
    );
    let ev = f.stop(&mut e, "other", 2_200);
    assert!(alert_events(&ev)[0].marks.silenced, "fires silenced");
    let mut ev = Vec::new();
    e.set_silences(Vec::new(), 2_300, &mut ev);
    assert_eq!(updates(&ev).len(), 3);
    assert!(
        updates(&ev)
            .iter()
            .all(|u| u.1 == Some(AlertUpdate::Unsilenced))
    );
}

#[test]
fn an_ack_marks_the_firing_alert_once_and_its_resolve_carries_it() {
    let mut e = engine_plain();
    let mut f = Feeder::new();
    start(&mut e, &mut f, &["billing"]);
    f.stop(&mut e, "billing", 100);
    let id = "billing:SERVICE_DOWN:100";
    let mut ev = Vec::new();
    assert!(e.is_firing(id));
    assert!(e.ack(id, "ann", 200, &mut ev));
    let a = alert_events(&ev)[0];
    assert_eq!(
        (a.update, a.marks.acked_by.as_deref()),
        (Some(AlertUpdate::Acked), Some("ann"))
    );
    assert!(ev.iter().any(
        |x| matches!(x, Event::Stored(s) if s.alerts[0].marks.acked_by.as_deref() == Some("ann"))
    ));
    let mut again = Vec::new();
    assert!(
        e.ack(id, "ann", 300, &mut again),
        "the same ack again is fine"
    );
    assert!(again.is_empty(), "and announces nothing");
    assert!(!e.ack("billing:SERVICE_DOWN:99", "ann", 300, &mut again));
    assert!(!e.ack("nobody:SERVICE_DOWN:100", "ann", 300, &mut again));
    assert!(!e.ack("garbage", "ann", 300, &mut again));
    let ev = f.recover(&mut e, "billing", 400);
    let r = alert_events(&ev)[0];
    assert_eq!(
        (r.state, r.marks.acked_by.as_deref()),
        (AlertState::Resolved, Some("ann"))
    );
    assert!(!e.is_firing(id));
}

#[test]
fn marks_survive_a_restart() {
    let mut e = with_deps(&[("b", &["a"])]);
    let mut f = Feeder::new();
    start(&mut e, &mut f, &["a", "b"]);
    f.stop(&mut e, "a", 100);
    f.stop(&mut e, "b", 200);
    e.ack("b:SERVICE_DOWN:200", "ann", 300, &mut Vec::new());
    let saved = e.snapshot(400);
    let mut e2 = with_deps(&[("b", &["a"])]);
    e2.restore(saved, 500);
    let mut f2 = Feeder::new();
    f2.seq.insert("a".into(), 1_000);
    let ev = f2.recover(&mut e2, "a", 600);
    let u = alert_events(&ev)[1];
    assert_eq!(
        u.update,
        Some(AlertUpdate::Uninhibited),
        "the DOWN set was restored too"
    );
    assert_eq!(u.marks.acked_by.as_deref(), Some("ann"));
}

#[test]
fn an_inhibition_the_rules_no_longer_explain_is_lifted_after_a_restore() {
    let mut e = with_deps(&[("b", &["a"])]);
    let mut f = Feeder::new();
    start(&mut e, &mut f, &["a", "b"]);
    f.stop(&mut e, "a", 100);
    f.stop(&mut e, "b", 200);
    let saved = e.snapshot(300);
    // Restarted with `depends_on` removed from the rules file.
    let mut e2 = with_deps(&[]);
    e2.restore(saved.clone(), 400);
    let mut ev = Vec::new();
    e2.settle_inhibitions(400, &mut ev);
    assert_eq!(summary(&ev), vec![uninhibited("b")]);
    // Restarted with the same rules: nothing to do.
    let mut e3 = with_deps(&[("b", &["a"])]);
    e3.restore(saved, 400);
    let mut ev = Vec::new();
    e3.settle_inhibitions(400, &mut ev);
    assert!(ev.is_empty());
}
