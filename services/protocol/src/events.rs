//! What the monitor publishes (`health.*`), stores (KV `health_status`) and serves.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::name::ServiceName;
use crate::source::{HostFigures, ProbeResult, Source};
use crate::status::{AlertName, AlertState, Status};

/// Published on `health.status.<service>` only when the status changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
pub struct StatusChange {
    pub service: ServiceName,
    pub status: Status,
    pub previous: Status,
    pub at_ms: u64,
    /// Why: `stopped`, `no sample for 3.0 s`, `HIGH_CPU: cpu_pct 91.0 > 85`, `recovered`...
    pub reasons: Vec<String>,
}

/// Published on `health.alert.<service>` when an alert fires and when it resolves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
pub struct AlertEvent {
    /// Stable for one firing: its resolve carries the same id (`service:ALERT:since_ms`).
    pub id: String,
    pub service: ServiceName,
    pub alert: AlertName,
    pub state: AlertState,
    /// The observed value that fired (or cleared) it; seconds of silence for SERVICE_DOWN.
    pub value: f64,
    pub threshold: f64,
    /// When this firing began.
    pub since_ms: u64,
    pub at_ms: u64,
    /// Why a resolve happened when it is not the condition clearing: `retired` (the
    /// service was retired), `restart repair` (reconciled after a monitor restart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Severity, silence, inhibition and acknowledgement of this alert (see [`AlertMarks`]).
    #[serde(flatten)]
    pub marks: AlertMarks,
    /// Set on an event that re-announces a firing alert whose marks changed (it was
    /// silenced, unsilenced, acknowledged or uninhibited): not a new firing. Absent on
    /// the fire and the resolve themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<AlertUpdate>,
}

/// What the monitor knows about an alert beyond its condition: how bad it is, whether a
/// person silenced or acknowledged it, and whether an upstream outage explains it.
/// Carried by every AlertEvent and every ActiveAlert.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
pub struct AlertMarks {
    /// From the rule (`[severity]` in the rules file): `critical` for SERVICE_DOWN and
    /// `warning` otherwise by default. Absent from older monitors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// The DOWN service this alert's service depends on (directly or through a chain)
    /// that explains it: not notified while set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inhibited_by: Option<ServiceName>,
    /// A silence in KV `vitals_silences` matches it: shown, not notified.
    #[serde(default, skip_serializing_if = "is_false")]
    pub silenced: bool,
    /// Who acknowledged it (`health.alert.ack`): no more reminders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked_by: Option<String>,
}

impl AlertMarks {
    /// Whether a receiver should hear about this firing now.
    pub fn notifiable(&self) -> bool {
        !self.silenced && self.inhibited_by.is_none()
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Why a firing alert was announced again (see [`AlertEvent::update`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum AlertUpdate {
    Silenced,
    Unsilenced,
    Acked,
    Uninhibited,
}

/// Rolling figures over the monitor's window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
pub struct Figures {
    /// Absent when the source has no such figure (a probe): shown as "n/a", never 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_pct: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_pct: Option<f64>,
    pub error_rate: f64,
    pub latency_ms: f64,
    pub latency_avg_ms: f64,
    pub latency_p95_ms: f64,
    pub latency_p99_ms: f64,
    /// Share of the window (since first seen, at most the window) the service was not DOWN.
    pub uptime_pct: f64,
    /// Samples in the window.
    pub samples: u32,
    pub window_s: u32,
    /// Apdex over the window, `(satisfied + tolerating / 2) / total` with threshold
    /// `apdex_t_ms` (a failed probe counts as frustrated); absent without samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(range(min = 0.0, max = 1.0)))]
    pub apdex: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apdex_t_ms: Option<u32>,
}

/// Published on `health.metrics.<service>` at most once a second per service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
pub struct ServiceSummary {
    pub service: ServiceName,
    pub status: Status,
    pub at_ms: u64,
    pub last_seen_ms: Option<u64>,
    pub instance: String,
    pub health_url: String,
    pub figures: Figures,
    /// Who sent the latest sample (`simulator` when absent) and, for a probe or an agent,
    /// what it said beyond the figures: the probe's outcome or the host's figures.
    #[serde(default, skip_serializing_if = "Source::is_simulator")]
    pub source: Source,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostFigures>,
}

/// An alert that is firing now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
pub struct ActiveAlert {
    pub id: String,
    pub alert: AlertName,
    pub value: f64,
    pub threshold: f64,
    pub since_ms: u64,
    #[serde(flatten)]
    pub marks: AlertMarks,
}

/// A service's current state: the value in KV `health_status` and one entry of a Snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
pub struct ServiceState {
    pub service: ServiceName,
    pub status: Status,
    /// When the current status began.
    pub since_ms: u64,
    /// The monitor's receive clock.
    pub last_seen_ms: Option<u64>,
    pub reasons: Vec<String>,
    pub alerts: Vec<ActiveAlert>,
    pub instance: String,
    pub health_url: String,
    pub figures: Figures,
    /// The last alert event (a firing or a resolve) published for this service before this
    /// state: a restarted monitor compares it with the last event HEALTH_EVENTS holds for the
    /// service, to know whether the stream has anything this state has not seen (or lacks
    /// something it has). Absent before the first alert (and from older monitors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_alert: Option<AlertMark>,
    /// The publishing interval the latest sample declared, kept so a restarted monitor
    /// judges a slow sender's silence as the running one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
    /// Who sent the latest sample (`simulator` when absent) and, for a probe or an agent,
    /// what it said beyond the figures: the probe's outcome or the host's figures.
    #[serde(default, skip_serializing_if = "Source::is_simulator")]
    pub source: Source,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostFigures>,
}

/// Which alert event a state was written after: its `id` and `state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
pub struct AlertMark {
    pub id: String,
    pub state: AlertState,
}

impl AlertMark {
    pub fn of(event: &AlertEvent) -> Self {
        Self {
            id: event.id.clone(),
            state: event.state,
        }
    }

    pub fn is(&self, event: &AlertEvent) -> bool {
        self.id == event.id && self.state == event.state
    }
}

/// Reply to `health.snapshot` (one page) and body of `GET /api/status` (everything).
///
/// A NATS reply must fit the server's max_payload, so `health.snapshot` answers in pages
/// packed up to that size: ask `{"after": next_after}` until `next_after` is absent (a
/// service present throughout appears exactly once, whatever changed meanwhile), or
/// `{"page": N}` for page N of the monitor's current copy (`version`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
pub struct Snapshot {
    pub monitor_id: String,
    pub at_ms: u64,
    /// The monitor's read copy this page was cut from (pages of one copy share it).
    #[serde(default)]
    pub version: u64,
    /// This page (from 0) and how many the copy has; `GET /api/status` is page 0 of 1.
    #[serde(default)]
    pub page: u32,
    #[serde(default = "one")]
    pub pages: u32,
    /// Services in the whole copy, on every page.
    #[serde(default)]
    pub total: u64,
    /// Pass as `after` to get the services that follow this page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<ServiceName>,
    /// Sorted by service name.
    pub services: Vec<ServiceState>,
}

fn one() -> u32 {
    1
}

/// Published on `health.monitor.heartbeat` every second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
pub struct MonitorHeartbeat {
    pub monitor_id: String,
    pub version: String,
    pub at_ms: u64,
    pub started_ms: u64,
    pub uptime_s: u64,
    pub interval_ms: u64,
    pub heartbeat_timeout_ms: u64,
    pub services: usize,
    pub samples_total: u64,
    pub samples_per_s: f64,
    pub refused_total: u64,
    pub refusals: BTreeMap<String, u64>,
    /// Slow-consumer events from the NATS client: a lower bound of the messages it dropped
    /// because the monitor read too slowly (under overload the event queue drops too).
    pub slow_consumer_drops: u64,
    /// Samples an instance skipped (gaps in its `seq`): lost anywhere between the publisher
    /// and the monitor. Exact for publishers that count by one.
    #[serde(default)]
    pub samples_missed: u64,
    /// Outbound events dropped because the publish queue was full (e.g. during an outage).
    pub publish_drops: u64,
    /// True while the monitor does not judge silence (just started or just reconnected).
    pub in_grace: bool,
}
