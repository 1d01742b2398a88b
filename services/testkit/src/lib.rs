//! Test support for Vitals: a real `nats-server` per test, the project's binaries as
//! real processes (with signals by PID), and bounded waits. Every wait here has a timeout.

mod cluster;
mod nats;
mod process;
pub mod slow;
mod wait;

pub use cluster::NatsCluster;
pub use nats::{ACCOUNTS_CONF, NatsServer, nats_server_bin, repo_nats_conf};
pub use process::{ChildProc, bin_path, rss_bytes, workspace_root};
pub use wait::{collect_for, next_json_within, next_within, wait_until};

/// The sum of every sample of `series` (a metric name, optionally with labels, e.g.
/// `vitals_monitor_refused_samples_total{reason="empty"}`) in Prometheus text.
pub fn metric_sum(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The default bound for "this should happen soon" waits in tests.
pub const SOON: std::time::Duration = std::time::Duration::from_secs(10);
