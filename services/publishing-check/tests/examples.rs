//! docs/PUBLISHING.md's two examples, run for real so the page cannot rot: each publishes
//! to a real nats-server, the real monitor accepts every sample (nothing refused), shows
//! the service HEALTHY, and marks it DOWN ("stopped") at once when the example is told to
//! stop. The page must show each file exactly as it is.
//!
//! Needs the monitor built (`cargo build -p monitor`) and, for the Python one, nats-py in
//! the project's .venv (scripts/test.sh installs it).

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use vitals_testkit::{ChildProc, NatsServer, SOON, metric_sum, wait_until, workspace_root};

const PYTHON_EXAMPLE: &str = "docs/examples/publish.py";
const RUST_EXAMPLE: &str = "services/publishing-check/src/main.rs";
const DOC: &str = "docs/PUBLISHING.md";

#[test]
fn the_page_shows_each_example_exactly_as_the_file_is() {
    let doc = read(DOC);
    for (lang, path) in [("python", PYTHON_EXAMPLE), ("rust", RUST_EXAMPLE)] {
        let block = format!("```{lang}\n{}```\n", read(path));
        assert!(
            doc.contains(&block),
            "{DOC} does not show {path} as it is: paste the file between ```{lang} and ```"
        );
    }
}

#[tokio::test]
async fn the_python_example_is_accepted_by_the_monitor() -> Result<()> {
    let python = workspace_root().join(".venv/bin/python");
    let has_nats = Command::new(&python)
        .args(["-c", "import nats"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ensure!(
        has_nats,
        "{} with nats-py is needed: scripts/test.sh installs it",
        python.display()
    );
    // With the stack's nats.conf, as the page tells: the `agent` user may publish metrics.>.
    let nats = NatsServer::start_with_config(&vitals_testkit::repo_nats_conf()?)?;
    let monitor = Monitor::start(
        &nats,
        &["--nats-user", "monitor", "--nats-password", "monitor-dev"],
    )
    .await?;
    let mut cmd = Command::new(python);
    cmd.arg(workspace_root().join(PYTHON_EXAMPLE))
        .env("NATS_USER", "agent")
        .env("NATS_PASSWORD", "agent-dev");
    check_example(cmd, "py-example", &nats, &monitor).await
}

#[tokio::test]
async fn the_rust_example_is_accepted_by_the_monitor() -> Result<()> {
    let nats = NatsServer::start()?;
    let monitor = Monitor::start(&nats, &[]).await?;
    let cmd = Command::new(env!("CARGO_BIN_EXE_publish-example"));
    check_example(cmd, "rust-example", &nats, &monitor).await
}

async fn check_example(
    mut cmd: Command,
    service: &str,
    nats: &NatsServer,
    monitor: &Monitor,
) -> Result<()> {
    cmd.env("SERVICE", service).env("NATS_URL", nats.url());
    let mut example = Example::spawn(cmd)?;

    let healthy = monitor
        .service_where(service, "HEALTHY", |s| s["status"] == "HEALTHY")
        .await
        .with_context(|| example.output())?;
    let instance = healthy["instance"].as_str().unwrap_or_default();
    ensure!(
        instance.starts_with(&format!("{service}-")),
        "instance {instance:?}"
    );
    // Two samples in, none refused: seq, ranges and the health URL all pass.
    monitor.wait_counter(SAMPLES, 2.0).await?;
    ensure!(
        monitor.counter(REFUSED).await? == 0.0,
        "refused: {}",
        monitor.metrics_text().await?
    );

    example.signal(Signal::SIGTERM)?;
    let status = example.wait_exit(SOON).await?;
    ensure!(status.success(), "exit {status}: {}", example.output());
    let down = monitor
        .service_where(service, "DOWN (stopped)", |s| s["status"] == "DOWN")
        .await?;
    ensure!(down["reasons"][0] == "stopped", "{down}");
    ensure!(
        monitor.counter(REFUSED).await? == 0.0,
        "a sample was refused"
    );
    Ok(())
}

const SAMPLES: &str = "vitals_monitor_samples_total";
const REFUSED: &str = "vitals_monitor_refused_samples_total";

fn read(path: &str) -> String {
    let full = workspace_root().join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// An example program as a process, its output in a file; killed on drop.
struct Example {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Example {
    fn spawn(mut cmd: Command) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("output.log");
        let out = std::fs::File::create(&log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("spawning {cmd:?}"))?;
        Ok(Self {
            child,
            log,
            _dir: dir,
        })
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: Signal) -> Result<()> {
        kill(Pid::from_raw(self.child.id() as i32), sig).context("signalling the example")
    }

    async fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let child = &mut self.child;
        let status = wait_until(timeout, || {
            let polled = child.try_wait().ok().flatten();
            async move { polled }
        })
        .await;
        status.with_context(|| format!("the example did not exit within {timeout:?}"))
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- example output ---\n{}", self.output());
        }
    }
}

/// The real monitor on a free port.
struct Monitor {
    _proc: ChildProc,
    http: std::net::SocketAddr,
}

impl Monitor {
    async fn start(nats: &NatsServer, extra: &[&str]) -> Result<Self> {
        let url = nats.url();
        let mut args = vec!["--nats-url", &url, "--http-addr", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let proc = ChildProc::spawn("monitor", &args, &[])?;
        let http = proc.http_addr().await?;
        proc.wait_for_log("monitor running", SOON).await?;
        Ok(Self { _proc: proc, http })
    }

    async fn get(&self, path: &str) -> Result<reqwest::Response> {
        Ok(reqwest::Client::builder()
            .timeout(SOON)
            .no_proxy()
            .build()?
            .get(format!("http://{}{path}", self.http))
            .send()
            .await?
            .error_for_status()?)
    }

    async fn metrics_text(&self) -> Result<String> {
        Ok(self.get("/metrics").await?.text().await?)
    }

    async fn counter(&self, series: &str) -> Result<f64> {
        Ok(metric_sum(&self.metrics_text().await?, series))
    }

    async fn wait_counter(&self, series: &str, at_least: f64) -> Result<()> {
        let reached = wait_until(SOON, || async {
            self.counter(series).await.ok().filter(|v| *v >= at_least)
        })
        .await;
        match reached {
            Some(_) => Ok(()),
            None => bail!("{series} did not reach {at_least} within {SOON:?}"),
        }
    }

    /// The service's entry in `GET /api/status` once `pred` holds for it.
    async fn service_where(
        &self,
        service: &str,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let found = wait_until(SOON, || async {
            let snap: Value = self.get("/api/status").await.ok()?.json().await.ok()?;
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
            None => bail!("{service} was not {what} within {SOON:?}"),
        }
    }
}
