//! A service's rolling window of samples, by the monitor's receive clock. Pure.

use std::collections::VecDeque;

/// Down time is kept per bucket of this fraction of the window (at least [`MIN_BUCKET_MS`]),
/// so a service that flaps any number of times holds a bounded amount of memory; uptime
/// is exact but for the one bucket the window's start cuts (counted pro rata).
const BUCKETS_PER_WINDOW: u64 = 120;
const MIN_BUCKET_MS: u64 = 250;

/// One accepted sample, stored compactly (f32 is plenty for percentages and ms).
#[derive(Debug, Clone, Copy)]
struct Point {
    at_ms: u64,
    latency_ms: f32,
    /// False for a failed probe: Apdex counts it as frustrated whatever its latency.
    ok: bool,
}

/// The last `span_ms` of samples (at most `max_points`, so a fast sender cannot grow it
/// without bound), plus the service's down time for uptime.
#[derive(Debug, Clone)]
pub struct Window {
    span_ms: u64,
    max_points: usize,
    points: VecDeque<Point>,
    /// Down time of closed periods, per bucket: (bucket start, ms down in it), oldest first.
    down_buckets: VecDeque<(u64, u64)>,
    bucket_ms: u64,
    down_since: Option<u64>,
    /// When the monitor started watching this service (uptime is over what it saw).
    watched_since_ms: u64,
}

impl Window {
    pub fn new(span_ms: u64, max_points: usize, now_ms: u64) -> Self {
        Self {
            span_ms,
            max_points,
            points: VecDeque::new(),
            down_buckets: VecDeque::new(),
            bucket_ms: (span_ms / BUCKETS_PER_WINDOW).max(MIN_BUCKET_MS),
            down_since: None,
            watched_since_ms: now_ms,
        }
    }

    pub fn push(&mut self, now_ms: u64, latency_ms: f64, ok: bool) {
        self.evict(now_ms);
        if self.points.len() >= self.max_points {
            self.points.pop_front();
        }
        self.points.push_back(Point {
            at_ms: now_ms,
            latency_ms: to_point(latency_ms),
            ok,
        });
    }

    /// Apdex over the window with threshold `t_ms`: `(satisfied + tolerating / 2) / total`,
    /// satisfied at or under T, tolerating at or under 4T, a failure always frustrated.
    /// None without samples.
    pub fn apdex(&self, t_ms: u32) -> Option<f64> {
        if self.points.is_empty() {
            return None;
        }
        let t = t_ms as f32;
        let (mut satisfied, mut tolerating) = (0u32, 0u32);
        for p in self.points.iter().filter(|p| p.ok) {
            if p.latency_ms <= t {
                satisfied += 1;
            } else if p.latency_ms <= 4.0 * t {
                tolerating += 1;
            }
        }
        let total = self.points.len() as f64;
        Some((f64::from(satisfied) + f64::from(tolerating) / 2.0) / total)
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    pub fn span_ms(&self) -> u64 {
        self.span_ms
    }

    /// Drops what fell out of the window.
    pub fn evict(&mut self, now_ms: u64) {
        let start = now_ms.saturating_sub(self.span_ms);
        while self.points.front().is_some_and(|p| p.at_ms < start) {
            self.points.pop_front();
        }
        let b = self.bucket_ms;
        while self
            .down_buckets
            .front()
            .is_some_and(|&(bucket, _)| bucket + b <= start)
        {
            self.down_buckets.pop_front();
        }
    }

    /// Latency (avg, p95, p99) over the samples received since `since_ms`, or None
    /// without samples. `scratch` avoids an allocation per call.
    pub fn latency_stats(&self, since_ms: u64, scratch: &mut Vec<f32>) -> Option<LatencyStats> {
        scratch.clear();
        scratch.extend(
            self.points
                .iter()
                .rev()
                .take_while(|p| p.at_ms >= since_ms)
                .map(|p| p.latency_ms),
        );
        if scratch.is_empty() {
            return None;
        }
        let n = scratch.len();
        let avg = scratch.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        let rank = |q: f64| ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
        // Linear-time selection: p99 first, then p95 among what is at or below it.
        let (r95, r99) = (rank(0.95), rank(0.99));
        let (below, p99, _) = scratch.select_nth_unstable_by(r99, f32::total_cmp);
        let p99 = f64::from(*p99);
        let p95 = if r95 == r99 {
            p99
        } else {
            f64::from(*below.select_nth_unstable_by(r95, f32::total_cmp).1)
        };
        Some(LatencyStats { avg, p95, p99 })
    }

    /// One latency quantile (nearest rank) over the last `max_points` samples received
    /// since `since_ms`, in linear time: what the HIGH_LATENCY rule needs on every sample,
    /// so its cost stays bounded however fast a service sends.
    pub fn latency_quantile(
        &self,
        since_ms: u64,
        max_points: usize,
        q: f64,
        scratch: &mut Vec<f32>,
    ) -> Option<f64> {
        scratch.clear();
        scratch.extend(
            self.points
                .iter()
                .rev()
                .take_while(|p| p.at_ms >= since_ms)
                .take(max_points)
                .map(|p| p.latency_ms),
        );
        let n = scratch.len();
        if n == 0 {
            return None;
        }
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
        let (_, v, _) = scratch.select_nth_unstable_by(rank, f32::total_cmp);
        Some(f64::from(*v))
    }

    pub fn mark_down(&mut self, now_ms: u64) {
        self.down_since.get_or_insert(now_ms);
    }

    pub fn mark_up(&mut self, now_ms: u64) {
        if let Some(start) = self.down_since.take() {
            self.add_down(start, now_ms);
        }
    }

    /// Adds the closed down period [from, to) to the per-bucket down times (only the part
    /// inside the window matters, so a long outage touches at most one window of buckets).
    fn add_down(&mut self, from: u64, to: u64) {
        let b = self.bucket_ms;
        let mut t = from.max(to.saturating_sub(self.span_ms));
        while t < to {
            let bucket = t / b * b;
            let end = (bucket + b).min(to);
            match self.down_buckets.back_mut() {
                Some((start, ms)) if *start == bucket => *ms += end - t,
                _ => self.down_buckets.push_back((bucket, end - t)),
            }
            t = end;
        }
    }

    /// Percentage of the window (or of the time watched, if shorter) not spent DOWN.
    pub fn uptime_pct(&self, now_ms: u64) -> f64 {
        let start = now_ms
            .saturating_sub(self.span_ms)
            .max(self.watched_since_ms);
        let span = now_ms.saturating_sub(start);
        if span == 0 {
            return if self.down_since.is_some() {
                0.0
            } else {
                100.0
            };
        }
        let b = self.bucket_ms;
        let overlap = |from: u64, to: u64| to.min(now_ms).saturating_sub(from.max(start));
        let closed: f64 = self
            .down_buckets
            .iter()
            .map(|&(bucket, ms)| ms as f64 * overlap(bucket, bucket + b) as f64 / b as f64)
            .sum();
        let open = self.down_since.map_or(0, |a| overlap(a, now_ms)) as f64;
        100.0 * (1.0 - ((closed + open) / span as f64).min(1.0))
    }
}

/// A latency as stored: samples are bounded at validation (<= 1 h), but the window must stay
/// finite whatever it is given, since `as f32` turns anything above f32::MAX into infinity
/// (and one infinity poisons every average and quantile over the window).
fn to_point(latency_ms: f64) -> f32 {
    if latency_ms.is_nan() {
        return 0.0;
    }
    latency_ms.clamp(0.0, f64::from(f32::MAX)) as f32
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyStats {
    pub avg: f64,
    pub p95: f64,
    pub p99: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apdex_counts_satisfied_tolerating_and_failures() {
        let mut w = Window::new(60_000, 100, 0);
        assert_eq!(w.apdex(100), None);
        // 2 satisfied, 1 tolerating (<= 4T), 1 frustrated by latency, 1 failed but fast.
        for (i, (lat, ok)) in [
            (50.0, true),
            (100.0, true),
            (350.0, true),
            (401.0, true),
            (5.0, false),
        ]
        .into_iter()
        .enumerate()
        {
            w.push(i as u64, lat, ok);
        }
        assert_eq!(w.apdex(100), Some((2.0 + 0.5) / 5.0));
        assert_eq!(
            w.apdex(1000),
            Some(4.0 / 5.0),
            "the failure stays frustrated"
        );
    }

    #[test]
    fn evicts_by_time_and_by_count() {
        let mut w = Window::new(10_000, 5, 0);
        for i in 0..4 {
            w.push(i * 1000, 10.0, true);
        }
        assert_eq!(w.len(), 4);
        w.push(20_000, 10.0, true);
        assert_eq!(w.len(), 1, "samples older than the span are gone");
        for i in 0..10 {
            w.push(20_000 + i, 1.0, true);
        }
        assert_eq!(w.len(), 5, "never more than max_points");
    }

    #[test]
    fn latency_percentiles_use_nearest_rank() {
        let mut w = Window::new(60_000, 1000, 0);
        for i in 1..=100 {
            w.push(i, i as f64, true);
        }
        let s = w.latency_stats(0, &mut Vec::new()).unwrap();
        assert_eq!(s.p95, 95.0);
        assert_eq!(s.p99, 99.0);
        assert!((s.avg - 50.5).abs() < 1e-9);
        // Only the last 10 samples.
        let recent = w.latency_stats(91, &mut Vec::new()).unwrap();
        assert_eq!(recent.p95, 100.0);
        assert_eq!(recent.avg, 95.5);
        assert!(w.latency_stats(1000, &mut Vec::new()).is_none());
        // The linear-time quantile agrees with the sorted one.
        let mut scratch = Vec::new();
        for (since, q) in [(0, 0.95), (0, 0.99), (91, 0.95), (50, 0.5)] {
            let sorted = w.latency_stats(since, &mut scratch).unwrap();
            let want = if q == 0.95 {
                sorted.p95
            } else if q == 0.99 {
                sorted.p99
            } else {
                75.0
            };
            assert_eq!(
                w.latency_quantile(since, 1000, q, &mut scratch),
                Some(want),
                "{since} {q}"
            );
        }
        assert_eq!(w.latency_quantile(1000, 1000, 0.95, &mut scratch), None);
        // Only the newest points count when capped: the last 5 are 96..=100.
        assert_eq!(w.latency_quantile(0, 5, 0.5, &mut scratch), Some(98.0));
    }

    proptest::proptest! {
        /// Selection gives exactly the sorted nearest-rank percentiles.
        #[test]
        fn selection_matches_sorting(values in proptest::collection::vec(0.0f32..5_000.0, 1..200)) {
            let mut w = Window::new(1_000_000, 1_000, 0);
            for (i, v) in values.iter().enumerate() {
                w.push(i as u64, f64::from(*v), true);
            }
            let mut sorted = values.clone();
            sorted.sort_by(f32::total_cmp);
            let n = sorted.len();
            let rank = |q: f64| f64::from(sorted[((q * n as f64).ceil() as usize).clamp(1, n) - 1]);
            let s = w.latency_stats(0, &mut Vec::new()).unwrap();
            proptest::prop_assert_eq!(s.p95, rank(0.95));
            proptest::prop_assert_eq!(s.p99, rank(0.99));
            proptest::prop_assert_eq!(w.latency_quantile(0, 1000, 0.95, &mut Vec::new()), Some(rank(0.95)));
        }
    }

    #[test]
    fn stored_latencies_and_their_statistics_are_always_finite() {
        let mut w = Window::new(60_000, 1000, 0);
        for (i, v) in [1e39, f64::INFINITY, f64::NAN, -5.0, f64::MAX, 3_600_000.0]
            .into_iter()
            .enumerate()
        {
            w.push(i as u64, v, true);
        }
        let s = w.latency_stats(0, &mut Vec::new()).unwrap();
        assert!(
            s.avg.is_finite() && s.p95.is_finite() && s.p99.is_finite(),
            "{s:?}"
        );
        let q = w.latency_quantile(0, 1000, 0.95, &mut Vec::new()).unwrap();
        assert!(q.is_finite());
    }

    #[test]
    fn uptime_counts_down_periods_inside_the_window() {
        let mut w = Window::new(10_000, 100, 0);
        assert_eq!(w.uptime_pct(10_000), 100.0);
        w.mark_down(10_000);
        assert_eq!(w.uptime_pct(12_000), 80.0);
        w.mark_up(12_000);
        assert_eq!(w.uptime_pct(15_000), 80.0);
        // The down period slides out of the window.
        w.evict(21_000);
        assert_eq!(w.uptime_pct(21_000), 90.0);
        w.evict(30_000);
        assert_eq!(w.uptime_pct(30_000), 100.0);
    }

    #[test]
    fn flapping_keeps_the_down_periods_bounded_and_uptime_close() {
        let mut w = Window::new(60_000, 600, 0);
        // 1000 cycles inside the window: 10 ms down, 40 ms up (80 % up).
        for i in 0..1000u64 {
            w.mark_down(i * 50);
            w.mark_up(i * 50 + 10);
        }
        assert!(w.down_buckets.len() <= BUCKETS_PER_WINDOW as usize + 1);
        assert!((w.uptime_pct(50_000) - 80.0).abs() < 1e-9);
        // Another window of flapping later: still bounded, still exact where whole
        // buckets are inside the window.
        for i in 0..10_000u64 {
            w.mark_down(100_000 + i * 6);
            w.mark_up(100_000 + i * 6 + 3);
        }
        w.evict(160_000);
        assert!(w.down_buckets.len() <= BUCKETS_PER_WINDOW as usize + 1);
        assert!((w.uptime_pct(160_000) - 50.0).abs() < 1e-9);
    }

    #[test]
    fn uptime_is_over_the_time_watched_when_shorter_than_the_window() {
        let mut w = Window::new(60_000, 100, 100_000);
        w.mark_down(100_000);
        w.mark_up(101_000);
        assert_eq!(w.uptime_pct(104_000), 75.0);
    }
}
