//! `/api/silences` and `POST /api/alerts/<id>/ack`: the front door to KV
//! `vitals_silences`. The KV I/O and validation are `vitals_runtime::silences` (the
//! monitor's `health.silence.*` handlers use the same), the monitor applies what the
//! bucket holds and re-publishes the alerts whose marks change.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use vitals_protocol::silence::{MAX_BODY_BYTES, MAX_ID_BYTES};
use vitals_protocol::{AckRequest, SilenceList, SilenceReply, SilenceRequest};
use vitals_runtime::silences::{self, WriteError};

use crate::http::{AppState, check_operator, error};

async fn bucket(s: &AppState) -> Result<async_nats::jetstream::kv::Store, Response> {
    silences::silences_bucket(&s.js).await.map_err(|e| {
        tracing::warn!(error = %format!("{e:#}"), "KV vitals_silences unavailable");
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "KV vitals_silences is unavailable (is JetStream up?)",
        )
    })
}

/// The HTTP answer for a refused write, and its metrics outcome.
fn refused(e: &WriteError) -> (StatusCode, &'static str) {
    match e {
        WriteError::Invalid(_) => (StatusCode::BAD_REQUEST, "bad_request"),
        WriteError::NotFound(_) => (StatusCode::NOT_FOUND, "unknown"),
        WriteError::Full => (StatusCode::INSUFFICIENT_STORAGE, "full"),
        WriteError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    }
}

fn write_failed(s: &AppState, op: &'static str, e: &WriteError) -> Response {
    let (code, outcome) = refused(e);
    s.metrics.silence(op, outcome);
    if code == StatusCode::SERVICE_UNAVAILABLE {
        tracing::warn!(op, error = %e, "writing KV vitals_silences failed");
    }
    (code, Json(SilenceReply::refused(e.to_string()))).into_response()
}

/// `GET /api/silences`: silences not yet over, by start (read-only, like `/api/status`).
pub async fn list(State(s): State<Arc<AppState>>) -> Response {
    let kv = match bucket(&s).await {
        Ok(kv) => kv,
        Err(r) => {
            s.metrics.silence("list", "unavailable");
            return r;
        }
    };
    match silences::list(&kv, s.hub.now_ms()).await {
        Ok((silences, refused)) => {
            if refused > 0 {
                tracing::warn!(
                    refused,
                    "KV vitals_silences holds values that are not silences"
                );
            }
            s.metrics.silence("list", "ok");
            Json(SilenceList { ok: true, silences }).into_response()
        }
        Err(e) => {
            s.metrics.silence("list", "unavailable");
            tracing::warn!(error = %format!("{e:#}"), "listing KV vitals_silences failed");
            error(StatusCode::SERVICE_UNAVAILABLE, "listing silences failed")
        }
    }
}

/// `POST /api/silences`: body a SilenceRequest; 201 with the new id.
pub async fn create(State(s): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = check_operator(&s, &headers, "creating silences") {
        s.metrics.silence("create", "unauthorized");
        return r;
    }
    if body.len() > MAX_BODY_BYTES {
        s.metrics.silence("create", "too_large");
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            Json(SilenceReply::refused(format!(
                "larger than {MAX_BODY_BYTES} bytes"
            ))),
        )
            .into_response();
    }
    let req = match SilenceRequest::parse(&body) {
        Ok(r) => r,
        Err(e) => {
            s.metrics.silence("create", "bad_request");
            return (StatusCode::BAD_REQUEST, Json(SilenceReply::refused(e.0))).into_response();
        }
    };
    let kv = match bucket(&s).await {
        Ok(kv) => kv,
        Err(r) => {
            s.metrics.silence("create", "unavailable");
            return r;
        }
    };
    match silences::create(&kv, req, s.hub.now_ms()).await {
        Ok(silence) => {
            s.metrics.silence("create", "ok");
            tracing::info!(id = %silence.id, service = %silence.matchers.service,
                ends_ms = silence.ends_ms, by = %silence.created_by, "silence created");
            (StatusCode::CREATED, Json(SilenceReply::done(silence.id))).into_response()
        }
        Err(e) => write_failed(&s, "create", &e),
    }
}

/// `DELETE /api/silences/<id>`: ends it now.
pub async fn expire(
    State(s): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_operator(&s, &headers, "expiring silences") {
        s.metrics.silence("expire", "unauthorized");
        return r;
    }
    let id = match id {
        Ok(Path(id)) if !id.is_empty() && id.len() <= MAX_ID_BYTES => id,
        _ => {
            s.metrics.silence("expire", "bad_request");
            return error(StatusCode::BAD_REQUEST, "bad silence id");
        }
    };
    let kv = match bucket(&s).await {
        Ok(kv) => kv,
        Err(r) => {
            s.metrics.silence("expire", "unavailable");
            return r;
        }
    };
    match silences::expire(&kv, &id).await {
        Ok(()) => {
            s.metrics.silence("expire", "ok");
            tracing::info!(id = %id, "silence expired");
            Json(SilenceReply::done(id)).into_response()
        }
        Err(e) => write_failed(&s, "expire", &e),
    }
}

/// The body of `POST /api/alerts/<id>/ack` (the id is in the path).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    by: String,
}

/// `POST /api/alerts/<id>/ack`: the alert must be firing in the gateway's view.
pub async fn ack(
    State(s): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = check_operator(&s, &headers, "acknowledging alerts") {
        s.metrics.silence("ack", "unauthorized");
        return r;
    }
    if body.len() > MAX_BODY_BYTES {
        s.metrics.silence("ack", "too_large");
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("larger than {MAX_BODY_BYTES} bytes"),
        );
    }
    let Ok(Path(id)) = id else {
        s.metrics.silence("ack", "bad_request");
        return error(StatusCode::BAD_REQUEST, "bad alert id");
    };
    let req = match serde_json::from_slice::<AckBody>(&body) {
        Ok(b) => AckRequest { id, by: b.by },
        Err(e) => {
            s.metrics.silence("ack", "bad_request");
            return error(StatusCode::BAD_REQUEST, &format!("body: {e}"));
        }
    };
    if let Err(e) = req.validate() {
        s.metrics.silence("ack", "bad_request");
        return error(StatusCode::BAD_REQUEST, &e.0);
    }
    if !s.hub.is_firing(&req.id) {
        s.metrics.silence("ack", "unknown");
        return error(StatusCode::NOT_FOUND, "no such firing alert");
    }
    let kv = match bucket(&s).await {
        Ok(kv) => kv,
        Err(r) => {
            s.metrics.silence("ack", "unavailable");
            return r;
        }
    };
    match silences::ack(&kv, req, s.hub.now_ms()).await {
        Ok(ack) => {
            s.metrics.silence("ack", "ok");
            tracing::info!(id = %ack.id, by = %ack.by, "alert acknowledged");
            Json(serde_json::json!({ "ok": true, "id": ack.id, "by": ack.by, "at_ms": ack.at_ms }))
                .into_response()
        }
        Err(e) => write_failed(&s, "ack", &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_refusals_map_to_http_statuses() {
        assert_eq!(
            refused(&WriteError::Invalid("x".into())).0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            refused(&WriteError::NotFound("x".into())).0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            refused(&WriteError::Store(anyhow::anyhow!("down"))).0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            refused(&WriteError::Full).0,
            StatusCode::INSUFFICIENT_STORAGE
        );
    }
}
