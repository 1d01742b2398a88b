//! After a restart: make the alert history agree with the restored state. Pure.
//!
//! Publishing an alert and writing the service's state to KV are two steps; a monitor
//! killed between them leaves the stream and KV disagreeing. On start the monitor reads
//! the recent alert history and closes the gaps, so every firing still gets exactly one
//! resolve: a firing the state does not hold is resolved now; an alert the state holds but
//! the history shows resolved is dropped from the state (it must not resolve twice); and a
//! firing the state holds but the history (within the part read) never saw is announced.

use std::collections::{HashMap, HashSet};

use vitals_protocol::{AlertEvent, AlertState, ServiceState};

/// `history`: alert events oldest first, covering everything published since
/// `history_from_ms` (an alert that began earlier may have its firing outside it).
pub fn reconcile(
    restored: &mut [ServiceState],
    history: &[AlertEvent],
    history_from_ms: u64,
    now_ms: u64,
) -> Vec<AlertEvent> {
    let mut last: HashMap<&str, &AlertEvent> = HashMap::new();
    for event in history {
        last.insert(event.id.as_str(), event);
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
    // Held in the state but its firing never reached the stream (within what was read).
    for s in restored.iter() {
        for a in &s.alerts {
            if a.since_ms >= history_from_ms && !last.contains_key(a.id.as_str()) {
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
                });
            }
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
                })
                .collect(),
            instance: String::new(),
            health_url: String::new(),
            figures: Figures::default(),
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
