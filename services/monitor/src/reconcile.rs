//! After a restart: make the alert history agree with the restored state. Pure.
//!
//! Publishing an alert and writing the service's state to KV are two steps; a monitor
//! killed between them leaves the stream and KV disagreeing. The firing set in KV is
//! complete (every ServiceState holds its firing alerts, and `last_alert`, the last alert
//! event it was written after), so reconciling never depends on reading a bounded window
//! of the history: for each service the monitor looks up the last alert event HEALTH_EVENTS
//! holds for it (by subject). When that is the state's `last_alert`, they agree and nothing
//! is done. Otherwise it reads that service's whole retained alert history and [`reconcile`]
//! closes the gaps, so every firing still gets exactly one resolve:
//! - a firing the stream holds unresolved and the state does not hold is resolved now (the
//!   stream keeps order, so an unresolved firing in it really was never resolved);
//! - an alert the state holds but the stream shows resolved is dropped from the state (it
//!   must not resolve twice);
//! - a firing the state holds and the stream lacks is announced only with positive evidence
//!   that it never reached the stream: it began after the service's last event there, or
//!   (no event there at all) after the oldest message the stream retains. Anything else
//!   (aged out, or unprovable) is left alone: a repeat is worse than silence.

use std::collections::{HashMap, HashSet};

use vitals_protocol::{AlertEvent, AlertMark, AlertState, ServiceState};

/// Whether the stream's last alert event for a service (`None`: it has none) shows that the
/// stream and the state agree, so the service needs no further reading.
pub fn in_sync(state: Option<&ServiceState>, last_in_stream: Option<&AlertEvent>) -> bool {
    match (state, last_in_stream) {
        (Some(s), Some(last)) => s.last_alert.as_ref().is_some_and(|m| m.is(last)),
        // Nothing in the stream: nothing to resolve; a held firing is judged in
        // [`reconcile`] (it may have aged out, or never arrived).
        (Some(s), None) => s.alerts.is_empty(),
        // No state: a retired service (retiring resolves every firing alert, reason
        // `retired`, then deletes the key) is done with. Anything else (a new service
        // whose first write was lost) may hold an unresolved firing behind its last event.
        (None, Some(last)) => {
            last.state == AlertState::Resolved
                && last.reason.as_deref() == Some(crate::engine::REASON_RETIRED)
        }
        (None, None) => true,
    }
}

/// `restored`: the states to check; `history`: every alert event the stream retains for
/// those services (and possibly for services without a state), oldest first;
/// `oldest_ms`: when the oldest message the stream retains was stored (`u64::MAX` when it
/// is empty: nothing can be proven then). Returns the events to publish; the states lose
/// the alerts the stream shows resolved, and their `last_alert` follows what is published.
pub fn reconcile(
    restored: &mut [ServiceState],
    history: &[AlertEvent],
    oldest_ms: u64,
    now_ms: u64,
) -> Vec<AlertEvent> {
    let mut last: HashMap<&str, &AlertEvent> = HashMap::new();
    let mut newest_of_service: HashMap<&str, &AlertEvent> = HashMap::new();
    for event in history {
        last.insert(event.id.as_str(), event);
        newest_of_service.insert(event.service.as_str(), event);
    }
    for s in restored.iter_mut() {
        s.alerts.retain(|a| {
            last.get(a.id.as_str())
                .is_none_or(|e| e.state == AlertState::Firing)
        });
    }
    let held: HashSet<&str> = restored
        .iter()
        .flat_map(|s| s.alerts.iter().map(|a| a.id.as_str()))
        .collect();
    let mut out = Vec::new();
    // Fired, never resolved, and not in the state: nobody will ever resolve it.
    let mut orphans: Vec<&AlertEvent> = last
        .values()
        .filter(|e| e.state == AlertState::Firing && !held.contains(e.id.as_str()))
        .copied()
        .collect();
    orphans.sort_by(|a, b| a.id.cmp(&b.id));
    for e in orphans {
        out.push(AlertEvent {
            state: AlertState::Resolved,
            at_ms: now_ms,
            reason: Some("restart repair".into()),
            ..e.clone()
        });
    }
    // Held in the state; its firing provably never reached the stream.
    for s in restored.iter() {
        let newest = newest_of_service.get(s.service.as_str());
        for a in &s.alerts {
            let never_arrived = match newest {
                Some(n) => a.since_ms > n.at_ms,
                None => a.since_ms >= oldest_ms,
            };
            if never_arrived && !last.contains_key(a.id.as_str()) {
                out.push(AlertEvent {
                    id: a.id.clone(),
                    service: s.service.clone(),
                    alert: a.alert,
                    state: AlertState::Firing,
                    value: a.value,
                    threshold: a.threshold,
                    since_ms: a.since_ms,
                    at_ms: now_ms,
                    reason: None,
                    marks: a.marks.clone(),
                    update: None,
                });
            }
        }
    }
    // The states now agree with the stream as it will be once `out` is published.
    for s in restored.iter_mut() {
        let latest = out
            .iter()
            .rev()
            .find(|e| e.service == s.service)
            .or_else(|| newest_of_service.get(s.service.as_str()).copied());
        if let Some(e) = latest {
            s.last_alert = Some(AlertMark::of(e));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use vitals_protocol::{ActiveAlert, AlertName, Figures, ServiceName, Status};

    use super::*;

    fn event(id: &str, state: AlertState) -> AlertEvent {
        AlertEvent {
            id: id.into(),
            service: ServiceName::parse("a").unwrap(),
            alert: AlertName::ServiceDown,
            state,
            value: 3.0,
            threshold: 3.0,
            since_ms: 100,
            at_ms: 100,
            reason: None,
            marks: Default::default(),
            update: None,
        }
    }

    fn state(alert_ids: &[(&str, u64)]) -> ServiceState {
        ServiceState {
            service: ServiceName::parse("a").unwrap(),
            status: if alert_ids.is_empty() {
                Status::Healthy
            } else {
                Status::Down
            },
            since_ms: 0,
            last_seen_ms: None,
            reasons: vec![],
            alerts: alert_ids
                .iter()
                .map(|(id, since)| ActiveAlert {
                    id: (*id).into(),
                    alert: AlertName::ServiceDown,
                    value: 3.0,
                    threshold: 3.0,
                    since_ms: *since,
                    marks: Default::default(),
                })
                .collect(),
            instance: String::new(),
            health_url: String::new(),
            figures: Figures::default(),
            last_alert: None,
            interval_ms: None,
            source: Default::default(),
            probe: None,
            host: None,
        }
    }

    #[test]
    fn consistent_history_needs_nothing() {
        let history = [
            event("x", AlertState::Firing),
            event("x", AlertState::Resolved),
            event("y", AlertState::Firing),
        ];
        assert!(reconcile(&mut [state(&[("y", 100)])], &history, 0, 500).is_empty());
    }

    #[test]
    fn a_firing_the_state_lost_is_resolved_once() {
        let history = [event("x", AlertState::Firing)];
        let out = reconcile(&mut [state(&[])], &history, 0, 500);
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].id.as_str(), out[0].state, out[0].at_ms),
            ("x", AlertState::Resolved, 500)
        );
        assert_eq!(out[0].since_ms, 100, "keeps the firing's identity");
    }

    #[test]
    fn a_firing_the_stream_never_saw_is_announced_if_it_began_in_the_part_read() {
        let out = reconcile(&mut [state(&[("new", 200)])], &[], 150, 500);
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].id.as_str(), out[0].state),
            ("new", AlertState::Firing)
        );
        // Older than what was read: its firing may well be in the stream; leave it.
        assert!(reconcile(&mut [state(&[("old", 100)])], &[], 150, 500).is_empty());
    }

    #[test]
    fn an_alert_the_history_shows_resolved_is_dropped_from_the_state() {
        let history = [
            event("x", AlertState::Firing),
            event("x", AlertState::Resolved),
        ];
        let mut restored = [state(&[("x", 100)])];
        assert!(
            reconcile(&mut restored, &history, 0, 500).is_empty(),
            "nothing to publish"
        );
        assert!(
            restored[0].alerts.is_empty(),
            "it must not resolve a second time"
        );
    }
}

#[cfg(test)]
mod complete_state_tests {
    use vitals_protocol::{ActiveAlert, AlertName, Figures, ServiceName, Status};

    use super::*;

    fn fired(service: &str, at: u64) -> AlertEvent {
        AlertEvent {
            id: format!("{service}:SERVICE_DOWN:{at}"),
            service: ServiceName::parse(service).unwrap(),
            alert: AlertName::ServiceDown,
            state: AlertState::Firing,
            value: 3.1,
            threshold: 3.0,
            since_ms: at,
            at_ms: at,
            reason: None,
            marks: Default::default(),
            update: None,
        }
    }

    fn resolved(e: &AlertEvent, at: u64) -> AlertEvent {
        AlertEvent {
            state: AlertState::Resolved,
            at_ms: at,
            ..e.clone()
        }
    }

    /// A state as the engine writes it after `events` (the last one is its mark).
    fn state_after(service: &str, events: &[&AlertEvent]) -> ServiceState {
        let mut firing: Vec<ActiveAlert> = Vec::new();
        for e in events {
            match e.state {
                AlertState::Firing => firing.push(ActiveAlert {
                    id: e.id.clone(),
                    alert: e.alert,
                    value: e.value,
                    threshold: e.threshold,
                    since_ms: e.since_ms,
                    marks: e.marks.clone(),
                }),
                AlertState::Resolved => firing.retain(|a| a.id != e.id),
            }
        }
        ServiceState {
            service: ServiceName::parse(service).unwrap(),
            status: if firing.is_empty() {
                Status::Healthy
            } else {
                Status::Down
            },
            since_ms: 0,
            last_seen_ms: Some(1),
            reasons: vec![],
            alerts: firing,
            instance: String::new(),
            health_url: String::new(),
            figures: Figures::default(),
            last_alert: events.last().map(|e| AlertMark::of(e)),
            interval_ms: None,
            source: Default::default(),
            probe: None,
            host: None,
        }
    }

    /// The restart of issue 12: 20,000 services DOWN in the same tick, every state written.
    /// Whatever part of the stream a bounded read would have seen, each service's last
    /// event is its state's mark: nothing to read further, nothing published.
    #[test]
    fn twenty_thousand_down_services_in_sync_need_nothing() {
        let mut repeated = 0;
        for i in 0..20_000 {
            let name = format!("s{i}");
            let f = fired(&name, 5_000);
            let state = state_after(&name, &[&f]);
            if !in_sync(Some(&state), Some(&f)) {
                repeated += 1;
            }
        }
        assert_eq!(repeated, 0);
    }

    #[test]
    fn a_state_written_before_its_last_events_gets_the_orphans_resolved() {
        // KV holds the state from before two firings (kill before the write): both are
        // orphans, also the one that is not the stream's last event for the service.
        let cpu = AlertEvent {
            id: "a:HIGH_CPU:10".into(),
            alert: AlertName::HighCpu,
            ..fired("a", 10)
        };
        let down = fired("a", 20);
        let resolved_cpu = resolved(&cpu, 20);
        let history = [cpu.clone(), resolved_cpu, down.clone()];
        let mut restored = [state_after("a", &[])];
        assert!(!in_sync(Some(&restored[0]), history.last()));
        let out = reconcile(&mut restored, &history, 0, 500);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(
            (out[0].id.as_str(), out[0].state),
            (down.id.as_str(), AlertState::Resolved)
        );
        assert_eq!(
            restored[0].last_alert,
            Some(AlertMark::of(&out[0])),
            "the state now agrees with the repaired stream"
        );
        // Two unresolved orphans behind one another are both repaired.
        let other = AlertEvent {
            id: "a:HIGH_CPU:30".into(),
            alert: AlertName::HighCpu,
            ..fired("a", 30)
        };
        let history = [down.clone(), other.clone()];
        let mut restored = [state_after("a", &[])];
        let ids: Vec<String> = reconcile(&mut restored, &history, 0, 500)
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, vec!["a:HIGH_CPU:30".to_owned(), down.id]);
    }

    #[test]
    fn a_state_ahead_of_the_stream_loses_no_resolve_and_announces_only_what_never_arrived() {
        let first = fired("a", 10);
        // The state resolved `first` and fired a new one; neither reached the stream.
        let again = fired("a", 30);
        let state = state_after("a", &[&first, &resolved(&first, 20), &again]);
        let history = [first.clone()];
        assert!(!in_sync(Some(&state), history.last()));
        let mut restored = [state];
        let out = reconcile(&mut restored, &history, 0, 500);
        let got: Vec<(&str, AlertState)> = out.iter().map(|e| (e.id.as_str(), e.state)).collect();
        assert_eq!(
            got,
            vec![
                (first.id.as_str(), AlertState::Resolved),
                (again.id.as_str(), AlertState::Firing)
            ]
        );
    }

    #[test]
    fn a_held_firing_is_not_announced_without_evidence() {
        // The stream has nothing of the service, and its oldest message is younger than the
        // firing: it may have aged out. Leave it.
        let f = fired("a", 100);
        let mut restored = [state_after("a", &[&f])];
        assert!(!in_sync(Some(&restored[0]), None));
        assert!(reconcile(&mut restored, &[], 150, 500).is_empty());
        assert!(
            reconcile(&mut restored, &[], u64::MAX, 500).is_empty(),
            "empty stream"
        );
        assert_eq!(
            restored[0].alerts.len(),
            1,
            "still held, resolved when it clears"
        );
        // Older than the service's last event in the stream: it arrived (order is kept).
        let later = resolved(&fired("a", 50), 120);
        let mut restored = [state_after("a", &[&f])];
        restored[0].last_alert = None;
        let history = [fired("a", 50), later];
        assert!(
            reconcile(&mut restored, &history, 0, 500).is_empty(),
            "since_ms 100 < last event 120"
        );
    }

    #[test]
    fn no_state_is_in_sync_only_after_a_retirement() {
        let f = fired("gone", 10);
        let retired = AlertEvent {
            reason: Some("retired".into()),
            ..resolved(&f, 20)
        };
        assert!(in_sync(None, Some(&retired)));
        // A plain resolve last: an earlier firing may still be open behind it.
        assert!(!in_sync(None, Some(&resolved(&f, 20))));
        assert!(!in_sync(None, Some(&f)));
        assert!(in_sync(None, None));
    }
}
