//! `bench`: how fast and how lean Vitals is, every figure beside a raw-NATS baseline
//! measured in the same run on the same machine. Starts its own nats-server and the
//! real monitor, gateway and simulators (built beside this binary).

use std::path::PathBuf;

use anyhow::{Context, Result};
use bench::{
    counters, detection, feed, ingest, memory, notify, pipeline, raw, resync, sustain, sys, util,
};
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
    /// Also write the latency-versus-throughput plot here (SVG).
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Only the ingest measurement for this many services (e.g. to profile the monitor
    /// with `perf record -p`), printed as JSON; nothing is written.
    #[arg(long, value_name = "SERVICES")]
    ingest_only: Option<usize>,
    #[arg(long, default_value_t = 60, requires = "ingest_only")]
    rounds: u64,
    #[arg(long, default_value_t = 5, requires = "ingest_only")]
    trials: usize,
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
    /// (services, rounds, trials); the first is the headline.
    ingest: Vec<(usize, u64, usize)>,
    memory_sizes: Vec<usize>,
    memory_secs: u64,
    background: usize,
    sustain: sustain::Plan,
    /// End to end under the full background: (clients, probes, probes a second).
    e2e: Vec<(usize, usize, f64)>,
    /// Many clients: a smaller background (each client is sent every summary).
    e2e_many: (usize, usize, f64),
    many_background: usize,
    fanout: (usize, usize),
    detection_trials: usize,
    detection_batch: usize,
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
                ingest: vec![(1_000, 20, 2), (5_000, 2, 1)],
                memory_sizes: vec![100, 200, 400],
                memory_secs: 3,
                background: 1_000,
                sustain: sustain::Plan {
                    start_rate: 1_000.0,
                    max_rate: 1_000.0,
                    bisections: 0,
                    step_secs: 3.0,
                    curve_pcts: vec![100],
                    probe_rate: 20.0,
                    probes: 40,
                },
                e2e: vec![(10, 20, 20.0)],
                e2e_many: (50, 20, 20.0),
                many_background: 100,
                fanout: (50, 200),
                detection_trials: 4,
                detection_batch: 4,
                idle_clients: 100,
                notify: (40, 20),
            }
        } else {
            Self {
                raw_messages: 1_000_000,
                hop_rate: 2_000,
                hop_secs: 5,
                ingest: vec![
                    (1_000, 60, 5),
                    (10_000, 6, 5),
                    (10_000, 60, 1),
                    (100_000, 10, 1),
                ],
                memory_sizes: vec![2_000, 6_000, 18_000],
                memory_secs: 65,
                background: 10_000,
                sustain: sustain::Plan {
                    start_rate: 10_000.0,
                    max_rate: 640_000.0,
                    bisections: 4,
                    step_secs: 8.0,
                    curve_pcts: vec![50, 75, 100, 125, 150],
                    probe_rate: 50.0,
                    probes: 500,
                },
                e2e: vec![(10, 500, 50.0), (100, 500, 50.0)],
                e2e_many: (1_000, 200, 20.0),
                many_background: 1_000,
                fanout: (1_000, 2_000),
                detection_trials: 200,
                detection_batch: 25,
                idle_clients: 1_000,
                notify: (500, 50),
            }
        }
    }
}

#[derive(Debug, Serialize)]
struct Results {
    mode: &'static str,
    machine: sys::Machine,
    /// Settings that are not what a user gets, per measurement (empty lists: defaults).
    non_default_flags: Vec<(String, Vec<String>)>,
    raw: raw::Raw,
    ingest: IngestSummary,
    memory: memory::Memory,
    sustain: sustain::Sustain,
    e2e: Vec<E2eRun>,
    fanout: feed::Fanout,
    detection: Vec<detection::Detection>,
    gateway_memory: GatewayMemory,
    /// DOWN of a background service (never stopped) during e2e and detection (must be 0).
    false_downs: u64,
    false_down_examples: Vec<String>,
    pipeline_counters: counters::MonitorCounters,
    pipeline_cpu: sys::CpuUse,
    notify: notify::Notify,
    invariants: Vec<Check>,
}

#[derive(Debug, Serialize)]
struct IngestSummary {
    /// The first size's (1,000 services, a burst within the default buffer): its median
    /// trial's drained rate, beside raw NATS with the same subjects and payloads.
    samples_per_s: f64,
    raw_samples_per_s: f64,
    ratio_vs_raw: f64,
    /// Over every burst that fits the default buffer (larger ones overflow by design).
    lost_within_defaults: u64,
    runs: Vec<ingest::Ingest>,
}

#[derive(Debug, Serialize)]
struct E2eRun {
    background_services: usize,
    #[serde(flatten)]
    run: feed::E2e,
}

#[derive(Debug, Serialize)]
struct GatewayMemory {
    bytes_per_client: f64,
    clients: usize,
    view_services: usize,
}

/// One invariant of the run: counts, never timings.
#[derive(Debug, Serialize)]
struct Check {
    what: String,
    expected: u64,
    got: u64,
    ok: bool,
}

fn check(list: &mut Vec<Check>, what: String, expected: u64, got: u64) {
    list.push(Check {
        ok: expected == got,
        what,
        expected,
        got,
    });
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(services) = args.ingest_only {
        let run = ingest::run(services, args.rounds, args.trials).await?;
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
    let machine = sys::Machine::read();
    let mut flags = Vec::new();
    let mut inv = Vec::new();

    step("baseline: raw NATS pub/sub");
    let nats = NatsServer::start_with_accounts()?;
    let raw = raw::run(&nats, plan.raw_messages, plan.hop_rate, plan.hop_secs).await?;
    drop(nats);

    let mut runs = Vec::new();
    let mut lost_within_defaults = 0;
    for &(services, rounds, trials) in &plan.ingest {
        step(&format!(
            "ingest burst: {services} services x {rounds}, {trials} trials beside raw NATS"
        ));
        let r = ingest::run(services, rounds, trials).await?;
        let what = format!("ingest {services} x {rounds}");
        flags.push((what.clone(), r.median.flags.clone()));
        // A burst larger than the monitor's default buffer overflows it whenever the
        // monitor is slower than the sender: a figure then, not a check.
        if r.median.samples <= ingest::DEFAULT_PENDING_LIMIT {
            lost_within_defaults += r.lost_in_all_trials;
            let m = &r.median;
            check(
                &mut inv,
                format!("{what}: samples accepted"),
                m.samples,
                m.counters.samples,
            );
            check(
                &mut inv,
                format!("{what}: status changes out"),
                services as u64,
                m.status_changes,
            );
            check(
                &mut inv,
                format!("{what}: lost, refused or dropped"),
                0,
                m.counters.losses(),
            );
            check(
                &mut inv,
                format!("{what}: lost in any trial"),
                0,
                r.lost_in_all_trials,
            );
        }
        runs.push(r);
    }
    let headline = runs.first().context("no ingest run")?;
    let ingest = IngestSummary {
        samples_per_s: headline.median.samples_per_s,
        raw_samples_per_s: headline.raw.samples_per_s,
        ratio_vs_raw: headline.ratio_vs_raw,
        lost_within_defaults,
        runs,
    };

    step(&format!(
        "monitor memory: {:?} services at 1 Hz for {} s",
        plan.memory_sizes, plan.memory_secs
    ));
    let memory = memory::run(&plan.memory_sizes, plan.memory_secs).await?;
    for s in &memory.sizes {
        check(
            &mut inv,
            format!("memory {}: lost", s.services),
            0,
            s.losses,
        );
    }

    step(&format!(
        "pipeline: nats (accounts) + monitor + gateway, defaults, {} background services at 1 Hz",
        plan.background
    ));
    let mut p = pipeline::Pipeline::start(plan.background).await?;
    flags.push((
        "pipeline (sustain, curve, e2e, detection)".into(),
        Vec::new(),
    ));
    step("highest zero-loss sustained rate, then latency at 50-150 % of it");
    let sustain = sustain::run(&p, &plan.sustain, eprintln_step).await?;
    // Above the highest rate samples are lost and services time out: that is what the
    // search looks for. At or below it none may.
    let max = sustain.max_zero_loss_per_s;
    let downs_at_max = sustain
        .steps
        .iter()
        .filter(|s| s.rate_per_s <= max)
        .map(|s| s.downs)
        .chain(
            sustain
                .curve
                .iter()
                .filter(|c| c.pct_of_max <= 100)
                .map(|c| c.step.downs),
        )
        .sum();
    check(
        &mut inv,
        "sustain: false DOWN at or below the highest rate".into(),
        0,
        downs_at_max,
    );
    // From here on the background alone: e2e and detection (the search's overloads have
    // their own counts per step).
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let downs_after_sustain = p.downs.downs();
    let pipeline_cpu = p.cpu_meter();
    let pipeline_before = counters::MonitorCounters::read(&p.monitor).await?;
    for c in sustain.curve.iter().filter(|c| c.pct_of_max <= 100) {
        let pr = &c.probes;
        check(
            &mut inv,
            format!("curve {} %: probes at the monitor", c.pct_of_max),
            pr.probes as u64,
            pr.probes as u64 - pr.monitor_missing,
        );
        check(
            &mut inv,
            format!("curve {} %: deliveries at the client", c.pct_of_max),
            (pr.clients * pr.probes) as u64,
            pr.client_deliveries,
        );
        check(
            &mut inv,
            format!("curve {} %: lost, refused or dropped", c.pct_of_max),
            0,
            c.step.counters.losses(),
        );
    }
    if args.quick {
        for s in &sustain.steps {
            check(
                &mut inv,
                format!("sustain {:.0}/s: lost, refused or dropped", s.rate_per_s),
                0,
                s.counters.losses(),
            );
            check(
                &mut inv,
                format!("sustain {:.0}/s: samples accepted", s.rate_per_s),
                s.expected_samples,
                s.expected_samples.min(s.counters.samples),
            );
        }
    }
    let mut e2e = Vec::new();
    for &(clients, probes, rate) in &plan.e2e {
        step(&format!(
            "end to end: {clients} clients, {probes} probes at {rate}/s"
        ));
        let r = feed::e2e(&p.nats, &p.gateway, clients, probes, rate, raw.hop_p99_ms).await?;
        check(
            &mut inv,
            format!("e2e {clients}: deliveries = clients x probes"),
            (clients * probes) as u64,
            r.probes.client_deliveries,
        );
        check(
            &mut inv,
            format!("e2e {clients}: resyncs"),
            0,
            r.probes.resyncs,
        );
        e2e.push(E2eRun {
            background_services: plan.background,
            run: r,
        });
    }
    let mut det = Vec::new();
    for signal in [Signal::SIGKILL, Signal::SIGSTOP, Signal::SIGTERM] {
        step(&format!(
            "detection: {signal}, {} trials in batches of {}",
            plan.detection_trials, plan.detection_batch
        ));
        let d = detection::run(&p, signal, plan.detection_trials, plan.detection_batch).await?;
        check(
            &mut inv,
            format!("detection {}: DOWN at the monitor", d.signal),
            d.trials as u64,
            d.detected_at_monitor,
        );
        check(
            &mut inv,
            format!("detection {}: DOWN at the client", d.signal),
            d.trials as u64,
            d.detected_at_client,
        );
        det.push(d);
    }
    let false_downs = p.downs.downs() - downs_after_sustain;
    let false_down_examples = p.downs.examples();
    let pipeline_counters = counters::MonitorCounters::read(&p.monitor)
        .await?
        .since(&pipeline_before);
    let pipeline_cpu = pipeline_cpu.finish();
    check(
        &mut inv,
        "e2e and detection: false DOWN of a background service".into(),
        0,
        false_downs,
    );
    p.stop_background().await?;
    drop(p);

    step(&format!(
        "many clients: {} background services, {} clients",
        plan.many_background, plan.e2e_many.0
    ));
    let small = pipeline::Pipeline::start(plan.many_background).await?;
    let view = util::view_size(&small.gateway).await?;
    let gateway_bytes = feed::gateway_memory(&small.gateway, plan.idle_clients).await?;
    let (clients, probes, rate) = plan.e2e_many;
    let r = feed::e2e(
        &small.nats,
        &small.gateway,
        clients,
        probes,
        rate,
        raw.hop_p99_ms,
    )
    .await?;
    check(
        &mut inv,
        format!("e2e {clients}: deliveries = clients x probes"),
        (clients * probes) as u64,
        r.probes.client_deliveries,
    );
    check(
        &mut inv,
        format!("e2e {clients}: resyncs"),
        0,
        r.probes.resyncs,
    );
    e2e.push(E2eRun {
        background_services: plan.many_background,
        run: r,
    });
    step("fan-out");
    let fanout = feed::fanout(&small.nats, &small.gateway, plan.fanout.0, plan.fanout.1).await?;
    check(
        &mut inv,
        "fan-out: deliveries = clients x messages".into(),
        (plan.fanout.0 * plan.fanout.1) as u64,
        fanout.deliveries,
    );
    check(&mut inv, "fan-out: resyncs".into(), 0, fanout.resyncs);
    drop(small);

    step("alert delivery: notifier vs direct POST");
    let notify = notify::run(plan.notify.0, plan.notify.1).await?;
    check(
        &mut inv,
        "notify: alerts lost".into(),
        0,
        notify.lost as u64,
    );
    let results = Results {
        mode: if args.quick { "quick" } else { "full" },
        machine,
        non_default_flags: flags,
        raw,
        ingest,
        memory,
        sustain,
        e2e,
        fanout,
        detection: det,
        gateway_memory: GatewayMemory {
            bytes_per_client: gateway_bytes,
            clients: plan.idle_clients,
            view_services: view,
        },
        false_downs,
        false_down_examples,
        pipeline_counters,
        pipeline_cpu,
        notify,
        invariants: inv,
    };
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&results)?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    if let Some(svg) = &args.svg {
        std::fs::write(svg, sustain::svg(&results.sustain))
            .with_context(|| format!("writing {}", svg.display()))?;
        eprintln_step(&format!("wrote {}", svg.display()));
    }
    print_table(&results);
    eprintln_step(&format!("wrote {}", args.out.display()));
    let failed = results.invariants.iter().filter(|c| !c.ok).count();
    // The full run reports what failed beside its figures (an overload is allowed to
    // lose: the search looks for where); the quick run is a check and fails.
    anyhow::ensure!(
        failed == 0 || !args.quick,
        "{failed} invariants failed (see the table)"
    );
    Ok(())
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
    let row = |what: &str, value: String, vs: String| println!("{what:<46} {value:>24}   {vs}");
    let m = &r.machine;
    println!(
        "\nVitals benchmark ({} mode) at {} ({}), {}, {} x {}, {}; load at start {}",
        r.mode,
        &m.git_revision.get(..10).unwrap_or(""),
        if m.git_dirty {
            "dirty tree"
        } else {
            "clean tree"
        },
        m.rustc,
        m.cores,
        m.cpu_model,
        m.nats_server,
        m.loadavg_at_start
    );
    println!("Every part runs with its defaults unless a 'flags:' note says otherwise.");
    println!("{:-<110}", "");
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
        format!("open loop at {} msg/s", r.raw.hop_rate_per_s),
    );
    for run in &r.ingest.runs {
        let i = &run.median;
        row(
            &format!(
                "ingest burst, {} services x {} (drained)",
                run.services,
                i.samples / run.services.max(1) as u64
            ),
            format!("{:.0} samples/s", i.samples_per_s),
            format!(
                "{:.2}x raw NATS same subjects ({:.0}/s; median of {}), lost {}, {:.1} ms CPU/1k; {}{}",
                run.ratio_vs_raw,
                run.raw.samples_per_s,
                run.trials.len(),
                i.lost,
                i.cpu_ms_per_1k_samples,
                i.cpu.brief(),
                if i.flags.is_empty() {
                    String::new()
                } else {
                    format!("; flags: {}", i.flags.join(" "))
                }
            ),
        );
    }
    let mem = &r.memory;
    row(
        "monitor memory per service (slope)",
        format!("{:.0} B/service", mem.bytes_per_service),
        format!(
            "fit over {} at 1 Hz for {} s; intercept {:.1} MB",
            mem.sizes
                .iter()
                .map(|s| format!("{}: {:.1} MB", s.services, s.rss_bytes as f64 / 1e6))
                .collect::<Vec<_>>()
                .join(", "),
            mem.secs_at_1hz,
            mem.intercept_bytes / 1e6
        ),
    );
    let s = &r.sustain;
    let at_max = s
        .steps
        .iter()
        .find(|x| x.rate_per_s == s.max_zero_loss_per_s);
    row(
        "highest zero-loss sustained rate",
        format!("{:.0} samples/s", s.max_zero_loss_total_per_s),
        format!(
            "{:.0} load + {:.0} background{}; {}",
            s.max_zero_loss_per_s,
            s.background_per_s,
            if s.sender_limited {
                " (the bench could not send faster)"
            } else {
                ""
            },
            at_max.map_or_else(String::new, |x| x.cpu.brief())
        ),
    );
    for c in &s.curve {
        let pr = &c.probes;
        row(
            &format!(
                "  at {:>3} % ({:.0}/s): new service -> HEALTHY",
                c.pct_of_max, c.step.total_per_s
            ),
            format!(
                "{:.1} / {:.1} / {:.1} ms",
                pr.at_monitor.p50_ms, pr.at_monitor.p99_ms, pr.at_monitor.max_ms
            ),
            format!(
                "p50/p99/max at the monitor; ws p99 {:.1} ms; {}; {}",
                pr.at_clients.p99_ms,
                if c.step.zero_loss {
                    "zero loss".to_owned()
                } else {
                    c.step.why_not.clone()
                },
                c.step.cpu.brief()
            ),
        );
    }
    for e in &r.e2e {
        let x = &e.run;
        row(
            &format!("end to end p50 / p99, {} clients", x.clients),
            format!("{:.2} / {:.2} ms", x.p50_ms, x.p99_ms),
            format!(
                "{} bg services; {} / {} delivered, {} resyncs; gateway share p99 <= {:.2} ms",
                e.background_services,
                x.probes.client_deliveries,
                x.clients * x.runs,
                x.probes.resyncs,
                x.gateway_p99_ms
            ),
        );
    }
    row(
        &format!("fan-out, {} clients", r.fanout.clients),
        format!("{:.0} deliveries/s", r.fanout.deliveries_per_s),
        format!(
            "{} / {} delivered, {} resyncs",
            r.fanout.deliveries,
            r.fanout.clients * r.fanout.messages,
            r.fanout.resyncs
        ),
    );
    for d in &r.detection {
        row(
            &format!("detection {} -> DOWN at the monitor", d.signal),
            format!(
                "{:.0} / {:.0} / {:.0} ms",
                d.at_monitor.p50_ms, d.at_monitor.p99_ms, d.at_monitor.max_ms
            ),
            format!(
                "p50/p99/max, {}/{}; bound {}..{} ms ({})",
                d.detected_at_monitor, d.trials, d.bound_lo_ms, d.bound_hi_ms, d.bound
            ),
        );
        row(
            &format!("detection {} -> DOWN at a WebSocket", d.signal),
            format!(
                "{:.0} / {:.0} / {:.0} ms",
                d.at_client.p50_ms, d.at_client.p99_ms, d.at_client.max_ms
            ),
            format!(
                "{}/{}; reasons {:?}; {}",
                d.detected_at_client,
                d.trials,
                d.reasons,
                d.cpu.brief()
            ),
        );
    }
    row(
        &format!("gateway memory, {} idle clients", r.gateway_memory.clients),
        format!("{:.0} B/client", r.gateway_memory.bytes_per_client),
        format!("view of {} services", r.gateway_memory.view_services),
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
            "x{:.1} p50, x{:.1} p99 vs direct; flags: group_wait_ms = 0",
            n.ratio_p50_vs_baseline_gw0, n.ratio_p99_vs_baseline_gw0
        ),
    );
    row(
        "alert -> receiver 2xx, group_wait 1000 (p50/p99)",
        format!(
            "{:.0} / {:.0} ms",
            n.group_wait_1000.p50_ms, n.group_wait_1000.p99_ms
        ),
        "the default; the batching wait".into(),
    );
    let c = &r.pipeline_counters;
    row(
        "e2e + detection: false DOWN, losses",
        format!("{} / {}", r.false_downs, c.losses()),
        format!(
            "publish drops {}, KV write errors {}, slow-consumer {}, gaps {}; {}",
            c.publish_drops,
            c.kv_write_errors,
            c.slow_consumer_drops,
            c.samples_missed,
            r.pipeline_cpu.brief()
        ),
    );
    for e in &r.false_down_examples {
        println!("  false DOWN: {e}");
    }
    let failed: Vec<&Check> = r.invariants.iter().filter(|c| !c.ok).collect();
    println!(
        "invariants: {} of {} hold",
        r.invariants.len() - failed.len(),
        r.invariants.len()
    );
    for f in failed {
        println!(
            "  FAILED {}: expected {}, got {}",
            f.what, f.expected, f.got
        );
    }
}
