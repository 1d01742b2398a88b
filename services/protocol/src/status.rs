//! Status and alert names, spelled as the contract fixes them.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Only before a service's first sample.
    #[default]
    Unknown,
    Healthy,
    Degraded,
    Down,
    /// Removed from tracking (after a long DOWN, or on request): sent once on
    /// `health.status.<service>`; every view drops the service. Never stored.
    Retired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "UNKNOWN",
            Self::Healthy => "HEALTHY",
            Self::Degraded => "DEGRADED",
            Self::Down => "DOWN",
            Self::Retired => "RETIRED",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlertName {
    HighCpu,
    HighMemory,
    HighLatency,
    HighErrorRate,
    ServiceDown,
    /// A probed HTTPS target's certificate expires within the prober's warning period.
    CertExpiring,
    /// The Apdex score over the window is below the rule's threshold (off by default).
    LowApdex,
}

impl AlertName {
    pub const ALL: [AlertName; 7] = [
        Self::HighCpu,
        Self::HighMemory,
        Self::HighLatency,
        Self::HighErrorRate,
        Self::ServiceDown,
        Self::CertExpiring,
        Self::LowApdex,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::HighCpu => "HIGH_CPU",
            Self::HighMemory => "HIGH_MEMORY",
            Self::HighLatency => "HIGH_LATENCY",
            Self::HighErrorRate => "HIGH_ERROR_RATE",
            Self::ServiceDown => "SERVICE_DOWN",
            Self::CertExpiring => "CERT_EXPIRING",
            Self::LowApdex => "LOW_APDEX",
        }
    }
}

impl fmt::Display for AlertName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Firing,
    Resolved,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_spellings_match_the_contract() {
        for s in [
            Status::Unknown,
            Status::Healthy,
            Status::Degraded,
            Status::Down,
            Status::Retired,
        ] {
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        for a in AlertName::ALL {
            assert_eq!(
                serde_json::to_string(&a).unwrap(),
                format!("\"{}\"", a.as_str())
            );
        }
        assert_eq!(
            serde_json::to_string(&AlertState::Firing).unwrap(),
            "\"firing\""
        );
        assert_eq!(
            serde_json::to_string(&AlertState::Resolved).unwrap(),
            "\"resolved\""
        );
    }
}
