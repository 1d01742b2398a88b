//! HTTP: `/ws`, `/healthz`, `/metrics`, `/api/status`, `/api/history`, `/api/targets`,
//! `DELETE /api/services/<name>`, `/api/silences`, `POST /api/alerts/<id>/ack`, `/api/inbox`,
//! and optionally the built dashboard.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::services::{ServeDir, ServeFile};
use tower_http::trace::TraceLayer;
use vitals_protocol::{RetireReply, RetireRequest, ServiceName, subjects};
use vitals_runtime::constant_time_eq;
use vitals_runtime::loglimit::LogLimiter;

use crate::history::HistoryCache;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::{inbox, silences, targets, upgrade, ws};

pub struct AppState {
    pub hub: Arc<Hub>,
    pub metrics: Arc<Metrics>,
    pub client: async_nats::Client,
    pub js: async_nats::jetstream::Context,
    pub allowed_origins: Vec<String>,
    pub token: Option<String>,
    pub operator_token: Option<String>,
    /// The local inbox (`--inbox`), or None when it is off.
    pub inbox: Option<Arc<inbox::InboxState>>,
    pub retire_timeout: Duration,
    pub slots: Arc<Semaphore>,
    pub limits: ws::Limits,
    pub max_client_message: usize,
    pub history_max: usize,
    pub history: HistoryCache,
    pub cancel: CancellationToken,
    /// Every WebSocket connection's task, so shutdown can wait for them all.
    pub tracker: TaskTracker,
}

pub fn router(state: Arc<AppState>, static_dir: Option<&Path>) -> Router {
    let origins: Vec<HeaderValue> = state
        .allowed_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    let api = Router::new()
        .route("/api/status", get(status))
        .route("/api/history", get(history))
        .route("/api/targets", get(targets::list))
        .route("/api/silences", get(silences::list))
        .route("/api/inbox", get(inbox::list))
        .route("/ws", get(upgrade))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    // Needs the operator token (in Authorization), so not the viewer token as well.
    let operator = Router::new()
        .route("/api/services/{name}", delete(retire))
        .route(
            "/api/targets/{name}",
            put(targets::put).delete(targets::remove),
        )
        .route("/api/silences", post(silences::create))
        .route("/api/silences/{id}", delete(silences::expire))
        .route("/api/alerts/{id}/ack", post(silences::ack));
    // The notifier posts here with its own bearer (--inbox-token), not the viewer token.
    let hooks = Router::new().route("/api/inbox", post(inbox::post));
    // Browsers outside the allow-list get no Access-Control-Allow-Origin, so they may
    // neither read the API nor send DELETE with credentials.
    let api = api.merge(operator).merge(hooks).layer(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::PUT, Method::POST, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]),
    );
    let router =
        Router::new()
            .route("/healthz", get(healthz))
            .route("/metrics", get(metrics))
            .merge(api)
            .with_state(state)
            // A 5xx is logged by whoever answers it (at a bounded rate where they come in
            // floods, as at the connection cap), not once per response at ERROR here.
            .layer(TraceLayer::new_for_http().on_failure(
                tower_http::trace::DefaultOnFailure::new().level(tracing::Level::DEBUG),
            ));
    match static_dir {
        Some(dir) => router
            .fallback_service(ServeDir::new(dir).fallback(ServeFile::new(dir.join("index.html")))),
        None => router,
    }
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// With a token configured, `/ws` and `/api/*` need it (header or `?token=`, since a
/// browser cannot set headers on a WebSocket).
async fn require_token(
    State(s): State<Arc<AppState>>,
    Query(q): Query<TokenQuery>,
    request: Request,
    next: Next,
) -> Response {
    let Some(want) = &s.token else {
        return next.run(request).await;
    };
    let given = bearer(request.headers())
        .or(q.token.as_deref())
        .unwrap_or("");
    if constant_time_eq(given.as_bytes(), want.as_bytes()) {
        next.run(request).await
    } else {
        s.metrics.refused("token");
        error(StatusCode::UNAUTHORIZED, "missing or wrong token")
    }
}

pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// A browser always sends Origin on a WebSocket upgrade; one from a page outside the
/// allow-list is refused (cross-site WebSocket hijacking, cf. CVE-2023-49805).
/// Non-browser clients send none and are allowed (use a token to restrict them).
fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    match headers.get(header::ORIGIN) {
        None => true,
        Some(origin) => origin
            .to_str()
            .is_ok_and(|o| allowed.iter().any(|a| a.eq_ignore_ascii_case(o))),
    }
}

async fn upgrade(State(s): State<Arc<AppState>>, request: Request) -> Response {
    let accept_key = match upgrade::check(request.method(), request.headers()) {
        Ok(key) => key,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    if !origin_allowed(request.headers(), &s.allowed_origins) {
        s.metrics.refused("origin");
        return error(StatusCode::FORBIDDEN, "origin not allowed");
    }
    let Ok(slot) = s.slots.clone().try_acquire_owned() else {
        s.metrics.refused("capacity");
        note_capacity_refusal();
        return error(StatusCode::SERVICE_UNAVAILABLE, "too many clients");
    };
    // Small buffers: a client only ever sends a resync request, and writes are flushed
    // per batch (the library's defaults are 128 KiB each way).
    let config = WebSocketConfig::default()
        .max_message_size(Some(s.max_client_message))
        .max_frame_size(Some(s.max_client_message))
        .read_buffer_size(4 * 1024)
        .write_buffer_size(ws::FRAGMENT);
    let (hub, metrics, limits, cancel) =
        (s.hub.clone(), s.metrics.clone(), s.limits, s.cancel.clone());
    upgrade::accept(request, accept_key, config, &s.tracker, move |socket| {
        ws::serve(socket, hub, metrics, limits, slot, cancel)
    })
}

/// 200 while the feed keeps the view current; 503 with the reason while it does not (its
/// subscription ended, or syncing fails). Losing NATS alone is reported, not 503: the
/// gateway is alive and will resync on reconnect.
async fn healthz(State(s): State<Arc<AppState>>) -> Response {
    let g = s.hub.gateway_state();
    let body = serde_json::json!({
        "status": if g.live { "ok" } else { "not_live" },
        "live": g.live,
        "problem": g.problem,
        "nats_connected": g.nats_connected,
        "source": g.source,
        "clients": s.metrics.clients.get(),
    });
    let code = if g.live {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    vitals_runtime::http::metrics_response(s.metrics.encode())
}

async fn status(State(s): State<Arc<AppState>>) -> Response {
    Json(s.hub.status()).into_response()
}

#[derive(Deserialize)]
struct HistoryQuery {
    service: Option<String>,
    limit: Option<usize>,
}

async fn history(State(s): State<Arc<AppState>>, Query(q): Query<HistoryQuery>) -> Response {
    let service = match q.service.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(raw) => match ServiceName::parse(raw) {
            Ok(name) => Some(name),
            Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
        },
    };
    let limit = q.limit.unwrap_or(100).min(s.history_max);
    match s.history.get(&s.js, service, limit, &s.metrics).await {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => {
            tracing::warn!(error = e, "history unavailable");
            error(StatusCode::SERVICE_UNAVAILABLE, "history unavailable")
        }
    }
}

/// `DELETE /api/services/<name>`: asks the monitor to retire a service now and relays
/// its answer.
async fn retire(
    State(s): State<Arc<AppState>>,
    name: Result<axum::extract::Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = check_operator(&s, &headers, "retiring") {
        return refused;
    }
    let raw = match name {
        Ok(axum::extract::Path(raw)) => raw,
        Err(e) => {
            s.metrics.retire("bad_name");
            return error(StatusCode::BAD_REQUEST, &e.body_text());
        }
    };
    let service = match ServiceName::parse(&raw) {
        Ok(name) => name,
        Err(e) => {
            s.metrics.retire("bad_name");
            return error(StatusCode::BAD_REQUEST, &e.to_string());
        }
    };
    let request = RetireRequest {
        service: service.to_string(),
    };
    let body = serde_json::to_vec(&request).unwrap_or_default();
    let asked = tokio::time::timeout(
        s.retire_timeout,
        s.client.request(subjects::RETIRE, body.into()),
    )
    .await;
    let msg = match asked {
        Ok(Ok(msg)) => msg,
        Ok(Err(e)) => {
            s.metrics.retire("no_answer");
            tracing::warn!(service = %service, error = %e, "retire request failed");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the monitor did not answer",
            );
        }
        Err(_) => {
            s.metrics.retire("no_answer");
            tracing::warn!(service = %service, "retire request timed out");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the monitor did not answer in time",
            );
        }
    };
    let header_code = msg
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Service-Error-Code"))
        .and_then(|c| c.as_str().trim().parse::<u16>().ok());
    let reply: RetireReply = match serde_json::from_slice(&msg.payload) {
        Ok(reply) => reply,
        Err(e) => {
            s.metrics.retire("bad_reply");
            tracing::warn!(service = %service, error = %e, "the monitor's retire reply is not a RetireReply");
            return error(
                StatusCode::BAD_GATEWAY,
                "the monitor's reply was not understood",
            );
        }
    };
    let code = retire_status(&reply, header_code);
    s.metrics.retire(match code.as_u16() {
        200 => "ok",
        404 => "unknown",
        400 => "bad_name",
        _ => "refused",
    });
    tracing::info!(service = %service, ok = reply.ok, code = code.as_u16(), "retire request answered");
    (code, Json(reply)).into_response()
}

/// The HTTP status for the monitor's answer: its service-API error code when it gives a
/// 400 or 404, else what its error text says.
fn retire_status(reply: &RetireReply, header_code: Option<u16>) -> StatusCode {
    if reply.ok {
        return StatusCode::OK;
    }
    match header_code {
        Some(400) => return StatusCode::BAD_REQUEST,
        Some(404) => return StatusCode::NOT_FOUND,
        _ => {}
    }
    let why = reply.error.as_deref().unwrap_or("").to_ascii_lowercase();
    if ["unknown", "not found", "not tracked", "no such"]
        .iter()
        .any(|w| why.contains(w))
    {
        StatusCode::NOT_FOUND
    } else if why.contains("name") {
        StatusCode::BAD_REQUEST
    } else if why.contains("shutting down") || why.contains("did not answer") {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::CONFLICT
    }
}

/// Refusals at the connection cap come in floods: one log line per [`CAPACITY_LOG_EVERY`]
/// at most, saying how many were not logged (every one is counted in `/metrics`).
static CAPACITY_LOG: Mutex<LogLimiter> = Mutex::new(LogLimiter::new(CAPACITY_LOG_EVERY));
const CAPACITY_LOG_EVERY: Duration = Duration::from_secs(10);

fn note_capacity_refusal() {
    let due = CAPACITY_LOG.lock().ok().and_then(|mut l| l.due());
    if let Some(suppressed) = due {
        tracing::warn!(
            suppressed,
            "connection cap reached (--max-clients): refusing WebSocket clients with 503"
        );
    }
}

/// The operator token check of every write: 401 when none is configured (`what` is then
/// disabled) or the request's `Authorization: Bearer` differs.
// The refusal is the response itself, built only on that path; boxing it buys nothing.
#[allow(clippy::result_large_err)]
pub(crate) fn check_operator(
    s: &AppState,
    headers: &HeaderMap,
    what: &str,
) -> Result<(), Response> {
    let Some(want) = &s.operator_token else {
        s.metrics.refused("operator_token");
        return Err(error(
            StatusCode::UNAUTHORIZED,
            &format!(
                "{what} is disabled: no operator token is configured (start the gateway with --operator-token or VITALS_OPERATOR_TOKEN)"
            ),
        ));
    };
    let given = bearer(headers).unwrap_or("");
    if !constant_time_eq(given.as_bytes(), want.as_bytes()) {
        s.metrics.refused("operator_token");
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong operator token (Authorization: Bearer <token>)",
        ));
    }
    Ok(())
}

pub(crate) fn error(code: StatusCode, why: &str) -> Response {
    (code, Json(serde_json::json!({ "error": why }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked_exactly() {
        let allowed = vec!["http://localhost:5173".to_owned()];
        let mut h = HeaderMap::new();
        assert!(origin_allowed(&h, &allowed), "no Origin: not a browser");
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://localhost:5173"),
        );
        assert!(origin_allowed(&h, &allowed));
        for evil in [
            "http://evil.example",
            "http://localhost:5173.evil.example",
            "null",
            "http://localhost:51733",
        ] {
            h.insert(header::ORIGIN, HeaderValue::from_static(evil));
            assert!(!origin_allowed(&h, &allowed), "{evil}");
        }
    }

    #[test]
    fn retire_replies_map_to_http_statuses() {
        let ok = RetireReply {
            ok: true,
            service: Some("a".into()),
            previous: None,
            resolved: vec![],
            error: None,
        };
        assert_eq!(retire_status(&ok, None), StatusCode::OK);
        let unknown = RetireReply::refused(Some("a"), "unknown service");
        assert_eq!(retire_status(&unknown, None), StatusCode::NOT_FOUND);
        let bad = RetireReply::refused(None, "bad name: must match ...");
        assert_eq!(retire_status(&bad, None), StatusCode::BAD_REQUEST);
        let busy = RetireReply::refused(Some("a"), "monitor did not answer in time");
        assert_eq!(retire_status(&busy, None), StatusCode::SERVICE_UNAVAILABLE);
        let odd = RetireReply::refused(Some("a"), "busy");
        assert_eq!(retire_status(&odd, None), StatusCode::CONFLICT);
        assert_eq!(retire_status(&odd, Some(404)), StatusCode::NOT_FOUND);
    }
}
