//! The gateway's current view of every service, and how each update applies to it. Pure.
//!
//! Applying is idempotent and order-aware (stale and repeated updates change nothing), so
//! events that arrive while a snapshot is being fetched can be replayed on top of it
//! without being lost or applied twice.

use std::collections::BTreeMap;
use std::sync::Arc;

use vitals_protocol::{
    ActiveAlert, AlertEvent, AlertState, FeedMessage, FeedSnapshot, Figures, GatewayState,
    MonitorHeartbeat, ServiceName, ServiceState, ServiceSummary, Snapshot, Status, StatusChange,
};

/// Something the monitor published that the view tracks.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    Status(StatusChange),
    Alert(AlertEvent),
    Summary(ServiceSummary),
    Heartbeat(MonitorHeartbeat),
}

impl Update {
    pub fn into_message(self) -> FeedMessage {
        match self {
            Self::Status(data) => FeedMessage::Status { data },
            Self::Alert(data) => FeedMessage::Alert { data },
            Self::Summary(data) => FeedMessage::Metrics { data },
            Self::Heartbeat(data) => FeedMessage::Monitor { data },
        }
    }
}

/// Everything a snapshot holds, taken under the view's lock in O(services) pointer
/// copies (services are shared `Arc`s, copied on write), so encoding it can happen after
/// the lock is released.
#[derive(Debug, Clone)]
pub struct Captured {
    pub version: u64,
    pub gateway: GatewayState,
    pub monitor: Option<MonitorHeartbeat>,
    pub monitor_seen_ms: Option<u64>,
    pub services: Vec<Arc<ServiceState>>,
}

#[derive(Debug, Clone)]
pub struct View {
    /// Shared with snapshots being encoded; `Arc::make_mut` copies only a service that
    /// changes while a snapshot still holds it.
    services: BTreeMap<ServiceName, Arc<ServiceState>>,
    monitor: Option<MonitorHeartbeat>,
    monitor_seen_ms: Option<u64>,
    gateway: GatewayState,
    /// Bumped on every change; lets a serialised snapshot be reused until the next one.
    version: u64,
}

impl View {
    pub fn new(now_ms: u64) -> Self {
        Self {
            services: BTreeMap::new(),
            monitor: None,
            monitor_seen_ms: None,
            gateway: GatewayState {
                nats_connected: false,
                at_ms: now_ms,
                source: "none".into(),
                live: true,
                problem: None,
                health_origins: Vec::new(),
            },
            version: 0,
        }
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn len(&self) -> usize {
        self.services.len()
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    pub fn set_health_origins(&mut self, origins: Vec<String>) {
        self.gateway.health_origins = origins;
        self.version += 1;
    }

    pub fn gateway(&self) -> &GatewayState {
        &self.gateway
    }

    /// Replaces every service with a fresh snapshot (from the monitor or KV).
    pub fn replace(&mut self, services: Vec<ServiceState>, source: &str, now_ms: u64) {
        self.services = services
            .into_iter()
            .map(|s| (s.service.clone(), Arc::new(s)))
            .collect();
        self.gateway.source = source.to_owned();
        self.gateway.at_ms = now_ms;
        self.version += 1;
    }

    /// Records a NATS connection change; returns the state to tell clients, if it changed.
    pub fn set_connected(&mut self, connected: bool, now_ms: u64) -> Option<GatewayState> {
        if self.gateway.nats_connected == connected {
            return None;
        }
        self.gateway.nats_connected = connected;
        self.gateway.at_ms = now_ms;
        self.version += 1;
        Some(self.gateway.clone())
    }

    /// Records whether the feed keeps the view current; returns the state to tell clients,
    /// if it changed.
    pub fn set_live(&mut self, problem: Option<String>, now_ms: u64) -> Option<GatewayState> {
        let live = problem.is_none();
        if self.gateway.live == live && self.gateway.problem == problem {
            return None;
        }
        self.gateway.live = live;
        self.gateway.problem = problem;
        self.gateway.at_ms = now_ms;
        self.version += 1;
        Some(self.gateway.clone())
    }

    /// Applies one update; returns whether it changed the view (only then is it relayed).
    pub fn apply(&mut self, update: &Update, now_ms: u64) -> bool {
        let changed = match update {
            Update::Status(c) => self.apply_status(c),
            Update::Alert(a) => self.apply_alert(a),
            Update::Summary(s) => self.apply_summary(s),
            Update::Heartbeat(hb) => {
                self.monitor = Some(hb.clone());
                self.monitor_seen_ms = Some(now_ms);
                true
            }
        };
        if changed {
            self.version += 1;
        }
        changed
    }

    fn entry(&mut self, service: &ServiceName) -> &mut ServiceState {
        let shared = self.services.entry(service.clone()).or_insert_with(|| {
            Arc::new(ServiceState {
                service: service.clone(),
                status: Status::Unknown,
                since_ms: 0,
                last_seen_ms: None,
                reasons: Vec::new(),
                alerts: Vec::new(),
                instance: String::new(),
                health_url: String::new(),
                figures: Figures::default(),
                last_alert: None,
                interval_ms: None,
                source: Default::default(),
                probe: None,
                host: None,
            })
        });
        Arc::make_mut(shared)
    }

    fn apply_status(&mut self, c: &StatusChange) -> bool {
        if c.status == Status::Retired {
            return self.retire(c);
        }
        let s = self.entry(&c.service);
        let stale = c.at_ms < s.since_ms;
        let repeated = c.at_ms == s.since_ms && c.status == s.status;
        if stale || repeated {
            return false;
        }
        s.status = c.status;
        s.since_ms = c.at_ms;
        s.reasons.clone_from(&c.reasons);
        true
    }

    /// Drops a retired service, unless the view already holds news of it from after the
    /// retirement (it came back): a replayed, older RETIRED must not remove it again.
    fn retire(&mut self, c: &StatusChange) -> bool {
        let Some(s) = self.services.get(&c.service) else {
            return false;
        };
        let newer = s.since_ms > c.at_ms || s.last_seen_ms.is_some_and(|seen| seen > c.at_ms);
        if newer {
            return false;
        }
        self.services.remove(&c.service);
        true
    }

    fn apply_alert(&mut self, a: &AlertEvent) -> bool {
        // A resolve never creates a service: the resolves that follow a retirement must not
        // bring it back as UNKNOWN.
        if a.state == AlertState::Resolved && !self.services.contains_key(&a.service) {
            return false;
        }
        let s = self.entry(&a.service);
        let pos = s.alerts.iter().position(|x| x.id == a.id);
        match (a.state, pos) {
            (AlertState::Firing, None) => {
                s.alerts.push(ActiveAlert {
                    id: a.id.clone(),
                    alert: a.alert,
                    value: a.value,
                    threshold: a.threshold,
                    since_ms: a.since_ms,
                    marks: a.marks.clone(),
                });
                true
            }
            // The monitor re-publishes a firing alert when its marks change (silenced,
            // acked, inhibition lifted): the marks are replaced; a plain repeat changes nothing.
            (AlertState::Firing, Some(i)) => {
                let held = &mut s.alerts[i];
                if held.marks == a.marks {
                    return false;
                }
                held.marks = a.marks.clone();
                true
            }
            (AlertState::Resolved, Some(i)) => {
                s.alerts.remove(i);
                true
            }
            // A resolve for an alert the view does not hold.
            _ => false,
        }
    }

    fn apply_summary(&mut self, summary: &ServiceSummary) -> bool {
        let s = self.entry(&summary.service);
        if summary.last_seen_ms < s.last_seen_ms {
            return false;
        }
        s.figures = summary.figures.clone();
        s.last_seen_ms = summary.last_seen_ms;
        s.instance.clone_from(&summary.instance);
        s.health_url.clone_from(&summary.health_url);
        s.source = summary.source;
        s.probe.clone_from(&summary.probe);
        s.host.clone_from(&summary.host);
        if s.status == Status::Unknown {
            s.status = summary.status;
        }
        true
    }

    pub fn snapshot(&self, resync: bool, now_ms: u64) -> FeedSnapshot {
        FeedSnapshot {
            resync,
            at_ms: now_ms,
            gateway: self.gateway.clone(),
            monitor: self.monitor.clone(),
            monitor_seen_ms: self.monitor_seen_ms,
            services: self.services.values().map(|s| (**s).clone()).collect(),
        }
    }

    /// Whether an alert with this id fires (its service is the id's first part).
    pub fn is_firing(&self, alert_id: &str) -> bool {
        let Some(service) = alert_id
            .split(':')
            .next()
            .and_then(|s| ServiceName::parse(s).ok())
        else {
            return false;
        };
        self.services
            .get(&service)
            .is_some_and(|s| s.alerts.iter().any(|a| a.id == alert_id))
    }

    /// The snapshot's contents as shared pointers: cheap under a lock.
    pub fn capture(&self) -> Captured {
        Captured {
            version: self.version,
            gateway: self.gateway.clone(),
            monitor: self.monitor.clone(),
            monitor_seen_ms: self.monitor_seen_ms,
            services: self.services.values().cloned().collect(),
        }
    }

    /// The view in the monitor's Snapshot shape (for `GET /api/status`).
    pub fn as_monitor_snapshot(&self, now_ms: u64) -> Snapshot {
        Snapshot {
            monitor_id: self
                .monitor
                .as_ref()
                .map(|m| m.monitor_id.clone())
                .unwrap_or_default(),
            at_ms: now_ms,
            version: self.version,
            page: 0,
            pages: 1,
            total: self.services.len() as u64,
            next_after: None,
            services: self.services.values().map(|s| (**s).clone()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitals_protocol::AlertName;

    fn name(s: &str) -> ServiceName {
        ServiceName::parse(s).unwrap()
    }

    fn change(svc: &str, status: Status, at_ms: u64) -> Update {
        Update::Status(StatusChange {
            service: name(svc),
            status,
            previous: Status::Unknown,
            at_ms,
            reasons: vec!["r".into()],
        })
    }

    fn alert(svc: &str, id: &str, state: AlertState) -> Update {
        Update::Alert(AlertEvent {
            id: id.into(),
            service: name(svc),
            alert: AlertName::ServiceDown,
            state,
            value: 3.0,
            threshold: 3.0,
            since_ms: 10,
            at_ms: 10,
            reason: None,
            marks: Default::default(),
            update: None,
        })
    }

    fn state_of(v: &View, svc: &str) -> ServiceState {
        v.snapshot(false, 0)
            .services
            .into_iter()
            .find(|s| s.service.as_str() == svc)
            .unwrap()
    }

    #[test]
    fn status_changes_apply_in_order_and_stale_or_repeated_ones_do_nothing() {
        let mut v = View::new(0);
        assert!(v.apply(&change("a", Status::Healthy, 100), 0));
        assert!(v.apply(&change("a", Status::Down, 200), 0));
        assert!(!v.apply(&change("a", Status::Down, 200), 0), "repeat");
        assert!(
            !v.apply(&change("a", Status::Healthy, 150), 0),
            "older than current"
        );
        assert_eq!(state_of(&v, "a").status, Status::Down);
    }

    #[test]
    fn alerts_are_added_and_removed_by_id_idempotently() {
        let mut v = View::new(0);
        assert!(v.apply(&alert("a", "x", AlertState::Firing), 0));
        assert!(!v.apply(&alert("a", "x", AlertState::Firing), 0));
        assert_eq!(state_of(&v, "a").alerts.len(), 1);
        assert!(v.apply(&alert("a", "x", AlertState::Resolved), 0));
        assert!(!v.apply(&alert("a", "x", AlertState::Resolved), 0));
        assert!(state_of(&v, "a").alerts.is_empty());
    }

    /// An update event (same id, marks changed) replaces the held marks and is relayed;
    /// the same marks again change nothing; a resolve still removes the alert.
    #[test]
    fn a_firing_event_for_a_held_alert_replaces_its_marks() {
        let mut v = View::new(0);
        assert!(v.apply(&alert("a", "x", AlertState::Firing), 0));
        let Update::Alert(mut ev) = alert("a", "x", AlertState::Firing) else {
            unreachable!()
        };
        ev.marks.silenced = true;
        ev.marks.acked_by = Some("ann".into());
        ev.update = Some(vitals_protocol::AlertUpdate::Silenced);
        let before = v.version();
        assert!(v.apply(&Update::Alert(ev.clone()), 0));
        assert!(v.version() > before);
        let held = &state_of(&v, "a").alerts[0];
        assert!(held.marks.silenced);
        assert_eq!(held.marks.acked_by.as_deref(), Some("ann"));
        assert!(
            !v.apply(&Update::Alert(ev.clone()), 0),
            "same marks: no change"
        );
        ev.marks.silenced = false;
        ev.marks.inhibited_by = Some(name("auth"));
        assert!(v.apply(&Update::Alert(ev), 0));
        let held = &state_of(&v, "a").alerts[0];
        assert!(!held.marks.silenced);
        assert_eq!(
            held.marks.inhibited_by.as_ref().map(|n| n.as_str()),
            Some("auth")
        );
        assert_eq!(state_of(&v, "a").alerts.len(), 1, "replaced, not added");
        assert!(!v.is_firing("x"), "the id names no service held");
        assert!(v.apply(&alert("a", "x", AlertState::Resolved), 0));
        assert!(state_of(&v, "a").alerts.is_empty());
    }

    #[test]
    fn is_firing_looks_up_the_alert_under_its_service() {
        let mut v = View::new(0);
        assert!(!v.is_firing("a:SERVICE_DOWN:10"));
        assert!(v.apply(&alert("a", "a:SERVICE_DOWN:10", AlertState::Firing), 0));
        assert!(v.is_firing("a:SERVICE_DOWN:10"));
        assert!(!v.is_firing("a:SERVICE_DOWN:11"));
        assert!(!v.is_firing("b:SERVICE_DOWN:10"));
        assert!(!v.is_firing("::"));
        assert!(v.apply(&alert("a", "a:SERVICE_DOWN:10", AlertState::Resolved), 0));
        assert!(!v.is_firing("a:SERVICE_DOWN:10"));
    }

    fn summary(svc: &str, seen: u64) -> Update {
        Update::Summary(ServiceSummary {
            service: name(svc),
            status: Status::Healthy,
            at_ms: seen,
            last_seen_ms: Some(seen),
            instance: format!("{svc}-1"),
            health_url: "http://x/health".into(),
            figures: Figures::default(),
            source: Default::default(),
            probe: None,
            host: None,
        })
    }

    /// Events buffered while a snapshot was fetched, replayed on top of it, give the
    /// same view whether the snapshot already contained them or not: including a
    /// retirement (with the resolve that follows it) and the service coming back.
    #[test]
    fn replay_over_a_snapshot_converges() {
        let events = [
            change("a", Status::Healthy, 100),
            alert("a", "down-1", AlertState::Firing),
            change("a", Status::Down, 200),
            alert("a", "down-1", AlertState::Resolved),
            change("a", Status::Healthy, 300),
            change("b", Status::Healthy, 310),
            alert("b", "down-1", AlertState::Firing),
            change("b", Status::Down, 320),
            change("b", Status::Retired, 400),
            alert("b", "down-1", AlertState::Resolved),
            change("c", Status::Healthy, 330),
            change("c", Status::Retired, 500),
            summary("c", 600),
            change("c", Status::Healthy, 610),
        ];
        let mut live = View::new(0);
        for e in &events {
            live.apply(e, 0);
        }
        for cut in 0..=events.len() {
            // The snapshot reflects the first `cut` events; all events are replayed after.
            let mut at_cut = View::new(0);
            for e in &events[..cut] {
                at_cut.apply(e, 0);
            }
            let mut v = View::new(0);
            v.replace(at_cut.snapshot(false, 0).services, "monitor", 0);
            for e in &events {
                v.apply(e, 0);
            }
            assert_eq!(
                v.snapshot(false, 0).services,
                live.snapshot(false, 0).services,
                "cut {cut}"
            );
        }
    }

    #[test]
    fn summaries_update_figures_but_not_a_known_status() {
        let mut v = View::new(0);
        v.apply(&change("a", Status::Down, 100), 0);
        let summary = ServiceSummary {
            service: name("a"),
            status: Status::Healthy,
            at_ms: 150,
            last_seen_ms: Some(140),
            instance: "a-1".into(),
            health_url: "http://x/health".into(),
            figures: Figures {
                cpu_pct: Some(42.0),
                ..Figures::default()
            },
            source: Default::default(),
            probe: None,
            host: None,
        };
        assert!(v.apply(&Update::Summary(summary.clone()), 0));
        let s = state_of(&v, "a");
        assert_eq!(
            (s.status, s.figures.cpu_pct, s.health_url.as_str()),
            (Status::Down, Some(42.0), "http://x/health")
        );
        let older = ServiceSummary {
            last_seen_ms: Some(100),
            ..summary
        };
        assert!(!v.apply(&Update::Summary(older), 0));
    }

    #[test]
    fn a_retired_service_is_dropped_and_a_later_sample_brings_it_back() {
        let mut v = View::new(0);
        v.apply(&change("a", Status::Down, 100), 0);
        v.apply(&alert("a", "x", AlertState::Firing), 0);
        assert!(v.apply(&change("a", Status::Retired, 200), 0));
        assert!(v.is_empty());
        assert!(
            !v.apply(&alert("a", "x", AlertState::Resolved), 0),
            "no ghost"
        );
        assert!(!v.apply(&change("a", Status::Retired, 200), 0), "repeat");
        assert!(v.is_empty());
        assert!(v.apply(&summary("a", 300), 0));
        assert_eq!(state_of(&v, "a").status, Status::Healthy);
        assert!(
            !v.apply(&change("a", Status::Retired, 200), 0),
            "an older retirement does not remove it again"
        );
        assert_eq!(v.len(), 1);
    }

    #[test]
    fn liveness_changes_are_reported_once() {
        let mut v = View::new(0);
        assert!(v.set_live(None, 1).is_none());
        let dead = v.set_live(Some("ended".into()), 2).unwrap();
        assert!(!dead.live);
        assert_eq!(dead.problem.as_deref(), Some("ended"));
        assert!(v.set_live(Some("ended".into()), 3).is_none());
        assert!(
            v.set_live(None, 4)
                .is_some_and(|g| g.live && g.problem.is_none())
        );
    }

    #[test]
    fn connection_changes_are_reported_once() {
        let mut v = View::new(0);
        assert!(v.set_connected(true, 5).is_some());
        assert!(v.set_connected(true, 6).is_none());
        let down = v.set_connected(false, 7).unwrap();
        assert!(!down.nats_connected);
        assert_eq!(v.snapshot(true, 8).gateway.at_ms, 7);
    }
}
