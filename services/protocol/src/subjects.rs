//! Every NATS subject, bucket and stream name Vitals uses, built in one place.

use crate::name::ServiceName;

/// What the monitor subscribes to: one token, so `metrics.a.b` never matches.
pub const METRICS_ALL: &str = "metrics.*";
pub const HEALTH_ALL: &str = "health.>";
pub const STATUS_ALL: &str = "health.status.>";
pub const ALERT_ALL: &str = "health.alert.>";
pub const SUMMARY_ALL: &str = "health.metrics.>";
pub const HEARTBEAT: &str = "health.monitor.heartbeat";
pub const SNAPSHOT: &str = "health.snapshot";
pub const CHAOS_ALL: &str = "chaos.*";

/// JetStream KV bucket with each service's current state (key = service name).
pub const KV_BUCKET: &str = "health_status";
/// JetStream stream over status changes and alerts.
pub const EVENTS_STREAM: &str = "HEALTH_EVENTS";

const METRICS_PREFIX: &str = "metrics.";

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

/// The (unvalidated) service token of a `metrics.<service>` subject.
pub fn service_of_metrics(subject: &str) -> Option<&str> {
    subject.strip_prefix(METRICS_PREFIX)
}

/// The (unvalidated) service token of a `chaos.<service>` subject.
pub fn service_of_chaos(subject: &str) -> Option<&str> {
    subject.strip_prefix("chaos.")
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
}
