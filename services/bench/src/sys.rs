//! Where a figure was measured (revision, toolchain, CPU) and what each process spent
//! on the CPU meanwhile, so "limited by the cores" is read from /proc, not asserted.

use std::time::Instant;

use serde::Serialize;

use crate::util::cpu_seconds;

#[derive(Debug, Serialize)]
pub struct Machine {
    pub git_revision: String,
    /// True when the work tree had uncommitted changes (anyone's) at the start.
    pub git_dirty: bool,
    pub rustc: String,
    pub cpu_model: String,
    pub cores: usize,
    pub nats_server: String,
    /// /proc/loadavg when the run started (other work on the machine shows here).
    pub loadavg_at_start: String,
}

fn command(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

impl Machine {
    pub fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(String::new, |(_, m)| m.trim().to_owned());
        Self {
            git_revision: command("git", &["rev-parse", "HEAD"]),
            git_dirty: !command("git", &["status", "--porcelain", "--untracked-files=no"])
                .is_empty(),
            rustc: command("rustc", &["--version"]),
            cpu_model,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            nats_server: command(vitals_testkit::nats_server_bin(), &["--version"]),
            loadavg_at_start: std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .trim()
                .to_owned(),
        }
    }
}

/// CPU time of one process (or a group: "simulators") over one measurement.
#[derive(Debug, Clone, Serialize)]
pub struct ProcCpu {
    pub process: String,
    pub cpu_s: f64,
    /// Of one core over the measurement's wall time (200 % = both cores of a 2-core box).
    pub pct_of_core: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CpuUse {
    pub wall_s: f64,
    pub processes: Vec<ProcCpu>,
    /// Everything listed together, in cores (of `cores` available).
    pub total_cores: f64,
}

/// Records utime+stime of named processes from now until [`CpuMeter::finish`].
pub struct CpuMeter {
    started: Instant,
    procs: Vec<(String, u32, f64)>,
    /// Processes that ended during the measurement (read just before they did).
    extra: Vec<(String, f64)>,
}

impl CpuMeter {
    /// Starts with the bench itself; add the rest with [`CpuMeter::watch`].
    pub fn start() -> Self {
        let mut m = Self {
            started: Instant::now(),
            procs: Vec::new(),
            extra: Vec::new(),
        };
        m.watch("bench", std::process::id());
        m
    }

    pub fn watch(&mut self, name: &str, pid: u32) {
        let base = cpu_seconds(pid).unwrap_or(0.0);
        self.procs.push((name.to_owned(), pid, base));
    }

    /// CPU spent by a process that is about to end, or started and ended inside the
    /// measurement (e.g. a simulator read just before it is killed).
    pub fn add(&mut self, name: &str, cpu_s: f64) {
        match self.extra.iter_mut().find(|(n, _)| n == name) {
            Some((_, s)) => *s += cpu_s,
            None => self.extra.push((name.to_owned(), cpu_s)),
        }
    }

    pub fn finish(&self) -> CpuUse {
        let wall_s = self.started.elapsed().as_secs_f64();
        let mut processes: Vec<ProcCpu> = Vec::new();
        let mut push = |name: &str, s: f64| match processes.iter_mut().find(|p| p.process == name) {
            Some(p) => p.cpu_s += s,
            None => processes.push(ProcCpu {
                process: name.to_owned(),
                cpu_s: s,
                pct_of_core: 0.0,
            }),
        };
        for (name, pid, base) in &self.procs {
            let now = cpu_seconds(*pid).unwrap_or(*base);
            push(name, (now - base).max(0.0));
        }
        for (name, s) in &self.extra {
            push(name, *s);
        }
        for p in &mut processes {
            p.pct_of_core = if wall_s > 0.0 {
                100.0 * p.cpu_s / wall_s
            } else {
                0.0
            };
        }
        let total_cores = processes.iter().map(|p| p.pct_of_core).sum::<f64>() / 100.0;
        CpuUse {
            wall_s,
            processes,
            total_cores,
        }
    }
}

impl CpuUse {
    /// `nats 45% monitor 98% bench 30% = 1.7 cores` for the table.
    pub fn brief(&self) -> String {
        let parts: Vec<String> = self
            .processes
            .iter()
            .filter(|p| p.pct_of_core >= 0.5)
            .map(|p| format!("{} {:.0}%", p.process, p.pct_of_core))
            .collect();
        format!("{} = {:.2} cores", parts.join(" "), self.total_cores)
    }
}
