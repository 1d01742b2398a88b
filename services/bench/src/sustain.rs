//! The highest sustained sample rate with the defaults and zero loss, on top of the
//! background, found by stepping the rate up and bisecting; then the latency of a new
//! service's first status change at 50-150 % of that rate (open loop, coordinated-
//! omission corrected), at the monitor's output and at a WebSocket client.

use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use crate::counters::{DownWatch, MonitorCounters, drain};
use crate::load::{self, Flow, FlowStats, Running};
use crate::pipeline::Pipeline;
use crate::probes::{self, ProbeRun};
use crate::sys::CpuUse;
use crate::util::{connect_clients, names};

/// Services the extra load is spread over (each at rate / this, a second).
pub const LOAD_SERVICES: usize = 1_000;
/// A step passes only if the monitor has taken every sample within this after the
/// schedule ended: a backlog that takes longer is a rate it does not sustain.
const DRAIN_LIMIT: Duration = Duration::from_secs(1);
/// The bench must keep its own schedule: behind by more, the step says nothing.
const SENDER_LAG_LIMIT_MS: f64 = 200.0;

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Extra samples a second, besides the background.
    pub rate_per_s: f64,
    /// Extra + background.
    pub total_per_s: f64,
    pub flow: FlowStats,
    /// Background + load + probe samples sent during the step.
    pub expected_samples: u64,
    pub counters: MonitorCounters,
    pub drained_ms: f64,
    pub downs: u64,
    pub zero_loss: bool,
    pub why_not: String,
    pub cpu: CpuUse,
}

#[derive(Debug, Clone, Serialize)]
pub struct CurvePoint {
    pub pct_of_max: u32,
    pub step: Step,
    pub probes: ProbeRun,
}

#[derive(Debug, Serialize)]
pub struct Sustain {
    /// DOWN of a background or load service over the whole search and curve (a load
    /// service is kept at 1 Hz between steps): must be 0 below the highest rate.
    pub false_downs: u64,
    pub false_down_examples: Vec<String>,
    pub background_services: usize,
    pub background_per_s: f64,
    pub load_services: usize,
    pub step_secs: f64,
    /// The highest extra rate that passed, and with the background.
    pub max_zero_loss_per_s: f64,
    pub max_zero_loss_total_per_s: f64,
    /// Set when the bench itself could not send faster (the true limit is higher).
    pub sender_limited: bool,
    pub steps: Vec<Step>,
    pub curve: Vec<CurvePoint>,
}

pub struct Plan {
    pub start_rate: f64,
    pub max_rate: f64,
    pub bisections: u32,
    pub step_secs: f64,
    pub curve_pcts: Vec<u32>,
    pub probe_rate: f64,
    pub probes: usize,
}

/// Runs `flow` at `rate` for `secs` and judges it against everything the monitor counts.
async fn step(
    p: &Pipeline,
    downs: &DownWatch,
    idle: Running,
    rate: f64,
    secs: f64,
    during: Option<(&str, f64, usize)>,
) -> Result<(Running, Step, Option<ProbeRun>)> {
    // The load's services are kept at 1 Hz between steps (a DOWN of one is a false alarm).
    let (flow, _) = idle.stop().await?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = MonitorCounters::read(&p.monitor).await?;
    let bg0 = p.bg_sent();
    let downs0 = downs.downs();
    let cpu = p.cpu_meter();
    let running = load::start(p.client.clone(), flow, rate);
    let probe = match during {
        Some((tag, probe_rate, count)) => {
            // Let the load reach its steady state first.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let url = format!("ws://{}/ws", p.gateway.http);
            let sockets = connect_clients(&url, 1).await?;
            let probe_client = load::client(&p.nats.url()).await?;
            let r = probes::run(
                &probe_client,
                sockets,
                tag,
                probe_rate,
                count,
                Duration::from_secs(5),
            )
            .await?;
            Some(r)
        }
        None => {
            tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            None
        }
    };
    let (flow, stats) = running.stop().await?;
    let bg1 = p.bg_sent();
    let idle = load::start(p.client.clone(), flow, LOAD_SERVICES as f64);
    // Probes are samples too (one each).
    let probes_sent = probe.as_ref().map_or(0, |r| r.probes as u64);
    let target = before.samples + (bg1 - bg0) + stats.sent + probes_sent;
    let (after, drained_in, drained) = drain(&p.monitor, target, 0, Duration::from_secs(3)).await?;
    let counters = after.since(&before);
    let downs = downs.downs() - downs0;
    let mut why = Vec::new();
    if !drained {
        why.push(format!(
            "{} samples not taken 3 s after the end",
            target.saturating_sub(after.samples)
        ));
    } else if drained_in > DRAIN_LIMIT {
        why.push(format!(
            "backlog took {} ms to clear",
            drained_in.as_millis()
        ));
    }
    if counters.losses() > 0 {
        why.push(format!("{} lost or refused", counters.losses()));
    }
    if downs > 0 {
        why.push(format!("{downs} false DOWN"));
    }
    if stats.max_lag_ms > SENDER_LAG_LIMIT_MS {
        why.push(format!(
            "bench behind its schedule by {:.0} ms",
            stats.max_lag_ms
        ));
    }
    let s = Step {
        rate_per_s: rate,
        total_per_s: rate + p.bg_services as f64,
        flow: stats,
        expected_samples: target - before.samples,
        counters,
        drained_ms: drained_in.as_secs_f64() * 1000.0,
        downs,
        zero_loss: why.is_empty(),
        why_not: why.join("; "),
        cpu: cpu.finish(),
    };
    if !drained || drained_in > DRAIN_LIMIT {
        // Let an overload clear before the next step is judged.
        let _ = drain(&p.monitor, target, 0, Duration::from_secs(20)).await?;
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    Ok((idle, s, probe))
}

pub async fn run(p: &Pipeline, plan: &Plan, log: impl Fn(&str)) -> Result<Sustain> {
    let downs = DownWatch::start(&p.client, &["bg-", "rate-"]).await?;
    let flow = Flow::new(&names("rate", LOAD_SERVICES)?);
    let mut idle = load::start(p.client.clone(), flow, LOAD_SERVICES as f64);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut steps = Vec::new();
    let (mut lo, mut hi) = (0.0f64, f64::INFINITY);
    let mut rate = plan.start_rate;
    let mut sender_limited = false;
    // Up by doubling until a step fails, then bisect between the last pass and fail.
    let mut bisections = 0;
    loop {
        let (f, s, _) = step(p, &downs, idle, rate, plan.step_secs, None).await?;
        idle = f;
        log(&format!(
            "  {:>8.0}/s (+{} bg): {}",
            rate,
            p.bg_services,
            if s.zero_loss { "zero loss" } else { &s.why_not }
        ));
        if s.zero_loss {
            lo = rate;
        } else {
            hi = rate;
            if s.flow.max_lag_ms > SENDER_LAG_LIMIT_MS && s.counters.losses() == 0 {
                sender_limited = true;
            }
        }
        steps.push(s);
        if hi.is_infinite() {
            if rate * 2.0 > plan.max_rate {
                break;
            }
            rate *= 2.0;
        } else {
            if bisections >= plan.bisections || lo == 0.0 && rate < 500.0 {
                break;
            }
            bisections += 1;
            rate = if lo == 0.0 {
                rate / 2.0
            } else {
                ((lo + hi) / 2.0 / 500.0).round() * 500.0
            };
            if rate <= lo || rate >= hi {
                break;
            }
        }
    }
    // Confirm the edge with a step twice as long; a fail there lowers it by a tenth (a
    // bisection's last pass can be luck on a shared machine).
    let mut max = lo;
    for _ in 0..3 {
        if max <= 0.0 || plan.bisections == 0 {
            break;
        }
        let (f, s, _) = step(p, &downs, idle, max, plan.step_secs * 2.0, None).await?;
        idle = f;
        let passed = s.zero_loss;
        log(&format!(
            "  confirm {:>8.0}/s for {:.0} s: {}",
            max,
            plan.step_secs * 2.0,
            if passed { "zero loss" } else { &s.why_not }
        ));
        steps.push(s);
        if passed {
            break;
        }
        max = (max * 0.9 / 500.0).round() * 500.0;
    }
    let mut curve = Vec::new();
    if max > 0.0 {
        for &pct in &plan.curve_pcts {
            let rate = max * f64::from(pct) / 100.0;
            let tag = format!("probe{pct}-");
            let (f, s, probe) = step(
                p,
                &downs,
                idle,
                rate,
                plan.step_secs,
                Some((&tag, plan.probe_rate, plan.probes)),
            )
            .await?;
            idle = f;
            if let Some(probes) = probe {
                log(&format!(
                    "  {pct:>3} % ({rate:.0}/s): at the monitor p50 {:.1} p99 {:.1} ms, {}",
                    probes.at_monitor.p50_ms,
                    probes.at_monitor.p99_ms,
                    if s.zero_loss { "zero loss" } else { &s.why_not }
                ));
                curve.push(CurvePoint {
                    pct_of_max: pct,
                    step: s,
                    probes,
                });
            }
        }
    }
    let false_downs = downs.downs();
    let false_down_examples = downs.examples();
    drop(idle.stop().await?);
    Ok(Sustain {
        false_downs,
        false_down_examples,
        background_services: p.bg_services,
        background_per_s: p.bg_services as f64,
        load_services: LOAD_SERVICES,
        step_secs: plan.step_secs,
        max_zero_loss_per_s: max,
        max_zero_loss_total_per_s: max + p.bg_services as f64,
        sender_limited,
        steps,
        curve,
    })
}

/// The latency-versus-throughput plot.
pub fn svg(s: &Sustain) -> String {
    let pts = |f: &dyn Fn(&CurvePoint) -> f64| -> Vec<(f64, f64)> {
        s.curve.iter().map(|c| (c.step.total_per_s, f(c))).collect()
    };
    let series = [
        crate::svg::Series {
            label: "p50 at the monitor",
            color: "#1f77b4",
            points: pts(&|c| c.probes.at_monitor.p50_ms),
        },
        crate::svg::Series {
            label: "p99 at the monitor",
            color: "#d62728",
            points: pts(&|c| c.probes.at_monitor.p99_ms),
        },
        crate::svg::Series {
            label: "p99 at a WebSocket",
            color: "#ff7f0e",
            points: pts(&|c| c.probes.at_clients.p99_ms),
        },
    ];
    crate::svg::plot(
        &format!(
            "New service's first status change vs load ({} bg services at 1 Hz, defaults)",
            s.background_services
        ),
        "samples/s offered (background + load)",
        "latency, ms (log)",
        &series,
        Some((s.max_zero_loss_total_per_s, "max zero-loss")),
    )
}
