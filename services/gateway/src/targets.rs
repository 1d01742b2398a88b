//! `/api/targets`: the front door to KV `vitals_targets`. The gateway only checks the
//! operator token and validates with the protocol's code; the prober owns what a target
//! does, and reads the same bucket.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{StreamExt, TryStreamExt};
use serde_json::json;
use vitals_protocol::{ServiceName, Target};

use crate::http::{AppState, check_operator, error};

/// Most targets one GET lists (each is one KV read).
const MAX_LISTED: usize = 10_000;

/// The bucket, created here if no prober has yet (same settings as the prober's).
async fn bucket(s: &AppState) -> Result<async_nats::jetstream::kv::Store, Response> {
    vitals_runtime::targets::targets_bucket(&s.js)
        .await
        .map_err(|e| {
            tracing::warn!(error = %format!("{e:#}"), "KV vitals_targets unavailable");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "KV vitals_targets is unavailable (is JetStream up?)",
            )
        })
}

#[allow(clippy::result_large_err)] // as `check_operator`: the refusal is the response
fn service_of(
    s: &AppState,
    op: &'static str,
    name: Result<Path<String>, PathRejection>,
) -> Result<ServiceName, Response> {
    let raw = name.map_err(|e| {
        s.metrics.target(op, "bad_request");
        error(StatusCode::BAD_REQUEST, &e.body_text())
    })?;
    ServiceName::parse(&raw.0).map_err(|e| {
        s.metrics.target(op, "bad_request");
        error(StatusCode::BAD_REQUEST, &format!("service: {e}"))
    })
}

/// `GET /api/targets`: every target, sorted by service. A value that does not validate
/// (written past the API, e.g. with `nats kv put`) is listed under `refused` with its
/// reason, so the operator sees why the prober ignores it.
pub async fn list(State(s): State<Arc<AppState>>) -> Response {
    let kv = match bucket(&s).await {
        Ok(kv) => kv,
        Err(r) => {
            s.metrics.target("list", "unavailable");
            return r;
        }
    };
    let keys = match kv.keys().await {
        Ok(keys) => keys
            .take(MAX_LISTED + 1)
            .try_collect::<Vec<String>>()
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let mut keys = match keys {
        Ok(keys) => keys,
        Err(e) => {
            s.metrics.target("list", "unavailable");
            tracing::warn!(error = %e, "listing KV vitals_targets failed");
            return error(StatusCode::SERVICE_UNAVAILABLE, "listing targets failed");
        }
    };
    let truncated = keys.len() > MAX_LISTED;
    keys.truncate(MAX_LISTED);
    keys.sort_unstable();
    let mut targets = Vec::with_capacity(keys.len());
    let mut refused = Vec::new();
    for key in keys {
        let Ok(Some(value)) = kv.get(&key).await else {
            continue; // deleted meanwhile
        };
        match Target::from_json(&key, &value) {
            Ok(t) => targets.push(redacted(t)),
            Err(e) => refused.push(json!({ "service": key, "error": e.to_string() })),
        }
    }
    s.metrics.target("list", "ok");
    Json(json!({ "targets": targets, "refused": refused, "truncated": truncated })).into_response()
}

/// Header values may hold credentials for the probed service (an `Authorization`): whoever
/// may read the API sees their names only. `nats kv get` (operator) shows the values.
fn redacted(mut t: Target) -> Target {
    if let Some(headers) = t.headers.as_mut() {
        for value in headers.values_mut() {
            *value = REDACTED.to_owned();
        }
    }
    t
}

const REDACTED: &str = "<redacted>";

/// `PUT /api/targets/<service>`: validates the body and writes it.
pub async fn put(
    State(s): State<Arc<AppState>>,
    name: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = check_operator(&s, &headers, "writing targets") {
        s.metrics.target("put", "unauthorized");
        return r;
    }
    let service = match service_of(&s, "put", name) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let target = match Target::from_json(service.as_str(), &body) {
        Ok(t) => t,
        Err(e) => {
            s.metrics.target("put", "bad_request");
            return error(StatusCode::BAD_REQUEST, &e.to_string());
        }
    };
    let kv = match bucket(&s).await {
        Ok(kv) => kv,
        Err(r) => {
            s.metrics.target("put", "unavailable");
            return r;
        }
    };
    if let Err(e) = kv.put(service.as_str(), target.to_json().into()).await {
        s.metrics.target("put", "unavailable");
        tracing::warn!(service = %service, error = %e, "writing a target failed");
        return error(StatusCode::SERVICE_UNAVAILABLE, "writing the target failed");
    }
    s.metrics.target("put", "ok");
    tracing::info!(service = %service, endpoint = target.endpoint(), "target written");
    Json(json!({ "ok": true, "service": service, "target": redacted(target) })).into_response()
}

/// `DELETE /api/targets/<service>`: the prober stops probing it and retires the service.
pub async fn remove(
    State(s): State<Arc<AppState>>,
    name: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_operator(&s, &headers, "removing targets") {
        s.metrics.target("delete", "unauthorized");
        return r;
    }
    let service = match service_of(&s, "delete", name) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let kv = match bucket(&s).await {
        Ok(kv) => kv,
        Err(r) => {
            s.metrics.target("delete", "unavailable");
            return r;
        }
    };
    match kv.get(service.as_str()).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            s.metrics.target("delete", "unknown");
            return error(StatusCode::NOT_FOUND, "no such target");
        }
        Err(e) => {
            s.metrics.target("delete", "unavailable");
            tracing::warn!(service = %service, error = %e, "reading a target failed");
            return error(StatusCode::SERVICE_UNAVAILABLE, "reading the target failed");
        }
    }
    if let Err(e) = kv.delete(service.as_str()).await {
        s.metrics.target("delete", "unavailable");
        tracing::warn!(service = %service, error = %e, "removing a target failed");
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "removing the target failed",
        );
    }
    s.metrics.target("delete", "ok");
    tracing::info!(service = %service, "target removed");
    (
        StatusCode::OK,
        Json(json!({ "ok": true, "service": service })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use vitals_protocol::Target;

    use super::{REDACTED, redacted};

    #[test]
    fn header_values_are_not_shown() {
        let t = Target::from_json(
            "pay",
            br#"{"kind":"http","url":"http://x","headers":{"Authorization":"Bearer s3cret"}}"#,
        )
        .unwrap();
        let shown = redacted(t);
        assert_eq!(shown.headers.unwrap()["Authorization"], REDACTED);
    }

    /// The API stores what it validated, service included, so the prober's check of the
    /// same bytes under the same key passes.
    #[test]
    fn what_the_api_stores_the_prober_accepts() {
        let t = Target::from_json("pay", br#"{"kind":"http","url":"http://x/health"}"#).unwrap();
        let stored = t.to_json();
        assert_eq!(Target::from_json("pay", &stored).unwrap(), t);
        assert!(Target::from_json("other", &stored).is_err());
    }
}
