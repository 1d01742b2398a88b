//! Every NATS subject, bucket and stream name Vitals uses, built in one place.

use crate::name::ServiceName;

/// What the monitor subscribes to: one token, so `metrics.a.b` never matches.
pub const METRICS_ALL: &str = "metrics.*";
pub const HEALTH_ALL: &str = "health.>";
pub const STATUS_ALL: &str = "health.status.>";
pub const ALERT_ALL: &str = "health.alert.>";
/// One token per service: what lists every service with an alert in HEALTH_EVENTS.
pub const ALERT_EACH: &str = "health.alert.*";
pub const SUMMARY_ALL: &str = "health.metrics.>";
pub const HEARTBEAT: &str = "health.monitor.heartbeat";
pub const SNAPSHOT: &str = "health.snapshot";
/// Request/reply (operator): retire one service now.
pub const RETIRE: &str = "health.retire";
pub const CHAOS_ALL: &str = "chaos.*";
/// Request/reply (operator): create, list and expire silences; acknowledge an alert.
pub const SILENCE_CREATE: &str = "health.silence.create";
pub const SILENCE_LIST: &str = "health.silence.list";
pub const SILENCE_EXPIRE: &str = "health.silence.expire";
/// Inside `health.alert.>` (the contract fixed it there): the service name `ack` is
/// reserved so it is never an alert subject, and HEALTH_EVENTS (which stores it too) is
/// made with `no_ack` so a request is answered by the monitor alone.
pub const ALERT_ACK: &str = "health.alert.ack";
/// Given-up deliveries: `notify.dead.<receiver>`, kept in [`DEAD_STREAM`].
pub const DEAD_ALL: &str = "notify.dead.>";

/// The server's client connect/disconnect advisories for the VITALS account, imported
/// from the system account (nats.conf): only the monitor reads them.
pub const CONN_EVENTS: &str = "vitals.conn.>";
pub const CONN_CONNECT: &str = "vitals.conn.connect";
pub const CONN_DISCONNECT: &str = "vitals.conn.disconnect";

/// JetStream KV bucket with each service's current state (key = service name).
pub const KV_BUCKET: &str = "health_status";
/// JetStream KV bucket of probe targets (key = service name, value = target JSON).
pub const TARGETS_BUCKET: &str = "vitals_targets";
/// Silences (`silence.<id>`) and acknowledgements (`ack.<service>.<ALERT>.<since_ms>`).
pub const SILENCES_BUCKET: &str = "vitals_silences";
pub const SILENCE_KEY_PREFIX: &str = "silence.";
pub const ACK_KEY_PREFIX: &str = "ack.";
/// The notifier's record of what each receiver was sent (dedup across restarts).
pub const NOTIFIED_BUCKET: &str = "vitals_notified";
/// Stream of given-up deliveries.
pub const DEAD_STREAM: &str = "NOTIFY_DEAD";
/// JetStream stream over status changes and alerts.
pub const EVENTS_STREAM: &str = "HEALTH_EVENTS";

const METRICS_PREFIX: &str = "metrics.";
const HEALTH_PREFIX: &str = "health.";

pub fn metrics(service: &ServiceName) -> String {
    format!("{METRICS_PREFIX}{service}")
}

pub fn status(service: &ServiceName) -> String {
    format!("health.status.{service}")
}

pub fn alert(service: &ServiceName) -> String {
    format!("health.alert.{service}")
}

pub fn summary(service: &ServiceName) -> String {
    format!("health.metrics.{service}")
}

pub fn chaos(service: &ServiceName) -> String {
    format!("chaos.{service}")
}

pub fn dead(receiver: &str) -> String {
    format!("notify.dead.{receiver}")
}

/// KV `vitals_silences` key of a silence (ids are `[a-z0-9-]`, checked by the caller).
pub fn silence_key(id: &str) -> String {
    format!("{SILENCE_KEY_PREFIX}{id}")
}

/// KV `vitals_silences` key of an alert's acknowledgement: the id's `:` become `.`
/// (KV keys cannot hold `:`).
pub fn ack_key(id: &crate::silence::AlertId) -> String {
    format!(
        "{ACK_KEY_PREFIX}{}.{}.{}",
        id.service,
        id.alert.as_str(),
        id.since_ms
    )
}

/// KV `vitals_notified` key: `<receiver>.<service>.<ALERT>.<since_ms>.<state>`.
pub fn notified_key(
    receiver: &str,
    id: &crate::silence::AlertId,
    state: crate::status::AlertState,
) -> String {
    let state = match state {
        crate::status::AlertState::Firing => "firing",
        crate::status::AlertState::Resolved => "resolved",
    };
    format!(
        "{receiver}.{}.{}.{}.{state}",
        id.service,
        id.alert.as_str(),
        id.since_ms
    )
}

/// The (unvalidated) service token of a `metrics.<service>` subject.
pub fn service_of_metrics(subject: &str) -> Option<&str> {
    subject.strip_prefix(METRICS_PREFIX)
}

/// The (unvalidated) service token of a `chaos.<service>` subject.
pub fn service_of_chaos(subject: &str) -> Option<&str> {
    subject.strip_prefix("chaos.")
}

/// What a subject under `health.` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthSubject<'a> {
    /// `health.status.<service>`
    Status(&'a str),
    /// `health.alert.<service>`
    Alert(&'a str),
    /// `health.metrics.<service>`
    Summary(&'a str),
    /// `health.monitor.heartbeat`
    Heartbeat,
}

impl<'a> HealthSubject<'a> {
    /// The (unvalidated) service token, for the per-service kinds.
    pub fn service(&self) -> Option<&'a str> {
        match *self {
            Self::Status(s) | Self::Alert(s) | Self::Summary(s) => Some(s),
            Self::Heartbeat => None,
        }
    }
}

/// Parses a `health.<kind>.<service>` subject (the inverse of [`status`], [`alert`],
/// [`summary`] and [`HEARTBEAT`]). None for anything else: requests such as
/// `health.snapshot`, unknown kinds, or a service part with more than one token.
pub fn parse_health(subject: &str) -> Option<HealthSubject<'_>> {
    if subject == HEARTBEAT {
        return Some(HealthSubject::Heartbeat);
    }
    let (kind, service) = subject.strip_prefix(HEALTH_PREFIX)?.split_once('.')?;
    if service.is_empty() || service.contains('.') {
        return None;
    }
    if crate::name::is_reserved(service) {
        return None;
    }
    match kind {
        "status" => Some(HealthSubject::Status(service)),
        "alert" => Some(HealthSubject::Alert(service)),
        "metrics" => Some(HealthSubject::Summary(service)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_contract_subjects() {
        let s = ServiceName::parse("billing").unwrap();
        assert_eq!(metrics(&s), "metrics.billing");
        assert_eq!(status(&s), "health.status.billing");
        assert_eq!(alert(&s), "health.alert.billing");
        assert_eq!(summary(&s), "health.metrics.billing");
        assert_eq!(chaos(&s), "chaos.billing");
        assert_eq!(service_of_metrics("metrics.billing"), Some("billing"));
        assert_eq!(service_of_metrics("health.x"), None);
        assert_eq!(service_of_chaos("chaos.billing"), Some("billing"));
    }

    #[test]
    fn parses_what_it_builds() {
        let s = ServiceName::parse("billing").unwrap();
        assert_eq!(
            parse_health(&status(&s)),
            Some(HealthSubject::Status("billing"))
        );
        assert_eq!(
            parse_health(&alert(&s)),
            Some(HealthSubject::Alert("billing"))
        );
        assert_eq!(
            parse_health(&summary(&s)),
            Some(HealthSubject::Summary("billing"))
        );
        assert_eq!(parse_health(HEARTBEAT), Some(HealthSubject::Heartbeat));
        assert_eq!(
            parse_health(&status(&s)).unwrap().service(),
            Some("billing")
        );
        for other in [
            SNAPSHOT,
            RETIRE,
            "health.status.",
            "health.status.a.b",
            "health.other.a",
            "metrics.billing",
            "health.monitor.other",
            ALERT_ACK,
        ] {
            assert_eq!(parse_health(other), None, "{other}");
        }
    }
}
