//! NATS request handlers: `health.snapshot` (served from the read copy, never from the
//! engine's task) and `health.retire` (a command to the engine). Replies that cannot be
//! given are answered with the NATS service API error headers and a JSON body saying why.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::service::{self, endpoint::Endpoint};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use vitals_protocol::{RetireReply, RetireRequest, ServiceName, SnapshotRequest};
use vitals_runtime::Clock;
use vitals_runtime::requests::{self as gate, RateLimiter};

use crate::metrics::Metrics;
use crate::read::{PageError, Reads};

/// Requests from the request handlers and HTTP to the engine's owner.
pub enum Command {
    /// Retire a service now; the reply says what that did (None: unknown service).
    Retire {
        name: ServiceName,
        why: String,
        reply: oneshot::Sender<Option<crate::engine::Retired>>,
    },
}

/// The reason on a StatusChange RETIRED asked for by an operator.
pub const RETIRED_ON_REQUEST: &str = "retired by operator";
/// A copy this recent serves the later pages of a walk without a refresh.
const CONTINUE_MAX_AGE: Duration = Duration::from_secs(2);
/// How long a retire request waits for the engine.
const ENGINE_WAIT: Duration = Duration::from_secs(5);

/// What every handler shares.
pub struct Handlers {
    pub client: async_nats::Client,
    pub reads: Reads,
    /// Replies being built or sent at once (NATS and HTTP together).
    pub slots: Arc<Semaphore>,
    pub commands: mpsc::Sender<Command>,
    pub metrics: Arc<Metrics>,
    pub clock: Clock,
    /// Snapshot requests per asker and in total.
    pub snapshot_rates: Mutex<RateLimiter>,
    /// Retire requests (an operator's, rare): the same kind of limit, lower.
    pub retire_rates: Mutex<RateLimiter>,
    /// When a refused request was last logged (refusals are logged at a bounded rate).
    pub refusal_logged: Mutex<Option<Instant>>,
}

/// At most one log line about refused requests per this period.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// A refused request: a status code (HTTP-like, as the service API uses) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub code: u16,
    pub why: String,
}

impl Refused {
    fn new(code: u16, why: impl Into<String>) -> Self {
        Self {
            code,
            why: why.into(),
        }
    }
}

impl Handlers {
    /// Serves `health.snapshot` until the endpoint ends or `cancel`.
    pub async fn serve_snapshots(
        self: Arc<Self>,
        mut endpoint: Endpoint,
        tracker: TaskTracker,
        cancel: CancellationToken,
    ) {
        loop {
            let request = tokio::select! {
                () = cancel.cancelled() => break,
                r = endpoint.next() => match r {
                    Some(r) => r,
                    None => {
                        tracing::error!("the snapshot endpoint closed");
                        self.metrics.request_endpoint_closed.inc();
                        break;
                    }
                },
            };
            if let Err(refused) = self.admit(&request, "snapshot", &self.snapshot_rates).await {
                if refused == gate::Refusal::ReplySubject {
                    continue;
                }
                let refusal = Refused::new(
                    429,
                    format!("rate limited ({}): retry later", refused.as_str()),
                );
                self.answer(&request, "snapshot", Err(refusal)).await;
                continue;
            }
            let handlers = self.clone();
            tracker.spawn(async move {
                let outcome = handlers.snapshot_page(&request.message.payload).await;
                handlers.answer(&request, "snapshot", outcome).await;
            });
        }
    }

    /// Serves `health.retire` until the endpoint ends or `cancel`.
    pub async fn serve_retire(
        self: Arc<Self>,
        mut endpoint: Endpoint,
        tracker: TaskTracker,
        cancel: CancellationToken,
    ) {
        loop {
            let request = tokio::select! {
                () = cancel.cancelled() => break,
                r = endpoint.next() => match r {
                    Some(r) => r,
                    None => {
                        tracing::error!("the retire endpoint closed");
                        self.metrics.request_endpoint_closed.inc();
                        break;
                    }
                },
            };
            if let Err(refused) = self.admit(&request, "retire", &self.retire_rates).await {
                if refused == gate::Refusal::ReplySubject {
                    continue;
                }
                let reply =
                    RetireReply::refused(None, format!("rate limited ({})", refused.as_str()));
                let body = serde_json::to_vec(&reply)
                    .map(Bytes::from)
                    .unwrap_or_default();
                self.answer(&request, "retire", Ok(body)).await;
                continue;
            }
            let handlers = self.clone();
            tracker.spawn(async move {
                let reply = match serde_json::from_slice::<RetireRequest>(&request.message.payload)
                {
                    Ok(req) => handlers.retire(&req.service).await,
                    Err(e) => RetireReply::refused(None, format!("bad request: {e}")),
                };
                let outcome = serde_json::to_vec(&reply)
                    .map(Bytes::from)
                    .map_err(|e| Refused::new(500, e.to_string()));
                handlers.answer(&request, "retire", outcome).await;
            });
        }
    }

    /// Whether to serve `request` at all: its reply must go to an inbox (else nothing is
    /// published: answering is what the forger wants) and its asker must be within its
    /// rate and everyone within the total. Each refusal is counted and logged (bounded).
    async fn admit(
        &self,
        request: &service::Request,
        endpoint: &'static str,
        rates: &Mutex<RateLimiter>,
    ) -> Result<(), gate::Refusal> {
        let reply = request.message.reply.as_deref().unwrap_or("");
        let verdict = if !gate::is_inbox(reply) {
            Err(gate::Refusal::ReplySubject)
        } else {
            let now = self.clock.now_ms();
            match rates.lock() {
                Ok(mut limiter) => limiter.admit(gate::asker(reply), now),
                Err(_) => Ok(()),
            }
        };
        if let Err(refused) = verdict {
            self.metrics.request_refused(endpoint, refused.as_str());
            let log = self.refusal_logged.lock().is_ok_and(|mut last| {
                let due = last.is_none_or(|t| t.elapsed() >= REFUSAL_LOG_EVERY);
                if due {
                    *last = Some(Instant::now());
                }
                due
            });
            if log {
                // The reply subject is the asker's choice: log it escaped and bounded.
                let reply: String = reply.chars().take(80).collect();
                tracing::warn!(endpoint, reason = refused.as_str(), reply = ?reply, "request refused (further refusals are counted, and logged at most every 10 s)");
            }
        }
        verdict
    }

    /// One page of the snapshot, as the request body asks.
    pub async fn snapshot_page(&self, body: &[u8]) -> Result<Bytes, Refused> {
        let req = SnapshotRequest::parse(body)
            .map_err(|e| Refused::new(400, format!("bad snapshot request: {e}")))?;
        let _slot = self.slots.try_acquire().map_err(|_| {
            self.metrics.snapshot_refused("busy");
            Refused::new(
                503,
                "too many snapshot replies in flight; retry shortly, or read GET /api/status \
                 or the KV bucket health_status",
            )
        })?;
        self.metrics.snapshot_requests.inc();
        // The first page reflects everything accepted before it was asked for; the pages
        // after it may come from the same (recent) copy.
        let continuing = req.after.is_some() || req.page.is_some_and(|p| p > 0);
        let copy = if continuing {
            self.reads.recent(CONTINUE_MAX_AGE).await
        } else {
            self.reads.current().await
        };
        // Leave room for the reply's protocol line and headers.
        let budget = (self.client.server_info().max_payload).saturating_sub(1024);
        let page = match (req.page, req.after) {
            (_, Some(after)) => copy.page_after(&after, budget).await,
            (page, None) => copy.page(page.unwrap_or(0), budget).await,
        };
        page.map(|p| p.body).map_err(|e| {
            let code = match e {
                PageError::NoSuchPage { .. } => 404,
                PageError::TooLarge { .. } | PageError::Encode(_) => 500,
            };
            self.metrics.snapshot_refused(match code {
                404 => "no_such_page",
                _ => "error",
            });
            Refused::new(code, e.to_string())
        })
    }

    /// Retires `raw` (a service name as given) through the engine.
    pub async fn retire(&self, raw: &str) -> RetireReply {
        let name = match ServiceName::parse(raw) {
            Ok(name) => name,
            Err(e) => return RetireReply::refused(Some(raw), format!("bad name: {e}")),
        };
        let (tx, rx) = oneshot::channel();
        let command = Command::Retire {
            name: name.clone(),
            why: RETIRED_ON_REQUEST.to_owned(),
            reply: tx,
        };
        if self.commands.send(command).await.is_err() {
            return RetireReply::refused(Some(raw), "monitor is shutting down");
        }
        match tokio::time::timeout(ENGINE_WAIT, rx).await {
            Ok(Ok(Some(done))) => {
                tracing::info!(service = %name, previous = %done.previous, resolved = done.resolved.len(), "retired on request");
                RetireReply {
                    ok: true,
                    service: Some(name.to_string()),
                    previous: Some(done.previous),
                    resolved: done.resolved,
                    error: None,
                }
            }
            Ok(Ok(None)) => RetireReply::refused(Some(raw), "unknown service"),
            _ => RetireReply::refused(Some(raw), "monitor did not answer in time"),
        }
    }

    async fn answer(
        &self,
        request: &service::Request,
        endpoint: &'static str,
        outcome: Result<Bytes, Refused>,
    ) {
        let (body, headers) = match outcome {
            Ok(body) => (body, HeaderMap::new()),
            Err(refused) => {
                tracing::debug!(endpoint, code = refused.code, why = %refused.why, "request refused");
                error_reply(&refused)
            }
        };
        if let Err(e) = request.respond_with_headers(Ok(body), headers).await {
            self.metrics.reply_errors.inc();
            tracing::warn!(endpoint, error = %e, "reply failed");
        }
    }
}

/// The service API's error headers plus a JSON body with the same text.
pub fn error_reply(refused: &Refused) -> (Bytes, HeaderMap) {
    let mut headers = HeaderMap::new();
    headers.insert(service::NATS_SERVICE_ERROR, refused.why.as_str());
    headers.insert(
        service::NATS_SERVICE_ERROR_CODE,
        refused.code.to_string().as_str(),
    );
    let body = serde_json::json!({ "error": refused.why, "code": refused.code });
    (Bytes::from(body.to_string()), headers)
}
