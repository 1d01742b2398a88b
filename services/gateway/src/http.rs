//! HTTP: `/ws`, `/healthz`, `/metrics`, `/api/status`, `/api/history`, and optionally the
//! built dashboard.

use std::path::Path;
use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::services::{ServeDir, ServeFile};
use tower_http::trace::TraceLayer;
use vitals_protocol::{History, ServiceName};

use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::{upgrade, ws};

pub struct AppState {
    pub hub: Arc<Hub>,
    pub metrics: Arc<Metrics>,
    pub js: async_nats::jetstream::Context,
    pub allowed_origins: Vec<String>,
    pub token: Option<String>,
    pub slots: Arc<Semaphore>,
    pub limits: ws::Limits,
    pub max_client_message: usize,
    pub history_max: usize,
    pub cancel: CancellationToken,
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
        .route("/ws", get(upgrade))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        .layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_headers([header::AUTHORIZATION]),
        );
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .merge(api)
        .with_state(state)
        .layer(TraceLayer::new_for_http());
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
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let given = bearer.or(q.token.as_deref()).unwrap_or("");
    if constant_time_eq(given.as_bytes(), want.as_bytes()) {
        next.run(request).await
    } else {
        s.metrics.refused("token");
        error(StatusCode::UNAUTHORIZED, "missing or wrong token")
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
    upgrade::accept(request, accept_key, config, move |socket| {
        ws::serve(socket, hub, metrics, limits, slot, cancel)
    })
}

async fn healthz(State(s): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let g = s.hub.gateway_state();
    Json(serde_json::json!({
        "status": "ok",
        "nats_connected": g.nats_connected,
        "source": g.source,
        "clients": s.metrics.clients.get(),
    }))
}

async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
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
    match crate::history::recent(&s.js, service.as_ref(), limit).await {
        Ok(events) => Json(History { events }).into_response(),
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "history unavailable");
            error(StatusCode::SERVICE_UNAVAILABLE, "history unavailable")
        }
    }
}

fn error(code: StatusCode, why: &str) -> Response {
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
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
