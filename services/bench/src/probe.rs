//! Probe spread: does a hanging target delay the others? `targets` HTTP targets at 1 s
//! against a local server, first with none hanging (the baseline), then with a third of
//! them hanging (each probe of those ends at its 500 ms timeout), each run with its own
//! nats-server and prober. For every healthy target the interval between two of its
//! samples is recorded as they arrive (ideal: 1,000 ms); also the prober's CPU (from
//! /proc/<pid>/stat) and memory over the measured window.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use vitals_protocol::MetricSample;
use vitals_testkit::{ChildProc, NatsServer};

use crate::resync::vm_hwm;
use crate::util::{self, Percentiles};

const INTERVAL_MS: u64 = 1_000;
/// Every target's first probe lands within the first second; one more for a steady state.
const WARM_UP: Duration = Duration::from_secs(3);

#[derive(Debug, Serialize)]
pub struct ProbeSpread {
    pub prober_bin: String,
    pub targets: usize,
    pub interval_ms: u64,
    pub secs: u64,
    pub baseline: Run,
    pub with_hanging: Run,
}

#[derive(Debug, Serialize)]
pub struct Run {
    pub hanging: usize,
    pub healthy: usize,
    /// Between two samples of one healthy target, as received.
    pub interval: Percentiles,
    /// |interval - 1000 ms|.
    pub deviation: Percentiles,
    /// Healthy targets' samples in the window, against `healthy * secs` expected.
    pub healthy_samples: u64,
    pub expected_healthy_samples: u64,
    pub timeouts: u64,
    /// Rounds the prober skipped for want of a --max-inflight slot.
    pub skipped: f64,
    pub prober_cpu_pct: f64,
    pub prober_rss_mb: f64,
    pub prober_peak_rss_mb: f64,
}

pub async fn run(prober_bin: &str, targets: usize, secs: u64) -> Result<ProbeSpread> {
    let server = TcpListener::bind("127.0.0.1:0").await?;
    let addr = server.local_addr()?;
    let serving = tokio::spawn(serve(server));
    let baseline = one_run(prober_bin, addr, targets, 0, secs).await?;
    let with_hanging = one_run(prober_bin, addr, targets, targets / 3, secs).await?;
    serving.abort();
    Ok(ProbeSpread {
        prober_bin: prober_bin.to_owned(),
        targets,
        interval_ms: INTERVAL_MS,
        secs,
        baseline,
        with_hanging,
    })
}

/// What one run sees of each healthy target.
#[derive(Default)]
struct Seen {
    last: HashMap<String, Instant>,
    intervals: Vec<Duration>,
    samples: u64,
    timeouts: u64,
    measuring: bool,
}

async fn one_run(
    prober_bin: &str,
    addr: std::net::SocketAddr,
    targets: usize,
    hanging: usize,
    secs: u64,
) -> Result<Run> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let dir = tempfile_dir()?;
    let file = dir.join("targets.toml");
    let mut toml = String::new();
    for i in 0..targets {
        let path = if i < hanging { "hang" } else { "ok" };
        toml.push_str(&format!(
            "[[target]]\nservice = \"spread-{i}\"\nkind = \"http\"\nurl = \"http://{addr}/{path}\"\ninterval_ms = {INTERVAL_MS}\n"
        ));
    }
    std::fs::write(&file, toml)?;
    let hanging_names: std::collections::HashSet<String> =
        (0..hanging).map(|i| format!("spread-{i}")).collect();

    let mut sub = client.subscribe("metrics.*").await?;
    client.flush().await?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let reader = tokio::spawn({
        let seen = seen.clone();
        async move {
            while let Some(msg) = sub.next().await {
                let now = Instant::now();
                let Ok(s) = serde_json::from_slice::<MetricSample>(&msg.payload) else {
                    continue;
                };
                let Ok(mut seen) = seen.lock() else { return };
                let timed_out = s
                    .probe
                    .as_ref()
                    .is_some_and(|p| p.error.as_deref() == Some("timeout"));
                if hanging_names.contains(s.service.as_str()) {
                    seen.timeouts += u64::from(seen.measuring && timed_out);
                    continue;
                }
                let measuring = seen.measuring;
                if let Some(prev) = seen.last.insert(s.service.to_string(), now)
                    && measuring
                {
                    seen.intervals.push(now - prev);
                    seen.samples += 1;
                }
            }
        }
    });

    let url = nats.url();
    let file_arg = file.to_str().context("temp path")?.to_owned();
    let prober = ChildProc::spawn(
        prober_bin,
        &[
            "--nats-url",
            &url,
            "--http-addr",
            "127.0.0.1:0",
            "--targets",
            &file_arg,
        ],
        &[(
            "RUST_LOG",
            "warn,prober=info,vitals_runtime::lifecycle=info",
        )],
    )?;
    let http = prober.http_addr().await?;
    prober
        .wait_for_log("prober running", Duration::from_secs(30))
        .await?;
    tokio::time::sleep(WARM_UP).await;

    let pid = prober.pid();
    let cpu_before = util::cpu_seconds(pid)?;
    let skipped_before = skipped(http).await?;
    let started = Instant::now();
    if let Ok(mut s) = seen.lock() {
        s.measuring = true;
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    if let Ok(mut s) = seen.lock() {
        s.measuring = false;
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = util::cpu_seconds(pid)? - cpu_before;
    let rss = util::rss_bytes(pid)?;
    let peak = vm_hwm(pid)?;
    let skipped = skipped(http).await? - skipped_before;
    drop(prober);
    reader.abort();

    let _ = std::fs::remove_dir_all(&dir);
    let seen = std::mem::take(&mut *seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    let mut interval = util::histogram()?;
    let mut deviation = util::histogram()?;
    let ideal = Duration::from_millis(INTERVAL_MS);
    for d in &seen.intervals {
        util::record(&mut interval, *d);
        util::record(&mut deviation, d.abs_diff(ideal));
    }
    let healthy = targets - hanging;
    let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
    Ok(Run {
        hanging,
        healthy,
        interval: util::percentiles(&interval),
        deviation: util::percentiles(&deviation),
        healthy_samples: seen.samples,
        expected_healthy_samples: healthy as u64 * secs,
        timeouts: seen.timeouts,
        skipped,
        prober_cpu_pct: cpu / wall * 100.0,
        prober_rss_mb: mb(rss),
        prober_peak_rss_mb: mb(peak),
    })
}

async fn skipped(http: std::net::SocketAddr) -> Result<f64> {
    let text = reqwest::get(format!("http://{http}/metrics"))
        .await?
        .text()
        .await?;
    Ok(vitals_testkit::metric_sum(
        &text,
        "vitals_prober_probes_skipped_total",
    ))
}

/// A directory that lives for the run (the bench has no tempfile dependency).
fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("vitals-probe-spread-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// `GET /ok` answers 200 at once; `GET /hang` never answers (it waits for the prober to
/// give up and close). One connection per probe: the prober keeps none.
async fn serve(listener: TcpListener) {
    while let Ok((mut stream, _)) = listener.accept().await {
        tokio::spawn(async move {
            let mut head = Vec::new();
            let mut buf = [0u8; 2048];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
                if head.len() > 16 * 1024 {
                    return;
                }
            }
            if head.starts_with(b"GET /hang") {
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                }
                return;
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                .await;
        });
    }
}
