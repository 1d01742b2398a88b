//! HTTP: `/healthz`, `/metrics` (Prometheus text), `GET /api/status` (the Snapshot).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::sync::{mpsc, oneshot};
use tower_http::cors::CorsLayer;
use tower_http::trace::TraceLayer;

use crate::ingest::Command;
use crate::metrics::Metrics;

pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub commands: mpsc::Sender<Command>,
    /// Set once JetStream is set up and the engine is running.
    pub ready: AtomicBool,
}

pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/status", get(status))
        .layer(CorsLayer::permissive())
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn healthz(State(s): State<Arc<HttpState>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "status": "ok",
        "ready": s.ready.load(Ordering::Relaxed),
        "nats_connected": s.metrics.nats_connected.get() == 1,
    }))
}

async fn metrics(State(s): State<Arc<HttpState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}

async fn status(State(s): State<Arc<HttpState>>) -> Response {
    let (tx, rx) = oneshot::channel();
    if !s.ready.load(Ordering::Relaxed) || s.commands.send(Command::Snapshot(tx)).await.is_err() {
        return unavailable("monitor is starting");
    }
    match tokio::time::timeout(Duration::from_secs(5), rx).await {
        Ok(Ok(snapshot)) => Json(snapshot).into_response(),
        _ => unavailable("monitor did not answer in time"),
    }
}

fn unavailable(why: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(serde_json::json!({ "error": why })),
    )
        .into_response()
}
