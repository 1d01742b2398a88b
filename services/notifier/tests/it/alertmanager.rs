//! Against a real Alertmanager (Debian's prometheus-alertmanager, installed by
//! scripts/ensure-alertmanager.sh; ALERTMANAGER_BIN or /usr/bin/prometheus-alertmanager),
//! with the real monitor and simulator: a killed simulator's SERVICE_DOWN shows active in
//! Alertmanager's /api/v2/alerts; after a restart it is resolved there.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use vitals_testkit::{ChildProc, NatsServer, SOON, wait_until};

use crate::helpers::*;

struct Alertmanager {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn alertmanager_bin() -> Result<PathBuf> {
    let path = std::env::var_os("ALERTMANAGER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/prometheus-alertmanager"));
    if !path.exists() {
        bail!(
            "{} not found: run scripts/ensure-alertmanager.sh (or set ALERTMANAGER_BIN)",
            path.display()
        );
    }
    Ok(path)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Alertmanager {
    async fn start() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: blackhole\n  group_wait: 1s\n  group_interval: 1s\nreceivers:\n  - name: blackhole\n",
        )?;
        let port = free_port()?;
        let child = Command::new(alertmanager_bin()?)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting alertmanager")?;
        let am = Self {
            child,
            port,
            _dir: dir,
        };
        let url = format!("http://127.0.0.1:{port}/-/ready");
        wait_until(SOON, || async {
            reqwest::get(&url)
                .await
                .ok()?
                .status()
                .is_success()
                .then_some(())
        })
        .await
        .context("alertmanager did not become ready")?;
        Ok(am)
    }

    async fn alerts(&self) -> Result<Vec<Value>> {
        let v: Value = reqwest::get(format!("http://127.0.0.1:{}/api/v2/alerts", self.port))
            .await?
            .json()
            .await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// Billing's SERVICE_DOWN as Alertmanager lists it, if at all.
    async fn billing_down(&self) -> Option<Value> {
        self.alerts().await.ok()?.into_iter().find(|a| {
            a["labels"]["alertname"] == "SERVICE_DOWN" && a["labels"]["service"] == "billing"
        })
    }
}

fn simulator(nats: &NatsServer) -> Result<ChildProc> {
    let url = nats.url();
    ChildProc::spawn(
        "simulator",
        &[
            "--service",
            "billing",
            "--nats-url",
            &url,
            "--http-addr",
            "127.0.0.1:0",
        ],
        &[
            ("NATS_USER", "simulator"),
            ("NATS_PASSWORD", "simulator-dev"),
        ],
    )
}

#[tokio::test]
async fn service_down_shows_in_a_real_alertmanager_then_resolves() -> Result<()> {
    let am = Alertmanager::start().await?;
    let nats = server()?;
    let url = nats.url();
    let monitor = ChildProc::spawn(
        "monitor",
        &[
            "--nats-url",
            &url,
            "--http-addr",
            "127.0.0.1:0",
            "--grace-ms",
            "0",
        ],
        &[("NATS_USER", MONITOR.0), ("NATS_PASSWORD", MONITOR.1)],
    )?;
    monitor.wait_for_log("monitor running", SOON).await?;
    let mut sim = simulator(&nats)?;
    sim.wait_for_log("simulating", SOON).await?;
    let cfg = format!(
        "[[receiver]]\nname = \"am\"\nkind = \"alertmanager\"\nurl = \"http://127.0.0.1:{}\"\nresend_s = 2\n[[route]]\nreceivers = [\"am\"]\ngroup_wait_ms = 100\n",
        am.port
    );
    let n = Notifier::start(&nats, &cfg, &[]).await?;
    // Billing is known to the monitor (HEALTHY) before it is killed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    sim.kill();
    let active = wait_until(Duration::from_secs(30), || async {
        let a = am.billing_down().await?;
        (a["status"]["state"] == "active").then_some(a)
    })
    .await
    .with_context(|| format!("no active SERVICE_DOWN in alertmanager\n{}", n.proc.logs()))?;
    anyhow::ensure!(
        active["generatorURL"] == "http://dash.test:5173/#/service/billing",
        "{active}"
    );
    anyhow::ensure!(active["labels"]["severity"] == "critical", "{active}");
    anyhow::ensure!(
        active["labels"]["vitals_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("billing:SERVICE_DOWN:")),
        "{active}"
    );
    // Re-sent every resend_s: still active well after the first push's expiry would
    // matter only if it were not; at least one re-send is counted.
    wait_until(Duration::from_secs(20), || async {
        (n.metric("vitals_notifier_repeats_total{receiver=\"am\"}")
            .await
            .ok()?
            >= 1.0)
            .then_some(())
    })
    .await
    .context("no re-send")?;

    let _sim = simulator(&nats)?;
    let resolved = wait_until(Duration::from_secs(30), || async {
        match am.billing_down().await {
            None => Some(()),
            Some(a) => {
                let ends = a["endsAt"].as_str().unwrap_or("");
                let now = notifier::payload::rfc3339(now_ms());
                (ends <= now.as_str()).then_some(())
            }
        }
    })
    .await;
    anyhow::ensure!(
        resolved.is_some(),
        "still active in alertmanager: {:?}\n{}",
        am.billing_down().await,
        n.proc.logs()
    );
    Ok(())
}
