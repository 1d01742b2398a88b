//! Every tracked service's state, and how samples, ticks and connection changes move it.
//!
//! Pure: no I/O and no clock reads (`now_ms` is an argument), so a property test can
//! drive it. One task owns the engine; events come out in the order inputs went in.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use vitals_protocol::{
    ActiveAlert, AlertEvent, AlertMark, AlertMarks, AlertName, AlertState, AlertUpdate, Figures,
    HostFigures, MetricSample, ProbeResult, RefusalReason, ServiceName, ServiceState,
    ServiceSummary, Silence, Source, Status, StatusChange,
};

pub mod connections;

use crate::deps::Dependencies;
use crate::rules::{Edge, Metric, Rules, ThresholdState};
use crate::window::Window;

/// What the engine tells the outside world.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Status(StatusChange),
    Alert(AlertEvent),
    Summary(ServiceSummary),
    /// The service's stored state changed (status or alerts): persist it.
    Stored(ServiceState),
    /// The service was retired: delete its stored state.
    Forget(ServiceName),
}

/// The reason on a DOWN caused by a `stopping: true` sample.
pub const REASON_STOPPED: &str = "stopped";
/// The `reason` on the resolve of an alert whose service was retired.
pub const REASON_RETIRED: &str = "retired";
/// CERT_EXPIRING's warning period when a probe sample does not say.
const DEFAULT_CERT_WARN_DAYS: u32 = 14;
const DAY_MS: f64 = 86_400_000.0;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub defaults: Arc<Rules>,
    pub overrides: HashMap<String, Arc<Rules>>,
    pub max_services: usize,
    pub window_ms: u64,
    pub max_window_points: usize,
    /// After start and after a reconnect, silence is not judged for this long.
    pub grace_ms: u64,
    pub summary_interval_ms: u64,
    /// A gap between ticks longer than this means the monitor itself was not running
    /// (SIGSTOP, a paused VM): the silence it could not observe is forgiven.
    pub stall_ms: u64,
    /// A service DOWN for this long is retired (0: never).
    pub retire_after_ms: u64,
    /// Instances tracked per service for duplicate detection (see [`Instances`]).
    pub max_instances: usize,
    /// `depends_on` from the rules file: an alert of a service whose dependency is DOWN is
    /// inhibited (see [`Dependencies::root_down`]).
    pub depends_on: Arc<Dependencies>,
    /// How long a lost connection may take to come back (to another server of a cluster,
    /// or after a reset) before its service is judged DOWN ([`connections`]).
    pub reconnect_grace_ms: u64,
    /// Users whose connections never stand for a service (anyone can name a connection).
    pub conn_ignore_users: Vec<String>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        let defaults = Arc::new(Rules::default());
        Self {
            grace_ms: defaults.heartbeat_timeout_ms,
            defaults,
            overrides: HashMap::new(),
            max_services: 20_000,
            window_ms: 60_000,
            max_window_points: 600,
            summary_interval_ms: 1_000,
            stall_ms: 1_500,
            retire_after_ms: 86_400_000,
            max_instances: DEFAULT_MAX_INSTANCES,
            depends_on: Arc::default(),
            reconnect_grace_ms: DEFAULT_RECONNECT_GRACE_MS,
            conn_ignore_users: vec!["viewer".to_owned()],
        }
    }
}

pub const DEFAULT_RECONNECT_GRACE_MS: u64 = 500;

/// Summaries a tick may emit: a quarter more than the fleet's share of the time since the
/// last tick (and never fewer than a small fleet needs). Services started together would
/// otherwise all be due on the same tick every interval, and that burst (encoding and
/// publishing every summary at once) delays the status changes queued behind it; the
/// cut spreads them over the ticks within a few intervals, each summary late by at most
/// a tick.
fn summary_budget(services: usize, since_last_tick_ms: u64, interval_ms: u64) -> usize {
    const SMALL_FLEET: usize = 256;
    let share = services as u64 * since_last_tick_ms * 5 / (interval_ms.max(1) * 4);
    usize::try_from(share)
        .unwrap_or(usize::MAX)
        .saturating_add(1)
        .max(SMALL_FLEET)
}

/// What retiring a service did.
#[derive(Debug, Clone, PartialEq)]
pub struct Retired {
    pub previous: Status,
    /// Ids of the firing alerts it resolved.
    pub resolved: Vec<String>,
}

pub struct Engine {
    cfg: EngineConfig,
    services: HashMap<ServiceName, Tracked>,
    /// Silence is measured from max(last sample, this): moved forward when the monitor
    /// could not observe (start, reconnect, stall).
    silence_epoch_ms: u64,
    grace_until_ms: u64,
    disconnected: bool,
    /// The monitor's own heartbeat has not come back through NATS lately: the feed is
    /// stalled (e.g. the server is frozen) even if the connection looks up.
    feed_stalled: bool,
    last_tick_ms: Option<u64>,
    scratch: Vec<f32>,
    /// The silences not yet over (see [`Engine::set_silences`]).
    silences: Vec<Silence>,
    /// The next time a silence starts or ends: alerts are re-judged against the silences
    /// only then (and when the set changes), not every tick.
    silence_boundary_ms: Option<u64>,
    /// Names of the services that are DOWN now (for inhibition).
    down: HashSet<String>,
    connections: connections::Connections,
    /// Connection losses are not judged before this (set with the silence grace after
    /// the monitor's own reconnect or a stall, not at start).
    conn_quiet_until_ms: u64,
}

/// What a firing needs to know beyond its own service: the silences and who is DOWN.
struct Marker<'a> {
    silences: &'a [Silence],
    deps: &'a Dependencies,
    down: &'a HashSet<String>,
}

impl Marker<'_> {
    fn marks(
        &self,
        service: &ServiceName,
        rules: &Rules,
        alert: AlertName,
        now_ms: u64,
    ) -> AlertMarks {
        AlertMarks {
            severity: Some(rules.severity_of(alert)),
            inhibited_by: self.deps.root_down(service.as_str(), self.down),
            silenced: silenced(self.silences, service, alert, now_ms),
            acked_by: None,
        }
    }
}

fn silenced(silences: &[Silence], service: &ServiceName, alert: AlertName, now_ms: u64) -> bool {
    silences
        .iter()
        .any(|s| s.silences(service.as_str(), alert, now_ms))
}

/// Instances of one service tracked at once (replicas, or overlap in a rolling restart).
pub const DEFAULT_MAX_INSTANCES: usize = 64;
/// A gap in one instance's `seq` up to this is counted as that many missed samples; a larger
/// one is a jump of the counter (a fixed instance id restarted with a time-based seq, or a
/// sender that skips ahead), not losses, and is not counted.
const MAX_COUNTED_GAP: u64 = 100_000;

struct Tracked {
    name: ServiceName,
    rules: Arc<Rules>,
    status: Status,
    status_since_ms: u64,
    reasons: Vec<String>,
    last_seen_ms: Option<u64>,
    instance: String,
    health_url: String,
    /// `health_url` came from an accepted sample (not from KV): it passed the check.
    url_checked: bool,
    instances: Instances,
    latest: Latest,
    window: Window,
    thresholds: [ThresholdState; Metric::ALL.len()],
    source: Source,
    probe: Option<ProbeResult>,
    host: Option<HostFigures>,
    /// Consecutive failed probes (reset by a good one).
    probe_failures: u32,
    /// Apdex T of the latest sample (its probe's, else the rule's).
    apdex_t_ms: u32,
    /// The interval the latest sample declared (slow senders: see `Rules::silence_timeout_ms`).
    interval_ms: Option<u64>,
    alerts: Vec<ActiveAlert>,
    /// The last alert event emitted for this service, stored with the state so a restart
    /// can tell whether HEALTH_EVENTS and KV agree (see [`crate::reconcile`]).
    last_alert: Option<AlertMark>,
    down_reason: Option<String>,
    recovering: u32,
    summary_due: bool,
    last_summary_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Latest {
    cpu_pct: Option<f64>,
    mem_pct: Option<f64>,
    error_rate: f64,
    latency_ms: f64,
}

impl Engine {
    pub fn new(cfg: EngineConfig, now_ms: u64) -> Self {
        let grace_until_ms = now_ms + cfg.grace_ms;
        Self {
            cfg,
            services: HashMap::new(),
            silence_epoch_ms: now_ms,
            grace_until_ms,
            disconnected: false,
            feed_stalled: false,
            last_tick_ms: None,
            scratch: Vec::new(),
            silences: Vec::new(),
            silence_boundary_ms: None,
            down: HashSet::new(),
            connections: connections::Connections::default(),
            conn_quiet_until_ms: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.services.len()
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    pub fn in_grace(&self, now_ms: u64) -> bool {
        self.disconnected || self.feed_stalled || now_ms < self.grace_until_ms
    }

    pub fn heartbeat_timeout_ms(&self) -> u64 {
        self.cfg.defaults.heartbeat_timeout_ms
    }

    fn rules_for(&self, name: &ServiceName) -> Arc<Rules> {
        self.cfg
            .overrides
            .get(name.as_str())
            .unwrap_or(&self.cfg.defaults)
            .clone()
    }

    /// Loads states saved before a restart. They keep their status and firing alerts
    /// (so every firing still gets its one resolve); silence is judged from now.
    /// Returns how many were left out because of the service cap.
    pub fn restore(&mut self, states: Vec<ServiceState>, now_ms: u64) -> usize {
        let mut skipped = 0;
        for st in states {
            if self.services.len() >= self.cfg.max_services {
                skipped += 1;
                continue;
            }
            let rules = self.rules_for(&st.service);
            let mut t = Tracked::new(st.service.clone(), rules, &self.cfg, now_ms);
            t.status = st.status;
            t.status_since_ms = st.since_ms;
            t.last_seen_ms = st.last_seen_ms;
            t.instance = st.instance;
            t.health_url = st.health_url;
            t.source = st.source;
            t.interval_ms = st.interval_ms;
            t.probe = st.probe;
            t.host = st.host;
            if let Some(at) = st.figures.apdex_t_ms {
                t.apdex_t_ms = at;
            }
            t.latest = Latest {
                cpu_pct: st.figures.cpu_pct,
                mem_pct: st.figures.mem_pct,
                error_rate: st.figures.error_rate,
                latency_ms: st.figures.latency_ms,
            };
            for a in &st.alerts {
                if let Some(i) = Metric::ALL.iter().position(|m| m.alert() == a.alert) {
                    t.thresholds[i] = ThresholdState::firing();
                }
            }
            t.alerts = st.alerts;
            for a in &mut t.alerts {
                // Saved by a monitor that did not know severities.
                if a.marks.severity.is_none() {
                    a.marks.severity = Some(t.rules.severity_of(a.alert));
                }
            }
            if t.is_down() {
                self.down.insert(st.service.to_string());
            }
            t.last_alert = st.last_alert;
            if st.status == Status::Down {
                t.down_reason = st.reasons.first().cloned();
                t.window.mark_down(now_ms);
            }
            t.reasons = st.reasons;
            self.services.insert(st.service, t);
        }
        skipped
    }

    /// Whether `url` is `service`'s health URL from its last accepted sample, i.e. one
    /// that passed the check (see [`vitals_protocol::sample::parse_sample_known`]).
    pub fn checked_health_url(&self, service: &ServiceName, url: &str) -> bool {
        self.services
            .get(service)
            .is_some_and(|t| t.url_checked && t.health_url == url)
    }

    /// Applies one valid sample received at `now_ms`. Refuses a duplicate or replayed
    /// `seq`, a new service beyond the cap and a new instance beyond the instance cap;
    /// nothing else changes then. Returns how many samples of that instance were missed
    /// (a gap in its `seq`).
    pub fn on_sample(
        &mut self,
        sample: &MetricSample,
        now_ms: u64,
        out: &mut Vec<Event>,
    ) -> Result<u64, RefusalReason> {
        // One lookup for a known service (the hot path); a new one is inserted first.
        if !self.services.contains_key(&sample.service) {
            if self.services.len() >= self.cfg.max_services {
                return Err(RefusalReason::ServiceCap);
            }
            let rules = self.rules_for(&sample.service);
            let t = Tracked::new(sample.service.clone(), rules, &self.cfg, now_ms);
            self.services.insert(sample.service.clone(), t);
        }
        let marker = Marker {
            silences: &self.silences,
            deps: &self.cfg.depends_on,
            down: &self.down,
        };
        let Some(t) = self.services.get_mut(&sample.service) else {
            return Err(RefusalReason::ServiceCap);
        };
        let forget_after = self.cfg.window_ms;
        let missed = t.instances.check(
            &sample.instance,
            sample.seq,
            now_ms,
            forget_after,
            self.cfg.max_instances,
        )?;
        let was_down = t.is_down();
        t.last_seen_ms = Some(now_ms);
        if t.instance != sample.instance {
            t.instance.clone_from(&sample.instance);
        }
        if t.health_url != sample.health_url {
            t.health_url.clone_from(&sample.health_url);
        }
        t.url_checked = true;
        t.latest = Latest {
            cpu_pct: sample.cpu_pct,
            mem_pct: sample.mem_pct,
            error_rate: sample.error_rate,
            latency_ms: sample.latency_ms,
        };
        t.source = sample.source;
        t.interval_ms = sample.interval_ms;
        t.probe.clone_from(&sample.probe);
        t.host.clone_from(&sample.host);
        t.apdex_t_ms = sample
            .probe
            .as_ref()
            .and_then(|p| p.apdex_t_ms)
            .unwrap_or(t.rules.apdex_t_ms);
        let failed_probe = sample.probe.as_ref().filter(|p| !p.ok);
        t.window
            .push(now_ms, sample.latency_ms, failed_probe.is_none());
        t.summary_due = true;

        let mut alerts_changed = false;
        if let Some(probe) = &sample.probe {
            alerts_changed |= t.judge_certificate(probe, now_ms, &marker, out);
        }
        if sample.stopping {
            alerts_changed |= t.go_down(REASON_STOPPED.to_owned(), 0.0, None, now_ms, &marker, out);
            t.recovering = 0;
        } else if let Some(probe) = failed_probe {
            t.recovering = 0;
            t.probe_failures = t.probe_failures.saturating_add(1);
            let n = t.probe_failures;
            if !t.is_down() && n >= t.rules.down_after {
                let why = probe.error.as_deref().unwrap_or("failed");
                let reason = format!("probe failed: {why} ({n} in a row)");
                let threshold = Some(f64::from(t.rules.down_after));
                alerts_changed |= t.go_down(reason, f64::from(n), threshold, now_ms, &marker, out);
            } else if !t.is_down() {
                alerts_changed |= t.judge_thresholds(now_ms, &mut self.scratch, &marker, out);
            }
        } else if t.is_down() {
            t.probe_failures = 0;
            t.recovering += 1;
            let needed = match sample.source {
                Source::Probe => t.rules.up_after,
                _ => t.rules.recover_samples,
            };
            if t.recovering >= needed {
                t.recovering = 0;
                t.down_reason = None;
                let silence_s = 0.0;
                alerts_changed |= t.resolve(AlertName::ServiceDown, silence_s, now_ms, out);
            }
        } else {
            t.probe_failures = 0;
            alerts_changed |= t.judge_thresholds(now_ms, &mut self.scratch, &marker, out);
        }
        t.refresh_status(alerts_changed, now_ms, out);
        let is_down = t.is_down();
        if is_down != was_down {
            self.set_down(&sample.service, is_down, now_ms, out);
        }
        Ok(missed)
    }

    /// Records that `name` went DOWN or left it; leaving it re-judges what it inhibited.
    fn set_down(&mut self, name: &ServiceName, down: bool, now_ms: u64, out: &mut Vec<Event>) {
        if down {
            self.down.insert(name.to_string());
        } else if self.down.remove(name.as_str()) {
            self.left_down(name, now_ms, out);
        }
    }

    /// `gone` is no longer DOWN: each active alert it inhibited gets a new root if another
    /// ancestor is still DOWN (stored, nothing published), else is no longer inhibited and
    /// is announced again (`update: uninhibited`), so it is notified now.
    fn left_down(&mut self, gone: &ServiceName, now_ms: u64, out: &mut Vec<Event>) {
        let mut affected: Vec<ServiceName> = self
            .services
            .values()
            .filter(|t| {
                t.alerts
                    .iter()
                    .any(|a| a.marks.inhibited_by.as_ref() == Some(gone))
            })
            .map(|t| t.name.clone())
            .collect();
        affected.sort_unstable();
        for name in affected {
            let root = self.cfg.depends_on.root_down(name.as_str(), &self.down);
            let Some(t) = self.services.get_mut(&name) else {
                continue;
            };
            let mut updates = Vec::new();
            for a in &mut t.alerts {
                if a.marks.inhibited_by.as_ref() == Some(gone) {
                    a.marks.inhibited_by.clone_from(&root);
                    if root.is_none() {
                        updates.push(a.clone());
                    }
                }
            }
            for a in &updates {
                t.announce(a, AlertUpdate::Uninhibited, now_ms, out);
            }
            out.push(Event::Stored(t.state(now_ms, &mut self.scratch)));
        }
    }

    /// After a restore: an alert saved as inhibited by a service that is not DOWN now, or
    /// that no longer explains it (the rules file changed), is judged again the same way
    /// as when its root leaves DOWN.
    pub fn settle_inhibitions(&mut self, now_ms: u64, out: &mut Vec<Event>) {
        let mut stale: Vec<ServiceName> = Vec::new();
        for t in self.services.values() {
            for a in &t.alerts {
                let Some(root) = &a.marks.inhibited_by else {
                    continue;
                };
                let explains = self.down.contains(root.as_str())
                    && self
                        .cfg
                        .depends_on
                        .root_down(t.name.as_str(), &self.down)
                        .as_ref()
                        == Some(root);
                if !explains && !stale.contains(root) {
                    stale.push(root.clone());
                }
            }
        }
        stale.sort_unstable();
        for root in stale {
            self.left_down(&root, now_ms, out);
        }
    }

    /// Replaces the silences (all of them: what KV `vitals_silences` holds). Every firing
    /// alert whose silenced mark changes is announced again (`silenced` / `unsilenced`).
    pub fn set_silences(&mut self, silences: Vec<Silence>, now_ms: u64, out: &mut Vec<Event>) {
        self.silences = silences;
        self.judge_silences(now_ms, out);
    }

    pub fn silences(&self) -> &[Silence] {
        &self.silences
    }

    fn judge_silences(&mut self, now_ms: u64, out: &mut Vec<Event>) {
        self.silences.retain(|s| s.ends_ms > now_ms);
        self.silence_boundary_ms = self
            .silences
            .iter()
            .flat_map(|s| [s.starts_ms, s.ends_ms])
            .filter(|&t| t > now_ms)
            .min();
        for t in self.services.values_mut() {
            let mut updates = Vec::new();
            for a in &mut t.alerts {
                let now_silenced = silenced(&self.silences, &t.name, a.alert, now_ms);
                if now_silenced != a.marks.silenced {
                    a.marks.silenced = now_silenced;
                    let why = match now_silenced {
                        true => AlertUpdate::Silenced,
                        false => AlertUpdate::Unsilenced,
                    };
                    updates.push((a.clone(), why));
                }
            }
            if updates.is_empty() {
                continue;
            }
            for (a, why) in &updates {
                t.announce(a, *why, now_ms, out);
            }
            out.push(Event::Stored(t.state(now_ms, &mut self.scratch)));
        }
    }

    /// Marks the firing alert `alert_id` acknowledged by `by` and announces it (`acked`).
    /// False if no such alert fires. Acknowledging again by the same person changes nothing.
    pub fn ack(&mut self, alert_id: &str, by: &str, now_ms: u64, out: &mut Vec<Event>) -> bool {
        let Some(service) = alert_id.split(':').next() else {
            return false;
        };
        let Some(t) = ServiceName::parse(service)
            .ok()
            .and_then(|n| self.services.get_mut(&n))
        else {
            return false;
        };
        let Some(a) = t.alerts.iter_mut().find(|a| a.id == alert_id) else {
            return false;
        };
        if a.marks.acked_by.as_deref() == Some(by) {
            return true;
        }
        a.marks.acked_by = Some(by.to_owned());
        let a = a.clone();
        t.announce(&a, AlertUpdate::Acked, now_ms, out);
        out.push(Event::Stored(t.state(now_ms, &mut self.scratch)));
        true
    }

    /// Whether `alert_id` fires now.
    pub fn is_firing(&self, alert_id: &str) -> bool {
        let service = alert_id.split(':').next().unwrap_or("");
        ServiceName::parse(service)
            .ok()
            .and_then(|n| self.services.get(&n))
            .is_some_and(|t| t.alerts.iter().any(|a| a.id == alert_id))
    }

    /// Stops tracking `name`: its firing alerts resolve (reason `retired`), one
    /// StatusChange RETIRED goes out and its stored state is deleted. None if unknown.
    /// A sample from it later simply starts a new service.
    pub fn retire(
        &mut self,
        name: &ServiceName,
        why: String,
        now_ms: u64,
        out: &mut Vec<Event>,
    ) -> Option<Retired> {
        let t = self.services.remove(name)?;
        let mut resolved = Vec::with_capacity(t.alerts.len());
        for active in t.alerts {
            out.push(Event::Alert(AlertEvent {
                id: active.id.clone(),
                service: t.name.clone(),
                alert: active.alert,
                state: AlertState::Resolved,
                value: active.value,
                threshold: active.threshold,
                since_ms: active.since_ms,
                at_ms: now_ms,
                reason: Some(REASON_RETIRED.to_owned()),
                marks: active.marks.clone(),
                update: None,
            }));
            resolved.push(active.id);
        }
        out.push(Event::Status(StatusChange {
            service: t.name.clone(),
            status: Status::Retired,
            previous: t.status,
            at_ms: now_ms,
            reasons: vec![why],
        }));
        out.push(Event::Forget(t.name.clone()));
        if self.down.remove(t.name.as_str()) {
            self.left_down(&t.name, now_ms, out);
        }
        Some(Retired {
            previous: t.status,
            resolved,
        })
    }

    /// Retires every service that has been DOWN for `retire_after_ms`.
    fn retire_long_down(&mut self, now_ms: u64, out: &mut Vec<Event>) {
        let after = self.cfg.retire_after_ms;
        if after == 0 {
            return;
        }
        let due: Vec<ServiceName> = self
            .services
            .values()
            .filter(|t| {
                t.status == Status::Down && now_ms.saturating_sub(t.status_since_ms) >= after
            })
            .map(|t| t.name.clone())
            .collect();
        for name in due {
            let why = format!("retired: DOWN for {} s", after / 1000);
            self.retire(&name, why, now_ms, out);
        }
    }

    /// Judges silence and emits due summaries. Called every tick (<= 250 ms).
    pub fn on_tick(&mut self, now_ms: u64, out: &mut Vec<Event>) {
        if let Some(last) = self.last_tick_ms
            && now_ms.saturating_sub(last) > self.cfg.stall_ms
        {
            self.forgive_silence(now_ms);
        }
        let since_last_tick = self
            .last_tick_ms
            .map_or(self.cfg.summary_interval_ms, |last| {
                now_ms.saturating_sub(last)
            });
        self.last_tick_ms = Some(now_ms);
        self.retire_long_down(now_ms, out);
        if self.silence_boundary_ms.is_some_and(|b| now_ms >= b) {
            self.judge_silences(now_ms, out);
        }
        let judging = !self.in_grace(now_ms);
        let mut going_down: Vec<(u32, ServiceName, u64, u64)> = Vec::new();
        for t in self.services.values_mut() {
            let silent_since = t.last_seen_ms.unwrap_or(0).max(self.silence_epoch_ms);
            let silence_ms = now_ms.saturating_sub(silent_since);
            let timeout = t.rules.silence_timeout_ms(t.interval_ms);
            if silence_ms > timeout {
                t.recovering = 0;
                if judging && !t.is_down() && t.status != Status::Unknown {
                    let depth = self.cfg.depends_on.depth(t.name.as_str());
                    going_down.push((depth, t.name.clone(), silence_ms, timeout));
                }
            }
        }
        self.bring_down(
            going_down,
            |silence_ms| format!("no sample for {:.1} s", silence_ms as f64 / 1000.0),
            now_ms,
            out,
        );
        let mut budget = summary_budget(
            self.services.len(),
            since_last_tick,
            self.cfg.summary_interval_ms,
        );
        for t in self.services.values_mut() {
            if budget == 0 {
                break;
            }
            let summary_allowed = t
                .last_summary_ms
                .is_none_or(|last| now_ms.saturating_sub(last) >= self.cfg.summary_interval_ms);
            if t.summary_due && summary_allowed {
                budget -= 1;
                t.summary_due = false;
                t.last_summary_ms = Some(now_ms);
                out.push(Event::Summary(t.summary(now_ms, &mut self.scratch)));
            }
        }
    }

    /// Takes each (depth, service, silence, timeout) DOWN with `reason(silence)`, roots
    /// first: a dependant going DOWN at the same time is then inhibited by them.
    fn bring_down(
        &mut self,
        mut going_down: Vec<(u32, ServiceName, u64, u64)>,
        reason: impl Fn(u64) -> String,
        now_ms: u64,
        out: &mut Vec<Event>,
    ) {
        going_down.sort_unstable();
        for (_, name, silence_ms, timeout) in going_down {
            let marker = Marker {
                silences: &self.silences,
                deps: &self.cfg.depends_on,
                down: &self.down,
            };
            let Some(t) = self.services.get_mut(&name) else {
                continue;
            };
            let silence_s = silence_ms as f64 / 1000.0;
            let threshold_s = Some(timeout as f64 / 1000.0);
            let changed = t.go_down(
                reason(silence_ms),
                silence_s,
                threshold_s,
                now_ms,
                &marker,
                out,
            );
            t.refresh_status(changed, now_ms, out);
            if t.is_down() {
                self.down.insert(name.to_string());
            }
        }
    }

    /// The NATS connection is gone: no sample can arrive, so silence means nothing.
    pub fn on_disconnected(&mut self) {
        self.disconnected = true;
    }

    /// The NATS connection is back: judge silence again after a grace period.
    pub fn on_reconnected(&mut self, now_ms: u64) {
        let was_disconnected = std::mem::take(&mut self.disconnected);
        let quiet = self.conn_quiet_until_ms;
        self.forgive_silence(now_ms);
        // The first connect is no reconnect: no connection event was missed or is stale.
        if !was_disconnected {
            self.conn_quiet_until_ms = quiet;
        }
    }

    /// The monitor's heartbeat stopped echoing back: samples may be stuck in NATS, so
    /// silence means nothing until the feed moves again.
    pub fn on_feed_stalled(&mut self) {
        self.feed_stalled = true;
    }

    /// The feed moves again (an echo arrived after a stall): judge after a grace period.
    pub fn on_feed_resumed(&mut self, now_ms: u64) {
        if std::mem::take(&mut self.feed_stalled) {
            self.forgive_silence(now_ms);
        }
    }

    pub fn feed_stalled(&self) -> bool {
        self.feed_stalled
    }

    /// The monitor's own client dropped messages (it read too slowly): any service's
    /// samples may be among them, so silence counts only from now. Not a grace: a service
    /// that stays silent a full timeout after the last drop is DOWN, and connection losses
    /// (their own subscription) are judged as before.
    pub fn on_samples_dropped(&mut self, now_ms: u64) {
        self.silence_epoch_ms = self.silence_epoch_ms.max(now_ms);
    }

    fn forgive_silence(&mut self, now_ms: u64) {
        self.silence_epoch_ms = now_ms;
        self.grace_until_ms = now_ms + self.cfg.grace_ms;
        self.conn_quiet_until_ms = now_ms + self.cfg.grace_ms;
    }

    /// Every service's current state, sorted by name.
    pub fn snapshot(&mut self, now_ms: u64) -> Vec<ServiceState> {
        let scratch = &mut self.scratch;
        let mut all: Vec<ServiceState> = self
            .services
            .values_mut()
            .map(|t| t.state(now_ms, scratch))
            .collect();
        all.sort_unstable_by(|a, b| a.service.cmp(&b.service));
        all
    }

    pub fn status_of(&self, name: &str) -> Option<Status> {
        let name = ServiceName::parse(name).ok()?;
        self.services.get(&name).map(|t| t.status)
    }
}

/// The instances of one service seen lately and the last `seq` of each, to refuse
/// duplicates and replays: within one instance `seq` must increase. A restart needs
/// evidence, a new instance id; a repeated (or zero) `seq` from a known instance is a
/// duplicate. At most `max` instances are held; one silent for longer than the
/// forget period is dropped to make room, and if none is, the new instance is refused
/// (`instance_cap`), so the rule holds for any number of replicas up to the cap.
#[derive(Debug, Clone, Default)]
struct Instances {
    seen: Vec<InstanceSeq>,
}

#[derive(Debug, Clone)]
struct InstanceSeq {
    id: String,
    last_seq: u64,
    last_seen_ms: u64,
    /// Its connection closed (see [`connections`]): not counted as a live replica until
    /// it is heard from again.
    closed: bool,
}

impl Instances {
    /// Accepts `seq` from `instance` (returning how many of its samples were skipped)
    /// or refuses it.
    fn check(
        &mut self,
        instance: &str,
        seq: u64,
        now_ms: u64,
        forget_after_ms: u64,
        max: usize,
    ) -> Result<u64, RefusalReason> {
        if let Some(known) = self.seen.iter_mut().find(|i| i.id == instance) {
            if seq <= known.last_seq {
                return Err(RefusalReason::Duplicate);
            }
            let gap = seq - known.last_seq - 1;
            let missed = if gap <= MAX_COUNTED_GAP { gap } else { 0 };
            known.last_seq = seq;
            known.last_seen_ms = now_ms;
            known.closed = false;
            return Ok(missed);
        }
        if self.seen.len() >= max.max(1) {
            let stalest = self
                .seen
                .iter()
                .enumerate()
                .min_by_key(|(_, i)| i.last_seen_ms)
                .map(|(pos, i)| (pos, i.last_seen_ms));
            match stalest {
                Some((pos, seen)) if now_ms.saturating_sub(seen) > forget_after_ms => {
                    self.seen.swap_remove(pos);
                }
                _ => return Err(RefusalReason::InstanceCap),
            }
        }
        self.seen.push(InstanceSeq {
            id: instance.to_owned(),
            last_seq: seq,
            last_seen_ms: now_ms,
            closed: false,
        });
        Ok(0)
    }

    /// Marks `instance`'s connection closed; false if the instance is not known.
    fn close(&mut self, instance: &str) -> bool {
        self.seen
            .iter_mut()
            .find(|i| i.id == instance)
            .map(|i| i.closed = true)
            .is_some()
    }

    /// `instance` connected again.
    fn reopen(&mut self, instance: &str) {
        if let Some(i) = self.seen.iter_mut().find(|i| i.id == instance) {
            i.closed = false;
        }
    }

    /// Whether an instance other than `instance`, not closed, was heard from within
    /// `timeout_ms`.
    fn another_alive(&self, instance: &str, now_ms: u64, timeout_ms: u64) -> bool {
        self.seen.iter().any(|i| {
            i.id != instance && !i.closed && now_ms.saturating_sub(i.last_seen_ms) <= timeout_ms
        })
    }
}

impl Tracked {
    fn new(name: ServiceName, rules: Arc<Rules>, cfg: &EngineConfig, now_ms: u64) -> Self {
        let apdex_t_ms = rules.apdex_t_ms;
        Self {
            name,
            rules,
            status: Status::Unknown,
            status_since_ms: now_ms,
            reasons: Vec::new(),
            last_seen_ms: None,
            instance: String::new(),
            health_url: String::new(),
            url_checked: false,
            instances: Instances::default(),
            latest: Latest::default(),
            window: Window::new(cfg.window_ms, cfg.max_window_points, now_ms),
            thresholds: Default::default(),
            source: Source::default(),
            probe: None,
            host: None,
            probe_failures: 0,
            apdex_t_ms,
            interval_ms: None,
            alerts: Vec::new(),
            last_alert: None,
            down_reason: None,
            recovering: 0,
            summary_due: false,
            last_summary_ms: None,
        }
    }

    fn is_down(&self) -> bool {
        self.alerts
            .iter()
            .any(|a| a.alert == AlertName::ServiceDown)
    }

    fn judge_thresholds(
        &mut self,
        now_ms: u64,
        scratch: &mut Vec<f32>,
        marker: &Marker<'_>,
        out: &mut Vec<Event>,
    ) -> bool {
        let mut changed = false;
        for (i, metric) in Metric::ALL.into_iter().enumerate() {
            let rule = self.rules.threshold(metric);
            // A disabled rule that is not firing has nothing to observe (Apdex is off by
            // default): its figure, a pass over the window, is not computed per sample.
            if !rule.enabled && !self.thresholds[i].firing {
                continue;
            }
            // A figure the source does not have (a probe's CPU) is not judged at all.
            let value = match metric {
                Metric::Cpu => self.latest.cpu_pct,
                Metric::Memory => self.latest.mem_pct,
                Metric::ErrorRate => Some(self.latest.error_rate),
                Metric::Latency => {
                    let since = now_ms.saturating_sub(self.rules.latency_window_ms);
                    let cap = self.rules.latency_window_samples as usize;
                    self.window.latency_quantile(since, cap, 0.95, scratch)
                }
                Metric::Apdex => self.window.apdex(self.apdex_t_ms),
            };
            let Some(value) = value else { continue };
            // The Apdex rule runs over the negated score; alerts carry the score itself.
            let (observed, threshold) = match metric {
                Metric::Apdex => (-value, self.rules.apdex.fire_below),
                _ => (value, rule.fire_above),
            };
            match self.thresholds[i].observe(&rule, observed) {
                Some(Edge::Fire) => {
                    changed |= self.fire(metric.alert(), value, threshold, now_ms, marker, out)
                }
                Some(Edge::Resolve) => changed |= self.resolve(metric.alert(), value, now_ms, out),
                None => {}
            }
        }
        changed
    }

    /// CERT_EXPIRING from what the probe saw of the certificate: fires when it expires
    /// within the warning period, resolves when a good probe shows a later one (or none:
    /// the target stopped using TLS). A failed probe without certificate says nothing.
    fn judge_certificate(
        &mut self,
        probe: &ProbeResult,
        now_ms: u64,
        marker: &Marker<'_>,
        out: &mut Vec<Event>,
    ) -> bool {
        let warn_days = f64::from(probe.cert_warn_days.unwrap_or(DEFAULT_CERT_WARN_DAYS));
        match probe.cert_expires_ms {
            Some(expires) => {
                let days_left = (expires as f64 - now_ms as f64) / DAY_MS;
                if days_left < warn_days {
                    self.fire(
                        AlertName::CertExpiring,
                        days_left,
                        warn_days,
                        now_ms,
                        marker,
                        out,
                    )
                } else {
                    self.resolve(AlertName::CertExpiring, days_left, now_ms, out)
                }
            }
            None if probe.ok => self.resolve(AlertName::CertExpiring, 0.0, now_ms, out),
            None => false,
        }
    }

    /// Marks the service DOWN: its threshold alerts resolve (there is no data to judge
    /// them by) and SERVICE_DOWN fires. Returns whether anything changed.
    /// `value` is seconds of silence (threshold: the heartbeat timeout) unless `threshold`
    /// says otherwise (failed probes in a row against `down_after`).
    fn go_down(
        &mut self,
        reason: String,
        value: f64,
        threshold: Option<f64>,
        now_ms: u64,
        marker: &Marker<'_>,
        out: &mut Vec<Event>,
    ) -> bool {
        if self.is_down() {
            return false;
        }
        for (i, metric) in Metric::ALL.into_iter().enumerate() {
            if self.thresholds[i].firing {
                let value = self
                    .alerts
                    .iter()
                    .find(|a| a.alert == metric.alert())
                    .map_or(0.0, |a| a.value);
                self.resolve(metric.alert(), value, now_ms, out);
            }
            self.thresholds[i].reset();
        }
        self.down_reason = Some(reason);
        let threshold = threshold.unwrap_or(self.rules.heartbeat_timeout_ms as f64 / 1000.0);
        self.fire(
            AlertName::ServiceDown,
            value,
            threshold,
            now_ms,
            marker,
            out,
        )
    }

    fn fire(
        &mut self,
        alert: AlertName,
        value: f64,
        threshold: f64,
        now_ms: u64,
        marker: &Marker<'_>,
        out: &mut Vec<Event>,
    ) -> bool {
        if self.alerts.iter().any(|a| a.alert == alert) {
            return false;
        }
        let (value, threshold) = (finite(value), finite(threshold));
        let active = ActiveAlert {
            id: format!("{}:{}:{}", self.name, alert.as_str(), now_ms),
            alert,
            value,
            threshold,
            since_ms: now_ms,
            marks: marker.marks(&self.name, &self.rules, alert, now_ms),
        };
        let event = AlertEvent {
            id: active.id.clone(),
            service: self.name.clone(),
            alert,
            state: AlertState::Firing,
            value,
            threshold,
            since_ms: now_ms,
            at_ms: now_ms,
            reason: None,
            marks: active.marks.clone(),
            update: None,
        };
        self.last_alert = Some(AlertMark::of(&event));
        out.push(Event::Alert(event));
        self.alerts.push(active);
        true
    }

    /// Announces a firing alert again because its marks changed (not a new firing).
    fn announce(&mut self, a: &ActiveAlert, why: AlertUpdate, now_ms: u64, out: &mut Vec<Event>) {
        let event = AlertEvent {
            id: a.id.clone(),
            service: self.name.clone(),
            alert: a.alert,
            state: AlertState::Firing,
            value: a.value,
            threshold: a.threshold,
            since_ms: a.since_ms,
            at_ms: now_ms,
            reason: None,
            marks: a.marks.clone(),
            update: Some(why),
        };
        self.last_alert = Some(AlertMark::of(&event));
        out.push(Event::Alert(event));
    }

    fn resolve(&mut self, alert: AlertName, value: f64, now_ms: u64, out: &mut Vec<Event>) -> bool {
        let Some(pos) = self.alerts.iter().position(|a| a.alert == alert) else {
            return false;
        };
        let active = self.alerts.remove(pos);
        let event = AlertEvent {
            id: active.id,
            service: self.name.clone(),
            alert,
            state: AlertState::Resolved,
            value: finite(value),
            threshold: active.threshold,
            since_ms: active.since_ms,
            at_ms: now_ms,
            reason: None,
            marks: active.marks,
            update: None,
        };
        self.last_alert = Some(AlertMark::of(&event));
        out.push(Event::Alert(event));
        true
    }

    /// Derives the status from the firing alerts; emits a StatusChange when it changed
    /// and a Stored event when anything worth persisting did.
    fn refresh_status(&mut self, alerts_changed: bool, now_ms: u64, out: &mut Vec<Event>) {
        let status = if self.is_down() {
            Status::Down
        } else if !self.alerts.is_empty() {
            Status::Degraded
        } else {
            Status::Healthy
        };
        if status == self.status && !alerts_changed {
            return;
        }
        let previous = self.status;
        self.reasons = match status {
            Status::Down => vec![self.down_reason.clone().unwrap_or_else(|| "down".into())],
            Status::Degraded => self.alerts.iter().map(describe_alert).collect(),
            Status::Healthy if previous == Status::Unknown => vec!["first sample".into()],
            Status::Healthy => vec!["recovered".into()],
            Status::Unknown | Status::Retired => Vec::new(),
        };
        if status != previous {
            match status {
                Status::Down => self.window.mark_down(now_ms),
                _ => self.window.mark_up(now_ms),
            }
            self.status = status;
            self.status_since_ms = now_ms;
            out.push(Event::Status(StatusChange {
                service: self.name.clone(),
                status,
                previous,
                at_ms: now_ms,
                reasons: self.reasons.clone(),
            }));
        }
        let mut scratch = Vec::new();
        out.push(Event::Stored(self.state(now_ms, &mut scratch)));
    }

    fn figures(&mut self, now_ms: u64, scratch: &mut Vec<f32>) -> Figures {
        self.window.evict(now_ms);
        let since = now_ms.saturating_sub(self.window.span_ms());
        let lat = self.window.latency_stats(since, scratch);
        // Inputs are bounded at validation; `finite` makes sure no figure can ever be
        // written as `null` (what JSON makes of a NaN or an infinity) whatever comes in.
        Figures {
            cpu_pct: self.latest.cpu_pct.map(finite),
            mem_pct: self.latest.mem_pct.map(finite),
            error_rate: finite(self.latest.error_rate),
            latency_ms: finite(self.latest.latency_ms),
            latency_avg_ms: finite(lat.map_or(0.0, |l| l.avg)),
            latency_p95_ms: finite(lat.map_or(0.0, |l| l.p95)),
            latency_p99_ms: finite(lat.map_or(0.0, |l| l.p99)),
            uptime_pct: finite(self.window.uptime_pct(now_ms)),
            samples: self.window.len() as u32,
            window_s: (self.window.span_ms() / 1000) as u32,
            apdex: self.window.apdex(self.apdex_t_ms).map(finite),
            apdex_t_ms: Some(self.apdex_t_ms),
        }
    }

    fn state(&mut self, now_ms: u64, scratch: &mut Vec<f32>) -> ServiceState {
        ServiceState {
            service: self.name.clone(),
            status: self.status,
            since_ms: self.status_since_ms,
            last_seen_ms: self.last_seen_ms,
            reasons: self.reasons.clone(),
            alerts: self.alerts.clone(),
            instance: self.instance.clone(),
            health_url: self.health_url.clone(),
            figures: self.figures(now_ms, scratch),
            last_alert: self.last_alert.clone(),
            interval_ms: self.interval_ms,
            source: self.source,
            probe: self.probe.clone(),
            host: self.host.clone(),
        }
    }

    fn summary(&mut self, now_ms: u64, scratch: &mut Vec<f32>) -> ServiceSummary {
        ServiceSummary {
            service: self.name.clone(),
            status: self.status,
            at_ms: now_ms,
            last_seen_ms: self.last_seen_ms,
            instance: self.instance.clone(),
            health_url: self.health_url.clone(),
            figures: self.figures(now_ms, scratch),
            source: self.source,
            probe: self.probe.clone(),
            host: self.host.clone(),
        }
    }
}

/// A figure as published: a non-finite value (which JSON would write as `null`, breaking
/// every reader) becomes 0.
pub fn finite(v: f64) -> f64 {
    if v.is_finite() { v } else { 0.0 }
}

fn describe_alert(a: &ActiveAlert) -> String {
    let name = a.alert.as_str();
    match a.alert {
        AlertName::LowApdex => format!("{name}: apdex {:.3} < {}", a.value, a.threshold),
        AlertName::CertExpiring => {
            format!("{name}: {:.1} days left < {}", a.value, a.threshold)
        }
        _ => {
            let field = Metric::ALL
                .iter()
                .find(|m| m.alert() == a.alert)
                .map_or("value", |m| m.field());
            format!("{name}: {field} {:.3} > {}", a.value, a.threshold)
        }
    }
}

#[cfg(test)]
mod marks_tests;
#[cfg(test)]
mod tests;
