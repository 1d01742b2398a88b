//! NATS request handlers: `health.snapshot` (served from the read copy, never from the
//! engine's task), `health.retire` (a command to the engine), and `health.silence.*` and
//! `health.alert.ack` (written to KV `vitals_silences`, whose watch applies them; see
//! [`crate::silences`]). Replies that cannot be given are answered with the NATS service
//! API error headers and a JSON body saying why; silence and ack requests always get a
//! SilenceReply (`ok: false` and the reason when refused).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::kv;
use async_nats::service::{self, endpoint::Endpoint};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use vitals_protocol::{
    Ack, AckRequest, RetireReply, RetireRequest, ServiceName, Silence, SilenceExpire, SilenceList,
    SilenceReply, SilenceRequest, SnapshotRequest,
};
use vitals_runtime::Clock;
use vitals_runtime::requests::{self as gate, RateLimiter};
use vitals_runtime::silences::{self as store, WriteError};

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
    /// Every silence KV `vitals_silences` holds now (from its watch).
    Silences(Vec<Silence>),
    /// An acknowledgement put in KV `vitals_silences`.
    Ack(Ack),
}

/// The silence and ack endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SilenceEndpoint {
    Create,
    List,
    Expire,
    Ack,
}

impl SilenceEndpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "silence_create",
            Self::List => "silence_list",
            Self::Expire => "silence_expire",
            Self::Ack => "alert_ack",
        }
    }
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
    /// KV `vitals_silences`, written by the silence and ack requests.
    pub silences: kv::Store,
    /// Silence and ack requests (operators', rare), all four endpoints together.
    pub silence_rates: Mutex<RateLimiter>,
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

    /// Serves one of `health.silence.create|list|expire` and `health.alert.ack` until the
    /// endpoint ends or `cancel`.
    pub async fn serve_silences(
        self: Arc<Self>,
        kind: SilenceEndpoint,
        mut endpoint: Endpoint,
        tracker: TaskTracker,
        cancel: CancellationToken,
    ) {
        let name = kind.as_str();
        loop {
            let request = tokio::select! {
                () = cancel.cancelled() => break,
                r = endpoint.next() => match r {
                    Some(r) => r,
                    None => {
                        tracing::error!(endpoint = name, "a silence endpoint closed");
                        self.metrics.request_endpoint_closed.inc();
                        break;
                    }
                },
            };
            if let Err(refused) = self.admit(&request, name, &self.silence_rates).await {
                if refused == gate::Refusal::ReplySubject {
                    continue;
                }
                let reply = SilenceReply::refused(format!("rate limited ({})", refused.as_str()));
                self.answer(&request, name, Ok(encode(&reply))).await;
                continue;
            }
            let handlers = self.clone();
            tracker.spawn(async move {
                let body = handlers
                    .silence_request(kind, &request.message.payload)
                    .await;
                handlers.answer(&request, name, Ok(body)).await;
            });
        }
    }

    /// The reply to one silence or ack request (always a JSON body).
    pub async fn silence_request(&self, kind: SilenceEndpoint, body: &[u8]) -> Bytes {
        let now = self.clock.now_ms();
        let outcome = match kind {
            SilenceEndpoint::Create => match SilenceRequest::parse(body) {
                Ok(req) => store::create(&self.silences, req, now)
                    .await
                    .map(|s| {
                        tracing::info!(id = %s.id, service = %s.matchers.service, alert = ?s.matchers.alert, ends_ms = s.ends_ms, created_by = %s.created_by, "silence created");
                        SilenceReply::done(s.id)
                    })
                    .map_err(write_refusal),
                Err(e) => Err(("bad_request", format!("bad request: {e}"))),
            },
            SilenceEndpoint::List => {
                return match store::list(&self.silences, now).await {
                    Ok((silences, _)) => encode(&SilenceList { ok: true, silences }),
                    Err(e) => {
                        self.silence_refused(kind, "store");
                        encode(&SilenceReply::refused(format!("{e:#}")))
                    }
                };
            }
            SilenceEndpoint::Expire => match SilenceExpire::parse(body) {
                Ok(req) => match store::expire(&self.silences, &req.id).await {
                    Ok(()) => {
                        tracing::info!(id = %req.id, "silence expired");
                        Ok(SilenceReply::done(req.id))
                    }
                    Err(WriteError::NotFound(_)) => {
                        Err(("not_found", format!("no silence {}", req.id)))
                    }
                    Err(e) => Err(write_refusal(e)),
                },
                Err(e) => Err(("bad_request", format!("bad request: {e}"))),
            },
            SilenceEndpoint::Ack => match AckRequest::parse(body) {
                Ok(req) => self.ack(req, now).await,
                Err(e) => Err(("bad_request", format!("bad request: {e}"))),
            },
        };
        let reply = outcome.unwrap_or_else(|(reason, why)| {
            self.silence_refused(kind, reason);
            SilenceReply::refused(why)
        });
        encode(&reply)
    }

    /// An ack is for an alert firing now (judged from the read copy); the KV watch then
    /// applies it to the engine.
    async fn ack(&self, req: AckRequest, now: u64) -> Result<SilenceReply, (&'static str, String)> {
        let copy = self.reads.current().await;
        let service = req.id.split(':').next().unwrap_or("");
        let firing = copy
            .services
            .binary_search_by(|s| s.service.as_str().cmp(service))
            .ok()
            .is_some_and(|i| copy.services[i].alerts.iter().any(|a| a.id == req.id));
        if !firing {
            return Err(("not_found", format!("no firing alert {}", req.id)));
        }
        let id = req.id.clone();
        let by = req.by.clone();
        store::ack(&self.silences, req, now)
            .await
            .map_err(write_refusal)?;
        tracing::info!(%id, %by, "alert acknowledged");
        Ok(SilenceReply::done(id))
    }

    fn silence_refused(&self, kind: SilenceEndpoint, reason: &'static str) {
        self.metrics
            .silence_request_errors
            .get_or_create(&crate::metrics::EndpointReason {
                endpoint: kind.as_str(),
                reason,
            })
            .inc();
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

fn write_refusal(e: WriteError) -> (&'static str, String) {
    let reason = match e {
        WriteError::Invalid(_) => "bad_request",
        WriteError::NotFound(_) => "not_found",
        WriteError::Full => "full",
        WriteError::Store(_) => "store",
    };
    (reason, e.to_string())
}

fn encode<T: serde::Serialize>(reply: &T) -> Bytes {
    serde_json::to_vec(reply)
        .map(Bytes::from)
        .unwrap_or_default()
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
