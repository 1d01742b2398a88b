use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The workspace root (where Cargo.toml and .venv live).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A workspace binary built beside the running program (`target/<profile>/NAME`), from
/// a test (`target/<profile>/deps/it-xxxx`) or a tool (`target/<profile>/bench`).
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    dir.join(name)
}

/// A process's resident set size in bytes (from /proc), 0 if it cannot be read.
pub fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// One of the project's binaries running as a real process; SIGKILLed on drop.
/// Its stdout and stderr are collected so a test can wait for a log line.
pub struct ChildProc {
    name: String,
    child: Child,
    output: Arc<Mutex<String>>,
    /// The threads reading stdout and stderr: done once the process (and any child
    /// holding its pipes) has exited and everything it wrote is in `output`.
    drains: Vec<std::thread::JoinHandle<()>>,
}

impl ChildProc {
    /// Spawns `target/<profile>/<bin>` with args and extra env (RUST_LOG defaults to info).
    pub fn spawn(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Result<Self> {
        let path = bin_path(bin);
        if !path.exists() {
            bail!("{} is not built (cargo build --bins)", path.display());
        }
        let mut cmd = Command::new(&path);
        cmd.args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().with_context(|| format!("spawning {bin}"))?;
        let output = Arc::new(Mutex::new(String::new()));
        let mut drains = Vec::new();
        if let Some(out) = child.stdout.take() {
            drains.push(drain(out, output.clone()));
        }
        if let Some(err) = child.stderr.take() {
            drains.push(drain(err, output.clone()));
        }
        Ok(Self {
            name: bin.to_owned(),
            child,
            output,
            drains,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn logs(&self) -> String {
        self.output.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits for a log line containing `needle`; returns that line.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) -> Result<String> {
        let found = crate::wait_until(timeout, || async {
            self.logs()
                .lines()
                .find(|l| l.contains(needle))
                .map(str::to_owned)
        })
        .await;
        found.with_context(|| {
            format!(
                "{} did not log {needle:?} within {timeout:?}; output:\n{}",
                self.name,
                self.logs()
            )
        })
    }

    /// The address from the process's `listening addr=...` log line.
    pub async fn http_addr(&self) -> Result<SocketAddr> {
        let line = self.wait_for_log("listening", crate::SOON).await?;
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("addr="))
            .context("no addr= in listening line")?;
        addr.parse().context("parsing listening addr")
    }

    pub fn signal(&self, sig: Signal) -> Result<()> {
        kill(Pid::from_raw(self.pid() as i32), sig)
            .with_context(|| format!("{sig} to {}", self.name))
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits (bounded) for the process to exit by itself, and for what it wrote last to
    /// reach [`ChildProc::logs`] (an exit is seen before the pipes are read to the end).
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let child = &mut self.child;
        let status = crate::wait_until(timeout, || {
            let polled = child.try_wait().ok().flatten();
            async move { polled }
        })
        .await;
        let status =
            status.with_context(|| format!("{} did not exit within {timeout:?}", self.name))?;
        let drains = &self.drains;
        crate::wait_until(timeout, || {
            let done = drains.iter().all(|d| d.is_finished()).then_some(());
            async move { done }
        })
        .await;
        Ok(status)
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        let _ = self.signal(Signal::SIGCONT);
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- {} output ---\n{}", self.name, self.logs());
        }
    }
}

fn drain(
    stream: impl Read + Send + 'static,
    sink: Arc<Mutex<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if let Ok(mut s) = sink.lock() {
                s.push_str(&line);
                s.push('\n');
            }
        }
    })
}
