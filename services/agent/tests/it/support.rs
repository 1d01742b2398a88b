//! Helpers: start the agent and the monitor, read samples, read the kernel's own figures.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use vitals_protocol::{MetricSample, ServiceName, parse_sample, subjects};
use vitals_testkit::{ChildProc, NatsServer, SOON, next_within, wait_until};

pub struct Agent {
    pub proc: ChildProc,
    pub http: SocketAddr,
}

impl Agent {
    /// `agent --nats-url URL --http-addr 127.0.0.1:0` plus `extra`.
    pub async fn start(nats_url: &str, extra: &[&str]) -> Result<Self> {
        let mut args = vec!["--nats-url", nats_url, "--http-addr", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let proc = ChildProc::spawn("agent", &args, &[])?;
        let http = proc.http_addr().await?;
        proc.wait_for_log("agent running", SOON).await?;
        Ok(Self { proc, http })
    }

    pub async fn get_json(&self, path: &str) -> Result<Value> {
        get_json(&format!("http://{}{path}", self.http)).await
    }

    pub async fn metrics_text(&self) -> Result<String> {
        Ok(http()
            .get(format!("http://{}/metrics", self.http))
            .send()
            .await?
            .text()
            .await?)
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(SOON)
        .no_proxy()
        .build()
        .expect("http client")
}

pub async fn get_json(url: &str) -> Result<Value> {
    Ok(http()
        .get(url)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

pub async fn subscribe(client: &async_nats::Client, service: &str) -> async_nats::Subscriber {
    let name = ServiceName::parse(service).expect("valid name");
    let sub = client
        .subscribe(subjects::metrics(&name))
        .await
        .expect("subscribe");
    client.flush().await.expect("flush");
    sub
}

/// The next sample, checked exactly as the monitor checks it.
pub async fn next_sample(sub: &mut async_nats::Subscriber) -> MetricSample {
    let msg = next_within(sub, SOON).await.expect("a sample");
    let token = subjects::service_of_metrics(&msg.subject).expect("metrics subject");
    parse_sample(token, &msg.payload).expect("a sample the monitor accepts")
}

/// Reads samples until one satisfies `pred` (bounded by SOON overall).
pub async fn sample_where(
    sub: &mut async_nats::Subscriber,
    what: &str,
    pred: impl Fn(&MetricSample) -> bool,
) -> MetricSample {
    tokio::time::timeout(SOON, async {
        loop {
            let s = next_sample(sub).await;
            if pred(&s) {
                return s;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no sample where {what} within {SOON:?}"))
}

/// A running monitor and its HTTP address.
pub struct Monitor {
    /// Held so the process lives as long as the test (killed on drop).
    _proc: ChildProc,
    pub http: SocketAddr,
    _rules: tempfile::NamedTempFile,
}

/// The host's load belongs to whatever else runs on it (other builds and tests): the
/// threshold rules are off, so HEALTHY here means "accepted and alive", not "idle host".
const RULES: &str = "[cpu]\nenabled = false\n[memory]\nenabled = false\n";

impl Monitor {
    pub async fn start(nats: &NatsServer, extra: &[&str]) -> Result<Self> {
        let mut rules = tempfile::NamedTempFile::new().context("rules file")?;
        std::io::Write::write_all(&mut rules, RULES.as_bytes()).context("writing rules")?;
        let url = nats.url();
        let rules_path = rules.path().display().to_string();
        let mut args = vec![
            "--nats-url",
            &url,
            "--http-addr",
            "127.0.0.1:0",
            "--rules",
            &rules_path,
        ];
        args.extend_from_slice(extra);
        let proc = ChildProc::spawn("monitor", &args, &[])?;
        let http = proc.http_addr().await?;
        proc.wait_for_log("monitor running", SOON).await?;
        Ok(Self {
            _proc: proc,
            http,
            _rules: rules,
        })
    }

    /// The service's entry in `GET /api/status`, once `pred` holds for it.
    pub async fn service_where(
        &self,
        service: &str,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let url = format!("http://{}/api/status", self.http);
        let found = wait_until(SOON, || async {
            let snap = get_json(&url).await.ok()?;
            let entry = snap["services"]
                .as_array()?
                .iter()
                .find(|s| s["service"] == service)?
                .clone();
            pred(&entry).then_some(entry)
        })
        .await;
        match found {
            Some(v) => Ok(v),
            None => bail!(
                "{service} never {what} within {SOON:?}; status: {}",
                get_json(&url).await.unwrap_or_default()
            ),
        }
    }

    pub async fn counter(&self, series: &str) -> Result<f64> {
        let text = http()
            .get(format!("http://{}/metrics", self.http))
            .send()
            .await?
            .text()
            .await?;
        Ok(vitals_testkit::metric_sum(&text, series))
    }
}

// ---- the kernel's own figures, read the plain way, to hold the agent's against ----

/// Busy and total jiffies of the `cpu` line of /proc/stat, and how many `cpuN` lines.
#[derive(Debug, Clone, Copy)]
pub struct CpuTimes {
    pub busy: u64,
    pub total: u64,
    pub cores: usize,
}

pub fn proc_stat() -> CpuTimes {
    let text = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
    let mut times = CpuTimes {
        busy: 0,
        total: 0,
        cores: 0,
    };
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("cpu") => {
                // user nice system idle iowait irq softirq steal (guest is inside user).
                let v: Vec<u64> = words.take(8).map(|w| w.parse().unwrap_or(0)).collect();
                let idle = v[3] + v[4];
                times.total = v.iter().sum();
                times.busy = times.total - idle;
            }
            Some(w) if w.starts_with("cpu") => times.cores += 1,
            _ => {}
        }
    }
    times
}

/// CPU % of the whole machine between two readings.
pub fn cpu_pct_between(a: CpuTimes, b: CpuTimes) -> f64 {
    let total = b.total.saturating_sub(a.total).max(1) as f64;
    b.busy.saturating_sub(a.busy) as f64 * 100.0 / total
}

/// Used memory % as `free` counts it: (MemTotal - MemAvailable) / MemTotal.
pub fn meminfo_used_pct() -> f64 {
    let text = std::fs::read_to_string("/proc/meminfo").expect("/proc/meminfo");
    let field = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/meminfo"))
    };
    let total = field("MemTotal");
    (total - field("MemAvailable")) * 100.0 / total
}

/// The three load averages of /proc/loadavg.
pub fn loadavg() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").expect("/proc/loadavg");
    let v: Vec<f64> = text
        .split_whitespace()
        .take(3)
        .map(|w| w.parse().expect("a load average"))
        .collect();
    [v[0], v[1], v[2]]
}

/// How many processes (not threads) /proc lists now.
pub fn proc_count() -> usize {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .count()
}
