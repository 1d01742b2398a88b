//! Publish a program's own health to Vitals: one MetricSample a second on
//! `metrics.<service>`, and a last one with `"stopping": true` on SIGINT/SIGTERM.
//!
//!     SERVICE=my-app NATS_URL=nats://127.0.0.1:4222 cargo run -p publishing-check
//!
//! Environment: SERVICE, NATS_URL (a comma-separated list is fine), NATS_USER and
//! NATS_PASSWORD (the stack's nats.conf needs a user that may publish metrics.>),
//! HEALTH_URL (where a browser reaches this program's /health).

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::signal::unix::{SignalKind, signal};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let service = env_or("SERVICE", "my-app"); // ^[a-z0-9][a-z0-9_-]{0,62}$
    let health_url = env_or("HEALTH_URL", "http://127.0.0.1:8000/health");
    let servers = env_or("NATS_URL", "nats://127.0.0.1:4222")
        .split(',')
        .map(str::parse)
        .collect::<Result<Vec<async_nats::ServerAddr>, _>>()?;
    // A new instance id per start, so seq starts again at 1 without being refused as a
    // duplicate of the previous run's (std's RandomState is seeded randomly per process).
    let suffix = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let instance = format!("{service}-{:06x}", suffix & 0xff_ffff);
    // Named vitals:<source>:<service>:<instance>, so the monitor sees a crash the moment
    // the connection closes instead of after the heartbeat timeout.
    let mut options =
        async_nats::ConnectOptions::new().name(format!("vitals:app:{service}:{instance}"));
    if let (Ok(user), Ok(password)) = (std::env::var("NATS_USER"), std::env::var("NATS_PASSWORD")) {
        options = options.user_and_password(user, password);
    }
    let client = options.connect(servers).await?;
    // Held for the whole run, so a signal between two samples is not missed.
    let (mut int, mut term) = (
        signal(SignalKind::interrupt())?,
        signal(SignalKind::terminate())?,
    );

    let subject = format!("metrics.{service}");
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut seq = 0u64;
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = int.recv() => true,
            _ = term.recv() => true,
        };
        seq += 1;
        let ts_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
        let mut sample = serde_json::json!({
            "service": service,
            "instance": instance,
            "seq": seq,             // +1 per sample, per instance
            "ts_ms": ts_ms,
            "cpu_pct": 3.5,         // your figures: optional, 0-100
            "mem_pct": 41.0,        // optional, 0-100
            "latency_ms": 12.5,     // e.g. your median request time, >= 0
            "error_rate": 0.0,      // failed / all requests, 0-1
            "health_url": health_url,
        });
        if stopping {
            sample["stopping"] = true.into(); // DOWN at once, reason "stopped"
        }
        client
            .publish(subject.clone(), serde_json::to_vec(&sample)?.into())
            .await?;
        if stopping {
            break;
        }
    }
    // Publishing only queues: wait until the stopping sample has left.
    client.flush().await?;
    Ok(())
}
