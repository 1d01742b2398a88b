//! `/healthz` and `/metrics`, on the shared HTTP server.

use std::sync::Arc;

use async_nats::connection::State;
use axum::Router;
use axum::extract::State as Ext;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::metrics::Metrics;
use crate::sample::Identity;

#[derive(Clone)]
pub struct AppState {
    pub metrics: Arc<Metrics>,
    pub id: Arc<Identity>,
    pub client: async_nats::Client,
}

impl AppState {
    /// The client's own view, so the figure is current even between events.
    fn refresh_connected(&self) {
        let up = self.client.connection_state() == State::Connected;
        self.metrics.nats_connected.set(i64::from(up));
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(|| async { (StatusCode::NOT_FOUND, "no such route\n") })
        .with_state(state)
}

async fn healthz(Ext(st): Ext<AppState>) -> Response {
    st.refresh_connected();
    axum::Json(st.metrics.view(st.id.service.as_str(), &st.id.instance)).into_response()
}

async fn metrics(Ext(st): Ext<AppState>) -> Response {
    st.refresh_connected();
    vitals_runtime::http::metrics_response(st.metrics.encode())
}
