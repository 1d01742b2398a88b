//! The agent's figures against the kernel's own, read by the test from /proc over the same
//! span. Tolerances are generous: the host is shared, and the two reads are milliseconds
//! apart, not simultaneous.

use vitals_protocol::Source;
use vitals_testkit::NatsServer;

use crate::support::{
    Agent, cpu_pct_between, loadavg, meminfo_used_pct, next_sample, proc_count, proc_stat,
    subscribe,
};

/// Samples averaged for the CPU comparison (at the default 1 s interval).
const SPAN: usize = 3;

#[tokio::test]
async fn figures_are_plausible_against_the_kernels_own() {
    let nats = NatsServer::start().unwrap();
    let client = nats.client().await.unwrap();
    let mut sub = subscribe(&client, "figures-host").await;
    let _agent = Agent::start(&nats.url(), &["--service", "figures-host"])
        .await
        .unwrap();

    // Each sample's CPU covers the time since the previous one: read the kernel's counters
    // as the first arrives and again as the last does, and the spans match.
    let first = next_sample(&mut sub).await;
    let k0 = proc_stat();
    let mut samples = Vec::new();
    for _ in 0..SPAN {
        samples.push(next_sample(&mut sub).await);
    }
    let k1 = proc_stat();
    let kernel_mem = meminfo_used_pct();
    let kernel_load = loadavg();
    let kernel_procs = proc_count();

    assert_eq!(first.source, Source::Agent);
    assert_eq!((first.latency_ms, first.error_rate), (0.0, 0.0));
    let seqs: Vec<u64> = samples.iter().map(|s| s.seq).collect();
    assert_eq!(
        seqs,
        (first.seq + 1..=first.seq + SPAN as u64).collect::<Vec<_>>()
    );

    let kernel_cpu = cpu_pct_between(k0, k1);
    let agent_cpu = samples.iter().map(|s| s.cpu_pct.unwrap()).sum::<f64>() / samples.len() as f64;
    assert!(
        (agent_cpu - kernel_cpu).abs() <= 25.0,
        "cpu: agent {agent_cpu:.1} vs kernel {kernel_cpu:.1}"
    );

    let last = samples.last().unwrap();
    let host = last.host.as_ref().expect("host figures");
    assert_eq!(host.cores.len(), k1.cores, "one figure per cpuN line");
    let core_mean = host.cores.iter().sum::<f64>() / host.cores.len() as f64;
    assert!(
        (core_mean - last.cpu_pct.unwrap()).abs() <= 10.0,
        "cores average {core_mean:.1} vs overall {:?}",
        last.cpu_pct
    );

    let mem = last.mem_pct.unwrap();
    assert!(
        (mem - kernel_mem).abs() <= 10.0,
        "mem: agent {mem} vs kernel {kernel_mem:.1}"
    );

    // The kernel recomputes load every 5 s, so the two may be one step apart.
    for (agent, kernel, which) in [
        (host.load1, kernel_load[0], "load1"),
        (host.load5, kernel_load[1], "load5"),
        (host.load15, kernel_load[2], "load15"),
    ] {
        assert!(
            (agent - kernel).abs() <= 1.0 + 0.25 * kernel,
            "{which}: agent {agent} vs kernel {kernel}"
        );
    }

    let procs = host.procs as usize;
    assert!(
        procs >= kernel_procs / 2 && procs <= kernel_procs * 2 + 50,
        "procs: agent {procs} vs /proc {kernel_procs}"
    );
    assert!(
        !host.top.is_empty() && host.top.len() <= 5,
        "{:?}",
        host.top
    );
    assert!(
        host.top.windows(2).all(|w| w[0].cpu_pct >= w[1].cpu_pct),
        "top is by CPU: {:?}",
        host.top
    );
    let disk = host.disk_used_pct.expect("a filesystem holds /");
    assert!((0.0..=100.0).contains(&disk));
}
