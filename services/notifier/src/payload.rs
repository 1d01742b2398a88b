//! What each receiver kind is sent, built from a batch of alert transitions: the
//! Alertmanager webhook JSON (version 4), a Slack message, or Alertmanager's
//! `POST /api/v2/alerts` body. Pure.

use serde_json::{Map, Value, json};
use vitals_protocol::{AlertEvent, AlertState};

use crate::route::severity_of;

/// Alertmanager's "not ended yet".
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Milliseconds since the epoch as RFC 3339 UTC (`2026-12-02T12:30:57.123Z`).
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, sod) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60,
        ms % 1000
    )
}

/// A stable 16-hex-digit fingerprint of an alert id (FNV-1a 64): one firing, one fingerprint.
pub fn fingerprint(id: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

pub fn generator_url(external: &str, service: &str) -> String {
    format!("{}/#/service/{service}", external.trim_end_matches('/'))
}

fn state_str(s: AlertState) -> &'static str {
    match s {
        AlertState::Firing => "firing",
        AlertState::Resolved => "resolved",
    }
}

pub fn labels(e: &AlertEvent) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("alertname".into(), e.alert.as_str().into());
    m.insert("service".into(), e.service.as_str().into());
    m.insert(
        "severity".into(),
        severity_of(e.marks.severity.as_deref(), e.alert).into(),
    );
    m.insert("instance".into(), e.service.as_str().into());
    m.insert("vitals_id".into(), e.id.as_str().into());
    m
}

/// One line saying what happened, with the marks a person needs ("acked by ann").
pub fn summary(e: &AlertEvent) -> String {
    let mut s = match e.state {
        AlertState::Firing => format!(
            "{} {} firing: {} (threshold {})",
            e.service,
            e.alert.as_str(),
            num(e.value),
            num(e.threshold)
        ),
        AlertState::Resolved => format!("{} {} resolved", e.service, e.alert.as_str()),
    };
    if let Some(by) = &e.marks.acked_by {
        s.push_str(&format!(" (acked by {by})"));
    }
    if let Some(root) = &e.marks.inhibited_by {
        s.push_str(&format!(" (inhibited by {root} DOWN)"));
    }
    if e.marks.silenced {
        s.push_str(" (silenced)");
    }
    s
}

fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.1}")
    } else {
        "n/a".into()
    }
}

pub fn annotations(e: &AlertEvent) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("summary".into(), summary(e).into());
    m.insert(
        "reasons".into(),
        e.reason.clone().unwrap_or_default().into(),
    );
    if let Some(by) = &e.marks.acked_by {
        m.insert("acked_by".into(), by.as_str().into());
    }
    m
}

fn common(maps: &[Map<String, Value>]) -> Map<String, Value> {
    let Some((first, rest)) = maps.split_first() else {
        return Map::new();
    };
    first
        .iter()
        .filter(|(k, v)| rest.iter().all(|m| m.get(*k) == Some(v)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The Alertmanager webhook body (version 4) for one batch of one route.
pub fn webhook(receiver: &str, route: usize, events: &[AlertEvent], external: &str) -> Value {
    let firing = events.iter().any(|e| e.state == AlertState::Firing);
    let labels: Vec<_> = events.iter().map(labels).collect();
    let annotations: Vec<_> = events.iter().map(annotations).collect();
    let alerts: Vec<Value> = events
        .iter()
        .zip(labels.iter().zip(&annotations))
        .map(|(e, (l, a))| {
            json!({
                "status": state_str(e.state),
                "labels": l,
                "annotations": a,
                "startsAt": rfc3339(e.since_ms),
                "endsAt": match e.state {
                    AlertState::Firing => ZERO_TIME.to_owned(),
                    AlertState::Resolved => rfc3339(e.at_ms),
                },
                "generatorURL": generator_url(external, e.service.as_str()),
                "fingerprint": fingerprint(&e.id),
            })
        })
        .collect();
    json!({
        "version": "4",
        "groupKey": format!("{{}}/{{route={route}}}:{{receiver=\"{receiver}\"}}"),
        "truncatedAlerts": 0,
        "status": if firing { "firing" } else { "resolved" },
        "receiver": receiver,
        "groupLabels": {},
        "commonLabels": common(&labels),
        "commonAnnotations": common(&annotations),
        "externalURL": external,
        "alerts": alerts,
    })
}

/// A Slack (or Mattermost) incoming-webhook message: a text fallback and one mrkdwn
/// section per alert.
pub fn slack(events: &[AlertEvent], external: &str) -> Value {
    let firing = events
        .iter()
        .filter(|e| e.state == AlertState::Firing)
        .count();
    let resolved = events.len() - firing;
    let mut head = Vec::new();
    if firing > 0 {
        head.push(format!("{firing} firing"));
    }
    if resolved > 0 {
        head.push(format!("{resolved} resolved"));
    }
    let text = format!(
        "Vitals: {}: {}",
        head.join(", "),
        events.iter().map(summary).collect::<Vec<_>>().join("; ")
    );
    let blocks: Vec<Value> = events
        .iter()
        .map(|e| {
            let icon = match e.state {
                AlertState::Firing => ":red_circle:",
                AlertState::Resolved => ":large_green_circle:",
            };
            json!({
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": format!(
                        "{icon} *{}* <{}|{}>\n{}",
                        e.alert.as_str(),
                        generator_url(external, e.service.as_str()),
                        e.service,
                        summary(e)
                    ),
                },
            })
        })
        .collect();
    json!({ "text": text, "blocks": blocks })
}

/// The body of Alertmanager's `POST /api/v2/alerts`: a firing alert ends `4 * resend`
/// from now unless re-sent (Alertmanager's own rule for clients), a resolve at its time.
pub fn alertmanager(events: &[AlertEvent], external: &str, now_ms: u64, resend_ms: u64) -> Value {
    Value::Array(
        events
            .iter()
            .map(|e| {
                json!({
                    "labels": labels(e),
                    "annotations": annotations(e),
                    "startsAt": rfc3339(e.since_ms),
                    "endsAt": match e.state {
                        AlertState::Firing => rfc3339(now_ms + 4 * resend_ms),
                        AlertState::Resolved => rfc3339(e.at_ms.max(e.since_ms)),
                    },
                    "generatorURL": generator_url(external, e.service.as_str()),
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitals_protocol::{AlertMarks, AlertName, ServiceName};

    fn ev(service: &str, state: AlertState) -> AlertEvent {
        AlertEvent {
            id: format!("{service}:SERVICE_DOWN:1764678657123"),
            service: ServiceName::parse(service).unwrap(),
            alert: AlertName::ServiceDown,
            state,
            value: 5.0,
            threshold: 3.0,
            since_ms: 1_764_678_657_123,
            at_ms: 1_764_678_717_000,
            reason: None,
            marks: AlertMarks::default(),
            update: None,
        }
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_764_678_657_123), "2025-12-02T12:30:57.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn webhook_is_alertmanager_version_4() {
        let mut resolved = ev("billing", AlertState::Resolved);
        resolved.marks.acked_by = Some("ann".into());
        let v = webhook(
            "ops",
            0,
            &[ev("auth", AlertState::Firing), resolved],
            "http://d:5173/",
        );
        assert_eq!(v["version"], "4");
        assert_eq!(v["status"], "firing");
        assert_eq!(v["receiver"], "ops");
        assert_eq!(v["truncatedAlerts"], 0);
        assert_eq!(v["commonLabels"]["alertname"], "SERVICE_DOWN");
        assert_eq!(v["commonLabels"]["severity"], "critical");
        assert!(v["commonLabels"].get("service").is_none());
        let a = &v["alerts"][0];
        assert_eq!(a["status"], "firing");
        assert_eq!(a["endsAt"], ZERO_TIME);
        assert_eq!(a["startsAt"], "2025-12-02T12:30:57.123Z");
        assert_eq!(a["labels"]["vitals_id"], "auth:SERVICE_DOWN:1764678657123");
        assert_eq!(a["generatorURL"], "http://d:5173/#/service/auth");
        assert_eq!(a["fingerprint"].as_str().unwrap().len(), 16);
        let b = &v["alerts"][1];
        assert_eq!(b["status"], "resolved");
        assert_eq!(b["endsAt"], "2025-12-02T12:31:57.000Z");
        assert!(
            b["annotations"]["summary"]
                .as_str()
                .unwrap()
                .contains("acked by ann")
        );
        assert_ne!(a["fingerprint"], b["fingerprint"]);
    }

    #[test]
    fn slack_has_text_and_a_section_per_alert() {
        let mut e = ev("auth", AlertState::Firing);
        e.marks.inhibited_by = Some(ServiceName::parse("db").unwrap());
        let v = slack(&[e, ev("billing", AlertState::Resolved)], "http://d");
        let text = v["text"].as_str().unwrap();
        assert!(text.contains("1 firing, 1 resolved"), "{text}");
        assert!(text.contains("inhibited by db"), "{text}");
        assert_eq!(v["blocks"].as_array().unwrap().len(), 2);
        assert_eq!(v["blocks"][0]["text"]["type"], "mrkdwn");
    }

    #[test]
    fn alertmanager_firing_ends_after_four_resends() {
        let v = alertmanager(&[ev("auth", AlertState::Firing)], "http://d", 0, 60_000);
        assert_eq!(v[0]["endsAt"], "1970-01-01T00:04:00.000Z");
        assert_eq!(v[0]["labels"]["instance"], "auth");
        let v = alertmanager(&[ev("auth", AlertState::Resolved)], "http://d", 0, 60_000);
        assert_eq!(v[0]["endsAt"], "2025-12-02T12:31:57.000Z");
    }
}
