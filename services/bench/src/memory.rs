//! The monitor's memory per service at steady state: three monitors (defaults, each on
//! its own nats-server) hold N services at 1 Hz until every window is full (60 s), and
//! the RSS against N is fitted by a line: the slope is the cost of one more service.

use std::time::Duration;

use anyhow::Result;
use serde::Serialize;
use vitals_testkit::NatsServer;

use crate::load::{self, Flow};
use crate::util::{monitor, names};

#[derive(Debug, Serialize)]
pub struct Size {
    pub services: usize,
    pub rss_bytes: u64,
    pub rss_before_bytes: u64,
    pub samples: u64,
    pub losses: u64,
}

#[derive(Debug, Serialize)]
pub struct Memory {
    pub secs_at_1hz: u64,
    pub sizes: Vec<Size>,
    /// Least-squares slope of RSS against services, and where the line meets 0 services.
    pub bytes_per_service: f64,
    pub intercept_bytes: f64,
}

/// (slope, intercept) of the least-squares line through `pts`.
pub fn fit(pts: &[(f64, f64)]) -> (f64, f64) {
    let n = pts.len() as f64;
    let (sx, sy) = pts.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (mut num, mut den) = (0.0, 0.0);
    for (x, y) in pts {
        num += (x - mx) * (y - my);
        den += (x - mx) * (x - mx);
    }
    let slope = if den > 0.0 { num / den } else { 0.0 };
    (slope, my - slope * mx)
}

pub async fn run(sizes: &[usize], secs: u64) -> Result<Memory> {
    let mut parts = Vec::new();
    for &n in sizes {
        let nats = NatsServer::start_with_accounts()?;
        let m = monitor(&nats, &[]).await?;
        let client = load::client(&nats.url()).await?;
        let before = m.rss_bytes()?;
        let flow = Flow::new(&names("mem", n)?);
        let running = load::start(client.clone(), flow, n as f64);
        parts.push((nats, m, client, before, running, n));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let mut out = Vec::new();
    for (_nats, m, _client, before, running, n) in parts {
        let rss = m.rss_bytes()?;
        let (_, stats) = running.stop().await?;
        let (c, _, _) = crate::counters::drain(&m, stats.sent, 0, Duration::from_secs(5)).await?;
        out.push(Size {
            services: n,
            rss_bytes: rss,
            rss_before_bytes: before,
            samples: c.samples,
            losses: c.losses() + stats.sent.saturating_sub(c.samples),
        });
    }
    let pts: Vec<(f64, f64)> = out
        .iter()
        .map(|s| (s.services as f64, s.rss_bytes as f64))
        .collect();
    let (slope, intercept) = fit(&pts);
    Ok(Memory {
        secs_at_1hz: secs,
        sizes: out,
        bytes_per_service: slope,
        intercept_bytes: intercept,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_line_is_fitted_exactly() {
        let (s, i) = super::fit(&[(1.0, 12.0), (2.0, 14.0), (4.0, 18.0)]);
        assert!((s - 2.0).abs() < 1e-9 && (i - 10.0).abs() < 1e-9);
    }
}
