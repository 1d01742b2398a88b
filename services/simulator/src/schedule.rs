//! `--chaos-schedule`: random faults for demos, so a dashboard has something to show
//! without an operator at the keyboard.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use rand::rngs::StdRng;
use tokio_util::sync::CancellationToken;
use vitals_protocol::{ChaosRequest, FaultMode};

use crate::service::SimService;

/// Crash is left out: it would end the demo; clear is what expiry does anyway.
const DEMO_FAULTS: [FaultMode; 7] = [
    FaultMode::Cpu,
    FaultMode::Memory,
    FaultMode::Latency,
    FaultMode::Errors,
    FaultMode::Flapping,
    FaultMode::Silent,
    FaultMode::Hang,
];

/// One scheduled fault: which service, which fault, for how long, and how long to wait
/// before it (about `every`, give or take half).
#[derive(Debug, Clone, PartialEq)]
pub struct Pick {
    pub service: usize,
    pub request: ChaosRequest,
    pub wait: Duration,
}

/// Pure, so a test can check that it never picks a crash.
pub fn pick(every: Duration, services: usize, rng: &mut impl Rng) -> Pick {
    let every_s = every.as_secs_f64();
    Pick {
        service: rng.random_range(0..services.max(1)),
        request: ChaosRequest {
            mode: DEMO_FAULTS[rng.random_range(0..DEMO_FAULTS.len())],
            // Long enough for alerts to fire, short enough to see the recovery.
            for_s: Some(rng.random_range(0.3..=0.8) * every_s.max(5.0)),
        },
        wait: Duration::from_secs_f64(rng.random_range(0.5..=1.5) * every_s),
    }
}

pub async fn run(
    services: Vec<Arc<SimService>>,
    every: Duration,
    mut rng: StdRng,
    stop: CancellationToken,
) {
    loop {
        let p = pick(every, services.len(), &mut rng);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(p.wait) => {}
        }
        if let Some(svc) = services.get(p.service) {
            tracing::info!(service = %svc.name, mode = p.request.mode.as_str(), for_s = ?p.request.for_s, "scheduled chaos");
            svc.apply(&p.request).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn picks_valid_non_crash_faults() {
        let mut rng = StdRng::seed_from_u64(9);
        for _ in 0..500 {
            let p = pick(Duration::from_secs(30), 4, &mut rng);
            assert!(p.service < 4);
            assert_ne!(p.request.mode, FaultMode::Crash);
            assert_ne!(p.request.mode, FaultMode::Clear);
            assert!(p.request.validate().is_ok());
            assert!((15.0..=45.0).contains(&p.wait.as_secs_f64()));
        }
    }
}
