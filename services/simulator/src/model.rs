//! The figures a simulated service reports. Pure: a seeded rng, `now_ms` passed in.
//!
//! Each metric is a mean-reverting random walk (a discrete Ornstein-Uhlenbeck process)
//! around a per-service baseline, so consecutive samples look like one system drifting,
//! not white noise. A fault is an overlay on the output; the walk underneath keeps going,
//! so clearing a fault returns to where the service "really" is.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vitals_protocol::FaultMode;

/// Figures of one sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metrics {
    pub cpu_pct: f64,
    pub mem_pct: f64,
    pub latency_ms: f64,
    pub error_rate: f64,
}

/// Where a healthy service settles.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Baseline {
    pub cpu_pct: f64,
    pub mem_pct: f64,
    pub latency_ms: f64,
    pub error_rate: f64,
}

impl Baseline {
    /// The demo services get a recognisable character; any other name gets a stable
    /// one derived from its name, so a fleet of load-N services is not uniform.
    pub fn for_service(name: &str) -> Self {
        let b = |cpu_pct, mem_pct, latency_ms, error_rate| Baseline {
            cpu_pct,
            mem_pct,
            latency_ms,
            error_rate,
        };
        match name {
            "auth" => b(25.0, 40.0, 35.0, 0.002),
            "billing" => b(35.0, 55.0, 80.0, 0.004),
            "notifications" => b(20.0, 35.0, 50.0, 0.003),
            "analytics" => b(45.0, 60.0, 120.0, 0.005),
            _ => {
                let h = fnv1a(name.as_bytes());
                let unit = |shift: u32| ((h >> shift) & 0xffff) as f64 / 65_535.0;
                b(
                    15.0 + 30.0 * unit(0),
                    30.0 + 30.0 * unit(16),
                    20.0 + 100.0 * unit(32),
                    0.001 + 0.009 * unit(48),
                )
            }
        }
    }
}

/// Stable across runs and platforms (std's hasher is randomly keyed).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Mean reversion per sample and noise of each walk. With theta 0.1 a walk has a lag-1
/// autocorrelation of about 0.9: it wanders, and comes back.
const CPU: Walk = Walk {
    theta: 0.10,
    sigma: 1.5,
};
const MEM: Walk = Walk {
    theta: 0.05,
    sigma: 0.4,
};
/// Latency and error rate walk in log space: they are positive and skewed.
const LOG_LATENCY: Walk = Walk {
    theta: 0.10,
    sigma: 0.06,
};
const LOG_ERRORS: Walk = Walk {
    theta: 0.10,
    sigma: 0.10,
};

/// A slow load cycle (a day compressed into ten minutes) on cpu, which is what a
/// dashboard watcher expects to see move.
const LOAD_PERIOD_MS: f64 = 600_000.0;
const LOAD_AMPLITUDE: f64 = 0.15;

/// A flapping phase lasts about this many samples (4..=6).
const FLAP_HALF_PERIOD: std::ops::RangeInclusive<u32> = 4..=6;
/// Memory a leak adds per sample (percentage points).
const LEAK_PER_SAMPLE: std::ops::Range<f64> = 2.0..3.0;
const MEM_CEILING: f64 = 99.0;

#[derive(Debug, Clone, Copy)]
struct Walk {
    theta: f64,
    sigma: f64,
}

impl Walk {
    fn step(self, x: f64, target: f64, rng: &mut StdRng) -> f64 {
        x + self.theta * (target - x) + self.sigma * std_normal(rng)
    }
}

/// Box-Muller; enough for figures that only need to look plausible.
fn std_normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[derive(Debug, Clone)]
pub struct Model {
    baseline: Baseline,
    rng: StdRng,
    cpu: f64,
    mem: f64,
    log_latency: f64,
    log_errors: f64,
    /// The fault the previous step saw; a change resets the fault's own state.
    mode: FaultMode,
    /// Memory leak: the last reported figure, so the climb never goes back down.
    leaked_mem: f64,
    flap_bad: bool,
    flap_left: u32,
}

impl Model {
    pub fn new(baseline: Baseline, seed: u64) -> Self {
        Self {
            baseline,
            rng: StdRng::seed_from_u64(seed),
            cpu: baseline.cpu_pct,
            mem: baseline.mem_pct,
            log_latency: baseline.latency_ms.ln(),
            log_errors: baseline.error_rate.ln(),
            mode: FaultMode::Clear,
            leaked_mem: 0.0,
            flap_bad: false,
            flap_left: 0,
        }
    }

    /// True while flapping is in its erroring half.
    pub fn in_bad_phase(&self) -> bool {
        self.mode == FaultMode::Flapping && self.flap_bad
    }

    /// The next sample's figures under `mode`. Every output is within the protocol's ranges.
    pub fn step(&mut self, mode: FaultMode, now_ms: u64) -> Metrics {
        let base = self.baseline;
        let load =
            1.0 + LOAD_AMPLITUDE * (std::f64::consts::TAU * now_ms as f64 / LOAD_PERIOD_MS).sin();
        let rng = &mut self.rng;
        self.cpu = CPU
            .step(self.cpu, base.cpu_pct * load, rng)
            .clamp(1.0, 100.0);
        self.mem = MEM.step(self.mem, base.mem_pct, rng).clamp(1.0, 100.0);
        self.log_latency = LOG_LATENCY.step(self.log_latency, base.latency_ms.ln(), rng);
        self.log_errors = LOG_ERRORS.step(self.log_errors, base.error_rate.ln(), rng);

        // A rare slow request batch: a one-sample spike that is not part of the walk.
        let spike = if rng.random_bool(0.02) {
            rng.random_range(1.5..3.0)
        } else {
            1.0
        };
        let mut out = Metrics {
            cpu_pct: self.cpu,
            mem_pct: self.mem,
            latency_ms: self.log_latency.exp() * spike,
            error_rate: self.log_errors.exp(),
        };

        if mode != self.mode {
            self.mode = mode;
            self.leaked_mem = self.mem;
            // Flapping starts with its bad half, so the fault shows at once.
            self.flap_bad = false;
            self.flap_left = 0;
        }
        match mode {
            FaultMode::Cpu => out.cpu_pct = rng.random_range(92.0..99.0),
            FaultMode::Memory => {
                self.leaked_mem =
                    (self.leaked_mem + rng.random_range(LEAK_PER_SAMPLE)).min(MEM_CEILING);
                out.mem_pct = self.leaked_mem;
            }
            FaultMode::Latency => out.latency_ms = rng.random_range(600.0..1500.0),
            FaultMode::Errors => out = error_burst(out, rng),
            FaultMode::Flapping => {
                if self.flap_left == 0 {
                    self.flap_bad = !self.flap_bad;
                    self.flap_left = rng.random_range(FLAP_HALF_PERIOD);
                }
                self.flap_left -= 1;
                if self.flap_bad {
                    out = error_burst(out, rng);
                }
            }
            FaultMode::Clear | FaultMode::Silent | FaultMode::Hang | FaultMode::Crash => {}
        }
        Metrics {
            cpu_pct: out.cpu_pct.clamp(0.0, 100.0),
            mem_pct: out.mem_pct.clamp(0.0, 100.0),
            latency_ms: out.latency_ms.max(0.0),
            error_rate: out.error_rate.clamp(0.0, 1.0),
        }
    }
}

/// Failing requests are fast to fail but still cost something.
fn error_burst(m: Metrics, rng: &mut StdRng) -> Metrics {
    Metrics {
        error_rate: rng.random_range(0.2..0.5),
        latency_ms: m.latency_ms * rng.random_range(1.1..1.6),
        ..m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000;

    fn run(mode: FaultMode, n: usize) -> (Model, Vec<Metrics>) {
        let mut m = Model::new(Baseline::for_service("billing"), 7);
        let out = (0..n as u64).map(|i| m.step(mode, T0 + i * 1000)).collect();
        (m, out)
    }

    fn in_range(m: &Metrics) -> bool {
        (0.0..=100.0).contains(&m.cpu_pct)
            && (0.0..=100.0).contains(&m.mem_pct)
            && m.latency_ms.is_finite()
            && m.latency_ms >= 0.0
            && (0.0..=1.0).contains(&m.error_rate)
    }

    fn mean(xs: &[f64]) -> f64 {
        xs.iter().sum::<f64>() / xs.len() as f64
    }

    fn lag1_autocorrelation(xs: &[f64]) -> f64 {
        let mu = mean(xs);
        let var: f64 = xs.iter().map(|x| (x - mu).powi(2)).sum();
        let cov: f64 = xs.windows(2).map(|w| (w[0] - mu) * (w[1] - mu)).sum();
        cov / var
    }

    #[test]
    fn healthy_walk_stays_in_range_near_its_baseline() {
        for seed in 0..20 {
            let base = Baseline::for_service("auth");
            let mut m = Model::new(base, seed);
            let xs: Vec<_> = (0..2_000u64)
                .map(|i| m.step(FaultMode::Clear, T0 + i * 1000))
                .collect();
            assert!(xs.iter().all(in_range));
            let cpu = mean(&xs.iter().map(|m| m.cpu_pct).collect::<Vec<_>>());
            assert!(
                (cpu - base.cpu_pct).abs() < 10.0,
                "seed {seed}: cpu mean {cpu}"
            );
            // Healthy figures stay below what the monitor alerts on.
            assert!(
                xs.iter().all(|m| m.cpu_pct < 85.0 && m.error_rate < 0.1),
                "seed {seed}"
            );
        }
    }

    #[test]
    fn walk_is_autocorrelated_not_white_noise() {
        let (_, xs) = run(FaultMode::Clear, 2_000);
        for (name, series) in [
            ("cpu", xs.iter().map(|m| m.cpu_pct).collect::<Vec<_>>()),
            ("mem", xs.iter().map(|m| m.mem_pct).collect()),
            ("error_rate", xs.iter().map(|m| m.error_rate).collect()),
        ] {
            let step = mean(
                &series
                    .windows(2)
                    .map(|w| (w[1] - w[0]).abs())
                    .collect::<Vec<_>>(),
            );
            let lo = series.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = series.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            assert!(
                step * 8.0 < hi - lo,
                "{name}: mean step {step}, spread {}",
                hi - lo
            );
            let r = lag1_autocorrelation(&series);
            assert!(r > 0.7, "{name}: lag-1 autocorrelation {r}");
        }
    }

    #[test]
    fn same_seed_same_figures() {
        assert_eq!(run(FaultMode::Clear, 50).1, run(FaultMode::Clear, 50).1);
    }

    #[test]
    fn each_fault_moves_its_metric() {
        let (_, cpu) = run(FaultMode::Cpu, 50);
        assert!(cpu.iter().all(|m| (92.0..=99.0).contains(&m.cpu_pct)));
        let (_, lat) = run(FaultMode::Latency, 50);
        assert!(lat.iter().all(|m| (600.0..=1500.0).contains(&m.latency_ms)));
        let (_, err) = run(FaultMode::Errors, 50);
        assert!(err.iter().all(|m| (0.2..=0.5).contains(&m.error_rate)));
        for xs in [&cpu, &lat, &err] {
            assert!(xs.iter().all(in_range));
        }
        // The others stay healthy meanwhile.
        assert!(
            cpu.iter()
                .all(|m| m.error_rate < 0.1 && m.latency_ms < 600.0)
        );
        assert!(lat.iter().all(|m| m.cpu_pct < 85.0));
    }

    #[test]
    fn memory_leak_climbs_steadily_to_the_ceiling() {
        let (_, xs) = run(FaultMode::Memory, 60);
        let mem: Vec<_> = xs.iter().map(|m| m.mem_pct).collect();
        assert!(mem.windows(2).all(|w| w[1] >= w[0]), "{mem:?}");
        assert!(mem[5] > mem[0] + 5.0);
        assert!((mem[59] - MEM_CEILING).abs() < 1e-9, "{mem:?}");
    }

    #[test]
    fn clearing_returns_to_baseline() {
        let mut m = Model::new(Baseline::for_service("auth"), 1);
        for i in 0..60 {
            m.step(FaultMode::Memory, T0 + i);
        }
        let after = m.step(FaultMode::Clear, T0 + 100);
        assert!(after.mem_pct < 60.0, "{after:?}");
    }

    #[test]
    fn flapping_alternates_between_healthy_and_erroring() {
        let mut m = Model::new(Baseline::for_service("auth"), 3);
        let mut phases = Vec::new();
        for i in 0..60u64 {
            let s = m.step(FaultMode::Flapping, T0 + i * 1000);
            assert_eq!(m.in_bad_phase(), s.error_rate >= 0.2, "sample {i}: {s:?}");
            phases.push(m.in_bad_phase());
        }
        assert!(phases[0], "starts with the bad half");
        // Runs of equal phase, each about five samples long.
        let mut runs = vec![1u32];
        for w in phases.windows(2) {
            if w[0] == w[1] {
                *runs.last_mut().unwrap() += 1;
            } else {
                runs.push(1);
            }
        }
        assert!(runs.len() >= 10, "{runs:?}");
        assert!(
            runs[..runs.len() - 1]
                .iter()
                .all(|r| FLAP_HALF_PERIOD.contains(r)),
            "{runs:?}"
        );
    }

    #[test]
    fn other_names_get_stable_distinct_baselines() {
        let a = Baseline::for_service("load-1");
        assert_eq!(a, Baseline::for_service("load-1"));
        assert_ne!(a, Baseline::for_service("load-2"));
        for name in ["x", "load-0", "zzz"] {
            let b = Baseline::for_service(name);
            assert!((15.0..=45.0).contains(&b.cpu_pct) && (0.001..=0.01).contains(&b.error_rate));
        }
    }
}
