//! Reads the host through sysinfo (and `statvfs` for the disk share) into a [`Reading`].
//!
//! Only what a sample carries is refreshed: CPU usage, RAM (not swap), and for processes
//! their CPU and memory, without threads, command lines, environments or executables,
//! so a reading costs little more than one pass over /proc/<pid>/stat.

use std::path::{Path, PathBuf};

use sysinfo::{
    CpuRefreshKind, DiskRefreshKind, Disks, MemoryRefreshKind, ProcessRefreshKind,
    ProcessesToUpdate, System,
};
use vitals_protocol::HostFigures;
use vitals_protocol::source::MAX_CORES;

use crate::sample::{self, Candidate, Reading, TOP_PROCS};

pub struct Collector {
    sys: System,
    /// The filesystem whose used share is reported: the one holding `/`, else the largest.
    disk: Option<PathBuf>,
    warned_cores: bool,
}

fn process_kind() -> ProcessRefreshKind {
    // `without_tasks`: on Linux a process's threads are listed as processes unless told
    // otherwise; they are neither counted in `procs` nor worth reading one by one.
    ProcessRefreshKind::nothing()
        .with_cpu()
        .with_memory()
        .without_tasks()
}

impl Collector {
    /// Takes the first counters, so the first reading's CPU covers the time since.
    pub fn new() -> Self {
        let mut sys = System::new();
        sys.refresh_cpu_specifics(CpuRefreshKind::nothing().with_cpu_usage());
        sys.refresh_processes_specifics(ProcessesToUpdate::All, true, process_kind());
        let disks =
            Disks::new_with_refreshed_list_specifics(DiskRefreshKind::nothing().with_storage());
        let mounts: Vec<(&Path, u64)> = disks
            .list()
            .iter()
            .map(|d| (d.mount_point(), d.total_space()))
            .collect();
        let disk = pick_disk(&mounts).or_else(|| Some(PathBuf::from("/")));
        tracing::debug!(disk = ?disk, cores = sys.cpus().len(), "collector ready");
        Self {
            sys,
            disk,
            warned_cores: false,
        }
    }

    /// One reading of the host. CPU figures are over the time since the previous one.
    pub fn read(&mut self) -> Reading {
        // CPU first: the process refresh reuses these counters (sysinfo re-reads
        // /proc/stat at most every 200 ms), so both cover the same span.
        self.sys
            .refresh_cpu_specifics(CpuRefreshKind::nothing().with_cpu_usage());
        self.sys
            .refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        self.sys
            .refresh_processes_specifics(ProcessesToUpdate::All, true, process_kind());

        let total_mem = self.sys.total_memory();
        let used_mem = total_mem.saturating_sub(self.sys.available_memory());
        let mut cores: Vec<f64> = self
            .sys
            .cpus()
            .iter()
            .map(|c| sample::pct(f64::from(c.cpu_usage())))
            .collect();
        if cores.len() > MAX_CORES {
            if !self.warned_cores {
                tracing::warn!(
                    cores = cores.len(),
                    kept = MAX_CORES,
                    "more cores than a sample carries; the rest are left out of host.cores"
                );
                self.warned_cores = true;
            }
            cores.truncate(MAX_CORES);
        }
        let (procs, top) = self.processes(total_mem);
        let load = System::load_average();
        Reading {
            cpu_pct: sample::pct(f64::from(self.sys.global_cpu_usage())),
            mem_pct: sample::share_pct(used_mem, total_mem),
            host: HostFigures {
                cores,
                load1: sample::load(load.one),
                load5: sample::load(load.five),
                load15: sample::load(load.fifteen),
                disk_used_pct: self.disk.as_deref().and_then(disk_used_pct),
                procs,
                top,
            },
        }
    }

    fn processes(&self, total_mem: u64) -> (u32, Vec<vitals_protocol::TopProcess>) {
        let procs = self.sys.processes();
        let candidates: Vec<Candidate> = procs
            .values()
            // Kernel threads are /proc entries (and `top` tasks) like any process; only
            // userland threads, listed with tasks, are not processes.
            .filter(|p| p.thread_kind() != Some(sysinfo::ThreadKind::Userland))
            .map(|p| Candidate {
                pid: p.pid().as_u32(),
                cpu_pct: f64::from(p.cpu_usage()),
                mem_pct: if total_mem == 0 {
                    0.0
                } else {
                    p.memory() as f64 * 100.0 / total_mem as f64
                },
            })
            .collect();
        let count = u32::try_from(candidates.len()).unwrap_or(u32::MAX);
        // Names only for the five kept: no string per process per reading.
        let top = sample::top_by_cpu(candidates, TOP_PROCS)
            .into_iter()
            .map(|c| {
                let name = procs
                    .get(&sysinfo::Pid::from_u32(c.pid))
                    .map(|p| p.name().to_string_lossy())
                    .unwrap_or_default();
                sample::top_process(c, &name)
            })
            .collect();
        (count, top)
    }
}

impl Default for Collector {
    fn default() -> Self {
        Self::new()
    }
}

/// The mount point holding `/` if listed, else the largest filesystem.
pub fn pick_disk(mounts: &[(&Path, u64)]) -> Option<PathBuf> {
    mounts
        .iter()
        .find(|(m, _)| *m == Path::new("/"))
        .or_else(|| mounts.iter().max_by_key(|(_, total)| *total))
        .map(|(m, _)| m.to_path_buf())
}

/// `df`'s Use% for the filesystem at `mount`. sysinfo gives only total and available
/// space, which would count the root-reserved blocks as used (on a disk with a large
/// reserve that reads 70% for what `df` calls 23%), so the counts come from statvfs.
fn disk_used_pct(mount: &Path) -> Option<f64> {
    let st = nix::sys::statvfs::statvfs(mount).ok()?;
    // fsblkcnt_t is u32 on some 32-bit targets; a cast, not From, covers both.
    sample::disk_used_pct(
        st.blocks() as u64,
        st.blocks_free() as u64,
        st.blocks_available() as u64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_filesystem_is_preferred_else_the_largest() {
        let (root, data, boot) = (Path::new("/"), Path::new("/data"), Path::new("/boot"));
        assert_eq!(
            pick_disk(&[(boot, 1), (root, 5), (data, 9)]).as_deref(),
            Some(root)
        );
        assert_eq!(pick_disk(&[(boot, 1), (data, 9)]).as_deref(), Some(data));
        assert_eq!(pick_disk(&[]), None);
    }

    #[test]
    fn a_reading_of_this_host_is_within_the_protocols_bounds() {
        let mut c = Collector::new();
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        let r = c.read();
        r.host.validate().unwrap();
        assert!((0.0..=100.0).contains(&r.cpu_pct) && (0.0..=100.0).contains(&r.mem_pct));
        assert!(!r.host.cores.is_empty());
        assert!(r.host.procs > 0 && !r.host.top.is_empty());
        assert!(r.host.top.len() <= TOP_PROCS);
    }
}
