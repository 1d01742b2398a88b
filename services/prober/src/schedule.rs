//! One task per target, each on its own interval. Probes share `--max-inflight` slots;
//! each is bounded by its target's timeout (shorter than its interval), so a slow or
//! hanging target only ever holds its own task and one slot, never another target's turn.
//!
//! The probe itself and where samples go are traits, so the timing is tested here with
//! `tokio::time::pause()` and no network.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use vitals_protocol::{MetricSample, ServiceName, Target};
use vitals_runtime::Clock;

use crate::metrics::Metrics;
use crate::sample::{self, Failure, Outcome, Publisher, Recent};
use crate::targets::{Change, plan};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs one probe of a target (no timeout of its own needed: the schedule bounds it).
pub trait Runner: Send + Sync + 'static {
    fn probe<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Outcome>;
}

/// Takes each sample (publishes it).
pub trait Sink: Send + Sync + 'static {
    fn send(&self, sample: MetricSample) -> BoxFuture<'_, ()>;
}

/// What every target's task shares.
pub struct Ctx<R, S> {
    pub runner: R,
    pub sink: S,
    pub slots: Arc<Semaphore>,
    pub metrics: Arc<Metrics>,
    pub clock: Clock,
    pub instance: String,
    pub cert_warn_days: u32,
    /// A target's first probe comes at a random point within this (and its interval), so
    /// a thousand targets loaded at once do not all fire in the same millisecond.
    pub start_spread: Duration,
}

/// What lives as long as a service is known, across changes of its target: its `seq`
/// (so a changed target does not restart it, which the monitor would refuse as
/// duplicates) and its last results.
#[derive(Default)]
struct Track {
    seq: AtomicU64,
    recent: Mutex<Recent>,
}

struct Running {
    target: Arc<Target>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// What [`Scheduler::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Started,
    Replaced,
    /// The task is stopped and awaited: no sample of it goes out any more.
    Stopped,
    Unchanged,
}

pub struct Scheduler<R, S> {
    ctx: Arc<Ctx<R, S>>,
    running: HashMap<ServiceName, Running>,
    /// Never shrinks: a name removed and added again continues its seq (a monitor that
    /// did not hear the retire would refuse seq 1 again). A few bytes per name ever seen.
    tracks: HashMap<ServiceName, Arc<Track>>,
}

impl<R: Runner, S: Sink> Scheduler<R, S> {
    pub fn new(ctx: Arc<Ctx<R, S>>) -> Self {
        Self {
            ctx,
            running: HashMap::new(),
            tracks: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.running.len()
    }

    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    pub fn target(&self, service: &ServiceName) -> Option<&Target> {
        self.running.get(service).map(|r| &*r.target)
    }

    /// Makes `service` probe `wanted` (None: stop probing it).
    pub async fn apply(&mut self, service: &ServiceName, wanted: Option<Target>) -> Applied {
        let applied = match plan(self.target(service), wanted) {
            Change::Unchanged => Applied::Unchanged,
            Change::Start(t) => {
                self.start(service, t);
                Applied::Started
            }
            Change::Replace(t) => {
                self.stop(service).await;
                self.start(service, t);
                Applied::Replaced
            }
            Change::Stop => {
                self.stop(service).await;
                if let Some(track) = self.tracks.get(service)
                    && let Ok(mut r) = track.recent.lock()
                {
                    *r = Recent::default();
                }
                Applied::Stopped
            }
        };
        self.ctx
            .metrics
            .targets_active
            .set(self.running.len() as i64);
        applied
    }

    /// Stops every running service not in `present`; returns them.
    pub async fn retain(&mut self, present: &HashSet<ServiceName>) -> Vec<ServiceName> {
        let stale = crate::targets::stale(self.running.keys(), present);
        for s in &stale {
            self.apply(s, None).await;
        }
        stale
    }

    /// Stops every task (shutdown), all at once, and waits for them.
    pub async fn stop_all(&mut self) {
        let all: Vec<Running> = self.running.drain().map(|(_, r)| r).collect();
        for r in &all {
            r.stop.cancel();
        }
        for r in all {
            let _ = r.task.await;
        }
        self.ctx.metrics.targets_active.set(0);
    }

    fn start(&mut self, service: &ServiceName, target: Target) {
        let track = self.tracks.entry(service.clone()).or_default().clone();
        let target = Arc::new(target);
        let stop = CancellationToken::new();
        let task = tokio::spawn(probe_loop(
            target.clone(),
            track,
            self.ctx.clone(),
            stop.clone(),
        ));
        self.running
            .insert(service.clone(), Running { target, stop, task });
    }

    async fn stop(&mut self, service: &ServiceName) {
        if let Some(r) = self.running.remove(service) {
            r.stop.cancel();
            let _ = r.task.await;
        }
    }
}

/// Decrements the in-flight gauge however the probe ends (done, timed out, cancelled).
struct InFlight<'a>(&'a Metrics);

impl<'a> InFlight<'a> {
    fn new(m: &'a Metrics) -> Self {
        m.in_flight.inc();
        Self(m)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

async fn probe_loop<R: Runner, S: Sink>(
    target: Arc<Target>,
    track: Arc<Track>,
    ctx: Arc<Ctx<R, S>>,
    stop: CancellationToken,
) {
    let interval = Duration::from_millis(target.interval_ms());
    let timeout = Duration::from_millis(target.timeout_ms());
    let spread = ctx.start_spread.min(interval);
    let first = if spread.is_zero() {
        Duration::ZERO
    } else {
        spread.mul_f64(rand::random::<f64>())
    };
    let mut ticks = tokio::time::interval_at(Instant::now() + first, interval);
    // A round that could not start in time is skipped, not made up in a burst.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let who = Publisher {
        instance: &ctx.instance,
        cert_warn_days: ctx.cert_warn_days,
    };
    loop {
        let tick = tokio::select! {
            t = ticks.tick() => t,
            () = stop.cancelled() => return,
        };
        // Waiting for a slot is not the target's fault: past the next round, skip this one.
        let slot = tokio::select! {
            s = ctx.slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => return,
            },
            () = tokio::time::sleep_until(tick + interval) => {
                ctx.metrics.skipped.inc();
                continue;
            }
            () = stop.cancelled() => return,
        };
        let ts_ms = ctx.clock.now_ms();
        let started = Instant::now();
        let timeout_ms = timeout.as_secs_f64() * 1000.0;
        let mut outcome = {
            let _in_flight = InFlight::new(&ctx.metrics);
            tokio::select! {
                o = tokio::time::timeout(timeout, ctx.runner.probe(&target)) => o.unwrap_or_else(|_| {
                    Outcome::failed(timeout_ms, Failure::Timeout)
                }),
                () = stop.cancelled() => return,
            }
        };
        // Whichever timer saw it first (the request's own or this one), a timeout took
        // the timeout.
        if outcome.failure == Some(Failure::Timeout) {
            outcome.latency_ms = timeout_ms;
        }
        drop(slot);
        ctx.metrics
            .probed(outcome.failure, started.elapsed().as_secs_f64());
        let seq = track.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let recent = match track.recent.lock() {
            Ok(mut r) => {
                r.push(outcome.ok());
                r.clone()
            }
            Err(_) => Recent::default(),
        };
        match sample::build(&target, &who, seq, ts_ms, &outcome, &recent) {
            Ok(s) => {
                // Checked once more: a stop that came during the probe sends nothing.
                if stop.is_cancelled() {
                    return;
                }
                ctx.sink.send(s).await;
            }
            Err(e) => {
                ctx.metrics.invalid_samples.inc();
                tracing::error!(target = target.endpoint(), error = %e, "built an invalid sample; not sent");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Targets whose URL path says how they behave: `/ok`, `/hang`, `/fail`.
    struct Fake;

    impl Runner for Fake {
        fn probe<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Outcome> {
            Box::pin(async move {
                let url = target.url.as_deref().unwrap_or_default();
                if url.ends_with("/hang") {
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
                if url.ends_with("/fail") {
                    Outcome::failed(5.0, Failure::Status(503))
                } else {
                    Outcome {
                        latency_ms: 5.0,
                        status_code: Some(200),
                        failure: None,
                        cert_expires_ms: None,
                    }
                }
            })
        }
    }

    /// Every sample with the (paused) time it was sent.
    #[derive(Clone, Default)]
    struct Record(Arc<Mutex<Vec<(Instant, MetricSample)>>>);

    impl Sink for Record {
        fn send(&self, sample: MetricSample) -> BoxFuture<'_, ()> {
            if let Ok(mut v) = self.0.lock() {
                v.push((Instant::now(), sample));
            }
            Box::pin(async {})
        }
    }

    impl Record {
        fn of(&self, service: &str) -> Vec<(Instant, MetricSample)> {
            self.0
                .lock()
                .unwrap()
                .iter()
                .filter(|(_, s)| s.service.as_str() == service)
                .cloned()
                .collect()
        }
    }

    fn target(service: &str, path: &str, interval_ms: u64) -> (ServiceName, Target) {
        let json =
            format!(r#"{{"kind":"http","url":"http://x{path}","interval_ms":{interval_ms}}}"#);
        let t = Target::from_json(service, json.as_bytes()).unwrap();
        (ServiceName::parse(service).unwrap(), t)
    }

    fn scheduler(slots: usize) -> (Scheduler<Fake, Record>, Record, Arc<Metrics>) {
        let record = Record::default();
        let metrics = Arc::new(Metrics::new());
        let ctx = Arc::new(Ctx {
            runner: Fake,
            sink: record.clone(),
            slots: Arc::new(Semaphore::new(slots)),
            metrics: metrics.clone(),
            clock: Clock::new(),
            instance: "prober-test".into(),
            cert_warn_days: 14,
            start_spread: Duration::ZERO,
        });
        (Scheduler::new(ctx), record, metrics)
    }

    #[tokio::test(start_paused = true)]
    async fn hanging_targets_never_delay_the_others() {
        let (mut s, record, metrics) = scheduler(64);
        for i in 0..20 {
            let (name, t) = target(&format!("hang{i}"), "/hang", 1000);
            s.apply(&name, Some(t)).await;
        }
        let (name, t) = target("good", "/ok", 1000);
        s.apply(&name, Some(t)).await;
        tokio::time::sleep(Duration::from_millis(10_100)).await;

        let good = record.of("good");
        assert_eq!(good.len(), 11, "a probe at 0 s, 1 s ... 10 s");
        let seqs: Vec<u64> = good.iter().map(|(_, s)| s.seq).collect();
        assert_eq!(seqs, (1..=11).collect::<Vec<_>>());
        for pair in good.windows(2) {
            assert_eq!(pair[1].0 - pair[0].0, Duration::from_secs(1));
        }
        let hung = record.of("hang3");
        assert_eq!(hung.len(), 10, "the one begun at 10 s times out at 10.5 s");
        let p = hung[0].1.probe.clone().unwrap();
        assert_eq!(p.error.as_deref(), Some("timeout"));
        assert_eq!(
            hung[0].1.latency_ms, 500.0,
            "the timeout: half the interval"
        );
        assert_eq!(hung[9].1.error_rate, 1.0);
        assert_eq!(metrics.skipped.get(), 0);
        assert_eq!(metrics.targets_active.get(), 21);
        s.stop_all().await;
        assert_eq!(metrics.in_flight.get(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn with_too_few_slots_a_round_is_skipped_not_bunched() {
        let (mut s, record, metrics) = scheduler(1);
        let (h, t) = target("hang", "/hang", 200);
        s.apply(&h, Some(t)).await;
        let (g, t) = target("good", "/ok", 200);
        s.apply(&g, Some(t)).await;
        tokio::time::sleep(Duration::from_millis(2_050)).await;
        s.stop_all().await;
        // The hanging probe holds the one slot for 100 ms of each 200: the good target
        // still gets it within its round every time.
        assert!(record.of("good").len() >= 10, "{}", record.of("good").len());
        assert_eq!(metrics.in_flight.get(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_keeps_the_seq_and_a_removal_sends_nothing_after() {
        let (mut s, record, metrics) = scheduler(8);
        let (name, ok) = target("svc", "/ok", 100);
        assert_eq!(s.apply(&name, Some(ok.clone())).await, Applied::Started);
        assert_eq!(s.apply(&name, Some(ok)).await, Applied::Unchanged);
        tokio::time::sleep(Duration::from_millis(450)).await;
        let (_, failing) = target("svc", "/fail", 100);
        assert_eq!(s.apply(&name, Some(failing)).await, Applied::Replaced);
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert_eq!(s.apply(&name, None).await, Applied::Stopped);
        let at_stop = record.of("svc").len();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let all = record.of("svc");
        assert_eq!(all.len(), at_stop, "nothing after the stop");
        let seqs: Vec<u64> = all.iter().map(|(_, s)| s.seq).collect();
        assert_eq!(seqs, (1..=all.len() as u64).collect::<Vec<_>>());
        let last = &all[all.len() - 1].1;
        assert_eq!(
            last.probe.as_ref().unwrap().error.as_deref(),
            Some("status 503")
        );
        assert!(
            last.error_rate > 0.0 && last.error_rate < 1.0,
            "{}",
            last.error_rate
        );
        assert_eq!(metrics.targets_active.get(), 0);
        let present: HashSet<ServiceName> = HashSet::new();
        assert!(s.retain(&present).await.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn retain_stops_what_the_live_list_no_longer_has() {
        let (mut s, _record, _) = scheduler(8);
        for n in ["a", "b", "c"] {
            let (name, t) = target(n, "/ok", 1000);
            s.apply(&name, Some(t)).await;
        }
        let present: HashSet<ServiceName> = [ServiceName::parse("b").unwrap()].into();
        let gone = s.retain(&present).await;
        assert_eq!(gone.len(), 2);
        assert_eq!(s.len(), 1);
        s.stop_all().await;
        assert!(s.is_empty());
    }
}
