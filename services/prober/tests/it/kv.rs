//! Targets added, changed and removed through KV while the prober runs; bad values
//! refused by reason while the good ones keep going; a bad targets file refused at start.

use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream;
use futures::StreamExt;
use vitals_testkit::{ChildProc, NatsServer, SOON, collect_for, wait_until};

use crate::helpers::{Server, error_of, monitor, prober, subscribe, targets_file, until};

/// How long "nothing more arrived" is watched for, once the event that ends it was seen.
const QUIET: Duration = Duration::from_millis(800);

#[tokio::test]
async fn targets_follow_kv_live_and_bad_values_are_refused() -> Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let _monitor = monitor(&nats, &[]).await?;
    let server = Server::http().await?;
    let steady_url = server.url("http", "/steady");
    let (_dir, file) = targets_file(&format!(
        "[[target]]\nservice = \"steady\"\nkind = \"http\"\nurl = \"{steady_url}\"\ninterval_ms = 500\n"
    ))?;
    let prober = prober(&nats, &["--targets", &file]).await?;
    let js = jetstream::new(client.clone());
    let kv = wait_until(SOON, || async {
        js.get_key_value("vitals_targets").await.ok()
    })
    .await
    .context("the prober did not create KV vitals_targets")?;
    // The file was loaded into the bucket: one live list.
    let stored = wait_until(SOON, || async { kv.get("steady").await.ok().flatten() })
        .await
        .context("the file's target is not in KV")?;
    let stored: serde_json::Value = serde_json::from_slice(&stored)?;
    assert_eq!(stored["url"], steady_url.as_str());

    let mut added = subscribe(&client, "metrics.added".into()).await?;
    let mut added_status = subscribe(&client, "health.status.added".into()).await?;
    let mut steady = subscribe(&client, "metrics.steady".into()).await?;

    // Added.
    let url = server.url("http", "/added");
    kv.put(
        "added",
        format!(r#"{{"kind":"http","url":"{url}","interval_ms":200}}"#).into(),
    )
    .await?;
    let first = until(&mut added, "a sample of the added target", SOON, |s| {
        s["probe"]["ok"] == true
    })
    .await?;
    assert_eq!(first[0]["seq"], 1);
    until(&mut added_status, "HEALTHY", SOON, |c| {
        c["status"] == "HEALTHY"
    })
    .await?;

    // Changed: the same server, now expected to answer 204, so its 200 fails. The
    // service's seq goes on (the monitor would refuse a restart at 1 as duplicates).
    kv.put(
        "added",
        format!(r#"{{"kind":"http","url":"{url}","interval_ms":200,"expect_status":204}}"#).into(),
    )
    .await?;
    let changed = until(&mut added, "the changed target's failure", SOON, |s| {
        error_of(s) == "status 200"
    })
    .await?;
    let seqs: Vec<u64> = first
        .iter()
        .chain(&changed)
        .filter_map(|s| s["seq"].as_u64())
        .collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");

    // Removed: the service is retired, and no sample follows.
    kv.delete("added").await?;
    let retired = until(&mut added_status, "RETIRED", SOON, |c| {
        c["status"] == "RETIRED"
    })
    .await?;
    assert_eq!(
        retired.last().cloned().unwrap_or_default()["service"],
        "added"
    );
    while let Ok(Some(_)) = tokio::time::timeout(Duration::ZERO, added.next()).await {}
    let after = collect_for(&mut added, QUIET).await;
    assert!(after.is_empty(), "{} samples after the retire", after.len());
    prober
        .wait_counter(
            r#"vitals_prober_retire_requests_total{outcome="retired"}"#,
            1.0,
        )
        .await?;

    // Refused, each for its reason; `steady` gets a bad value too and keeps its last good one.
    let bad: [(&str, &str, &str); 5] = [
        ("junk", "{not json", "invalid_json"),
        (
            "extra",
            r#"{"kind":"tcp","address":"x:1","frob":1}"#,
            "unknown_field",
        ),
        ("ftp", r#"{"kind":"http","url":"ftp://x/"}"#, "invalid"),
        ("Upper", r#"{"kind":"tcp","address":"x:1"}"#, "bad_name"),
        (
            "steady",
            r#"{"kind":"http","url":"http://x","timeout_ms":5000}"#,
            "invalid",
        ),
    ];
    for (key, value, _) in bad {
        kv.put(key, value.to_owned().into()).await?;
    }
    for (reason, n) in [
        ("invalid_json", 1.0),
        ("unknown_field", 1.0),
        ("invalid", 2.0),
        ("bad_name", 1.0),
    ] {
        prober
            .wait_counter(
                &format!(r#"vitals_prober_targets_refused_total{{reason="{reason}"}}"#),
                n,
            )
            .await?;
    }
    prober.proc.wait_for_log("target refused", SOON).await?;
    // `steady` still probes its URL, with no gap in its seq.
    let before = until(&mut steady, "steady still probed", SOON, |_| true).await?;
    let last = before.last().cloned().unwrap_or_default()["seq"]
        .as_u64()
        .unwrap_or(0);
    let next = until(&mut steady, "the next steady sample", SOON, |_| true).await?;
    let s = next.last().cloned().unwrap_or_default();
    assert_eq!(s["seq"].as_u64(), Some(last + 1));
    assert_eq!(s["probe"]["ok"], true, "{s}");
    assert_eq!(s["health_url"], steady_url.as_str());
    let text = prober.metrics().await?;
    assert_eq!(
        vitals_testkit::metric_sum(&text, "vitals_prober_targets_active"),
        1.0,
        "{text}"
    );
    Ok(())
}

/// A targets file with one fault: exit 2, the target and the reason on stderr.
#[tokio::test]
async fn a_bad_targets_file_is_refused_at_start() -> Result<()> {
    let ok = "[[target]]\nservice = \"fine\"\nkind = \"tcp\"\naddress = \"127.0.0.1:1\"\n";
    let cases = [
        (
            format!(
                "{ok}[[target]]\nservice = \"slow\"\nkind = \"http\"\nurl = \"http://x/\"\ninterval_ms = 1000\ntimeout_ms = 1000\n"
            ),
            r#"target 2 (service "slow"): timeout_ms=1000 must be less than interval_ms=1000"#,
        ),
        (
            format!(
                "{ok}[[target]]\nservice = \"typo\"\nkind = \"tcp\"\naddress = \"x:1\"\ninterval = 5\n"
            ),
            r#"target 2 (service "typo"): unknown field `interval`"#,
        ),
        (
            format!("{ok}{ok}"),
            r#"service "fine" is given twice (targets 1 and 2)"#,
        ),
        (
            "[[target]]\nservice = \"web\"\nkind = \"http\"\nurl = \"http://user:pw@x/\"\n"
                .to_owned(),
            r#"target 1 (service "web"): url: user info is not allowed"#,
        ),
    ];
    for (text, why) in cases {
        let (_dir, file) = targets_file(&text)?;
        let mut p = ChildProc::spawn(
            "prober",
            &[
                "--targets",
                &file,
                "--http-addr",
                "127.0.0.1:0",
                "--nats-url",
                "nats://127.0.0.1:1",
            ],
            &[],
        )?;
        let status = p.wait_exit(SOON).await?;
        assert_eq!(status.code(), Some(2), "{why}: {}", p.logs());
        let logs = p.logs();
        assert!(logs.contains(why), "{why:?} not in:\n{logs}");
        assert!(logs.contains("targets.toml"), "the file is named:\n{logs}");
    }
    Ok(())
}

/// NATS restarts (JetStream kept on disk): probing goes on, and KV changes made after the
/// restart still take effect, including a removal made while the prober was cut off.
#[tokio::test]
async fn the_watch_survives_a_nats_restart() -> Result<()> {
    let mut nats = NatsServer::start()?;
    let server = Server::http().await?;
    let url = server.url("http", "/health");
    let prober = prober(&nats, &[]).await?;
    let put = |client: async_nats::Client, key: &'static str| {
        let url = url.clone();
        async move {
            let js = jetstream::new(client);
            let kv = wait_until(SOON, || async {
                js.get_key_value("vitals_targets").await.ok()
            })
            .await
            .context("no KV vitals_targets")?;
            kv.put(
                key,
                format!(r#"{{"kind":"http","url":"{url}","interval_ms":500}}"#).into(),
            )
            .await?;
            anyhow::Ok(kv)
        }
    };
    let client = nats.client().await?;
    put(client.clone(), "before").await?;
    put(client.clone(), "doomed").await?;
    prober
        .wait_counter("vitals_prober_targets_active", 2.0)
        .await?;
    drop(client);

    nats.kill();
    // While the prober has no NATS, a removal cannot reach it; it is made right after the
    // restart, before the prober's watch is back, or after: either way it must apply.
    nats.restart()?;
    let client = nats.client().await?;
    let kv = put(client.clone(), "after").await?;
    kv.delete("doomed").await?;
    let mut samples = subscribe(&client, "metrics.*".into()).await?;
    for service in ["before", "after"] {
        until(&mut samples, service, SOON, |s| s["service"] == service).await?;
    }
    let active = wait_until(SOON, || async {
        let text = prober.metrics().await.ok()?;
        let (n, ready) = (
            vitals_testkit::metric_sum(&text, "vitals_prober_targets_active"),
            vitals_testkit::metric_sum(&text, "vitals_prober_kv_ready"),
        );
        (n == 2.0 && ready == 1.0).then_some(n)
    })
    .await;
    assert_eq!(active, Some(2.0), "{}", prober.metrics().await?);
    Ok(())
}
