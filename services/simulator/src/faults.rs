//! The fault a service is in and when it ends. Pure: the caller passes `now_ms`.

use serde::Serialize;
use vitals_protocol::FaultMode;

/// A fault in force; `Clear` is represented by having none.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ActiveFault {
    pub mode: FaultMode,
    pub since_ms: u64,
    /// When it ends by itself (epoch ms); None = until cleared.
    pub until_ms: Option<u64>,
}

#[derive(Debug, Clone, Default)]
pub struct FaultState {
    current: Option<ActiveFault>,
}

impl FaultState {
    /// Sets `mode` (Clear clears) for `for_s` seconds from `now_ms`, or until cleared.
    /// `for_s` is assumed validated (ChaosRequest::validate).
    pub fn set(&mut self, mode: FaultMode, for_s: Option<f64>, now_ms: u64) -> Option<ActiveFault> {
        self.current = (mode != FaultMode::Clear).then(|| ActiveFault {
            mode,
            since_ms: now_ms,
            until_ms: for_s.map(|s| now_ms.saturating_add((s * 1000.0).round() as u64)),
        });
        self.current
    }

    /// Drops the fault if its time is up; returns it so the caller can log the expiry.
    pub fn expire(&mut self, now_ms: u64) -> Option<ActiveFault> {
        match self.current {
            Some(f) if f.until_ms.is_some_and(|until| now_ms >= until) => self.current.take(),
            _ => None,
        }
    }

    /// The fault in force at `now_ms` (an expired one no longer counts, even before `expire`).
    pub fn at(&self, now_ms: u64) -> Option<ActiveFault> {
        self.current
            .filter(|f| f.until_ms.is_none_or(|until| now_ms < until))
    }

    pub fn mode_at(&self, now_ms: u64) -> FaultMode {
        self.at(now_ms).map_or(FaultMode::Clear, |f| f.mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_clear() {
        assert_eq!(FaultState::default().mode_at(0), FaultMode::Clear);
    }

    #[test]
    fn timed_fault_expires_by_now() {
        let mut f = FaultState::default();
        let set = f.set(FaultMode::Cpu, Some(1.5), 10_000).unwrap();
        assert_eq!(set.until_ms, Some(11_500));
        assert_eq!(f.mode_at(11_499), FaultMode::Cpu);
        assert_eq!(f.expire(11_499), None);
        assert_eq!(
            f.mode_at(11_500),
            FaultMode::Clear,
            "expired even before expire()"
        );
        assert_eq!(f.expire(11_500).map(|f| f.mode), Some(FaultMode::Cpu));
        assert_eq!(f.expire(11_501), None, "reported once");
        assert_eq!(f.mode_at(11_501), FaultMode::Clear);
    }

    #[test]
    fn untimed_fault_lasts_until_cleared() {
        let mut f = FaultState::default();
        f.set(FaultMode::Hang, None, 0);
        assert_eq!(f.expire(u64::MAX), None);
        assert_eq!(f.mode_at(u64::MAX), FaultMode::Hang);
        assert_eq!(f.set(FaultMode::Clear, Some(5.0), 1), None);
        assert_eq!(f.mode_at(2), FaultMode::Clear);
    }

    #[test]
    fn a_new_fault_replaces_the_old() {
        let mut f = FaultState::default();
        f.set(FaultMode::Latency, Some(1.0), 0);
        f.set(FaultMode::Errors, None, 500);
        assert_eq!(f.mode_at(5_000), FaultMode::Errors);
        assert_eq!(f.at(5_000).map(|a| a.since_ms), Some(500));
    }
}
