//! HTTP: `/healthz` (the prober's own state) and `/metrics` (OpenMetrics text).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};

use crate::metrics::Metrics;

pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub instance: String,
    /// Set once the targets known at start are being probed.
    pub running: AtomicBool,
}

pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn healthz(State(s): State<Arc<HttpState>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "status": "ok",
        "instance": s.instance,
        "running": s.running.load(Ordering::Relaxed),
        "targets": s.metrics.targets_active.get(),
        "kv_ready": s.metrics.kv_ready.get() == 1,
        "nats_connected": s.metrics.nats_connected.get() == 1,
    }))
}

async fn metrics(State(s): State<Arc<HttpState>>) -> Response {
    vitals_runtime::http::metrics_response(s.metrics.encode())
}
