//! The pure half of the agent: names, rounding, the top-5 choice and the sample itself.
//! No I/O and no clock here; `collect` reads the host and passes the numbers in.

use vitals_protocol::{HostFigures, MetricSample, ServiceName, Source, TopProcess};

/// Processes listed in `host.top` (the protocol's maximum).
pub const TOP_PROCS: usize = vitals_protocol::source::MAX_TOP_PROCS;
/// Longest process name kept, in characters (the protocol's maximum).
const MAX_PROC_NAME: usize = vitals_protocol::source::MAX_PROC_NAME_LEN;
/// Largest load average or per-process CPU figure the protocol accepts.
const MAX_LOAD: f64 = 100_000.0;

/// One host reading, already rounded and within the protocol's bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub cpu_pct: f64,
    pub mem_pct: f64,
    pub host: HostFigures,
}

/// Who publishes: the service, this run's instance id and where seq starts.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `--interval-ms`, sent with every sample so a slow agent is not judged silent.
    pub interval_ms: u64,
    pub service: ServiceName,
    pub instance: String,
}

/// The agent's sample for one reading. An agent measures no requests, so `latency_ms` and
/// `error_rate` are 0; it serves no page a browser may poll, so `health_url` is empty.
pub fn build(
    id: &Identity,
    seq: u64,
    ts_ms: u64,
    reading: &Reading,
    stopping: bool,
) -> MetricSample {
    MetricSample {
        service: id.service.clone(),
        instance: id.instance.clone(),
        seq,
        ts_ms,
        cpu_pct: Some(reading.cpu_pct),
        mem_pct: Some(reading.mem_pct),
        latency_ms: 0.0,
        error_rate: 0.0,
        health_url: String::new(),
        stopping,
        source: Source::Agent,
        probe: None,
        host: Some(reading.host.clone()),
        interval_ms: Some(id.interval_ms),
    }
}

/// The default service name from the host name: lower-cased, every character outside
/// `a-z 0-9 _ -` replaced by `-`, leading and trailing `-`/`_` trimmed, cut to 63. An
/// error says why none can be made (and how to give one).
pub fn service_from_host(host: Option<&str>) -> Result<ServiceName, String> {
    let Some(raw) = host.map(str::trim).filter(|h| !h.is_empty()) else {
        return Err("the host name cannot be read; pass --service NAME".into());
    };
    let mapped: String = raw
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '_' | '-' => c,
            _ => '-',
        })
        .collect();
    let trimmed = trim_name(&mapped);
    let cut = trim_name(&trimmed[..trimmed.len().min(vitals_protocol::name::MAX_NAME_LEN)]);
    ServiceName::parse(cut).map_err(|e| {
        format!(
            "the host name {raw:?} does not make a valid service name ({e}); pass --service NAME"
        )
    })
}

/// Only ASCII is left after the mapping, so byte slicing above is on char boundaries.
fn trim_name(s: &str) -> &str {
    s.trim_matches(|c| c == '-' || c == '_')
}

/// `x` to one decimal; non-finite becomes 0 (sysinfo may report NaN before its first delta).
pub fn round1(x: f64) -> f64 {
    round_to(x, 10.0)
}

/// `x` to two decimals (load averages); non-finite becomes 0.
pub fn round2(x: f64) -> f64 {
    round_to(x, 100.0)
}

fn round_to(x: f64, scale: f64) -> f64 {
    if x.is_finite() {
        (x * scale).round() / scale
    } else {
        0.0
    }
}

/// A percentage to one decimal, held to [0, 100] (a kernel counter read mid-update can
/// overshoot by a hair).
pub fn pct(x: f64) -> f64 {
    round1(x).clamp(0.0, 100.0)
}

/// A load average to two decimals within the protocol's bound.
pub fn load(x: f64) -> f64 {
    round2(x).clamp(0.0, MAX_LOAD)
}

/// `part / whole` as a percentage to one decimal; 0 when `whole` is 0.
pub fn share_pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    pct(part as f64 * 100.0 / whole as f64)
}

/// Used share of a filesystem as `df` shows it: blocks in use over the blocks a user can
/// have (in use plus available), so the root-reserved blocks count as neither.
pub fn disk_used_pct(blocks: u64, free: u64, available: u64) -> Option<f64> {
    let used = blocks.saturating_sub(free);
    let usable = used.saturating_add(available);
    (usable > 0).then(|| share_pct(used, usable))
}

/// One process as the top-5 choice sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub pid: u32,
    /// Share of one core, so it may exceed 100.
    pub cpu_pct: f64,
    pub mem_pct: f64,
}

/// The `n` busiest by CPU, then by memory, then lowest pid (a stable order when idle).
pub fn top_by_cpu(mut all: Vec<Candidate>, n: usize) -> Vec<Candidate> {
    let key = |c: &Candidate| (finite(c.cpu_pct), finite(c.mem_pct));
    let order = |a: &Candidate, b: &Candidate| {
        let (ka, kb) = (key(a), key(b));
        kb.0.total_cmp(&ka.0)
            .then(kb.1.total_cmp(&ka.1))
            .then(a.pid.cmp(&b.pid))
    };
    // Hundreds of processes, five wanted: partition first, sort only the five.
    if all.len() > n && n > 0 {
        all.select_nth_unstable_by(n - 1, order);
    }
    all.truncate(n);
    all.sort_by(order);
    all
}

fn finite(x: f64) -> f64 {
    if x.is_finite() { x } else { 0.0 }
}

/// A `host.top` entry: figures rounded and bounded, the name cleaned.
pub fn top_process(c: Candidate, raw_name: &str) -> TopProcess {
    TopProcess {
        name: proc_name(raw_name, c.pid),
        pid: c.pid,
        cpu_pct: round1(c.cpu_pct).clamp(0.0, MAX_LOAD),
        mem_pct: pct(c.mem_pct),
    }
}

/// A process name is whatever the process set (`prctl`, argv): control and bidirectional
/// characters are dropped, it is cut to 64 characters, and one that is still unreadable
/// (empty, only invisible characters) is shown as `pid N`.
pub fn proc_name(raw: &str, pid: u32) -> String {
    let cleaned: String = raw
        .chars()
        .filter(|c| !c.is_control() && !is_bidi(*c))
        .collect();
    let cut: String = cleaned.trim().chars().take(MAX_PROC_NAME).collect();
    if vitals_protocol::check_instance(&cut).is_ok() {
        cut
    } else {
        format!("pid {pid}")
    }
}

fn is_bidi(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(host: &str) -> Result<String, String> {
        service_from_host(Some(host)).map(|n| n.as_str().to_owned())
    }

    #[test]
    fn host_names_are_made_valid() {
        assert_eq!(name("web-01").unwrap(), "web-01");
        assert_eq!(name("Web-01").unwrap(), "web-01");
        assert_eq!(
            name("db1.prod.example.com").unwrap(),
            "db1-prod-example-com"
        );
        assert_eq!(name("  _My Laptop!_ ").unwrap(), "my-laptop");
        assert_eq!(name("ÉCOLE-1").unwrap(), "cole-1");
        assert_eq!(name("-x-").unwrap(), "x");
        let long = format!("{}-{}", "a".repeat(62), "b".repeat(10));
        let got = name(&long).unwrap();
        assert_eq!(
            got,
            "a".repeat(62),
            "cut to 63, then the trailing '-' trimmed"
        );
        assert_eq!(name(&"h".repeat(100)).unwrap().len(), 63);
    }

    #[test]
    fn host_names_that_cannot_be_made_valid_are_refused() {
        for bad in ["", "   ", "---", "日本", "..."] {
            let e = service_from_host(Some(bad)).unwrap_err();
            assert!(e.contains("--service"), "{bad:?}: {e}");
        }
        assert!(service_from_host(None).unwrap_err().contains("--service"));
    }

    #[test]
    fn figures_are_rounded_and_bounded() {
        assert_eq!(round1(12.345), 12.3);
        assert_eq!(round1(12.35), 12.4);
        assert_eq!(round2(0.125_1), 0.13);
        assert_eq!(round1(f64::NAN), 0.0);
        assert_eq!(pct(100.04), 100.0);
        assert_eq!(pct(-0.01), 0.0);
        assert_eq!(pct(f64::INFINITY), 0.0);
        assert_eq!(load(1e9), MAX_LOAD);
        assert_eq!(share_pct(1, 3), 33.3);
        assert_eq!(share_pct(5, 0), 0.0);
    }

    #[test]
    fn disk_share_leaves_reserved_blocks_out_as_df_does() {
        // 100 blocks, 60 free, of which 50 available to users: 40 used of 90 usable.
        assert_eq!(disk_used_pct(100, 60, 50), Some(44.4));
        assert_eq!(disk_used_pct(100, 100, 100), Some(0.0));
        assert_eq!(disk_used_pct(100, 0, 0), Some(100.0));
        assert_eq!(disk_used_pct(0, 0, 0), None);
    }

    fn cand(pid: u32, cpu: f64, mem: f64) -> Candidate {
        Candidate {
            pid,
            cpu_pct: cpu,
            mem_pct: mem,
        }
    }

    #[test]
    fn top_five_by_cpu_then_memory_then_pid() {
        let all = vec![
            cand(1, 0.0, 1.0),
            cand(2, 50.0, 0.0),
            cand(3, 150.0, 0.0),
            cand(4, 0.0, 9.0),
            cand(5, 0.0, 1.0),
            cand(6, f64::NAN, 50.0),
            cand(7, 2.0, 0.0),
            cand(8, 0.0, 0.5),
        ];
        let pids: Vec<u32> = top_by_cpu(all.clone(), 5).iter().map(|c| c.pid).collect();
        assert_eq!(pids, [3, 2, 7, 6, 4]);
        assert_eq!(top_by_cpu(all.clone(), 0), []);
        assert_eq!(top_by_cpu(all[..2].to_vec(), 5).len(), 2);
        let idle: Vec<_> = (1..=9).rev().map(|p| cand(p, 0.0, 0.0)).collect();
        let pids: Vec<u32> = top_by_cpu(idle, 5).iter().map(|c| c.pid).collect();
        assert_eq!(pids, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn process_names_are_shown_as_readable_text() {
        assert_eq!(proc_name("nginx", 1), "nginx");
        assert_eq!(proc_name("a\u{202E}b\n\tc", 1), "abc");
        assert_eq!(proc_name("\u{200B}\u{200B}", 7), "pid 7");
        assert_eq!(proc_name("", 8), "pid 8");
        assert_eq!(proc_name(&"x".repeat(100), 1).chars().count(), 64);
        let p = top_process(cand(9, 250.04, 100.2), "busy");
        assert_eq!((p.cpu_pct, p.mem_pct), (250.0, 100.0));
    }

    #[test]
    fn built_samples_pass_the_monitors_check() {
        let id = Identity {
            interval_ms: 1000,
            service: ServiceName::parse("host-1").unwrap(),
            instance: "agent-host-1-abc123".into(),
        };
        let reading = Reading {
            cpu_pct: 12.5,
            mem_pct: 40.1,
            host: HostFigures {
                cores: vec![10.0, 15.0],
                load1: 0.5,
                load5: 0.4,
                load15: 0.3,
                disk_used_pct: Some(23.0),
                procs: 120,
                top: vec![top_process(cand(1, 3.0, 0.1), "init")],
            },
        };
        let s = build(&id, 1, 1_700_000_000_000, &reading, false);
        s.validate().unwrap();
        let bytes = serde_json::to_vec(&s).unwrap();
        let back = vitals_protocol::parse_sample("host-1", &bytes).unwrap();
        assert_eq!(back.source, Source::Agent);
        assert_eq!(back.health_url, "");
        let last = build(&id, 2, 1_700_000_001_000, &reading, true);
        assert!(
            serde_json::to_string(&last)
                .unwrap()
                .contains("\"stopping\":true")
        );
    }
}
