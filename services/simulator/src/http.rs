//! HTTP: each service's `/health`, `/data` and `/faults` (also under `/services/{name}/`),
//! and the process's own `/healthz` and `/metrics`.
//!
//! Only the reads a browser page needs (`GET /health`, `GET /data`) answer CORS, to any
//! origin. `POST /faults` never does, and needs `Content-Type: application/json` plus
//! either the operator token or no `Origin` at all: see docs/SECURITY.md.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State as Ext};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tower_http::cors::{Any, CorsLayer};
use tower_http::trace::TraceLayer;
use vitals_protocol::FaultMode;
use vitals_runtime::constant_time_eq;

use crate::data::mock_data;
use crate::epoch_ms;
use crate::service::{Health, HealthView, SimService};
use crate::shutdown::Crash;
use crate::stats::{LogEvery, Stats};

/// Slowest a `/data` answer is made (latency fault included).
const MAX_DATA_DELAY: Duration = Duration::from_millis(1500);

#[derive(Clone)]
pub struct AppState {
    pub services: Arc<HashMap<String, Arc<SimService>>>,
    pub stats: Arc<Stats>,
    pub client: async_nats::Client,
    /// Releases requests parked by `hang`, so a graceful shutdown is not held up by them.
    pub stop: CancellationToken,
    pub crash: Crash,
    /// `--operator-token`: when set, `POST /faults` needs it as a Bearer token.
    pub operator_token: Option<Arc<str>>,
}

impl AppState {
    /// The one service, when this process simulates exactly one.
    fn single(&self) -> Option<&Arc<SimService>> {
        match self.services.len() {
            1 => self.services.values().next(),
            _ => None,
        }
    }

    fn refresh_connected(&self) {
        self.stats
            .set_connected(self.client.connection_state() == State::Connected);
    }
}

pub fn router(state: AppState) -> Router {
    // The dashboard polls /health from the browser when its live feed is down and shows
    // /data in a panel: public figures, read with GET and no credentials, from any origin.
    let reads = Router::new()
        .route("/health", get(top_health))
        .route("/data", get(top_data))
        .route("/services/{name}/health", get(named_health))
        .route("/services/{name}/data", get(named_data))
        .layer(
            CorsLayer::new()
                .allow_origin(Any)
                .allow_methods([Method::GET]),
        );
    // No CORS here: a foreign page's preflight gets no allow headers, so it can never
    // send a JSON POST; the guard refuses the simple (form-like) posts it could send.
    let faults = Router::new()
        .route("/faults", get(top_faults).post(top_set_fault))
        .route(
            "/services/{name}/faults",
            get(named_faults).post(named_set_fault),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), guard_writes));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .merge(reads)
        .merge(faults)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such route".into()) })
        .with_state(state)
        .layer(TraceLayer::new_for_http())
}

/// Refusals of `POST /faults` are logged at most once per 10 s (with the count held back).
static WRITE_REFUSAL_LOG: LogEvery = LogEvery::new(10_000);

/// Lets a fault be set only by a request no web page can make on a visitor's behalf.
async fn guard_writes(Ext(st): Ext<AppState>, request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    let Some((code, why)) = write_refusal(st.operator_token.as_deref(), request.headers()) else {
        return next.run(request).await;
    };
    st.stats.http_writes_refused.inc();
    if let Some(held_back) = WRITE_REFUSAL_LOG.ready(epoch_ms()) {
        let origin = request
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        tracing::warn!(path = %request.uri().path(), origin, status = code.as_u16(), reason = why, held_back, "fault request refused");
    }
    error(code, why.into())
}

/// Why a write is refused, if it is. A browser can send a cross-site POST without asking
/// only with a form content type, so JSON is required; it always sends `Origin` on a POST,
/// so without a token any `Origin` is refused: a same-origin check would not do, as a
/// page on a rebound DNS name is "same-origin" with the simulator it reaches.
fn write_refusal(
    operator_token: Option<&str>,
    headers: &HeaderMap,
) -> Option<(StatusCode, &'static str)> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Some((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a fault request needs Content-Type: application/json",
        ));
    }
    match operator_token {
        Some(want) => {
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            (!constant_time_eq(given.as_bytes(), want.as_bytes()))
                .then_some((StatusCode::UNAUTHORIZED, "missing or wrong operator token"))
        }
        None => headers.contains_key(header::ORIGIN).then_some((
            StatusCode::FORBIDDEN,
            "faults are not set from a web page (Origin sent and no --operator-token configured)",
        )),
    }
}

fn unknown(name: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("no service {name:?} is simulated here"),
    )
}

fn error(code: StatusCode, message: String) -> Response {
    (code, axum::Json(json!({ "error": message }))).into_response()
}

async fn healthz(Ext(st): Ext<AppState>) -> Response {
    st.refresh_connected();
    axum::Json(st.stats.view(st.services.len())).into_response()
}

async fn metrics(Ext(st): Ext<AppState>) -> Response {
    st.refresh_connected();
    vitals_runtime::http::metrics_response(st.stats.encode())
}

// With several services the top-level routes speak for the process: /health says the
// process is up, /faults lists or sets faults for every service at once.

async fn top_health(Ext(st): Ext<AppState>) -> Response {
    match st.single() {
        Some(svc) => health(&st, svc).await,
        None => {
            axum::Json(json!({ "status": "ok", "services": st.services.len() })).into_response()
        }
    }
}

async fn top_data(Ext(st): Ext<AppState>) -> Response {
    match st.single() {
        Some(svc) => data(&st, svc).await,
        None => error(
            StatusCode::NOT_FOUND,
            "several services here: use /services/{name}/data".into(),
        ),
    }
}

async fn top_faults(Ext(st): Ext<AppState>) -> Response {
    let now = epoch_ms();
    match st.single() {
        Some(svc) => axum::Json(svc.fault_view(now)).into_response(),
        None => {
            let mut faulted: Vec<_> = st
                .services
                .values()
                .map(|s| s.fault_view(now))
                .filter(|f| f.mode != FaultMode::Clear)
                .collect();
            faulted.sort_by(|a, b| a.service.cmp(&b.service));
            axum::Json(json!({ "services": st.services.len(), "faulted": faulted })).into_response()
        }
    }
}

async fn top_set_fault(Ext(st): Ext<AppState>, body: Bytes) -> Response {
    if let Some(svc) = st.single() {
        return set_fault(&st, svc, &body, true).await;
    }
    st.stats.chaos_requests.inc();
    let mut last = None;
    for svc in st.services.values() {
        let r = set_fault(&st, svc, &body, false).await;
        if !r.status().is_success() || st.crash.happened() {
            return r;
        }
        last = Some(r);
    }
    tracing::info!(
        services = st.services.len(),
        via = "http",
        "fault set on every service"
    );
    last.unwrap_or_else(|| error(StatusCode::NOT_FOUND, "no services".into()))
}

async fn named_health(Ext(st): Ext<AppState>, Path(name): Path<String>) -> Response {
    match st.services.get(&name) {
        Some(svc) => health(&st, svc).await,
        None => unknown(&name),
    }
}

async fn named_data(Ext(st): Ext<AppState>, Path(name): Path<String>) -> Response {
    match st.services.get(&name) {
        Some(svc) => data(&st, svc).await,
        None => unknown(&name),
    }
}

async fn named_faults(Ext(st): Ext<AppState>, Path(name): Path<String>) -> Response {
    match st.services.get(&name) {
        Some(svc) => axum::Json(svc.fault_view(epoch_ms())).into_response(),
        None => unknown(&name),
    }
}

async fn named_set_fault(
    Ext(st): Ext<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    match st.services.get(&name) {
        Some(svc) => set_fault(&st, svc, &body, true).await,
        None => unknown(&name),
    }
}

/// The service's health once it is not hung; Err when shutdown came first.
async fn health_unless_hung(st: &AppState, svc: &SimService) -> Result<HealthView, Response> {
    loop {
        let view = svc.health(epoch_ms());
        if view.health != Health::Hang {
            return Ok(view);
        }
        if !svc.wait_while_hung(&st.stop).await {
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting down".into(),
            ));
        }
    }
}

async fn health(st: &AppState, svc: &SimService) -> Response {
    match health_unless_hung(st, svc).await {
        Ok(view) => {
            let code = match view.health {
                Health::Error => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::OK,
            };
            (code, axum::Json(view)).into_response()
        }
        Err(r) => r,
    }
}

async fn data(st: &AppState, svc: &SimService) -> Response {
    let view = match health_unless_hung(st, svc).await {
        Ok(view) => view,
        Err(r) => return r,
    };
    if view.health == Health::Error {
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(view)).into_response();
    }
    // As slow as the service says it is, so a latency fault is felt, not only reported.
    if let Some(delay) = svc.current_latency() {
        tokio::select! {
            () = tokio::time::sleep(delay.min(MAX_DATA_DELAY)) => {}
            () = st.stop.cancelled() => {}
        }
    }
    axum::Json(mock_data(svc.name.as_str(), epoch_ms(), &mut rand::rng())).into_response()
}

/// `one`: this is the whole request (count and log it); false for each service of a
/// fleet-wide request, which the caller counts and logs once.
async fn set_fault(st: &AppState, svc: &SimService, body: &[u8], one: bool) -> Response {
    if one {
        st.stats.chaos_requests.inc();
    }
    match svc.handle_request(body).await {
        Ok(reply) => {
            if one {
                tracing::info!(service = %svc.name, mode = reply.mode.as_str(), until_ms = ?reply.until_ms, via = "http", "fault set");
            }
            let crash = reply.mode == FaultMode::Crash;
            let response = axum::Json(reply).into_response();
            if crash {
                // The server drains in-flight responses on shutdown, so this one still goes out.
                st.crash.now(&svc.name);
            }
            response
        }
        Err(refused) => {
            st.stats.chaos_errors.inc();
            tracing::warn!(service = %svc.name, error = refused.error.as_deref().unwrap_or(""), "fault request refused");
            (StatusCode::BAD_REQUEST, axum::Json(refused)).into_response()
        }
    }
}

/// Serves until `stop`, then finishes the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    stop: CancellationToken,
    limits: vitals_runtime::http::Limits,
) -> std::io::Result<()> {
    vitals_runtime::http::serve(listener, app, stop.cancelled_owned(), limits).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn writes_need_json_and_no_origin_or_the_token() {
        let json = ("content-type", "application/json; charset=utf-8");
        assert_eq!(write_refusal(None, &headers(&[json])), None);
        for ct in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ] {
            let r = write_refusal(None, &headers(&[("content-type", ct)]));
            assert_eq!(
                r.map(|r| r.0),
                Some(StatusCode::UNSUPPORTED_MEDIA_TYPE),
                "{ct}"
            );
        }
        assert!(
            write_refusal(None, &headers(&[])).is_some(),
            "no content type"
        );
        let foreign = ("origin", "http://evil.example");
        assert_eq!(
            write_refusal(None, &headers(&[json, foreign])).map(|r| r.0),
            Some(StatusCode::FORBIDDEN)
        );
        let t = Some("s3cret");
        assert_eq!(
            write_refusal(t, &headers(&[json])).map(|r| r.0),
            Some(StatusCode::UNAUTHORIZED)
        );
        let wrong = ("authorization", "Bearer nope");
        assert!(write_refusal(t, &headers(&[json, wrong])).is_some());
        let right = ("authorization", "Bearer s3cret");
        assert_eq!(write_refusal(t, &headers(&[json, right])), None);
        assert_eq!(write_refusal(t, &headers(&[json, right, foreign])), None);
    }
}
