//! Alert rules: thresholds with a for-count and a clear band, and the heartbeat rule. Pure.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vitals_protocol::AlertName;

/// One threshold alert: fires after `for_samples` consecutive values above `fire_above`,
/// resolves after `clear_samples` consecutive values below `clear_below`. Values between
/// the two (the band) reset both counts, so a value hovering at the threshold cannot flap.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdRule {
    #[serde(default = "yes")]
    pub enabled: bool,
    pub fire_above: f64,
    pub clear_below: f64,
    pub for_samples: u32,
    pub clear_samples: u32,
}

fn yes() -> bool {
    true
}

impl ThresholdRule {
    pub const fn new(
        fire_above: f64,
        clear_below: f64,
        for_samples: u32,
        clear_samples: u32,
    ) -> Self {
        Self {
            enabled: true,
            fire_above,
            clear_below,
            for_samples,
            clear_samples,
        }
    }

    pub fn validate(&self, name: &str) -> Result<(), String> {
        if !(self.fire_above.is_finite() && self.clear_below.is_finite()) {
            return Err(format!("{name}: thresholds must be finite"));
        }
        if self.clear_below > self.fire_above {
            return Err(format!("{name}: clear_below must not exceed fire_above"));
        }
        if self.for_samples == 0 || self.clear_samples == 0 {
            return Err(format!(
                "{name}: for_samples and clear_samples must be at least 1"
            ));
        }
        Ok(())
    }
}

/// LOW_APDEX: fires after `for_samples` consecutive samples with the window's Apdex below
/// `fire_below`, resolves after `clear_samples` above `clear_above`. Off by default: what a
/// good score is depends on the service and its T.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApdexRule {
    #[serde(default)]
    pub enabled: bool,
    pub fire_below: f64,
    pub clear_above: f64,
    pub for_samples: u32,
    pub clear_samples: u32,
}

impl Default for ApdexRule {
    fn default() -> Self {
        Self {
            enabled: false,
            fire_below: 0.7,
            clear_above: 0.85,
            for_samples: 3,
            clear_samples: 3,
        }
    }
}

impl ApdexRule {
    /// The same rule over the negated score, so one threshold state machine serves both
    /// directions.
    fn as_threshold(&self) -> ThresholdRule {
        ThresholdRule {
            enabled: self.enabled,
            fire_above: -self.fire_below,
            clear_below: -self.clear_above,
            for_samples: self.for_samples,
            clear_samples: self.clear_samples,
        }
    }
}

/// Every rule a service is judged by. Defaults are documented in docs/PROTOCOL.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rules {
    /// HIGH_CPU on `cpu_pct` of each sample.
    pub cpu: ThresholdRule,
    /// HIGH_MEMORY on `mem_pct` of each sample.
    pub memory: ThresholdRule,
    /// HIGH_LATENCY on the p95 of `latency_ms` over the last `latency_window_ms`, at most
    /// the last `latency_window_samples` samples (bounded work for a fast sender).
    pub latency: ThresholdRule,
    pub latency_window_ms: u64,
    pub latency_window_samples: u32,
    /// HIGH_ERROR_RATE on `error_rate` of each sample.
    pub error_rate: ThresholdRule,
    /// SERVICE_DOWN after this long without a sample (receive clock).
    pub heartbeat_timeout_ms: u64,
    /// Consecutive samples (each within the timeout) that end a SERVICE_DOWN.
    pub recover_samples: u32,
    /// A sender that says its `interval_ms` is judged silent only after this many of its
    /// intervals, when that is longer than `heartbeat_timeout_ms`.
    pub silence_intervals: u32,
    /// Probe samples: SERVICE_DOWN after this many consecutive failed probes...
    pub down_after: u32,
    /// ...and resolved after this many consecutive good ones (instead of `recover_samples`).
    pub up_after: u32,
    /// Apdex threshold T for samples that do not bring their own (`probe.apdex_t_ms`).
    pub apdex_t_ms: u32,
    pub apdex: ApdexRule,
    /// `[severity]`: per alert name (`SERVICE_DOWN = "critical"`); an alert not named
    /// gets [`default_severity`].
    pub severity: BTreeMap<String, String>,
}

/// `critical` for SERVICE_DOWN, `warning` for everything else.
pub fn default_severity(alert: AlertName) -> &'static str {
    match alert {
        AlertName::ServiceDown => "critical",
        _ => "warning",
    }
}

/// `^[a-z][a-z0-9_-]{0,31}$`: a label value every receiver takes as is.
fn valid_severity(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=32).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'-'))
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            cpu: ThresholdRule::new(85.0, 75.0, 3, 3),
            memory: ThresholdRule::new(90.0, 80.0, 3, 3),
            latency: ThresholdRule::new(500.0, 300.0, 3, 3),
            latency_window_ms: 10_000,
            latency_window_samples: 20,
            error_rate: ThresholdRule::new(0.05, 0.02, 3, 3),
            heartbeat_timeout_ms: 3_000,
            recover_samples: 2,
            silence_intervals: 3,
            down_after: 2,
            up_after: 2,
            apdex_t_ms: 100,
            apdex: ApdexRule::default(),
            severity: BTreeMap::new(),
        }
    }
}

impl Rules {
    pub fn validate(&self) -> Result<(), String> {
        self.cpu.validate("cpu")?;
        self.memory.validate("memory")?;
        self.latency.validate("latency")?;
        self.error_rate.validate("error_rate")?;
        self.apdex.as_threshold().validate("apdex")?;
        if !(0.0..=1.0).contains(&self.apdex.fire_below)
            || !(0.0..=1.0).contains(&self.apdex.clear_above)
        {
            return Err("apdex: fire_below and clear_above must be within [0, 1]".into());
        }
        if self.down_after == 0
            || self.up_after == 0
            || self.apdex_t_ms == 0
            || self.silence_intervals == 0
        {
            return Err(
                "down_after, up_after, apdex_t_ms and silence_intervals must be at least 1".into(),
            );
        }
        if self.heartbeat_timeout_ms == 0
            || self.recover_samples == 0
            || self.latency_window_samples == 0
        {
            return Err(
                "heartbeat_timeout_ms, recover_samples and latency_window_samples must be at least 1".into(),
            );
        }
        for (alert, severity) in &self.severity {
            if !AlertName::ALL.iter().any(|a| a.as_str() == alert) {
                return Err(format!("severity: {alert:?} is not an alert name"));
            }
            if !valid_severity(severity) {
                return Err(format!(
                    "severity.{alert}: {severity:?} must match ^[a-z][a-z0-9_-]{{0,31}}$"
                ));
            }
        }
        Ok(())
    }

    /// The severity an alert of this service carries.
    pub fn severity_of(&self, alert: AlertName) -> String {
        self.severity
            .get(alert.as_str())
            .map_or_else(|| default_severity(alert).to_owned(), Clone::clone)
    }

    /// How long a sender may be silent before SERVICE_DOWN: the heartbeat timeout, or
    /// `silence_intervals` of the interval it declares when that is longer.
    pub fn silence_timeout_ms(&self, interval_ms: Option<u64>) -> u64 {
        let declared =
            interval_ms.map_or(0, |i| i.saturating_mul(u64::from(self.silence_intervals)));
        self.heartbeat_timeout_ms.max(declared)
    }

    /// The rule for `metric`, over the value [`Metric`] observes (Apdex negated).
    pub fn threshold(&self, metric: Metric) -> ThresholdRule {
        match metric {
            Metric::Cpu => self.cpu,
            Metric::Memory => self.memory,
            Metric::Latency => self.latency,
            Metric::ErrorRate => self.error_rate,
            Metric::Apdex => self.apdex.as_threshold(),
        }
    }
}

/// The metrics that have threshold alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Cpu,
    Memory,
    Latency,
    ErrorRate,
    /// Fires when the score is low: observed negated (see [`ApdexRule`]).
    Apdex,
}

impl Metric {
    pub const ALL: [Metric; 5] = [
        Self::Cpu,
        Self::Memory,
        Self::Latency,
        Self::ErrorRate,
        Self::Apdex,
    ];

    pub fn alert(self) -> AlertName {
        match self {
            Self::Cpu => AlertName::HighCpu,
            Self::Memory => AlertName::HighMemory,
            Self::Latency => AlertName::HighLatency,
            Self::ErrorRate => AlertName::HighErrorRate,
            Self::Apdex => AlertName::LowApdex,
        }
    }

    /// The name used in status reasons.
    pub fn field(self) -> &'static str {
        match self {
            Self::Cpu => "cpu_pct",
            Self::Memory => "mem_pct",
            Self::Latency => "latency_p95_ms",
            Self::ErrorRate => "error_rate",
            Self::Apdex => "apdex",
        }
    }
}

/// Where one threshold alert stands for one service.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ThresholdState {
    above: u32,
    below: u32,
    pub firing: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    Fire,
    Resolve,
}

impl ThresholdState {
    /// A state restored as firing (e.g. from KV after a restart).
    pub fn firing() -> Self {
        Self {
            firing: true,
            ..Self::default()
        }
    }

    /// Feeds one observed value; returns the edge it caused, if any.
    pub fn observe(&mut self, rule: &ThresholdRule, value: f64) -> Option<Edge> {
        if !rule.enabled {
            return self.firing.then(|| {
                *self = Self::default();
                Edge::Resolve
            });
        }
        if value > rule.fire_above {
            self.above = self.above.saturating_add(1);
            self.below = 0;
        } else if value < rule.clear_below {
            self.below = self.below.saturating_add(1);
            self.above = 0;
        } else {
            self.above = 0;
            self.below = 0;
        }
        if !self.firing && self.above >= rule.for_samples {
            self.firing = true;
            self.below = 0;
            return Some(Edge::Fire);
        }
        if self.firing && self.below >= rule.clear_samples {
            self.firing = false;
            self.above = 0;
            return Some(Edge::Resolve);
        }
        None
    }

    /// Forgets the counts and the firing flag (the service went DOWN: no data to judge).
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPU: ThresholdRule = ThresholdRule::new(85.0, 75.0, 3, 3);

    fn run(values: &[f64]) -> Vec<(usize, Edge)> {
        let mut s = ThresholdState::default();
        values
            .iter()
            .enumerate()
            .filter_map(|(i, &v)| s.observe(&CPU, v).map(|e| (i, e)))
            .collect()
    }

    #[test]
    fn fires_only_after_the_for_count() {
        assert_eq!(run(&[90.0, 90.0]), vec![]);
        assert_eq!(run(&[90.0, 90.0, 90.0]), vec![(2, Edge::Fire)]);
        // A dip below the threshold restarts the count.
        assert_eq!(run(&[90.0, 90.0, 80.0, 90.0, 90.0]), vec![]);
    }

    #[test]
    fn clears_only_below_the_band_for_the_clear_count() {
        let mut v = vec![95.0; 3];
        v.extend([80.0; 10]); // inside the band: stays firing
        assert_eq!(run(&v), vec![(2, Edge::Fire)]);
        v.extend([70.0, 70.0, 70.0]);
        assert_eq!(run(&v), vec![(2, Edge::Fire), (15, Edge::Resolve)]);
    }

    #[test]
    fn hovering_at_the_threshold_never_flaps() {
        let values: Vec<f64> = (0..1000)
            .map(|i| if i % 2 == 0 { 86.0 } else { 84.0 })
            .collect();
        assert_eq!(run(&values), vec![]);
    }

    #[test]
    fn alternating_input_has_bounded_transitions() {
        // 3 high, 3 low, repeated: the worst case for these counts.
        let values: Vec<f64> = (0..600)
            .map(|i| if (i / 3) % 2 == 0 { 95.0 } else { 10.0 })
            .collect();
        let edges = run(&values);
        // Never more than one edge per for/clear period.
        assert!(edges.len() <= values.len() / 3);
        assert!(
            edges.windows(2).all(|w| w[0].1 != w[1].1),
            "edges alternate"
        );
    }

    #[test]
    fn disabling_a_firing_rule_resolves_it() {
        let mut s = ThresholdState::firing();
        let off = ThresholdRule {
            enabled: false,
            ..CPU
        };
        assert_eq!(s.observe(&off, 99.0), Some(Edge::Resolve));
        assert_eq!(s.observe(&off, 99.0), None);
    }

    #[test]
    fn default_rules_are_valid_and_bad_ones_are_refused() {
        assert!(Rules::default().validate().is_ok());
        let mut r = Rules::default();
        r.cpu.clear_below = 90.0;
        assert!(r.validate().is_err());
        let mut r = Rules::default();
        r.memory.for_samples = 0;
        assert!(r.validate().is_err());
        let mut r = Rules::default();
        r.apdex.clear_above = 0.5; // below fire_below: would flap
        assert!(r.validate().is_err());
        let r = Rules {
            down_after: 0,
            ..Rules::default()
        };
        assert!(r.validate().is_err());
    }

    #[test]
    fn low_apdex_fires_below_and_clears_above_its_band() {
        let rule = ApdexRule {
            enabled: true,
            ..ApdexRule::default()
        }
        .as_threshold();
        let mut s = ThresholdState::default();
        let edges: Vec<_> = [0.6, 0.6, 0.6, 0.8, 0.8, 0.9, 0.9, 0.9]
            .iter()
            .filter_map(|&v: &f64| s.observe(&rule, -v))
            .collect();
        assert_eq!(edges, vec![Edge::Fire, Edge::Resolve]);
    }
}
