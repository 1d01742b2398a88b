//! HTTP: `/healthz`, `/metrics` (OpenMetrics text), `GET /api/status` (the Snapshot, from
//! the read copy) and `DELETE /api/services/NAME` (retire; operator token).

use std::sync::{Arc, OnceLock};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

use crate::metrics::Metrics;
use crate::requests::Handlers;

pub struct HttpState {
    pub metrics: Arc<Metrics>,
    /// Set once JetStream is set up and the engine is running.
    pub handlers: OnceLock<Arc<Handlers>>,
    pub operator_token: Option<String>,
    pub allowed_origins: Vec<String>,
}

pub fn router(state: Arc<HttpState>) -> Router {
    let origins: Vec<HeaderValue> = state
        .allowed_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::DELETE])
        .allow_headers([header::AUTHORIZATION]);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/status", get(status))
        .route("/api/services/{name}", delete(retire))
        .layer(cors)
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn healthz(State(s): State<Arc<HttpState>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "status": "ok",
        "ready": s.handlers.get().is_some(),
        "nats_connected": s.metrics.nats_connected.get() == 1,
    }))
}

async fn metrics(State(s): State<Arc<HttpState>>) -> Response {
    vitals_runtime::http::metrics_response(s.metrics.encode())
}

async fn status(State(s): State<Arc<HttpState>>) -> Response {
    let Some(handlers) = s.handlers.get() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "monitor is starting");
    };
    let Ok(_slot) = handlers.slots.try_acquire() else {
        s.metrics.snapshot_refused("busy");
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many snapshot replies in flight; retry shortly",
        );
    };
    s.metrics.snapshot_requests.inc();
    let copy = handlers.reads.current().await;
    match copy.full().await {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => {
            s.metrics.snapshot_refused("error");
            error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
        }
    }
}

async fn retire(
    State(s): State<Arc<HttpState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = check_operator(&s, &headers) {
        return response;
    }
    let Some(handlers) = s.handlers.get() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "monitor is starting");
    };
    let reply = handlers.retire(&name).await;
    let code = match (&reply.ok, reply.error.as_deref()) {
        (true, _) => StatusCode::OK,
        (false, Some("unknown service")) => StatusCode::NOT_FOUND,
        (false, Some(e)) if e.starts_with("bad name") => StatusCode::BAD_REQUEST,
        (false, _) => StatusCode::SERVICE_UNAVAILABLE,
    };
    (code, Json(reply)).into_response()
}

/// `Authorization: Bearer <operator token>`, compared in constant time. Without a
/// configured token every operator action is refused.
#[allow(clippy::result_large_err)]
fn check_operator(s: &HttpState, headers: &HeaderMap) -> Result<(), Response> {
    let Some(want) = s.operator_token.as_deref() else {
        s.metrics.http_refused("no_operator_token");
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "operator actions are disabled: start the monitor with --operator-token (VITALS_OPERATOR_TOKEN)",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if vitals_runtime::constant_time_eq(given.as_bytes(), want.as_bytes()) {
        Ok(())
    } else {
        s.metrics.http_refused("token");
        Err(error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong operator token",
        ))
    }
}

fn error(code: StatusCode, why: &str) -> Response {
    (code, Json(serde_json::json!({ "error": why }))).into_response()
}
