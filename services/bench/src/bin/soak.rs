//! `soak`: random kills, stops and restarts of every part under load, then a check of
//! the invariants over everything the monitor published (read back from the
//! HEALTH_EVENTS stream, which survives every restart):
//!
//! 1. every DOWN has a cause: the service was disturbed around that time;
//! 2. every alert that fired resolved exactly once, and none fires at the end;
//! 3. at the end every service is HEALTHY and the gateway agrees with the monitor;
//! 4. whenever NATS was killed, the gateway told its WebSocket clients.

use std::collections::{BTreeMap, HashMap};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bench::util::{Part, gateway, monitor};
use clap::Parser;
use futures::StreamExt;
use nix::sys::signal::Signal;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use vitals_protocol::subjects;
use vitals_testkit::{ChildProc, NatsServer};

#[derive(Debug, Parser)]
#[command(
    name = "soak",
    about = "Chaos soak of the whole Vitals pipeline with an invariant checker"
)]
struct Args {
    #[arg(long, default_value_t = 3.0)]
    minutes: f64,
    /// Services in the background load process (never disturbed: they must never go DOWN).
    #[arg(long, default_value_t = 100)]
    load: usize,
    #[arg(long)]
    seed: Option<u64>,
}

const NAMED: [&str; 4] = ["auth", "billing", "notifications", "analytics"];

struct Stack {
    nats: NatsServer,
    monitor: Option<Part>,
    gateway: Option<Part>,
    gateway_addr: String,
    sims: HashMap<&'static str, ChildProc>,
}

impl Stack {
    async fn start_monitor(&mut self) -> Result<()> {
        self.monitor = Some(monitor(&self.nats, &[]).await?);
        Ok(())
    }

    async fn start_gateway(&mut self) -> Result<()> {
        self.gateway = Some(gateway(&self.nats, &["--http-addr", &self.gateway_addr]).await?);
        Ok(())
    }

    fn start_sim(&mut self, name: &'static str) -> Result<()> {
        let url = self.nats.url();
        let proc = ChildProc::spawn(
            "simulator",
            &[
                "--service",
                name,
                "--nats-url",
                &url,
                "--http-addr",
                "127.0.0.1:0",
            ],
            &[("RUST_LOG", "warn,simulator=info")],
        )?;
        self.sims.insert(name, proc);
        Ok(())
    }
}

/// When a service was disturbed: from the signal until it was back (restart or SIGCONT).
#[derive(Debug, Clone)]
struct Disturbance {
    service: String,
    from_ms: u64,
    until_ms: u64,
}

#[derive(Default)]
struct Log {
    actions: BTreeMap<&'static str, u32>,
    disturbances: Vec<Disturbance>,
    nats_kills: Vec<u64>,
}

fn now_ms() -> u64 {
    vitals_runtime::epoch_ms()
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(rand::random);
    let mut rng = StdRng::seed_from_u64(seed);
    eprintln!("== soak for {} min, seed {seed}", args.minutes);

    let nats = NatsServer::start()?;
    let mut stack = Stack {
        gateway_addr: format!("127.0.0.1:{}", free_port()?),
        nats,
        monitor: None,
        gateway: None,
        sims: HashMap::new(),
    };
    stack.start_monitor().await?;
    stack.start_gateway().await?;
    for name in NAMED {
        stack.start_sim(name)?;
    }
    let url = stack.nats.url();
    let load_count = args.load.to_string();
    let _load = ChildProc::spawn(
        "simulator",
        &[
            "--count",
            &load_count,
            "--prefix",
            "load",
            "--nats-url",
            &url,
            "--http-addr",
            "127.0.0.1:0",
        ],
        &[("RUST_LOG", "warn")],
    )?;
    let ws_events = Arc::new(Mutex::new(Vec::new()));
    let watcher = tokio::spawn(watch_gateway(
        format!("ws://{}/ws", stack.gateway_addr),
        ws_events.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(5)).await;

    let mut log = Log::default();
    let end = Instant::now() + Duration::from_secs_f64(args.minutes * 60.0);
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(rng.random_range(2_000..6_000))).await;
        let hold = Duration::from_millis(rng.random_range(1_500..6_000));
        let name = NAMED[rng.random_range(0..NAMED.len())];
        let action = match rng.random_range(0..10) {
            0..=2 => "sim-kill",
            3 => "sim-stop",
            4 => "sim-term",
            5 => "monitor-kill",
            6 => "gateway-kill",
            7 => "nats-kill",
            8 => "nats-stop",
            _ => "monitor-stop",
        };
        *log.actions.entry(action).or_default() += 1;
        let from_ms = now_ms();
        match action {
            "sim-kill" | "sim-term" => {
                if let Some(mut s) = stack.sims.remove(name) {
                    if action == "sim-kill" {
                        s.kill();
                    } else {
                        s.signal(Signal::SIGTERM)?;
                        let _ = s.wait_exit(Duration::from_secs(5)).await;
                    }
                }
                tokio::time::sleep(hold).await;
                stack.start_sim(name)?;
            }
            "sim-stop" => {
                if let Some(s) = stack.sims.get(name) {
                    s.signal(Signal::SIGSTOP)?;
                    tokio::time::sleep(hold).await;
                    s.signal(Signal::SIGCONT)?;
                }
            }
            "monitor-kill" => {
                stack.monitor = None; // ChildProc drop: SIGKILL
                tokio::time::sleep(hold.min(Duration::from_secs(3))).await;
                stack.start_monitor().await?;
            }
            "monitor-stop" => {
                if let Some(m) = &stack.monitor {
                    m.proc.signal(Signal::SIGSTOP)?;
                    tokio::time::sleep(hold).await;
                    m.proc.signal(Signal::SIGCONT)?;
                }
            }
            "gateway-kill" => {
                stack.gateway = None;
                tokio::time::sleep(hold.min(Duration::from_secs(3))).await;
                stack.start_gateway().await?;
            }
            "nats-kill" => {
                log.nats_kills.push(from_ms);
                stack.nats.kill();
                tokio::time::sleep(hold.min(Duration::from_secs(3))).await;
                stack.nats.restart()?;
            }
            _ => {
                stack.nats.pause()?;
                tokio::time::sleep(hold.min(Duration::from_secs(5))).await;
                stack.nats.resume()?;
            }
        }
        if action.starts_with("sim-") {
            log.disturbances.push(Disturbance {
                service: name.to_owned(),
                from_ms,
                until_ms: now_ms(),
            });
        }
        eprintln!(
            "   {action:<13} {}",
            if action.starts_with("sim-") { name } else { "" }
        );
    }

    eprintln!("== settling");
    tokio::time::sleep(Duration::from_secs(20)).await;
    watcher.abort();
    let seen = ws_events.lock().map(|v| v.clone()).unwrap_or_default();
    let violations = check(&stack, &log, args.load, &seen).await?;

    println!("\nsoak summary (seed {seed})");
    for (action, n) in &log.actions {
        println!("  {action:<14} {n}");
    }
    if violations.is_empty() {
        println!("invariants: all held");
        Ok(())
    } else {
        for v in &violations {
            println!("VIOLATION: {v}");
        }
        anyhow::bail!("{} invariant violations", violations.len())
    }
}

/// What a WebSocket client learns about the feed: (receive time, "gateway" or "closed",
/// nats_connected).
type FeedEvents = Arc<Mutex<Vec<(u64, String, Option<bool>)>>>;

async fn watch_gateway(url: String, seen: FeedEvents) {
    let push = |e: (u64, String, Option<bool>)| {
        if let Ok(mut v) = seen.lock() {
            v.push(e);
        }
    };
    loop {
        if let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url.as_str()).await {
            while let Some(Ok(msg)) = ws.next().await {
                if let Message::Text(t) = msg
                    && let Ok(v) = serde_json::from_str::<Value>(&t)
                {
                    let kind = v["type"].as_str().unwrap_or("").to_owned();
                    let up = v["data"]["nats_connected"].as_bool();
                    if kind == "gateway" {
                        push((now_ms(), kind, up));
                    }
                }
            }
            push((now_ms(), "closed".to_owned(), None));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn check(
    stack: &Stack,
    log: &Log,
    load: usize,
    feed: &[(u64, String, Option<bool>)],
) -> Result<Vec<String>> {
    let mut violations = Vec::new();
    let events = read_history(&stack.nats).await?;

    // 1. Every DOWN has a cause.
    let allowance_ms = 6_000;
    for (subject, v) in &events {
        if !subject.starts_with("health.status.") || v["status"] != "DOWN" {
            continue;
        }
        let service = v["service"].as_str().unwrap_or("");
        let at = v["at_ms"].as_u64().unwrap_or(0);
        let caused = log.disturbances.iter().any(|d| {
            d.service == service && at + 2_000 >= d.from_ms && at <= d.until_ms + allowance_ms
        });
        if !caused {
            violations.push(format!(
                "DOWN without a cause: {service} at {at} ({:?})",
                v["reasons"]
            ));
        }
    }

    // 2. Every firing resolved exactly once.
    let mut alerts: HashMap<String, (u32, u32)> = HashMap::new();
    for (subject, v) in &events {
        if subject.starts_with("health.alert.") {
            let e = alerts
                .entry(v["id"].as_str().unwrap_or("").to_owned())
                .or_default();
            if v["state"] == "firing" {
                e.0 += 1
            } else {
                e.1 += 1
            }
        }
    }
    for (id, (fired, resolved)) in &alerts {
        if *fired != 1 || *resolved != 1 {
            violations.push(format!("alert {id}: fired {fired}, resolved {resolved}"));
        }
    }

    // 3. Everyone HEALTHY at the end, and the gateway agrees with the monitor.
    let get = |addr: String| async move {
        reqwest::get(format!("http://{addr}/api/status"))
            .await?
            .json::<Value>()
            .await
    };
    let statuses = |v: &Value| -> BTreeMap<String, String> {
        v["services"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                (
                    s["service"].as_str().unwrap_or("").to_owned(),
                    s["status"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    };
    let m = stack.monitor.as_ref().context("monitor")?;
    let theirs = statuses(&get(m.http.to_string()).await?);
    let mine = statuses(&get(stack.gateway_addr.clone()).await?);
    let unhealthy: Vec<_> = theirs.iter().filter(|(_, s)| *s != "HEALTHY").collect();
    if !unhealthy.is_empty() {
        violations.push(format!("not HEALTHY at the end: {unhealthy:?}"));
    }
    if theirs.len() != load + NAMED.len() {
        violations.push(format!(
            "monitor tracks {} services, expected {}",
            theirs.len(),
            load + NAMED.len()
        ));
    }
    if mine != theirs {
        violations.push("the gateway's view differs from the monitor's".to_owned());
    }
    // 4. Whenever NATS died, the WebSocket client was told (or its connection closed).
    for &killed in &log.nats_kills {
        let told = feed.iter().any(|(at, kind, up)| {
            *at >= killed && *at <= killed + 10_000 && (kind == "closed" || *up == Some(false))
        });
        if !told {
            violations.push(format!(
                "NATS killed at {killed}: the gateway's clients were not told"
            ));
        }
    }
    Ok(violations)
}

/// Every event in HEALTH_EVENTS, oldest first.
async fn read_history(nats: &NatsServer) -> Result<Vec<(String, Value)>> {
    let client = nats.client().await?;
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream(subjects::EVENTS_STREAM).await?;
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await?;
    let mut messages = consumer.messages().await?;
    let mut out = Vec::new();
    while let Ok(Some(Ok(msg))) =
        tokio::time::timeout(Duration::from_secs(2), messages.next()).await
    {
        let pending = msg.info().map(|i| i.pending).unwrap_or(0);
        if let Ok(v) = serde_json::from_slice(&msg.payload) {
            out.push((msg.subject.to_string(), v));
        }
        if pending == 0 {
            break;
        }
    }
    Ok(out)
}
