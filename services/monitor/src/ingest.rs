//! The one task that owns the engine. Samples, ticks, commands, connection changes and
//! shutdown arrive through one `select!`, so there is no lock on the hot path and events
//! leave in the order their causes arrived. Reads never come here: the task publishes a
//! copy for them at most every 250 ms, when one was asked for ([`crate::read`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vitals_protocol::sample::parse_sample_known;
use vitals_protocol::{ConnAdvisory, MonitorHeartbeat, Refusal, RefusalReason, Status, subjects};
use vitals_runtime::loglimit::LogLimiter;
use vitals_runtime::{Clock, ConnEvent};

use crate::engine::connections::ConnOutcome;
use crate::engine::{Engine, Event};
use crate::metrics::{AlertLabel, Metrics, ReasonLabel, StatusLabel};
use crate::publish::{Outbound, Outbox};
use crate::read;
use crate::requests::Command;

/// A sample's `ts_ms` further than this from the monitor's clock is counted as skew.
const SKEW_MS: u64 = 5 * 60 * 1000;
/// At most one log line per refusal reason per this period.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);
/// Messages taken from the subscription per wake-up, so ticks are never starved.
const BATCH: usize = 512;

pub struct Ingest {
    pub engine: Engine,
    /// No echo of our own heartbeat for this long means the feed is stalled.
    pub feed_stall: Duration,
    pub clock: Clock,
    pub metrics: Arc<Metrics>,
    pub outbox: Outbox,
    pub monitor_id: String,
    pub tick: Duration,
    pub started_ms: u64,
    pub reads: read::Publisher,
    /// Ids of acknowledged alerts that resolved: their KV ack is deleted off this task.
    pub forget_acks: mpsc::Sender<String>,
    /// Unreadable connection advisories: logged at most once per period.
    pub conn_log: LogLimiter,
}

pub struct Inputs {
    pub samples: async_nats::Subscriber,
    /// The monitor's own heartbeat subject: each echo proves the NATS path works.
    pub echo: async_nats::Subscriber,
    pub commands: mpsc::Receiver<Command>,
    pub conn: mpsc::UnboundedReceiver<ConnEvent>,
    /// The server's client connect/disconnect advisories ([`subjects::CONN_EVENTS`]).
    pub conn_events: async_nats::Subscriber,
}

impl Ingest {
    pub async fn run(mut self, mut inputs: Inputs, cancel: CancellationToken) {
        let mut ticker = tokio::time::interval(self.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut out = Vec::new();
        let mut refusal_log = RefusalLog::default();
        let mut heartbeat = HeartbeatClock::new(self.clock.now_ms());
        let mut last_echo: Option<u64> = None;
        self.engine
            .settle_inhibitions(self.clock.now_ms(), &mut out);
        self.flush(&mut out);
        loop {
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                Some(change) = inputs.conn.recv() => match change {
                    ConnEvent::Disconnected => {
                        tracing::warn!("not judging silence until NATS is back");
                        self.metrics.nats_connected.set(0);
                        self.engine.on_disconnected();
                    }
                    ConnEvent::Connected => {
                        self.metrics.nats_connected.set(1);
                        self.metrics.reconnects.inc();
                        self.engine.on_reconnected(self.clock.now_ms());
                    }
                    ConnEvent::SlowConsumer => {
                        self.metrics.slow_consumer_drops.inc();
                        self.engine.on_samples_dropped(self.clock.now_ms());
                    }
                },
                _ = ticker.tick() => {
                    let started = Instant::now();
                    let now = self.clock.now_ms();
                    let stalled = last_echo.is_some_and(|t| now.saturating_sub(t) > self.feed_stall.as_millis() as u64);
                    if stalled && !self.engine.feed_stalled() {
                        tracing::warn!("own heartbeat no longer echoes through NATS; not judging silence");
                        self.engine.on_feed_stalled();
                    }
                    for outcome in self.engine.judge_pending_losses(now, &mut out) {
                        self.metrics.conn_event(outcome);
                    }
                    self.engine.on_tick(now, &mut out);
                    if !out.is_empty() {
                        self.reads.changed();
                    }
                    self.flush(&mut out);
                    if self.reads.wanted() {
                        self.reads.publish(now, self.engine.snapshot(now));
                    }
                    if heartbeat.due(now) {
                        let hb = self.heartbeat(now, &mut heartbeat);
                        self.outbox.send(Outbound::Heartbeat(hb));
                    }
                    self.metrics.tick_seconds.observe(started.elapsed().as_secs_f64());
                }
                Some(advisory) = inputs.conn_events.next() => {
                    let now = self.clock.now_ms();
                    // Samples already here were sent before the close was seen (a graceful
                    // stop's `stopping` sample among them): they go first.
                    for _ in 0..BATCH {
                        match inputs.samples.next().now_or_never() {
                            Some(Some(msg)) => self.on_message(&msg, now, &mut out, &mut refusal_log),
                            _ => break,
                        }
                    }
                    self.on_conn_advisory(&advisory.payload, now, &mut out);
                    if !out.is_empty() {
                        self.reads.changed();
                        self.flush(&mut out);
                    }
                }
                Some(echo) = inputs.echo.next() => {
                    let mine = serde_json::from_slice::<MonitorHeartbeat>(&echo.payload)
                        .is_ok_and(|hb| hb.monitor_id == self.monitor_id);
                    if mine {
                        let now = self.clock.now_ms();
                        last_echo = Some(now);
                        if self.engine.feed_stalled() {
                            tracing::info!("own heartbeat echoes again; judging after a grace period");
                            self.engine.on_feed_resumed(now);
                        }
                    }
                }
                Some(cmd) = inputs.commands.recv() => match cmd {
                    Command::Retire { name, why, reply } => {
                        let now = self.clock.now_ms();
                        let done = self.engine.retire(&name, why, now, &mut out);
                        self.reads.changed();
                        self.flush(&mut out);
                        let _ = reply.send(done);
                    }
                    Command::Silences(silences) => {
                        let now = self.clock.now_ms();
                        tracing::info!(silences = silences.len(), "silences loaded");
                        self.engine.set_silences(silences, now, &mut out);
                        self.reads.changed();
                        self.flush(&mut out);
                    }
                    Command::Ack(ack) => {
                        let now = self.clock.now_ms();
                        if self.engine.ack(&ack.id, &ack.by, now, &mut out) {
                            self.reads.changed();
                            self.flush(&mut out);
                        } else {
                            // Its alert no longer fires (resolved while the ack was on its
                            // way, or before a restart): the key is of no use now.
                            self.forget_ack(ack.id);
                        }
                    }
                },
                msg = inputs.samples.next() => {
                    let Some(msg) = msg else {
                        tracing::error!("metrics subscription closed");
                        break;
                    };
                    // One clock read per batch: everything in it was received just now.
                    let started = Instant::now();
                    let now = self.clock.now_ms();
                    self.on_message(&msg, now, &mut out, &mut refusal_log);
                    let mut judged = 1;
                    // Take what is already waiting, without yielding per message.
                    for _ in 0..BATCH {
                        match inputs.samples.next().now_or_never() {
                            Some(Some(msg)) => {
                                self.on_message(&msg, now, &mut out, &mut refusal_log);
                                judged += 1;
                            }
                            _ => break,
                        }
                    }
                    self.reads.changed();
                    self.flush(&mut out);
                    self.metrics
                        .eval_seconds
                        .observe(started.elapsed().as_secs_f64() / f64::from(judged));
                }
            }
        }
    }

    fn on_message(
        &mut self,
        msg: &async_nats::Message,
        now: u64,
        out: &mut Vec<Event>,
        log: &mut RefusalLog,
    ) {
        let token = subjects::service_of_metrics(&msg.subject).unwrap_or("");
        let engine = &self.engine;
        let known = |service: &_, url: &str| engine.checked_health_url(service, url);
        let outcome = parse_sample_known(token, &msg.payload, known).and_then(|sample| {
            self.engine
                .on_sample(&sample, now, out)
                .map_err(|reason| Refusal::new(reason, refusal_detail(reason)))
                .map(|missed| (sample, missed))
        });
        match outcome {
            Ok((sample, missed)) => {
                self.metrics.samples.inc();
                if missed > 0 {
                    self.metrics.samples_missed.inc_by(missed);
                }
                if sample.ts_ms.abs_diff(now) > SKEW_MS {
                    self.metrics.clock_skew.inc();
                }
            }
            Err(refusal) => {
                self.metrics.refused(refusal.reason);
                log.note(&refusal, &msg.subject);
            }
        }
    }

    /// A connection opened or closed: a crash is DOWN at once (see `engine::connections`).
    fn on_conn_advisory(&mut self, payload: &[u8], now: u64, out: &mut Vec<Event>) {
        let outcome = match serde_json::from_slice::<ConnAdvisory>(payload) {
            Ok(advisory) => self.engine.on_conn_advisory(&advisory, now, out),
            Err(e) => {
                if let Some(suppressed) = self.conn_log.due() {
                    tracing::warn!(error = %e, suppressed, "unreadable connection advisory");
                }
                ConnOutcome::Unreadable
            }
        };
        self.metrics.conn_event(outcome);
    }

    fn flush(&mut self, out: &mut Vec<Event>) {
        for event in out.drain(..) {
            match &event {
                Event::Status(c) => {
                    tracing::info!(service = %c.service, status = %c.status, previous = %c.previous, reasons = ?c.reasons, "status changed");
                    if c.status == Status::Retired {
                        let reason = if c
                            .reasons
                            .iter()
                            .any(|r| r == crate::requests::RETIRED_ON_REQUEST)
                        {
                            "request"
                        } else {
                            "down_too_long"
                        };
                        self.metrics
                            .retired
                            .get_or_create(&ReasonLabel { reason })
                            .inc();
                    }
                    self.metrics
                        .transitions
                        .get_or_create(&StatusLabel {
                            status: c.status.as_str(),
                        })
                        .inc();
                }
                Event::Alert(a) => {
                    let state = match a.state {
                        vitals_protocol::AlertState::Firing => "firing",
                        vitals_protocol::AlertState::Resolved => "resolved",
                    };
                    tracing::info!(service = %a.service, alert = %a.alert, state, value = a.value, update = ?a.update, inhibited_by = ?a.marks.inhibited_by, silenced = a.marks.silenced, "alert");
                    if a.state == vitals_protocol::AlertState::Resolved
                        && a.marks.acked_by.is_some()
                    {
                        let id = a.id.clone();
                        self.forget_ack(id);
                    }
                    self.metrics
                        .alerts
                        .get_or_create(&AlertLabel {
                            alert: a.alert.as_str(),
                            state,
                        })
                        .inc();
                }
                Event::Summary(_) | Event::Stored(_) | Event::Forget(_) => {}
            }
            self.outbox.send(Outbound::Event(Box::new(event)));
        }
        self.metrics.services.set(self.engine.len() as i64);
    }

    fn forget_ack(&self, id: String) {
        if self.forget_acks.try_send(id).is_err() {
            self.metrics.ack_forget_errors.inc();
        }
    }

    fn heartbeat(&self, now: u64, clock: &mut HeartbeatClock) -> MonitorHeartbeat {
        let samples_total = self.metrics.samples.get();
        let refusals = self.metrics.refusal_counts();
        MonitorHeartbeat {
            monitor_id: self.monitor_id.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            at_ms: now,
            started_ms: self.started_ms,
            uptime_s: now.saturating_sub(self.started_ms) / 1000,
            interval_ms: HEARTBEAT_MS,
            heartbeat_timeout_ms: self.engine.heartbeat_timeout_ms(),
            services: self.engine.len(),
            samples_total,
            samples_per_s: clock.rate(now, samples_total),
            refused_total: refusals.values().sum(),
            refusals,
            slow_consumer_drops: self.metrics.slow_consumer_drops.get(),
            samples_missed: self.metrics.samples_missed.get(),
            publish_drops: self.metrics.publish_drops.get(),
            in_grace: self.engine.in_grace(now),
        }
    }
}

/// The monitor's heartbeat period (fixed by the contract: every second).
pub const HEARTBEAT_MS: u64 = 1_000;

struct HeartbeatClock {
    next_ms: u64,
    last_ms: u64,
    last_samples: u64,
}

impl HeartbeatClock {
    fn new(now: u64) -> Self {
        Self {
            next_ms: now,
            last_ms: now,
            last_samples: 0,
        }
    }

    fn due(&mut self, now: u64) -> bool {
        if now < self.next_ms {
            return false;
        }
        self.next_ms = now + HEARTBEAT_MS;
        true
    }

    /// Samples per second since the previous heartbeat.
    fn rate(&mut self, now: u64, samples: u64) -> f64 {
        let dt = now.saturating_sub(self.last_ms);
        let rate = if dt == 0 {
            0.0
        } else {
            samples.saturating_sub(self.last_samples) as f64 * 1000.0 / dt as f64
        };
        self.last_ms = now;
        self.last_samples = samples;
        rate
    }
}

fn refusal_detail(reason: RefusalReason) -> &'static str {
    match reason {
        RefusalReason::Duplicate => "seq at or below one already seen from this instance",
        RefusalReason::ServiceCap => "service cap reached; new service not tracked",
        RefusalReason::InstanceCap => {
            "instance cap reached for this service; new instance not tracked"
        }
        _ => "refused",
    }
}

/// Logs each refusal reason at most once per period, with how many were not logged.
#[derive(Default)]
struct RefusalLog {
    by_reason: HashMap<RefusalReason, LogLimiter>,
}

impl RefusalLog {
    fn note(&mut self, refusal: &Refusal, subject: &str) {
        let limiter = self
            .by_reason
            .entry(refusal.reason)
            .or_insert_with(|| LogLimiter::new(REFUSAL_LOG_EVERY));
        let Some(suppressed) = limiter.due() else {
            return;
        };
        // The subject is attacker-controlled: log it escaped and bounded.
        let subject: String = subject.chars().take(80).collect();
        tracing::warn!(reason = refusal.reason.as_str(), detail = %refusal.detail, subject = ?subject, suppressed, "refused sample");
    }
}
