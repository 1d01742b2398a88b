use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

const T: u64 = 3_000; // default heartbeat timeout

fn engine() -> Engine {
    Engine::new(EngineConfig::default(), 0)
}

fn sample(service: &str, seq: u64) -> MetricSample {
    MetricSample {
        service: ServiceName::parse(service).unwrap(),
        instance: format!("{service}-1"),
        seq,
        ts_ms: 0,
        cpu_pct: Some(20.0),
        mem_pct: Some(40.0),
        latency_ms: 30.0,
        error_rate: 0.0,
        health_url: "http://127.0.0.1:3001/health".into(),
        stopping: false,
        source: Default::default(),
        probe: None,
        host: None,
        interval_ms: None,
    }
}

/// Feeds `s` at `now` and returns the events.
fn feed(e: &mut Engine, s: &MetricSample, now: u64) -> Vec<Event> {
    let mut out = Vec::new();
    e.on_sample(s, now, &mut out).unwrap();
    out
}

fn tick(e: &mut Engine, now: u64) -> Vec<Event> {
    let mut out = Vec::new();
    e.on_tick(now, &mut out);
    out
}

fn statuses(events: &[Event]) -> Vec<(Status, Status)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Status(c) => Some((c.previous, c.status)),
            _ => None,
        })
        .collect()
}

fn alerts(events: &[Event]) -> Vec<(AlertName, AlertState)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Alert(a) => Some((a.alert, a.state)),
            _ => None,
        })
        .collect()
}

/// Healthy services sending every whole second in [from, until), ticking every 250 ms.
fn run_healthy(e: &mut Engine, names: &[&str], from_seq: u64, from: u64, until: u64) -> Vec<Event> {
    let mut out = Vec::new();
    let mut seq = from_seq;
    let mut now = from;
    while now < until {
        if now % 1000 == 0 {
            for name in names {
                out.extend(feed(e, &sample(name, seq), now));
            }
            seq += 1;
        }
        out.extend(tick(e, now));
        now += 250;
    }
    out
}

/// Ticks every 250 ms in (from, to], then once at `to` exactly.
fn tick_until(e: &mut Engine, from: u64, to: u64) -> Vec<Event> {
    let mut out = Vec::new();
    let mut now = from + 250;
    while now < to {
        out.extend(tick(e, now));
        now += 250;
    }
    out.extend(tick(e, to));
    out
}

#[test]
fn first_sample_makes_a_service_healthy() {
    let mut e = engine();
    let ev = feed(&mut e, &sample("auth", 0), 100);
    assert_eq!(statuses(&ev), vec![(Status::Unknown, Status::Healthy)]);
    assert!(matches!(&ev[0], Event::Status(c) if c.reasons == ["first sample"]));
    assert!(
        ev.iter()
            .any(|e| matches!(e, Event::Stored(s) if s.status == Status::Healthy))
    );
    // The next healthy sample changes nothing worth publishing.
    let ev = feed(&mut e, &sample("auth", 1), 1100);
    assert!(statuses(&ev).is_empty() && alerts(&ev).is_empty());
    assert!(
        !ev.iter().any(|e| matches!(e, Event::Stored(_))),
        "KV is written on change only"
    );
}

#[test]
fn threshold_alert_needs_its_for_count_and_clears_below_the_band() {
    let mut e = engine();
    feed(&mut e, &sample("auth", 0), 0);
    let hot = |seq, cpu| MetricSample {
        cpu_pct: Some(cpu),
        ..sample("auth", seq)
    };
    assert!(alerts(&feed(&mut e, &hot(1, 90.0), 1000)).is_empty());
    assert!(alerts(&feed(&mut e, &hot(2, 90.0), 2000)).is_empty());
    let ev = feed(&mut e, &hot(3, 90.0), 3000);
    assert_eq!(alerts(&ev), vec![(AlertName::HighCpu, AlertState::Firing)]);
    assert_eq!(statuses(&ev), vec![(Status::Healthy, Status::Degraded)]);
    let Some(Event::Status(change)) = ev.iter().find(|e| matches!(e, Event::Status(_))) else {
        unreachable!()
    };
    assert!(
        change.reasons[0].starts_with("HIGH_CPU: cpu_pct 90"),
        "{:?}",
        change.reasons
    );
    // In the band (75..85) it stays firing, however long.
    for seq in 4..20 {
        assert!(alerts(&feed(&mut e, &hot(seq, 80.0), seq * 1000)).is_empty());
    }
    assert!(alerts(&feed(&mut e, &hot(20, 50.0), 20_000)).is_empty());
    assert!(alerts(&feed(&mut e, &hot(21, 50.0), 21_000)).is_empty());
    let ev = feed(&mut e, &hot(22, 50.0), 22_000);
    assert_eq!(
        alerts(&ev),
        vec![(AlertName::HighCpu, AlertState::Resolved)]
    );
    assert_eq!(statuses(&ev), vec![(Status::Degraded, Status::Healthy)]);
}

#[test]
fn every_metric_has_its_alert() {
    type Mutate = fn(&mut MetricSample);
    let cases: [(Mutate, AlertName); 4] = [
        (|s| s.cpu_pct = Some(99.0), AlertName::HighCpu),
        (|s| s.mem_pct = Some(95.0), AlertName::HighMemory),
        (|s| s.latency_ms = 900.0, AlertName::HighLatency),
        (|s| s.error_rate = 0.3, AlertName::HighErrorRate),
    ];
    for (bad, alert) in cases {
        let mut e = engine();
        let mut fired = Vec::new();
        for seq in 0..5 {
            let mut s = sample("svc", seq);
            bad(&mut s);
            fired.extend(alerts(&feed(&mut e, &s, seq * 1000)));
        }
        assert_eq!(fired, vec![(alert, AlertState::Firing)]);
    }
}

#[test]
fn down_after_the_timeout_and_only_then() {
    let mut e = engine();
    run_healthy(&mut e, &["auth"], 0, 0, 10_000); // last sample at 9000
    let ev = tick_until(&mut e, 9_750, 9_000 + T);
    assert!(
        statuses(&ev).is_empty(),
        "exactly the timeout is not yet silence"
    );
    let ev = tick(&mut e, 9_000 + T + 1);
    assert_eq!(statuses(&ev), vec![(Status::Healthy, Status::Down)]);
    assert_eq!(
        alerts(&ev),
        vec![(AlertName::ServiceDown, AlertState::Firing)]
    );
    let Some(Event::Status(c)) = ev.iter().find(|e| matches!(e, Event::Status(_))) else {
        unreachable!()
    };
    assert!(
        c.reasons[0].starts_with("no sample for 3.0"),
        "{:?}",
        c.reasons
    );
    // Staying silent changes nothing more.
    let mut later = Vec::new();
    for now in (12_250..60_000).step_by(250) {
        later.extend(tick(&mut e, now));
    }
    assert!(statuses(&later).is_empty() && alerts(&later).is_empty());
}

#[test]
fn stopping_sample_is_down_at_once_with_reason_stopped() {
    let mut e = engine();
    run_healthy(&mut e, &["auth"], 0, 0, 3_000);
    let ev = feed(
        &mut e,
        &MetricSample {
            stopping: true,
            ..sample("auth", 3)
        },
        3_100,
    );
    assert_eq!(statuses(&ev), vec![(Status::Healthy, Status::Down)]);
    assert!(matches!(&ev[..], [Event::Alert(_), Event::Status(c), ..] if c.reasons == ["stopped"]));
    // The timeout later adds nothing.
    let mut later = Vec::new();
    for now in (3_250..10_000).step_by(250) {
        later.extend(tick(&mut e, now));
    }
    assert!(later.iter().all(|e| matches!(e, Event::Summary(_))));
}

#[test]
fn recovery_needs_consecutive_samples_and_resolves_the_same_alert() {
    let mut e = engine();
    run_healthy(&mut e, &["auth"], 0, 0, 2_000);
    let down = tick_until(&mut e, 1_750, 1_000 + T + 1);
    let fired_id = down.iter().find_map(|e| match e {
        Event::Alert(a) => Some(a.id.clone()),
        _ => None,
    });
    // A restarted instance: new id, seq from 0.
    let back = |seq| MetricSample {
        instance: "auth-2".into(),
        ..sample("auth", seq)
    };
    tick_until(&mut e, 1_000 + T + 1, 10_000);
    assert!(
        statuses(&feed(&mut e, &back(0), 10_000)).is_empty(),
        "one sample is not yet recovery"
    );
    let ev = feed(&mut e, &back(1), 11_000);
    assert_eq!(statuses(&ev), vec![(Status::Down, Status::Healthy)]);
    let resolved: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Alert(a) if a.state == AlertState::Resolved => Some(a.id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(resolved, vec![fired_id.unwrap()]);
}

#[test]
fn a_gap_longer_than_the_timeout_restarts_recovery() {
    let mut e = engine();
    run_healthy(&mut e, &["auth"], 0, 0, 2_000);
    tick_until(&mut e, 1_750, 10_000);
    feed(&mut e, &sample("auth", 10), 10_000);
    tick_until(&mut e, 10_000, 14_000); // silent again
    let ev = feed(&mut e, &sample("auth", 11), 14_000);
    assert!(
        statuses(&ev).is_empty(),
        "the earlier sample no longer counts"
    );
    let ev = feed(&mut e, &sample("auth", 12), 15_000);
    assert_eq!(statuses(&ev), vec![(Status::Down, Status::Healthy)]);
}

#[test]
fn going_down_resolves_firing_threshold_alerts() {
    let mut e = engine();
    for seq in 0..3 {
        feed(
            &mut e,
            &MetricSample {
                cpu_pct: Some(99.0),
                ..sample("auth", seq)
            },
            seq * 1000,
        );
    }
    let ev = tick_until(&mut e, 2_000, 2_000 + T + 1);
    assert_eq!(
        alerts(&ev),
        vec![
            (AlertName::HighCpu, AlertState::Resolved),
            (AlertName::ServiceDown, AlertState::Firing)
        ]
    );
    assert_eq!(statuses(&ev), vec![(Status::Degraded, Status::Down)]);
}

#[test]
fn grace_after_start_judges_nobody() {
    let mut e = Engine::new(
        EngineConfig {
            grace_ms: 5_000,
            ..EngineConfig::default()
        },
        0,
    );
    feed(&mut e, &sample("auth", 0), 0);
    for now in (0..5_000).step_by(250) {
        assert!(statuses(&tick(&mut e, now)).is_empty(), "at {now}");
    }
    assert!(e.in_grace(4_999) && !e.in_grace(5_000));
    assert_eq!(
        statuses(&tick(&mut e, 5_000)),
        vec![(Status::Healthy, Status::Down)]
    );
}

#[test]
fn restored_state_is_not_judged_on_silence_it_could_not_observe() {
    let mut old = engine();
    run_healthy(&mut old, &["auth"], 0, 0, 5_000);
    let saved = old.snapshot(5_000);
    // A new monitor starts much later; the service keeps sending.
    let start = 100_000;
    let mut e = Engine::new(EngineConfig::default(), start);
    assert_eq!(e.restore(saved, start), 0);
    assert_eq!(e.status_of("auth"), Some(Status::Healthy));
    let ev = run_healthy(&mut e, &["auth"], 1000, start + 1_000, start + 20_000);
    assert!(statuses(&ev).is_empty() && alerts(&ev).is_empty(), "{ev:?}");
}

#[test]
fn restored_firing_alert_resolves_with_its_original_id() {
    let mut old = engine();
    run_healthy(&mut old, &["auth"], 0, 0, 2_000);
    let down = tick_until(&mut old, 1_750, 1_000 + T + 1);
    let id = down.iter().find_map(|e| match e {
        Event::Alert(a) => Some(a.id.clone()),
        _ => None,
    });
    let saved = old.snapshot(10_000);
    let mut e = Engine::new(EngineConfig::default(), 50_000);
    e.restore(saved, 50_000);
    assert_eq!(e.status_of("auth"), Some(Status::Down));
    feed(&mut e, &sample("auth", 100), 50_500);
    let ev = feed(&mut e, &sample("auth", 101), 51_500);
    let resolved: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Alert(a) => Some((a.id.clone(), a.state)),
            _ => None,
        })
        .collect();
    assert_eq!(resolved, vec![(id.unwrap(), AlertState::Resolved)]);
}

#[test]
fn disconnect_then_reconnect_brings_no_down_storm() {
    let mut e = engine();
    run_healthy(&mut e, &["a", "b", "c"], 0, 0, 5_000);
    e.on_disconnected();
    let mut ev = Vec::new();
    for now in (5_000..30_000).step_by(250) {
        ev.extend(tick(&mut e, now));
    }
    e.on_reconnected(30_000);
    ev.extend(run_healthy(&mut e, &["a", "b", "c"], 100, 31_000, 40_000));
    assert!(statuses(&ev).is_empty(), "{:?}", statuses(&ev));
}

#[test]
fn a_stalled_feed_suspends_judging_and_resuming_forgives_the_gap() {
    let mut e = engine();
    run_healthy(&mut e, &["a", "b"], 0, 0, 5_000);
    // NATS frozen at 5 s: no samples, the connection still looks up; the monitor's own
    // heartbeat stops echoing and it notices the stall before the heartbeat timeout.
    let mut ev = tick_until(&mut e, 4_750, 6_250);
    e.on_feed_stalled();
    ev.extend(tick_until(&mut e, 6_250, 11_000));
    assert!(statuses(&ev).is_empty(), "{:?}", statuses(&ev));
    e.on_feed_resumed(11_000);
    // Samples flow again; whoever does not come back is still found.
    ev.extend(run_healthy(&mut e, &["a"], 100, 11_250, 20_000));
    assert_eq!(statuses(&ev), vec![(Status::Healthy, Status::Down)]);
    assert!(
        ev.iter()
            .any(|x| matches!(x, Event::Status(c) if c.service.as_str() == "b"))
    );
}

#[test]
fn a_stalled_monitor_forgives_the_silence_it_slept_through() {
    let mut e = engine();
    run_healthy(&mut e, &["auth"], 0, 0, 5_000);
    // SIGSTOP for 10 s: the next tick comes late, samples are still queued behind it.
    assert!(statuses(&tick(&mut e, 15_000)).is_empty());
    assert!(e.in_grace(15_000));
    let ev = run_healthy(&mut e, &["auth"], 100, 15_250, 30_000);
    assert!(statuses(&ev).is_empty());
}

#[test]
fn silence_after_the_monitors_own_drops_counts_from_the_last_drop() {
    let mut e = engine();
    run_healthy(&mut e, &["a", "b"], 0, 0, 5_000);
    // Overload from 5 s: b's samples are all among the dropped ones, a's get through.
    let mut ev = Vec::new();
    let mut now = 5_000;
    while now < 9_000 {
        if now % 1000 == 0 {
            ev.extend(feed(&mut e, &sample("a", now / 1000), now));
            e.on_samples_dropped(now);
        }
        ev.extend(tick(&mut e, now));
        now += 250;
    }
    assert!(
        statuses(&ev).is_empty(),
        "b's silence is the monitor's own loss"
    );
    // Drops stop at 8 s; b stays silent: DOWN a full timeout after the last drop.
    ev.extend(run_healthy(&mut e, &["a"], 9, 9_000, 8_000 + T));
    assert!(statuses(&ev).is_empty());
    ev.extend(run_healthy(&mut e, &["a"], 20, 8_000 + T, 8_000 + T + 500));
    assert_eq!(statuses(&ev), vec![(Status::Healthy, Status::Down)]);
}

#[test]
fn a_fleet_started_together_spreads_its_summaries_over_the_ticks() {
    let mut e = engine();
    let names: Vec<String> = (0..4_000).map(|i| format!("s{i}")).collect();
    let mut per_tick = Vec::new();
    let mut last_summary: HashMap<String, u64> = HashMap::new();
    let mut longest_gap = 0;
    let mut now = 0;
    while now < 20_000 {
        if now % 1000 == 0 {
            for name in &names {
                feed(&mut e, &sample(name, now / 1000), now);
            }
        }
        let summaries: Vec<String> = tick(&mut e, now)
            .into_iter()
            .filter_map(|x| match x {
                Event::Summary(s) => Some(s.service.to_string()),
                _ => None,
            })
            .collect();
        for name in &summaries {
            if let Some(prev) = last_summary.insert(name.clone(), now)
                && now > 5_000
            {
                longest_gap = longest_gap.max(now - prev);
            }
        }
        per_tick.push((now, summaries.len()));
        now += 250;
    }
    // After a few intervals no tick carries much more than its quarter of the fleet...
    let settled_max = per_tick
        .iter()
        .filter(|(t, _)| *t > 5_000)
        .map(|(_, n)| *n)
        .max()
        .unwrap();
    assert!(settled_max <= 1_251, "{per_tick:?}");
    // ...and every service still gets a summary each interval, at most a tick late.
    assert!(longest_gap <= 1_250, "longest gap {longest_gap} ms");
    assert_eq!(last_summary.len(), names.len());
}

#[test]
fn duplicates_and_replays_are_refused_without_effect() {
    let mut e = engine();
    let mut out = Vec::new();
    e.on_sample(&sample("auth", 5), 0, &mut out).unwrap();
    assert_eq!(
        e.on_sample(&sample("auth", 5), 10, &mut out),
        Err(RefusalReason::Duplicate)
    );
    assert_eq!(
        e.on_sample(&sample("auth", 3), 20, &mut out),
        Err(RefusalReason::Duplicate)
    );
    assert_eq!(e.on_sample(&sample("auth", 6), 30, &mut out), Ok(0));
    // seq 0 from a known instance id is a replay, not evidence of a restart.
    assert_eq!(
        e.on_sample(&sample("auth", 0), 40, &mut out),
        Err(RefusalReason::Duplicate)
    );
    // A restart is a new instance id; each instance has its own sequence.
    let other = MetricSample {
        instance: "auth-2".into(),
        ..sample("auth", 0)
    };
    e.on_sample(&other, 50, &mut out).unwrap();
    // A gap is counted as missed samples.
    assert_eq!(e.on_sample(&sample("auth", 10), 55, &mut out), Ok(3));
    let snap = e.snapshot(60);
    assert_eq!(
        snap[0].figures.samples, 4,
        "refused samples never enter the window"
    );
}

/// A replayed `seq: 0` twice cannot bring a DOWN service back: recovery needs samples
/// the monitor has not seen.
#[test]
fn a_replayed_first_sample_does_not_recover_a_down_service() {
    let mut e = engine();
    run_healthy(&mut e, &["auth"], 0, 0, 5_000);
    let mut down = tick_until(&mut e, 5_000, 12_000);
    assert!(statuses(&down).contains(&(Status::Healthy, Status::Down)));
    let mut out = Vec::new();
    for _ in 0..3 {
        assert_eq!(
            e.on_sample(&sample("auth", 0), 12_500, &mut out),
            Err(RefusalReason::Duplicate)
        );
    }
    down.extend(out);
    assert_eq!(e.status_of("auth"), Some(Status::Down));
}

#[test]
fn many_replicas_are_each_tracked_up_to_the_cap() {
    let cfg = EngineConfig {
        max_instances: 8,
        ..EngineConfig::default()
    };
    let mut e = Engine::new(cfg, 0);
    let mut out = Vec::new();
    let replica = |i: usize, seq: u64| MetricSample {
        instance: format!("auth-{i}"),
        ..sample("auth", seq)
    };
    for seq in 0..3 {
        for i in 0..8 {
            e.on_sample(&replica(i, seq), seq * 100, &mut out).unwrap();
        }
    }
    // Every replica's replay is refused, however many there are.
    for i in 0..8 {
        assert_eq!(
            e.on_sample(&replica(i, 1), 400, &mut out),
            Err(RefusalReason::Duplicate)
        );
    }
    // A ninth while all eight are live: refused and counted, not evicting anyone.
    assert_eq!(
        e.on_sample(&replica(8, 0), 500, &mut out),
        Err(RefusalReason::InstanceCap)
    );
    assert_eq!(
        e.on_sample(&replica(0, 1), 600, &mut out),
        Err(RefusalReason::Duplicate)
    );
    // Once a replica has been silent for a window, a new one takes its place.
    let later = 500 + EngineConfig::default().window_ms + 1;
    for i in 1..8 {
        e.on_sample(&replica(i, 3), later - 1, &mut out).unwrap();
    }
    e.on_sample(&replica(8, 0), later + 300, &mut out).unwrap();
}

#[test]
fn the_service_cap_holds_and_existing_services_are_unaffected() {
    let mut e = Engine::new(
        EngineConfig {
            max_services: 2,
            ..EngineConfig::default()
        },
        0,
    );
    let mut out = Vec::new();
    e.on_sample(&sample("a", 0), 0, &mut out).unwrap();
    e.on_sample(&sample("b", 0), 0, &mut out).unwrap();
    assert_eq!(
        e.on_sample(&sample("c", 0), 0, &mut out),
        Err(RefusalReason::ServiceCap)
    );
    e.on_sample(&sample("a", 1), 1000, &mut out).unwrap();
    assert_eq!(e.len(), 2);
    assert_eq!(e.status_of("c"), None);
}

#[test]
fn summaries_come_at_most_once_per_interval_and_only_with_news() {
    let mut e = engine();
    let mut n = 0;
    for i in 0..40u64 {
        let now = i * 250;
        // Ten samples a second.
        for k in 0..3 {
            feed(&mut e, &sample("auth", i * 3 + k), now);
        }
        n += tick(&mut e, now)
            .iter()
            .filter(|e| matches!(e, Event::Summary(_)))
            .count();
    }
    assert_eq!(n, 10, "one per second over 10 s");
    // The samples of the last second still get their summary; then silence brings none.
    assert_eq!(tick(&mut e, 10_000).len(), 1);
    let quiet: usize = (41..60u64)
        .map(|i| {
            tick(&mut e, i * 250)
                .iter()
                .filter(|e| matches!(e, Event::Summary(_)))
                .count()
        })
        .sum();
    assert_eq!(quiet, 0);
}

#[test]
fn summary_figures_are_over_the_window() {
    let mut e = engine();
    for i in 0..20u64 {
        let s = MetricSample {
            latency_ms: (i + 1) as f64 * 10.0,
            ..sample("auth", i)
        };
        feed(&mut e, &s, i * 1000);
    }
    let ev = tick(&mut e, 19_000);
    let Some(Event::Summary(s)) = ev.first() else {
        panic!("{ev:?}")
    };
    assert_eq!(s.figures.samples, 20);
    assert_eq!(s.figures.latency_p95_ms, 190.0);
    assert_eq!(s.figures.latency_ms, 200.0);
    assert_eq!(s.figures.uptime_pct, 100.0);
}

#[test]
fn per_service_overrides_apply() {
    let mut lenient = Rules::default();
    lenient.cpu.fire_above = 98.0;
    lenient.cpu.clear_below = 90.0;
    let cfg = EngineConfig {
        overrides: HashMap::from([("batch".to_owned(), Arc::new(lenient))]),
        ..EngineConfig::default()
    };
    let mut e = Engine::new(cfg, 0);
    let mut fired = Vec::new();
    for seq in 0..5 {
        for name in ["batch", "web"] {
            let s = MetricSample {
                cpu_pct: Some(95.0),
                ..sample(name, seq)
            };
            fired.extend(
                feed(&mut e, &s, seq * 1000)
                    .into_iter()
                    .filter_map(|e| match e {
                        Event::Alert(a) => Some(a.service.to_string()),
                        _ => None,
                    }),
            );
        }
    }
    assert_eq!(fired, vec!["web"]);
}

#[test]
fn a_service_that_flaps_between_silence_and_samples_has_bounded_transitions() {
    // Sends 1 sample, then stays silent for 4 s, forever: it must settle DOWN rather than
    // bounce on every sample, because recovery needs consecutive samples.
    let mut e = engine();
    let mut ev = Vec::new();
    for cycle in 0..30u64 {
        let start = cycle * 5_000;
        ev.extend(feed(&mut e, &sample("auth", cycle), start));
        for now in (start..start + 5_000).step_by(250) {
            ev.extend(tick(&mut e, now));
        }
    }
    assert_eq!(
        statuses(&ev),
        vec![
            (Status::Unknown, Status::Healthy),
            (Status::Healthy, Status::Down)
        ]
    );
}

// --- property test of the state machine -------------------------------------------

#[derive(Debug, Clone)]
enum Step {
    Sample {
        cpu: f64,
        err: f64,
        stopping: bool,
    },
    Silence(u64),
    Disconnect,
    Reconnect,
    /// The service's connection closed (on a clustered server or not) / opened again.
    ConnClosed {
        clustered: bool,
    },
    ConnOpened,
}

fn conn_advisory(
    kind: &str,
    clustered: bool,
    reason: Option<&str>,
) -> vitals_protocol::ConnAdvisory {
    let json = serde_json::json!({
        "type": kind,
        "server": {"id": "S1", "cluster": if clustered { "vitals" } else { "" }},
        "client": {"id": 7, "name": "vitals:simulator:svc:svc-1", "user": "sim"},
        "reason": reason,
    });
    serde_json::from_value(json).unwrap()
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0.0..100.0f64, 0.0..1.0f64).prop_map(|(cpu, err)| Step::Sample { cpu, err, stopping: false }),
        2 => prop_oneof![Just(95.0), Just(50.0), Just(80.0)].prop_map(|cpu| Step::Sample { cpu, err: 0.0, stopping: false }),
        1 => Just(Step::Sample { cpu: 10.0, err: 0.0, stopping: true }),
        1 => (0u64..8_000).prop_map(Step::Silence),
        1 => Just(Step::Disconnect),
        1 => Just(Step::Reconnect),
        1 => any::<bool>().prop_map(|clustered| Step::ConnClosed { clustered }),
        1 => Just(Step::ConnOpened),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// For any input: status always matches the firing alerts, every firing gets exactly
    /// one resolve once the input turns healthy, and threshold alerts fire no more often
    /// than their for-count allows.
    #[test]
    fn state_machine_invariants(steps in proptest::collection::vec(step(), 1..200)) {
        let mut e = engine();
        let mut now = 0u64;
        let mut seq = 0u64;
        let mut events = Vec::new();
        let mut samples = 0usize;
        let run = |e: &mut Engine, events: &mut Vec<Event>, now: &mut u64, seq: &mut u64, s: &Step| {
            match *s {
                Step::Sample { cpu, err, stopping } => {
                    *now += 1000;
                    let m = MetricSample { cpu_pct: Some(cpu), error_rate: err, stopping, ..sample("svc", *seq) };
                    *seq += 1;
                    e.on_sample(&m, *now, events).unwrap();
                }
                Step::Silence(ms) => {
                    let end = *now + ms;
                    while *now < end {
                        *now += 250;
                        e.judge_pending_losses(*now, events);
                        e.on_tick(*now, events);
                    }
                }
                Step::Disconnect => e.on_disconnected(),
                Step::Reconnect => e.on_reconnected(*now),
                Step::ConnClosed { clustered } => {
                    let a = conn_advisory(vitals_protocol::conn::ADVISORY_DISCONNECT, clustered, Some("Client Closed"));
                    e.on_conn_advisory(&a, *now, events);
                }
                Step::ConnOpened => {
                    let a = conn_advisory(vitals_protocol::conn::ADVISORY_CONNECT, false, None);
                    e.on_conn_advisory(&a, *now, events);
                }
            }
            e.judge_pending_losses(*now, events);
            e.on_tick(*now, events);
        };
        for s in &steps {
            if matches!(s, Step::Sample { .. }) { samples += 1; }
            run(&mut e, &mut events, &mut now, &mut seq, s);
            let snap = e.snapshot(now);
            if let Some(st) = snap.first() {
                let down = st.alerts.iter().any(|a| a.alert == AlertName::ServiceDown);
                let want = if down { Status::Down } else if st.alerts.is_empty() { Status::Healthy } else { Status::Degraded };
                prop_assert_eq!(st.status, want);
            }
        }
        // A long healthy tail, connected.
        e.on_reconnected(now);
        for _ in 0..20 {
            run(&mut e, &mut events, &mut now, &mut seq, &Step::Sample { cpu: 10.0, err: 0.0, stopping: false });
        }
        let mut fired: HashMap<String, usize> = HashMap::new();
        let mut resolved: HashMap<String, usize> = HashMap::new();
        let mut cpu_fires = 0;
        for ev in &events {
            if let Event::Alert(a) = ev {
                let map = if a.state == AlertState::Firing { &mut fired } else { &mut resolved };
                *map.entry(a.id.clone()).or_default() += 1;
                if a.alert == AlertName::HighCpu && a.state == AlertState::Firing { cpu_fires += 1; }
            }
        }
        prop_assert!(fired.values().all(|&n| n == 1), "an id fired twice");
        prop_assert_eq!(&fired.keys().collect::<std::collections::BTreeSet<_>>(), &resolved.keys().collect::<std::collections::BTreeSet<_>>());
        prop_assert!(resolved.values().all(|&n| n == 1), "an id resolved twice");
        prop_assert!(cpu_fires <= samples / 3 + 1);
        prop_assert_eq!(e.status_of("svc"), Some(Status::Healthy));
        // Consecutive status changes chain: each one's previous is the last one's status.
        let chain: Vec<_> = statuses(&events);
        prop_assert!(chain.windows(2).all(|w| w[0].1 == w[1].0));
        prop_assert!(chain.iter().all(|(a, b)| a != b));
    }
}

fn retire_config(retire_after_ms: u64, max_services: usize) -> EngineConfig {
    EngineConfig {
        retire_after_ms,
        max_services,
        ..EngineConfig::default()
    }
}

#[test]
fn a_service_down_for_the_retire_period_is_retired_once_and_frees_its_slot() {
    let mut e = Engine::new(retire_config(60_000, 2), 0);
    run_healthy(&mut e, &["old", "live"], 0, 0, 5_000);
    // `old` goes silent; `live` keeps sending.
    let mut events = Vec::new();
    let mut seq = 5;
    let mut now = 5_000;
    while now <= 80_000 {
        if now % 1000 == 0 {
            events.extend(feed(&mut e, &sample("live", seq), now));
            seq += 1;
        }
        events.extend(tick(&mut e, now));
        now += 250;
    }
    let down_at = events
        .iter()
        .find_map(|ev| match ev {
            Event::Status(c) if c.status == Status::Down => Some(c.at_ms),
            _ => None,
        })
        .expect("old went DOWN");
    let retired: Vec<&StatusChange> = events
        .iter()
        .filter_map(|ev| match ev {
            Event::Status(c) if c.status == Status::Retired => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(retired.len(), 1, "retired exactly once");
    assert_eq!(retired[0].service.as_str(), "old");
    assert_eq!(retired[0].previous, Status::Down);
    assert!(retired[0].at_ms >= down_at + 60_000 && retired[0].at_ms < down_at + 60_250);
    assert_eq!(
        retired[0].reasons,
        vec!["retired: DOWN for 60 s".to_owned()]
    );
    let resolves: Vec<&AlertEvent> = events
        .iter()
        .filter_map(|ev| match ev {
            Event::Alert(a) if a.state == AlertState::Resolved => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(resolves.len(), 1);
    assert_eq!(resolves[0].alert, AlertName::ServiceDown);
    assert_eq!(resolves[0].reason.as_deref(), Some(REASON_RETIRED));
    assert!(
        events
            .iter()
            .any(|ev| matches!(ev, Event::Forget(n) if n.as_str() == "old"))
    );
    assert_eq!(e.status_of("old"), None);
    assert_eq!(
        e.status_of("live"),
        Some(Status::Healthy),
        "live is never retired"
    );
    // The slot is free: a new service fits under the cap of 2.
    let mut out = Vec::new();
    e.on_sample(&sample("new", 0), 80_500, &mut out).unwrap();
    // And the retired one, publishing again, is simply new.
    let back = MetricSample {
        instance: "old-2".into(),
        ..sample("old", 0)
    };
    assert_eq!(
        e.on_sample(&back, 80_600, &mut out),
        Err(RefusalReason::ServiceCap),
        "the cap still holds"
    );
}

#[test]
fn retire_on_request_resolves_every_firing_alert_and_a_retired_service_comes_back_as_new() {
    let mut e = engine();
    let mut out = Vec::new();
    for seq in 0..4 {
        let hot = MetricSample {
            cpu_pct: Some(99.0),
            ..sample("auth", seq)
        };
        e.on_sample(&hot, seq * 1000, &mut out).unwrap();
    }
    assert_eq!(e.status_of("auth"), Some(Status::Degraded));
    let name = ServiceName::parse("auth").unwrap();
    let mut events = Vec::new();
    let done = e
        .retire(&name, "retired by operator".into(), 5_000, &mut events)
        .unwrap();
    assert_eq!(done.previous, Status::Degraded);
    assert_eq!(done.resolved.len(), 1);
    assert_eq!(
        alerts(&events),
        vec![(AlertName::HighCpu, AlertState::Resolved)]
    );
    assert_eq!(statuses(&events), vec![(Status::Degraded, Status::Retired)]);
    assert!(
        e.retire(&name, "again".into(), 5_100, &mut events)
            .is_none()
    );
    let back = MetricSample {
        instance: "auth-2".into(),
        ..sample("auth", 0)
    };
    let out = feed(&mut e, &back, 6_000);
    assert_eq!(statuses(&out), vec![(Status::Unknown, Status::Healthy)]);
}

#[test]
fn a_state_restored_down_since_long_ago_is_retired_and_zero_never_retires() {
    let long_down = |e: &mut Engine| {
        let mut out = Vec::new();
        run_healthy(e, &["gone"], 0, 0, 2_000);
        out.extend(tick_until(e, 2_000, 10_000));
        let states = e.snapshot(10_000);
        assert_eq!(states[0].status, Status::Down);
        states
    };
    let states = long_down(&mut engine());
    let mut e = Engine::new(retire_config(86_400_000, 100), 90_000_000);
    e.restore(states.clone(), 90_000_000);
    let events = tick(&mut e, 90_000_250);
    assert_eq!(statuses(&events), vec![(Status::Down, Status::Retired)]);
    let mut never = Engine::new(retire_config(0, 100), 90_000_000);
    never.restore(states, 90_000_000);
    assert!(statuses(&tick(&mut never, 90_000_250)).is_empty());
    assert_eq!(never.status_of("gone"), Some(Status::Down));
}

// ---------------------------------------------------------------------------------------
// Probe and agent sources (issue 13)

fn probe(
    seq: u64,
    ok: bool,
    code: Option<u16>,
    error: Option<&str>,
    latency_ms: f64,
) -> MetricSample {
    MetricSample {
        source: vitals_protocol::Source::Probe,
        cpu_pct: None,
        mem_pct: None,
        latency_ms,
        health_url: String::new(),
        probe: Some(vitals_protocol::ProbeResult {
            ok,
            status_code: code,
            error: error.map(str::to_owned),
            apdex_t_ms: None,
            cert_expires_ms: None,
            cert_warn_days: None,
        }),
        ..sample("pay", seq)
    }
}

fn down_reason(events: &[Event]) -> Option<String> {
    events.iter().find_map(|e| match e {
        Event::Status(c) if c.status == Status::Down => c.reasons.first().cloned(),
        _ => None,
    })
}

#[test]
fn failed_probes_go_down_after_down_after_and_recover_after_up_after() {
    let mut e = engine();
    let mut all = Vec::new();
    all.extend(feed(&mut e, &probe(1, true, Some(200), None, 20.0), 1_000));
    // One failure is not enough (down_after = 2)...
    let ev = feed(
        &mut e,
        &probe(2, false, Some(503), Some("status 503"), 15.0),
        2_000,
    );
    assert!(alerts(&ev).is_empty(), "{ev:?}");
    all.extend(ev);
    // ...the second is, and the reason says why.
    let ev = feed(
        &mut e,
        &probe(3, false, Some(503), Some("status 503"), 15.0),
        3_000,
    );
    assert_eq!(
        alerts(&ev),
        vec![(AlertName::ServiceDown, AlertState::Firing)]
    );
    assert_eq!(
        down_reason(&ev).as_deref(),
        Some("probe failed: status 503 (2 in a row)")
    );
    let fired = ev.iter().find_map(|e| match e {
        Event::Alert(a) => Some((a.value, a.threshold)),
        _ => None,
    });
    assert_eq!(
        fired,
        Some((2.0, 2.0)),
        "value: failures in a row, threshold: down_after"
    );
    all.extend(ev);
    // More failures change nothing; one good probe is not enough (up_after = 2).
    all.extend(feed(
        &mut e,
        &probe(4, false, None, Some("timeout"), 500.0),
        4_000,
    ));
    all.extend(feed(&mut e, &probe(5, true, Some(200), None, 20.0), 5_000));
    assert_eq!(e.status_of("pay"), Some(Status::Down));
    // A failure in between restarts the count.
    all.extend(feed(
        &mut e,
        &probe(6, false, None, Some("connection closed"), 3.0),
        6_000,
    ));
    all.extend(feed(&mut e, &probe(7, true, Some(200), None, 20.0), 7_000));
    assert_eq!(e.status_of("pay"), Some(Status::Down));
    let ev = feed(&mut e, &probe(8, true, Some(200), None, 20.0), 8_000);
    assert_eq!(statuses(&ev), vec![(Status::Down, Status::Healthy)]);
    all.extend(ev);
    assert_eq!(
        alerts(&all),
        vec![
            (AlertName::ServiceDown, AlertState::Firing),
            (AlertName::ServiceDown, AlertState::Resolved)
        ],
        "exactly one firing and one resolve"
    );
}

#[test]
fn silence_still_means_down_for_a_probe() {
    let mut e = engine();
    feed(&mut e, &probe(1, true, Some(200), None, 20.0), 10_000);
    let ev = tick_until(&mut e, 10_000, 14_000);
    assert_eq!(statuses(&ev), vec![(Status::Healthy, Status::Down)]);
    assert!(down_reason(&ev).is_some_and(|r| r.starts_with("no sample for")));
}

#[test]
fn absent_figures_are_not_judged_and_stay_absent() {
    let mut e = engine();
    for seq in 1..=5 {
        let ev = feed(&mut e, &probe(seq, true, Some(200), None, 20.0), seq * 1000);
        assert!(alerts(&ev).is_empty());
    }
    let st = e.snapshot(6_000).remove(0);
    assert_eq!((st.figures.cpu_pct, st.figures.mem_pct), (None, None));
    assert_eq!(st.source, vitals_protocol::Source::Probe);
    assert_eq!(st.probe.and_then(|p| p.status_code), Some(200));
    // Serialised, the absent figures are left out (never written as 0 or null).
    let json = serde_json::to_value(e.snapshot(6_000).remove(0).figures).unwrap();
    assert!(
        json.get("cpu_pct").is_none() && json.get("mem_pct").is_none(),
        "{json}"
    );
}

#[test]
fn apdex_is_over_the_window_with_the_probes_threshold() {
    let mut e = engine();
    let mut s = probe(1, true, Some(200), None, 50.0);
    if let Some(p) = s.probe.as_mut() {
        p.apdex_t_ms = Some(40);
    }
    feed(&mut e, &s, 1_000); // tolerating (40 < 50 <= 160)
    let mut s2 = probe(2, true, Some(200), None, 10.0);
    s2.probe = s.probe.clone();
    feed(&mut e, &s2, 2_000); // satisfied
    let st = e.snapshot(2_000).remove(0);
    assert_eq!(st.figures.apdex, Some(0.75));
    assert_eq!(st.figures.apdex_t_ms, Some(40));
}

#[test]
fn low_apdex_fires_when_enabled() {
    let mut rules = crate::rules::Rules::default();
    rules.apdex.enabled = true;
    let cfg = EngineConfig {
        defaults: std::sync::Arc::new(rules),
        ..EngineConfig::default()
    };
    let mut e = Engine::new(cfg, 0);
    let mut fired = Vec::new();
    // Every probe slow (> 4T, under HIGH_LATENCY): Apdex 0; fires after for_samples (3).
    for seq in 1..=3 {
        fired.extend(feed(
            &mut e,
            &probe(seq, true, Some(200), None, 450.0),
            seq * 1000,
        ));
    }
    assert_eq!(
        alerts(&fired),
        vec![(AlertName::LowApdex, AlertState::Firing)]
    );
    let state = e.snapshot(3_000).remove(0);
    assert_eq!(state.status, Status::Degraded);
    assert!(
        state.reasons[0].starts_with("LOW_APDEX: apdex 0.000 < 0.7"),
        "{:?}",
        state.reasons
    );
}

#[test]
fn an_expiring_certificate_fires_and_a_renewed_one_resolves() {
    let day = 86_400_000u64;
    let now = 1_000 * day;
    let with_cert = |seq, expires_ms| {
        let mut s = probe(seq, true, Some(200), None, 20.0);
        if let Some(p) = s.probe.as_mut() {
            p.cert_expires_ms = Some(expires_ms);
            p.cert_warn_days = Some(14);
        }
        s
    };
    let mut e = engine();
    let ev = feed(&mut e, &with_cert(1, now + 3 * day), now);
    assert_eq!(
        alerts(&ev),
        vec![(AlertName::CertExpiring, AlertState::Firing)]
    );
    let ev = feed(&mut e, &with_cert(2, now + 3 * day), now + 1000);
    assert!(alerts(&ev).is_empty(), "fires once");
    // A failed probe without a certificate says nothing about it.
    let ev = feed(&mut e, &probe(3, false, None, Some("tls"), 5.0), now + 2000);
    assert!(alerts(&ev).is_empty(), "{ev:?}");
    let ev = feed(&mut e, &with_cert(4, now + 90 * day), now + 3000);
    assert_eq!(
        alerts(&ev),
        vec![(AlertName::CertExpiring, AlertState::Resolved)]
    );
}

#[test]
fn old_samples_without_a_source_are_simulator_samples() {
    let bytes = br#"{"service":"auth","instance":"a-1","seq":1,"ts_ms":1,"cpu_pct":10,"mem_pct":20,"latency_ms":5,"error_rate":0,"health_url":"http://127.0.0.1:3001/health"}"#;
    let s = vitals_protocol::parse_sample("auth", bytes).unwrap();
    assert_eq!(s.source, vitals_protocol::Source::Simulator);
    let mut e = engine();
    feed(&mut e, &s, 1000);
    let st = e.snapshot(1000).remove(0);
    assert_eq!(st.figures.cpu_pct, Some(10.0));
    let json = serde_json::to_value(&st).unwrap();
    assert!(
        json.get("source").is_none(),
        "simulator is the default, not written"
    );
}

#[test]
fn a_slow_sender_is_judged_silent_by_its_own_interval() {
    let mut e = engine();
    let slow = |seq| MetricSample {
        interval_ms: Some(10_000),
        ..probe(seq, true, Some(200), None, 20.0)
    };
    feed(&mut e, &slow(1), 10_000);
    // 9.75 s of silence between two probes: not DOWN (the heartbeat timeout is 3 s).
    let ev = tick_until(&mut e, 10_000, 19_750);
    assert!(statuses(&ev).is_empty(), "{ev:?}");
    feed(&mut e, &slow(2), 20_000);
    // Three intervals (30 s) without a probe: DOWN, and the alert says against what.
    let ev = tick_until(&mut e, 20_000, 50_250);
    assert_eq!(statuses(&ev), vec![(Status::Healthy, Status::Down)]);
    let threshold = ev.iter().find_map(|e| match e {
        Event::Alert(a) => Some(a.threshold),
        _ => None,
    });
    assert_eq!(threshold, Some(30.0));
    // A restart keeps the declared interval: a restored slow sender is not DOWN early.
    let saved = e.snapshot(50_250);
    assert_eq!(saved[0].interval_ms, Some(10_000));
    let mut fresh = engine();
    fresh.restore(saved, 60_000);
    feed(&mut fresh, &slow(3), 60_000);
    // 15 s of silence after the restart: well past grace + heartbeat timeout, within 3 intervals.
    let ev = tick_until(&mut fresh, 60_000, 75_000);
    assert!(
        !statuses(&ev).iter().any(|(_, to)| *to == Status::Down),
        "{ev:?}"
    );
    let mut restored_only = engine();
    restored_only.restore(fresh.snapshot(75_000), 75_000);
    let ev = tick_until(&mut restored_only, 75_000, 90_000);
    assert!(
        statuses(&ev).is_empty(),
        "restored without a sample: {ev:?}"
    );
}
