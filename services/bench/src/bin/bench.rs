//! `bench`: how fast and how lean Vitals is, every figure beside a raw-NATS baseline
//! measured in the same run on the same machine. Starts its own nats-server and the
//! real monitor, gateway and simulators (built beside this binary).

use std::path::PathBuf;

use anyhow::{Context, Result};
use bench::{detection, feed, ingest, notify, raw, resync, util};
use clap::Parser;
use nix::sys::signal::Signal;
use serde::Serialize;
use vitals_testkit::NatsServer;

#[derive(Debug, Parser)]
#[command(
    name = "bench",
    about = "Vitals benchmarks against a raw NATS baseline"
)]
struct Args {
    /// Smaller sizes (under a minute), the same fields.
    #[arg(long)]
    quick: bool,
    #[arg(long, default_value = "target/bench/results.json")]
    out: PathBuf,
    /// Only the ingest measurement for this many services (e.g. to profile the monitor
    /// with `perf record -p`), printed as JSON; nothing is written.
    #[arg(long, value_name = "SERVICES")]
    ingest_only: Option<usize>,
    #[arg(long, default_value_t = 100, requires = "ingest_only")]
    rounds: u64,
    /// Only the gateway's peak RSS during a resync of every client (printed as JSON):
    /// `--resync-clients` clients on a `--resync-services` view; nothing is written.
    #[arg(long)]
    resync_rss: bool,
    /// The gateway binary to measure (default: the one built beside this one).
    #[arg(long, default_value = "gateway", requires = "resync_rss")]
    gateway_bin: String,
    #[arg(long, default_value_t = 2_000, requires = "resync_rss")]
    resync_clients: usize,
    #[arg(long, default_value_t = 5_000, requires = "resync_rss")]
    resync_services: usize,
    /// Only a snapshot flood against the monitor (printed as JSON): `--flood-rate`
    /// requests a second for `--flood-secs` while `--flood-services` publish at 1 Hz.
    #[arg(long)]
    snapshot_flood: bool,
    /// The monitor binary to measure (default: the one built beside this one).
    #[arg(long, default_value = "monitor", requires = "snapshot_flood")]
    monitor_bin: String,
    #[arg(long, default_value_t = 1_000, requires = "snapshot_flood")]
    flood_services: usize,
    #[arg(long, default_value_t = 860, requires = "snapshot_flood")]
    flood_rate: u64,
    #[arg(long, default_value_t = 10, requires = "snapshot_flood")]
    flood_secs: u64,
    /// Spread the requests over this many inbox prefixes (1 = one connection).
    #[arg(long, default_value_t = 1, requires = "snapshot_flood")]
    flood_askers: usize,
    /// Only the prober's interval spread (printed as JSON): `--probe-targets` HTTP
    /// targets at 1 s, none hanging, then a third of them hanging, for `--probe-secs` each.
    #[arg(long)]
    probe_spread: bool,
    /// The prober binary to measure (default: the one built beside this one).
    #[arg(long, default_value = "prober", requires = "probe_spread")]
    prober_bin: String,
    #[arg(long, default_value_t = 1_000, requires = "probe_spread")]
    probe_targets: usize,
    #[arg(long, default_value_t = 20, requires = "probe_spread")]
    probe_secs: u64,
    /// Only the alert delivery latency (printed as JSON): `--notify-events` alerts at
    /// `--notify-rate` a second through the real notifier, beside a direct-POST baseline.
    #[arg(long)]
    notify_only: bool,
    #[arg(long, default_value_t = 500, requires = "notify_only")]
    notify_events: usize,
    #[arg(long, default_value_t = 50, requires = "notify_only")]
    notify_rate: u64,
}

struct Plan {
    raw_messages: usize,
    hop_rate: u64,
    hop_secs: u64,
    ingest: Vec<(usize, u64)>,
    hz_seconds: u64,
    e2e_clients: Vec<usize>,
    e2e_runs: usize,
    fanout: (usize, usize),
    detection_runs: usize,
    idle_clients: usize,
    /// Alert events through the notifier, and their rate.
    notify: (usize, u64),
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                raw_messages: 100_000,
                hop_rate: 1_000,
                hop_secs: 2,
                ingest: vec![(1_000, 20), (10_000, 5)],
                hz_seconds: 2,
                e2e_clients: vec![10, 100],
                e2e_runs: 50,
                fanout: (100, 1_000),
                detection_runs: 20,
                idle_clients: 200,
                notify: (40, 20),
            }
        } else {
            Self {
                raw_messages: 1_000_000,
                hop_rate: 2_000,
                hop_secs: 5,
                ingest: vec![(1_000, 60), (10_000, 60), (100_000, 10)],
                hz_seconds: 5,
                e2e_clients: vec![10, 100, 1_000],
                e2e_runs: 200,
                fanout: (1_000, 2_000),
                detection_runs: 20,
                idle_clients: 1_000,
                notify: (500, 50),
            }
        }
    }
}

#[derive(Debug, Serialize)]
struct Results {
    mode: &'static str,
    machine: Machine,
    raw: raw::Raw,
    ingest: IngestSummary,
    e2e: Vec<feed::E2e>,
    fanout: feed::Fanout,
    detection: DetectionSummary,
    memory: Memory,
    notify: notify::Notify,
}

#[derive(Debug, Serialize)]
struct Machine {
    cpus: usize,
    nats_server: String,
}

#[derive(Debug, Serialize)]
struct IngestSummary {
    /// The largest size's burst rate (the headline figure).
    samples_per_s: f64,
    lost: u64,
    ratio_vs_raw: f64,
    runs: Vec<ingest::Ingest>,
}

#[derive(Debug, Serialize)]
struct DetectionSummary {
    timeout_ms: u64,
    kill_p99_ms: f64,
    stop_p99_ms: f64,
    term_p99_ms: f64,
    runs: Vec<detection::Detection>,
}

#[derive(Debug, Serialize)]
struct Memory {
    monitor_bytes_per_service: f64,
    monitor_services: usize,
    gateway_bytes_per_client: f64,
    gateway_clients: usize,
    /// Services in the view when `gateway_bytes_per_client` was measured.
    gateway_view_services: usize,
    /// The same after the end-to-end runs grew the view (each client keeps a write
    /// buffer as large as the largest frame it was sent: its snapshot).
    gateway_bytes_per_client_large_view: f64,
    gateway_large_view_services: usize,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(services) = args.ingest_only {
        let run = ingest::run(services, args.rounds, 2).await?;
        print_json(&run)?;
        return Ok(());
    }
    if args.snapshot_flood {
        let run = bench::flood::run(
            &args.monitor_bin,
            args.flood_services,
            args.flood_rate,
            args.flood_secs,
            args.flood_askers,
        )
        .await?;
        print_json(&run)?;
        return Ok(());
    }
    if args.probe_spread {
        let run = bench::probe::run(&args.prober_bin, args.probe_targets, args.probe_secs).await?;
        print_json(&run)?;
        return Ok(());
    }
    if args.notify_only {
        let run = notify::run(args.notify_events, args.notify_rate).await?;
        print_json(&run)?;
        return Ok(());
    }
    if args.resync_rss {
        let run = resync::run(&args.gateway_bin, args.resync_services, args.resync_clients).await?;
        print_json(&run)?;
        return Ok(());
    }
    let plan = Plan::new(args.quick);
    let step = |s: &str| eprintln_step(s);

    step("baseline: raw NATS pub/sub");
    let nats = NatsServer::start()?;
    let raw = raw::run(&nats, plan.raw_messages, plan.hop_rate, plan.hop_secs).await?;

    let mut runs = Vec::new();
    for &(services, rounds) in &plan.ingest {
        step(&format!("ingest: {services} services"));
        runs.push(ingest::run(services, rounds, plan.hz_seconds).await?);
    }
    let headline = runs.last().context("no ingest run")?;
    let ingest = IngestSummary {
        samples_per_s: headline.samples_per_s,
        lost: runs.iter().map(|r| r.lost + r.at_1hz_lost).sum(),
        ratio_vs_raw: headline.samples_per_s / raw.msgs_per_s,
        runs,
    };
    let biggest = ingest
        .runs
        .iter()
        .max_by_key(|r| r.services)
        .context("no ingest run")?;
    let (monitor_services, monitor_bytes) = (biggest.services, biggest.bytes_per_service);

    step("pipeline: monitor + gateway");
    let monitor = util::monitor(&nats, &["--max-services", "100000"]).await?;
    let gateway = util::gateway(
        &nats,
        &["--max-clients", "20000", "--client-buffer", "65536"],
    )
    .await?;
    step("gateway memory per idle client (100-service view)");
    let view_services = 100;
    feed::populate(&nats, &gateway, view_services).await?;
    let gateway_bytes = feed::gateway_memory(&gateway, plan.idle_clients).await?;
    let mut e2e = Vec::new();
    for &clients in &plan.e2e_clients {
        step(&format!("end to end: {clients} clients"));
        e2e.push(feed::e2e(&nats, &gateway, clients, plan.e2e_runs, raw.hop_p99_ms).await?);
    }
    step("fan-out");
    let fanout = feed::fanout(&nats, &gateway, plan.fanout.0, plan.fanout.1).await?;
    step("gateway memory per idle client (large view)");
    let large_view = util::view_size(&gateway).await?;
    let gateway_bytes_large = feed::gateway_memory(&gateway, plan.idle_clients).await?;

    let mut det = Vec::new();
    for signal in [Signal::SIGKILL, Signal::SIGSTOP, Signal::SIGTERM] {
        step(&format!("detection: {signal}"));
        det.push(detection::run(&nats, &gateway, signal, plan.detection_runs).await?);
    }
    drop(monitor);
    let p99 = |label: &str| {
        det.iter()
            .find(|d| d.signal == label)
            .map_or(0.0, |d| d.latency.p99_ms)
    };
    let detection = DetectionSummary {
        timeout_ms: 3_000,
        kill_p99_ms: p99("kill"),
        stop_p99_ms: p99("stop"),
        term_p99_ms: p99("term"),
        runs: det,
    };
    step("alert delivery: notifier vs direct POST");
    let notify = notify::run(plan.notify.0, plan.notify.1).await?;
    let results = Results {
        mode: if args.quick { "quick" } else { "full" },
        machine: Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            nats_server: nats_version(),
        },
        raw,
        ingest,
        e2e,
        fanout,
        detection,
        memory: Memory {
            monitor_bytes_per_service: monitor_bytes,
            monitor_services,
            gateway_bytes_per_client: gateway_bytes,
            gateway_clients: plan.idle_clients,
            gateway_view_services: view_services,
            gateway_bytes_per_client_large_view: gateway_bytes_large,
            gateway_large_view_services: large_view,
        },
        notify,
    };
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&results)?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    print_table(&results);
    eprintln_step(&format!("wrote {}", args.out.display()));
    Ok(())
}

fn nats_version() -> String {
    std::process::Command::new(vitals_testkit::nats_server_bin())
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

#[allow(clippy::print_stdout)]
fn print_json(value: &impl Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

#[allow(clippy::print_stderr)]
fn eprintln_step(s: &str) {
    eprintln!("== {s}");
}

/// The human-readable report (the JSON file has every figure).
#[allow(clippy::print_stdout)]
fn print_table(r: &Results) {
    let row = |what: &str, value: String, vs: String| println!("{what:<44} {value:>20}   {vs}");
    println!(
        "\nVitals benchmark ({} mode, {} CPUs, {})",
        r.mode, r.machine.cpus, r.machine.nats_server
    );
    println!("{:-<100}", "");
    row(
        "raw NATS 1->1 throughput",
        format!("{:.0} msg/s", r.raw.msgs_per_s),
        "baseline".into(),
    );
    row(
        "raw NATS one hop p50 / p99 / p99.9",
        format!(
            "{:.3} / {:.3} / {:.3} ms",
            r.raw.hop_p50_ms, r.raw.hop_p99_ms, r.raw.hop_p999_ms
        ),
        format!("at {} msg/s", r.raw.hop_rate_per_s),
    );
    for i in &r.ingest.runs {
        row(
            &format!("monitor ingest, {} services", i.services),
            format!("{:.0} samples/s", i.samples_per_s),
            format!(
                "{:.2}x raw, lost {} (+{} at 1 Hz), {:.1} ms CPU/1k",
                i.samples_per_s / r.raw.msgs_per_s,
                i.lost,
                i.at_1hz_lost,
                i.cpu_ms_per_1k_samples
            ),
        );
    }
    for e in &r.e2e {
        row(
            &format!("end to end p50 / p99, {} clients", e.clients),
            format!("{:.2} / {:.2} ms", e.p50_ms, e.p99_ms),
            format!(
                "p99 = {:.1}x one hop; in the gateway p50/p99 <= {:.2} / {:.2} ms",
                e.ratio_p99_vs_hop, e.gateway_p50_ms, e.gateway_p99_ms
            ),
        );
    }
    row(
        &format!("fan-out, {} clients", r.fanout.clients),
        format!("{:.0} deliveries/s", r.fanout.deliveries_per_s),
        format!("{} resyncs", r.fanout.resyncs),
    );
    for d in &r.detection.runs {
        row(
            &format!("detection {} -> DOWN at client (p50/p99)", d.signal),
            format!("{:.0} / {:.0} ms", d.latency.p50_ms, d.latency.p99_ms),
            format!(
                "{}/{} detected, timeout {} ms",
                d.detected, d.runs, r.detection.timeout_ms
            ),
        );
    }
    row(
        &format!("monitor memory, {} services", r.memory.monitor_services),
        format!("{:.0} B/service", r.memory.monitor_bytes_per_service),
        String::new(),
    );
    row(
        &format!("gateway memory, {} idle clients", r.memory.gateway_clients),
        format!("{:.0} B/client", r.memory.gateway_bytes_per_client),
        format!("view of {} services", r.memory.gateway_view_services),
    );
    row(
        &format!(
            "gateway memory, {} idle clients, large view",
            r.memory.gateway_clients
        ),
        format!(
            "{:.0} B/client",
            r.memory.gateway_bytes_per_client_large_view
        ),
        format!("view of {} services", r.memory.gateway_large_view_services),
    );
    let n = &r.notify;
    row(
        "alert -> receiver 2xx, direct POST (p50/p99)",
        format!("{:.1} / {:.1} ms", n.baseline.p50_ms, n.baseline.p99_ms),
        format!("baseline, {} events at {}/s", n.events, n.rate_per_s),
    );
    row(
        "alert -> receiver 2xx, group_wait 0 (p50/p99)",
        format!(
            "{:.1} / {:.1} ms",
            n.group_wait_0.p50_ms, n.group_wait_0.p99_ms
        ),
        format!(
            "x{:.1} p50, x{:.1} p99 vs direct",
            n.ratio_p50_vs_baseline_gw0, n.ratio_p99_vs_baseline_gw0
        ),
    );
    row(
        "alert -> receiver 2xx, group_wait 1000 (p50/p99)",
        format!(
            "{:.0} / {:.0} ms",
            n.group_wait_1000.p50_ms, n.group_wait_1000.p99_ms
        ),
        format!(
            "x{:.0} p99 vs direct (the batching wait)",
            n.ratio_p99_vs_baseline_gw1000
        ),
    );
}
