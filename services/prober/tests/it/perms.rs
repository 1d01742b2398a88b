//! The prober as user `prober` with the repo's nats.conf: it creates and watches KV
//! vitals_targets, publishes samples and retires a removed target's service, and the
//! server refuses it nothing on the way.

use anyhow::{Result, ensure};
use async_nats::jetstream;
use vitals_testkit::{ChildProc, NatsServer, SOON, collect_for};

use crate::helpers::{PROBER_READY, Proc, Server, subscribe, targets_file, until};

async fn start_as(
    bin: &str,
    nats: &NatsServer,
    user: (&str, &str),
    extra: &[&str],
    ready: &str,
) -> Result<Proc> {
    let url = nats.url();
    let mut args = vec![
        "--nats-url",
        url.as_str(),
        "--http-addr",
        "127.0.0.1:0",
        "--nats-user",
        user.0,
        "--nats-password",
        user.1,
    ];
    args.extend_from_slice(extra);
    let proc = ChildProc::spawn(bin, &args, &[])?;
    let http = proc.http_addr().await?;
    proc.wait_for_log(ready, SOON).await?;
    Ok(Proc { proc, http })
}

#[tokio::test]
async fn the_prober_user_can_do_all_the_prober_does() -> Result<()> {
    let conf = vitals_testkit::repo_nats_conf()?;
    ensure!(
        conf.contains("PROBER_PERMS"),
        "nats.conf has no prober user"
    );
    let nats = NatsServer::start_with_config(&conf)?;
    let _monitor = start_as(
        "monitor",
        &nats,
        ("monitor", "monitor-dev"),
        &[],
        "monitor running",
    )
    .await?;
    let server = Server::http().await?;
    let (_dir, file) = targets_file(&format!(
        "[[target]]\nservice = \"fromfile\"\nkind = \"http\"\nurl = \"{}\"\ninterval_ms = 200\n",
        server.url("http", "/health")
    ))?;
    let prober = start_as(
        "prober",
        &nats,
        ("prober", "prober-dev"),
        &["--targets", &file],
        PROBER_READY,
    )
    .await?;
    prober
        .proc
        .wait_for_log("watching KV vitals_targets", SOON)
        .await?;

    // An operator (who may read metrics.> and write the bucket) adds and removes a target.
    let operator = async_nats::ConnectOptions::with_user_and_password(
        "operator".into(),
        "operator-dev".into(),
    )
    .connect(nats.url())
    .await?;
    let mut samples = subscribe(&operator, "metrics.*".into()).await?;
    let mut statuses = subscribe(&operator, "health.status.kvadded".into()).await?;
    until(&mut samples, "a sample of the file's target", SOON, |s| {
        s["service"] == "fromfile"
    })
    .await?;
    let kv = jetstream::new(operator.clone())
        .get_key_value("vitals_targets")
        .await?;
    kv.put(
        "kvadded",
        format!(
            r#"{{"kind":"tcp","address":"{}","interval_ms":200}}"#,
            server.addr
        )
        .into(),
    )
    .await?;
    until(&mut samples, "a sample of the KV target", SOON, |s| {
        s["service"] == "kvadded" && s["probe"]["ok"] == true
    })
    .await?;
    until(&mut statuses, "HEALTHY", SOON, |c| c["status"] == "HEALTHY").await?;
    kv.delete("kvadded").await?;
    until(&mut statuses, "RETIRED", SOON, |c| c["status"] == "RETIRED").await?;
    prober
        .wait_counter(
            r#"vitals_prober_retire_requests_total{outcome="retired"}"#,
            1.0,
        )
        .await?;

    let text = prober.metrics().await?;
    assert_eq!(
        vitals_testkit::metric_sum(&text, "vitals_prober_kv_ready"),
        1.0,
        "{text}"
    );
    let logs = prober.proc.logs();
    assert!(
        !logs.to_lowercase().contains("permissions violation") && !logs.contains("WARN"),
        "the prober was refused something:\n{logs}"
    );
    // And it cannot write what is not its own (a sample of health.>, say).
    let as_prober =
        async_nats::ConnectOptions::with_user_and_password("prober".into(), "prober-dev".into())
            .connect(nats.url())
            .await?;
    let mut health = subscribe(&operator, "health.status.forged".into()).await?;
    as_prober
        .publish("health.status.forged", "{}".into())
        .await?;
    as_prober.flush().await?;
    let forged = collect_for(&mut health, std::time::Duration::from_millis(500)).await;
    assert!(forged.is_empty(), "the prober user published on health.>");
    Ok(())
}

/// Without KV (here: a user that may not touch JetStream) the file's targets are probed
/// all the same, and the prober keeps trying KV in the background.
#[tokio::test]
async fn without_kv_the_files_targets_are_probed_anyway() -> Result<()> {
    let config = r#"
authorization {
  users: [
    { user: nokv, password: nokv, permissions: {
        publish: { allow: ["metrics.>"] }
        subscribe: { allow: ["_INBOX.>"] } } }
    { user: reader, password: reader }
  ]
}
"#;
    let nats = NatsServer::start_with_config(config)?;
    let reader =
        async_nats::ConnectOptions::with_user_and_password("reader".into(), "reader".into())
            .connect(nats.url())
            .await?;
    let server = Server::http().await?;
    let (_dir, file) = targets_file(&format!(
        "[[target]]\nservice = \"nokv\"\nkind = \"http\"\nurl = \"{}\"\ninterval_ms = 500\n",
        server.url("http", "/health")
    ))?;
    let mut samples = subscribe(&reader, "metrics.nokv".into()).await?;
    let prober = start_as(
        "prober",
        &nats,
        ("nokv", "nokv"),
        &["--targets", &file],
        PROBER_READY,
    )
    .await?;
    let got = until(&mut samples, "samples without KV", SOON, |s| s["seq"] == 3).await?;
    assert!(got.iter().all(|s| s["probe"]["ok"] == true), "{got:#?}");
    prober
        .proc
        .wait_for_log("KV vitals_targets unavailable", SOON)
        .await?;
    let health: serde_json::Value = reqwest::get(format!("http://{}/healthz", prober.http))
        .await?
        .json()
        .await?;
    assert_eq!(health["kv_ready"], false, "{health}");
    assert_eq!(health["targets"], 1, "{health}");
    Ok(())
}
