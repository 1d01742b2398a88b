//! One simulated service: its fault, its model and its sequence, shared by the
//! publisher, the chaos handler and the HTTP routes.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use vitals_protocol::{ChaosReply, ChaosRequest, FaultMode, MetricSample, ServiceName, subjects};

use crate::epoch_ms;
use crate::faults::{ActiveFault, FaultState};
use crate::model::{Baseline, Metrics, Model};

#[derive(Debug)]
pub struct SimService {
    pub name: ServiceName,
    pub instance: String,
    pub health_url: String,
    /// `metrics.<name>`, built once.
    pub subject: String,
    state: Mutex<Inner>,
    /// Held while a sample is made and handed to NATS, and while the fault changes,
    /// so once a change is acknowledged no sample made before it is sent after it.
    gate: tokio::sync::Mutex<()>,
    /// Bumped on every fault change; wakes requests parked by `hang`.
    changed: watch::Sender<u64>,
}

#[derive(Debug)]
struct Inner {
    faults: FaultState,
    model: Model,
    next_seq: u64,
    last: Option<Metrics>,
}

/// What `/health` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Ok,
    Degraded,
    Error,
    /// Do not answer.
    Hang,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Degraded => "degraded",
            Self::Error => "error",
            Self::Hang => "hang",
        }
    }
}

/// Body of `/health`.
#[derive(Debug, Clone, Serialize)]
pub struct HealthView {
    pub service: ServiceName,
    pub status: &'static str,
    pub mode: FaultMode,
    pub instance: String,
    /// The last sample's seq; null before the first.
    pub seq: Option<u64>,
    pub until_ms: Option<u64>,
    #[serde(skip)]
    pub health: Health,
}

/// Body of `GET /faults`.
#[derive(Debug, Clone, Serialize)]
pub struct FaultView {
    pub service: ServiceName,
    pub mode: FaultMode,
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    // The state stays consistent across a panic (plain field writes), so keep serving.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Faults during which the service publishes nothing.
fn silences(mode: FaultMode) -> bool {
    matches!(mode, FaultMode::Silent | FaultMode::Hang | FaultMode::Crash)
}

impl SimService {
    /// `first_seq`: 0 for a fresh instance id; a fixed id that outlives the process
    /// counts from the start time instead, so a restart still increases its `seq`.
    pub fn new(
        name: ServiceName,
        instance: String,
        health_url: String,
        seed: u64,
        first_seq: u64,
    ) -> Self {
        let model = Model::new(Baseline::for_service(name.as_str()), seed);
        Self {
            subject: subjects::metrics(&name),
            name,
            instance,
            health_url,
            state: Mutex::new(Inner {
                faults: FaultState::default(),
                model,
                next_seq: first_seq,
                last: None,
            }),
            gate: tokio::sync::Mutex::new(()),
            changed: watch::Sender::new(0),
        }
    }

    /// Taken by the publisher around make-and-send; see `gate`.
    pub async fn gate(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.gate.lock().await
    }

    /// The next sample, or None while a fault silences the service. The last sample
    /// (`stopping`) is made whatever the fault, so a monitor learns of the stop at once.
    pub fn next_sample(&self, now_ms: u64, stopping: bool) -> Option<MetricSample> {
        let mut st = lock(&self.state);
        self.expire(&mut st, now_ms);
        let mode = st.faults.mode_at(now_ms);
        if silences(mode) && !stopping {
            return None;
        }
        let m = st.model.step(mode, now_ms);
        let seq = st.next_seq;
        st.next_seq += 1;
        st.last = Some(m);
        Some(MetricSample {
            service: self.name.clone(),
            instance: self.instance.clone(),
            seq,
            ts_ms: now_ms,
            cpu_pct: Some(m.cpu_pct),
            mem_pct: Some(m.mem_pct),
            latency_ms: m.latency_ms,
            error_rate: m.error_rate,
            health_url: self.health_url.clone(),
            stopping,
            source: Default::default(),
            probe: None,
            host: None,
            interval_ms: None,
        })
    }

    /// Parses, checks and applies a chaos request body (NATS or HTTP alike).
    /// Err carries the refusal in the same reply shape, with the fault left as it was.
    pub async fn handle_request(&self, body: &[u8]) -> Result<ChaosReply, ChaosReply> {
        let parsed = serde_json::from_slice::<ChaosRequest>(body)
            .map_err(|e| format!("bad request: {e}"))
            .and_then(|req| req.validate().map(|()| req));
        match parsed {
            Ok(req) => Ok(self.apply(&req).await),
            Err(error) => {
                let mut reply = self.reply(epoch_ms());
                reply.ok = false;
                reply.error = Some(error);
                Err(reply)
            }
        }
    }

    /// Sets a (validated) fault.
    pub async fn apply(&self, req: &ChaosRequest) -> ChaosReply {
        let _gate = self.gate().await;
        // Read after the gate: the fault starts when it takes effect.
        let now = epoch_ms();
        lock(&self.state).faults.set(req.mode, req.for_s, now);
        self.changed.send_modify(|n| *n += 1);
        // Callers log at info: a fleet-wide change should be one line, not 10k.
        tracing::debug!(service = %self.name, mode = req.mode.as_str(), for_s = ?req.for_s, "fault set");
        self.reply(now)
    }

    fn reply(&self, now_ms: u64) -> ChaosReply {
        let fault = self.fault_at(now_ms);
        ChaosReply {
            ok: true,
            service: self.name.to_string(),
            mode: fault.map_or(FaultMode::Clear, |f| f.mode),
            until_ms: fault.and_then(|f| f.until_ms),
            error: None,
        }
    }

    fn fault_at(&self, now_ms: u64) -> Option<ActiveFault> {
        let mut st = lock(&self.state);
        self.expire(&mut st, now_ms);
        st.faults.at(now_ms)
    }

    fn expire(&self, st: &mut Inner, now_ms: u64) {
        if let Some(f) = st.faults.expire(now_ms) {
            tracing::info!(service = %self.name, mode = f.mode.as_str(), "fault ended (time up)");
            self.changed.send_modify(|n| *n += 1);
        }
    }

    pub fn fault_view(&self, now_ms: u64) -> FaultView {
        let f = self.fault_at(now_ms);
        FaultView {
            service: self.name.clone(),
            mode: f.map_or(FaultMode::Clear, |f| f.mode),
            since_ms: f.map(|f| f.since_ms),
            until_ms: f.and_then(|f| f.until_ms),
        }
    }

    pub fn health(&self, now_ms: u64) -> HealthView {
        let mut st = lock(&self.state);
        self.expire(&mut st, now_ms);
        let fault = st.faults.at(now_ms);
        let mode = fault.map_or(FaultMode::Clear, |f| f.mode);
        let health = match mode {
            FaultMode::Clear | FaultMode::Silent => Health::Ok,
            FaultMode::Cpu | FaultMode::Memory | FaultMode::Latency => Health::Degraded,
            FaultMode::Flapping if st.model.in_bad_phase() => Health::Degraded,
            FaultMode::Flapping => Health::Ok,
            FaultMode::Errors | FaultMode::Crash => Health::Error,
            FaultMode::Hang => Health::Hang,
        };
        HealthView {
            service: self.name.clone(),
            status: health.as_str(),
            mode,
            instance: self.instance.clone(),
            seq: st.next_seq.checked_sub(1),
            until_ms: fault.and_then(|f| f.until_ms),
            health,
        }
    }

    /// The latency the service reports now, for making `/data` as slow as it claims to be.
    pub fn current_latency(&self) -> Option<Duration> {
        lock(&self.state)
            .last
            .map(|m| Duration::from_secs_f64(m.latency_ms.clamp(0.0, 5_000.0) / 1000.0))
    }

    /// Parks the caller while the service is hung. False when `stop` fired first.
    pub async fn wait_while_hung(&self, stop: &CancellationToken) -> bool {
        let mut changes = self.changed.subscribe();
        loop {
            let now = epoch_ms();
            let Some(hang) = self.fault_at(now).filter(|f| f.mode == FaultMode::Hang) else {
                return true;
            };
            let until = hang
                .until_ms
                .map(|u| Duration::from_millis(u.saturating_sub(now)));
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return false },
                () = stop.cancelled() => return false,
                () = sleep_or_forever(until) => {}
            }
        }
    }
}

async fn sleep_or_forever(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc() -> SimService {
        let name = ServiceName::parse("auth").unwrap();
        SimService::new(
            name,
            "auth-1".into(),
            "http://127.0.0.1:1/health".into(),
            1,
            0,
        )
    }

    #[tokio::test]
    async fn seq_counts_from_zero_and_silence_skips() {
        let s = svc();
        assert_eq!(s.next_sample(1, false).unwrap().seq, 0);
        assert_eq!(s.next_sample(2, false).unwrap().seq, 1);
        s.handle_request(br#"{"mode":"silent"}"#).await.unwrap();
        assert!(s.next_sample(3, false).is_none());
        let last = s.next_sample(4, true).unwrap();
        assert!(last.stopping && last.seq == 2);
        assert!(last.validate().is_ok());
    }

    #[tokio::test]
    async fn bad_requests_are_refused_without_changing_the_fault() {
        let s = svc();
        s.handle_request(br#"{"mode":"cpu"}"#).await.unwrap();
        for bad in [
            &b"{nope"[..],
            br#"{"mode":"meltdown"}"#,
            br#"{"mode":"cpu","for_s":-1}"#,
            b"",
        ] {
            let r = s.handle_request(bad).await.unwrap_err();
            assert!(!r.ok && r.error.is_some());
            assert_eq!(r.mode, FaultMode::Cpu);
        }
    }

    #[tokio::test]
    async fn health_follows_the_fault() {
        let s = svc();
        let now = epoch_ms();
        assert_eq!(s.health(now).health, Health::Ok);
        for (mode, want) in [
            ("cpu", Health::Degraded),
            ("memory", Health::Degraded),
            ("latency", Health::Degraded),
            ("errors", Health::Error),
            ("silent", Health::Ok),
            ("hang", Health::Hang),
            ("clear", Health::Ok),
        ] {
            s.handle_request(format!(r#"{{"mode":"{mode}"}}"#).as_bytes())
                .await
                .unwrap();
            assert_eq!(s.health(epoch_ms()).health, want, "{mode}");
        }
    }

    #[tokio::test]
    async fn hang_releases_when_cleared() {
        let s = std::sync::Arc::new(svc());
        s.handle_request(br#"{"mode":"hang"}"#).await.unwrap();
        let stop = CancellationToken::new();
        let waiter = {
            let (s, stop) = (s.clone(), stop.clone());
            tokio::spawn(async move { s.wait_while_hung(&stop).await })
        };
        // Let the waiter run until it parks (this runtime has one thread: without this it
        // would only start after the clear and return at once, proving nothing).
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!waiter.is_finished(), "parked while hung");
        s.handle_request(br#"{"mode":"clear"}"#).await.unwrap();
        assert!(waiter.await.unwrap(), "released by the clear");
        s.handle_request(br#"{"mode":"hang","for_s":0.05}"#)
            .await
            .unwrap();
        assert!(s.wait_while_hung(&stop).await, "ends with its time");
    }
}
