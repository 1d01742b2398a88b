//! What a sample says about where it came from: a simulator, a probe of a target, or a
//! host agent, and the source-specific parts (`probe`, `host`) with their bounds.

use serde::{Deserialize, Serialize};

use crate::sample::{MAX_JSON_INT, MAX_LATENCY_MS, Refusal, RefusalReason, check_instance};

/// Who published a sample. Absent on the wire means `simulator` (old samples stay valid).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Source {
    #[default]
    Simulator,
    Probe,
    Agent,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Simulator => "simulator",
            Self::Probe => "probe",
            Self::Agent => "agent",
        }
    }

    pub fn is_simulator(&self) -> bool {
        *self == Self::Simulator
    }
}

/// Longest `probe.error`, in characters.
pub const MAX_PROBE_ERROR_LEN: usize = 64;
/// Most per-core figures an agent sample carries.
pub const MAX_CORES: usize = 512;
/// Most processes in `host.top`.
pub const MAX_TOP_PROCS: usize = 5;
/// Longest process name in `host.top`, in characters.
pub const MAX_PROC_NAME_LEN: usize = 64;
/// Largest accepted load average or process CPU figure (a process's CPU share is per core,
/// so it may exceed 100 on a machine with many cores).
const MAX_LOAD: f64 = 100_000.0;
/// Most days a certificate warning may look ahead.
pub const MAX_CERT_WARN_DAYS: u32 = 3650;

/// The outcome of one probe, on samples with `source: "probe"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ProbeResult {
    pub ok: bool,
    /// The HTTP status, when a response came back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(range(min = 100, max = 599)))]
    pub status_code: Option<u16>,
    /// Why it failed, short: `timeout`, `connect refused`, `status 503`, `body mismatch`, `tls`...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(length(max = 64)))]
    pub error: Option<String>,
    /// The Apdex threshold T for this target (the monitor's rule default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 3_600_000)))]
    pub apdex_t_ms: Option<u32>,
    /// When the HTTPS target's certificate stops being valid (epoch ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(range(max = 9_007_199_254_740_991u64)))]
    pub cert_expires_ms: Option<u64>,
    /// CERT_EXPIRING fires when the certificate expires within this many days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(range(max = 3650)))]
    pub cert_warn_days: Option<u32>,
}

/// The host's own figures, on samples with `source: "agent"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct HostFigures {
    /// CPU % of each core, in the kernel's order.
    #[cfg_attr(feature = "schema", schemars(length(max = 512)))]
    pub cores: Vec<f64>,
    pub load1: f64,
    pub load5: f64,
    pub load15: f64,
    /// Used share of the filesystem holding `/` (or the largest one), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(range(min = 0.0, max = 100.0)))]
    pub disk_used_pct: Option<f64>,
    pub procs: u32,
    /// The busiest processes by CPU, at most 5.
    #[cfg_attr(feature = "schema", schemars(length(max = 5)))]
    pub top: Vec<TopProcess>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TopProcess {
    /// Shown as text only, never as markup.
    #[cfg_attr(feature = "schema", schemars(length(min = 1, max = 64)))]
    pub name: String,
    pub pid: u32,
    /// Share of one core (may exceed 100 for a process on several cores).
    pub cpu_pct: f64,
    #[cfg_attr(feature = "schema", schemars(range(min = 0.0, max = 100.0)))]
    pub mem_pct: f64,
}

/// A number within `[lo, hi]` (`not_finite` or `out_of_range` otherwise).
pub(crate) fn check_range(field: &str, value: f64, lo: f64, hi: f64) -> Result<(), Refusal> {
    if !value.is_finite() {
        return Err(Refusal::new(
            RefusalReason::NotFinite,
            format!("{field} is not finite"),
        ));
    }
    if !(lo..=hi).contains(&value) {
        return Err(Refusal::new(
            RefusalReason::OutOfRange,
            format!("{field}={value} outside [{lo}, {hi}]"),
        ));
    }
    Ok(())
}

/// Short visible text: 1-`max` characters, no control, bidirectional or only-invisible
/// text (the instance rule), so a name shown on the page reads as what it is.
pub(crate) fn check_text(field: &str, text: &str, max: usize) -> Result<(), Refusal> {
    let n = text.chars().count();
    if n == 0 || n > max {
        return Err(Refusal::new(
            RefusalReason::BadField,
            format!("{field} must be 1-{max} characters"),
        ));
    }
    if check_instance(text).is_err() {
        return Err(Refusal::new(
            RefusalReason::BadField,
            format!("{field} has a control or invisible character"),
        ));
    }
    Ok(())
}

fn too_many(field: &str, n: usize, max: usize) -> Refusal {
    Refusal::new(
        RefusalReason::BadField,
        format!("{field} has {n} entries > {max}"),
    )
}

impl ProbeResult {
    pub fn validate(&self) -> Result<(), Refusal> {
        if let Some(code) = self.status_code {
            check_range("probe.status_code", f64::from(code), 100.0, 599.0)?;
        }
        if let Some(e) = &self.error {
            check_text("probe.error", e, MAX_PROBE_ERROR_LEN)?;
        }
        if let Some(t) = self.apdex_t_ms {
            check_range("probe.apdex_t_ms", f64::from(t), 1.0, MAX_LATENCY_MS)?;
        }
        if let Some(at) = self.cert_expires_ms {
            check_range("probe.cert_expires_ms", at as f64, 0.0, MAX_JSON_INT as f64)?;
        }
        if let Some(days) = self.cert_warn_days {
            check_range(
                "probe.cert_warn_days",
                f64::from(days),
                0.0,
                f64::from(MAX_CERT_WARN_DAYS),
            )?;
        }
        Ok(())
    }
}

impl HostFigures {
    pub fn validate(&self) -> Result<(), Refusal> {
        if self.cores.len() > MAX_CORES {
            return Err(too_many("host.cores", self.cores.len(), MAX_CORES));
        }
        for &c in &self.cores {
            check_range("host.cores", c, 0.0, 100.0)?;
        }
        check_range("host.load1", self.load1, 0.0, MAX_LOAD)?;
        check_range("host.load5", self.load5, 0.0, MAX_LOAD)?;
        check_range("host.load15", self.load15, 0.0, MAX_LOAD)?;
        if let Some(d) = self.disk_used_pct {
            check_range("host.disk_used_pct", d, 0.0, 100.0)?;
        }
        if self.top.len() > MAX_TOP_PROCS {
            return Err(too_many("host.top", self.top.len(), MAX_TOP_PROCS));
        }
        for p in &self.top {
            check_text("host.top.name", &p.name, MAX_PROC_NAME_LEN)?;
            check_range("host.top.cpu_pct", p.cpu_pct, 0.0, MAX_LOAD)?;
            check_range("host.top.mem_pct", p.mem_pct, 0.0, 100.0)?;
        }
        Ok(())
    }
}
