//! Fault injection requests (`chaos.<service>` and a simulator's `POST /faults`).

use serde::{Deserialize, Serialize};

/// Longest fault one request can set (a day).
pub const MAX_FAULT_SECONDS: f64 = 86_400.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum FaultMode {
    /// Back to normal.
    #[default]
    #[serde(alias = "none", alias = "healthy")]
    Clear,
    #[serde(alias = "cpu_spike")]
    Cpu,
    /// Memory climbs steadily, like a leak.
    #[serde(alias = "memory_leak")]
    Memory,
    #[serde(alias = "latency_spike")]
    Latency,
    #[serde(alias = "error_burst", alias = "error")]
    Errors,
    /// Alternates between healthy and erroring every few samples.
    Flapping,
    /// Stops publishing; the process and `/health` stay up.
    Silent,
    /// Stops publishing and `/health` stops answering.
    Hang,
    /// Exits non-zero.
    Crash,
}

impl FaultMode {
    pub const ALL: [FaultMode; 9] = [
        Self::Clear,
        Self::Cpu,
        Self::Memory,
        Self::Latency,
        Self::Errors,
        Self::Flapping,
        Self::Silent,
        Self::Hang,
        Self::Crash,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Clear => "clear",
            Self::Cpu => "cpu",
            Self::Memory => "memory",
            Self::Latency => "latency",
            Self::Errors => "errors",
            Self::Flapping => "flapping",
            Self::Silent => "silent",
            Self::Hang => "hang",
            Self::Crash => "crash",
        }
    }

    /// Parses the wire spelling or an alias (`cpu_spike`, `memory_leak`, ...).
    pub fn parse(raw: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(raw.to_owned())).ok()
    }
}

/// `{"mode":"latency","for_s":30}`; without `for_s` the fault lasts until cleared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ChaosRequest {
    pub mode: FaultMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_s: Option<f64>,
}

impl ChaosRequest {
    pub fn validate(&self) -> Result<(), String> {
        match self.for_s {
            Some(s) if !(s.is_finite() && s > 0.0 && s <= MAX_FAULT_SECONDS) => Err(format!(
                "for_s must be a number in (0, {MAX_FAULT_SECONDS}]"
            )),
            _ => Ok(()),
        }
    }
}

/// The simulator's answer to a chaos request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
pub struct ChaosReply {
    pub ok: bool,
    pub service: String,
    pub mode: FaultMode,
    /// When the fault ends by itself (epoch ms), if it does.
    pub until_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_aliases() {
        for m in FaultMode::ALL {
            assert_eq!(FaultMode::parse(m.as_str()), Some(m));
        }
        assert_eq!(FaultMode::parse("cpu_spike"), Some(FaultMode::Cpu));
        assert_eq!(FaultMode::parse("memory_leak"), Some(FaultMode::Memory));
        assert_eq!(FaultMode::parse("error_burst"), Some(FaultMode::Errors));
        assert_eq!(FaultMode::parse("none"), Some(FaultMode::Clear));
        assert_eq!(FaultMode::parse("meltdown"), None);
    }

    #[test]
    fn request_validation() {
        let r: ChaosRequest = serde_json::from_str(r#"{"mode":"latency","for_s":30}"#).unwrap();
        assert_eq!(r.mode, FaultMode::Latency);
        assert!(r.validate().is_ok());
        for bad in [0.0, -1.0, 1e9] {
            let r = ChaosRequest {
                mode: FaultMode::Cpu,
                for_s: Some(bad),
            };
            assert!(r.validate().is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<ChaosRequest>(r#"{"mode":"cpu","x":1}"#).is_err());
    }
}
