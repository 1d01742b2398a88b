//! The local inbox: a receiver for the notifier's Alertmanager webhook JSON (version "4"),
//! so a new user sees notifications arrive without any account. `POST /api/inbox` takes
//! one, `GET /api/inbox` lists the last [`KEPT`], newest first. Memory only: bounded by
//! [`MAX_BODY`] per notification and [`KEPT`] notifications.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use vitals_protocol::{AlertState, InboxAlert, InboxList, InboxNotification};
use vitals_runtime::constant_time_eq;

use crate::http::{AppState, bearer, error};

/// Largest body accepted (the notifier batches, so a notification may hold many alerts).
pub const MAX_BODY: usize = 64 * 1024;
/// Notifications kept.
pub const KEPT: usize = 200;
/// Alerts kept per notification (the rest counted in `truncated`).
const MAX_ALERTS: usize = 100;
/// Longest text kept per field.
const MAX_TEXT: usize = 512;

/// What the webhook sends, as far as the inbox reads it (unknown fields are ignored, as
/// Alertmanager receivers do).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Webhook {
    version: String,
    receiver: String,
    status: String,
    alerts: Vec<WebhookAlert>,
    #[serde(default)]
    group_key: String,
    #[serde(default)]
    truncated_alerts: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WebhookAlert {
    status: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    starts_at: String,
    #[serde(default)]
    ends_at: String,
}

fn clip(s: &str) -> String {
    s.chars().take(MAX_TEXT).collect()
}

fn state(s: &str) -> Option<AlertState> {
    match s {
        "firing" => Some(AlertState::Firing),
        "resolved" => Some(AlertState::Resolved),
        _ => None,
    }
}

/// Parses and checks one webhook body; the reason when it is refused.
pub fn parse(body: &[u8], received_ms: u64) -> Result<InboxNotification, String> {
    if body.len() > MAX_BODY {
        return Err(format!("larger than {MAX_BODY} bytes"));
    }
    let w: Webhook = serde_json::from_slice(body).map_err(|e| format!("not webhook JSON: {e}"))?;
    if w.version != "4" {
        return Err(format!("version {:?}: only \"4\" is understood", w.version));
    }
    let Some(status) = state(&w.status) else {
        return Err(format!("status {:?}: must be firing or resolved", w.status));
    };
    if w.receiver.is_empty() {
        return Err("receiver is empty".into());
    }
    if w.alerts.is_empty() {
        return Err("no alerts".into());
    }
    let total = w.alerts.len();
    let mut alerts = Vec::with_capacity(total.min(MAX_ALERTS));
    for (i, a) in w.alerts.into_iter().take(MAX_ALERTS).enumerate() {
        let Some(alert_status) = state(&a.status) else {
            return Err(format!("alerts[{i}].status {:?}", a.status));
        };
        let label = |k: &str| a.labels.get(k).map(|v| clip(v)).unwrap_or_default();
        let alertname = label("alertname");
        if alertname.is_empty() {
            return Err(format!("alerts[{i}] has no alertname label"));
        }
        alerts.push(InboxAlert {
            status: alert_status,
            alertname,
            service: label("service"),
            severity: label("severity"),
            vitals_id: label("vitals_id"),
            summary: a
                .annotations
                .get("summary")
                .map(|v| clip(v))
                .unwrap_or_default(),
            acked_by: a
                .annotations
                .get("acked_by")
                .map(|v| clip(v))
                .unwrap_or_default(),
            starts_at: clip(&a.starts_at),
            ends_at: clip(&a.ends_at),
        });
    }
    Ok(InboxNotification {
        received_ms,
        receiver: clip(&w.receiver),
        status,
        group_key: clip(&w.group_key),
        truncated: w
            .truncated_alerts
            .saturating_add((total - alerts.len()) as u64),
        alerts,
    })
}

/// The last [`KEPT`] notifications.
#[derive(Debug, Default)]
pub struct Inbox {
    kept: VecDeque<InboxNotification>,
    received: u64,
}

impl Inbox {
    pub fn push(&mut self, n: InboxNotification) {
        if self.kept.len() == KEPT {
            self.kept.pop_front();
        }
        self.kept.push_back(n);
        self.received += 1;
    }

    /// Newest first.
    pub fn list(&self) -> Vec<InboxNotification> {
        self.kept.iter().rev().cloned().collect()
    }

    pub fn received(&self) -> u64 {
        self.received
    }
}

/// The inbox and its settings, as the HTTP handlers hold them.
pub struct InboxState {
    pub inbox: Mutex<Inbox>,
    /// When set, POST needs `Authorization: Bearer <token>`.
    pub token: Option<String>,
}

impl InboxState {
    pub fn new(token: Option<String>) -> Arc<Self> {
        Arc::new(Self {
            inbox: Mutex::new(Inbox::default()),
            token,
        })
    }
}

/// `POST /api/inbox`.
pub async fn post(State(s): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(inbox) = &s.inbox else {
        return error(StatusCode::NOT_FOUND, "the inbox is off (--inbox false)");
    };
    if let Some(want) = &inbox.token {
        let given = bearer(&headers).unwrap_or("");
        if !constant_time_eq(given.as_bytes(), want.as_bytes()) {
            s.metrics.inbox("unauthorized");
            return error(
                StatusCode::UNAUTHORIZED,
                "missing or wrong inbox token (Authorization: Bearer <token>)",
            );
        }
    }
    if body.len() > MAX_BODY {
        s.metrics.inbox("too_large");
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("larger than {MAX_BODY} bytes"),
        );
    }
    match parse(&body, s.hub.now_ms()) {
        Ok(n) => {
            tracing::info!(receiver = %n.receiver, status = ?n.status, alerts = n.alerts.len(), "inbox: notification received");
            if let Ok(mut i) = inbox.inbox.lock() {
                i.push(n);
            }
            s.metrics.inbox("ok");
            (StatusCode::OK, Json(serde_json::json!({ "ok": true }))).into_response()
        }
        Err(why) => {
            s.metrics.inbox("bad_request");
            tracing::debug!(error = %why, "inbox: body refused");
            error(StatusCode::BAD_REQUEST, &why)
        }
    }
}

/// `GET /api/inbox`: newest first.
pub async fn list(State(s): State<Arc<AppState>>) -> Response {
    let Some(inbox) = &s.inbox else {
        return error(StatusCode::NOT_FOUND, "the inbox is off (--inbox false)");
    };
    let (notifications, received) = match inbox.inbox.lock() {
        Ok(i) => (i.list(), i.received()),
        Err(_) => (Vec::new(), 0),
    };
    Json(InboxList {
        ok: true,
        received,
        kept: KEPT as u32,
        notifications,
    })
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{"version":"4","groupKey":"{}/{route=0}:{receiver=\"inbox\"}",
        "truncatedAlerts":0,"status":"firing","receiver":"inbox","groupLabels":{},
        "commonLabels":{"service":"auth"},"commonAnnotations":{},"externalURL":"http://x",
        "alerts":[{"status":"firing","labels":{"alertname":"SERVICE_DOWN","service":"auth",
        "severity":"critical","vitals_id":"auth:SERVICE_DOWN:1"},"annotations":{"summary":
        "auth is DOWN"},"startsAt":"2025-12-02T12:30:57.123Z","endsAt":"0001-01-01T00:00:00Z",
        "generatorURL":"http://x/#auth","fingerprint":"ab"}]}"#;

    #[test]
    fn the_notifiers_webhook_json_parses() {
        let n = parse(SAMPLE.as_bytes(), 7).unwrap();
        assert_eq!(n.receiver, "inbox");
        assert_eq!(n.status, AlertState::Firing);
        assert_eq!(n.received_ms, 7);
        assert_eq!(n.alerts.len(), 1);
        let a = &n.alerts[0];
        assert_eq!(
            (
                a.alertname.as_str(),
                a.service.as_str(),
                a.severity.as_str()
            ),
            ("SERVICE_DOWN", "auth", "critical")
        );
        assert_eq!(a.vitals_id, "auth:SERVICE_DOWN:1");
        assert_eq!(a.summary, "auth is DOWN");
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        for (body, why) in [
            ("", "not webhook JSON"),
            ("[]", "not webhook JSON"),
            ("{\"version\":\"4\"}", "not webhook JSON"),
            (
                &SAMPLE.replace("\"version\":\"4\"", "\"version\":\"3\"")[..],
                "version",
            ),
            (
                &SAMPLE.replace(
                    "\"status\":\"firing\",\"receiver\"",
                    "\"status\":\"x\",\"receiver\"",
                )[..],
                "status",
            ),
            (
                &SAMPLE.replace("\"alertname\":\"SERVICE_DOWN\",", "")[..],
                "alertname",
            ),
            (
                &SAMPLE.replace("\"receiver\":\"inbox\"", "\"receiver\":\"\"")[..],
                "receiver",
            ),
        ] {
            let e = parse(body.as_bytes(), 0).unwrap_err();
            assert!(e.contains(why), "{body}: {e}");
        }
        let big = vec![b' '; MAX_BODY + 1];
        assert!(parse(&big, 0).unwrap_err().contains("larger"));
    }

    #[test]
    fn the_inbox_keeps_the_last_ones_newest_first() {
        let mut inbox = Inbox::default();
        for i in 0..(KEPT as u64 + 5) {
            inbox.push(parse(SAMPLE.as_bytes(), i).unwrap());
        }
        let l = inbox.list();
        assert_eq!(l.len(), KEPT);
        assert_eq!(l[0].received_ms, KEPT as u64 + 4);
        assert_eq!(l[KEPT - 1].received_ms, 5);
        assert_eq!(inbox.received(), KEPT as u64 + 5);
    }

    #[test]
    fn long_fields_are_clipped() {
        let long = "x".repeat(5000);
        let body = SAMPLE.replace("auth is DOWN", &long);
        let n = parse(body.as_bytes(), 0).unwrap();
        assert_eq!(n.alerts[0].summary.chars().count(), MAX_TEXT);
    }
}
