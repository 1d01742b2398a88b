//! Alert delivery on the monitor's side: silences and acks over NATS (through KV
//! `vitals_silences`), inhibition by `depends_on`, a cycle refused at start, and
//! HEALTH_EVENTS answering no `health.alert.ack` request itself.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use async_nats::jetstream::{self, stream};

use serde_json::{Value, json};
use vitals_protocol::{ServiceState, SilenceList, SilenceReply, Status, subjects};
use vitals_testkit::{NatsServer, SOON, next_json_within, wait_until};

use crate::helpers::*;

async fn request(client: &async_nats::Client, subject: &str, body: Value) -> Result<Value> {
    let msg = tokio::time::timeout(
        SOON,
        client.request(subject.to_owned(), serde_json::to_vec(&body)?.into()),
    )
    .await
    .with_context(|| format!("{subject} timed out"))??;
    serde_json::from_slice(&msg.payload).with_context(|| format!("{subject} reply"))
}

async fn reply(client: &async_nats::Client, subject: &str, body: Value) -> Result<SilenceReply> {
    Ok(serde_json::from_value(
        request(client, subject, body).await?,
    )?)
}

/// Hand-made samples for services, each with its own seq.
struct Sender<'a> {
    client: &'a async_nats::Client,
    seq: u64,
}

impl Sender<'_> {
    async fn send(&mut self, service: &str, f: impl FnOnce(&mut Value)) -> Result<()> {
        self.seq += 1;
        let mut s = good_sample(service, self.seq);
        f(&mut s);
        publish_json(self.client, service, &s).await
    }

    async fn healthy(&mut self, service: &str) -> Result<()> {
        self.send(service, |_| {}).await
    }

    async fn stop(&mut self, service: &str) -> Result<()> {
        self.send(service, |s| s["stopping"] = json!(true)).await
    }

    async fn hot(&mut self, service: &str) -> Result<()> {
        self.send(service, |s| s["cpu_pct"] = json!(99.0)).await
    }
}

/// The next alert event on `sub` that `pred` accepts (others are skipped).
async fn next_alert(
    sub: &mut async_nats::Subscriber,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let deadline = tokio::time::Instant::now() + SOON;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let (_, body) = next_json_within(sub, left)
            .await
            .with_context(|| format!("no alert event {what}; saw {seen:#?}"))?;
        if pred(&body) {
            return Ok(body);
        }
        seen.push(body);
    }
}

async fn stored(kv: &jetstream::kv::Store, service: &str) -> Option<ServiceState> {
    let bytes = kv.get(service).await.ok()??;
    serde_json::from_slice(&bytes).ok()
}

/// Waits until the KV state of `service` satisfies `pred`.
async fn wait_stored(
    kv: &jetstream::kv::Store,
    service: &str,
    pred: impl Fn(&ServiceState) -> bool,
) -> Result<ServiceState> {
    let got = wait_until(SOON, || async {
        stored(kv, service).await.filter(|s| pred(s))
    })
    .await;
    match got {
        Some(s) => Ok(s),
        None => bail!(
            "KV state of {service} never matched: {:#?}",
            stored(kv, service).await
        ),
    }
}

#[tokio::test]
async fn silences_and_acks_over_nats_mark_the_firing_alert() -> Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let monitor = Monitor::start(&nats, &["--grace-ms", "0"]).await?;
    let mut alerts = client.subscribe("health.alert.billing").await?;
    client.flush().await?;
    let mut s = Sender {
        client: &client,
        seq: 0,
    };
    s.healthy("billing").await?;
    s.stop("billing").await?;
    let fired = next_alert(&mut alerts, "firing", |a| a["state"] == "firing").await?;
    assert_eq!(fired["severity"], "critical");
    assert!(fired.get("update").is_none(), "{fired}");
    let id = fired["id"].as_str().context("alert id")?.to_owned();

    // Silence it.
    let created = reply(
        &client,
        subjects::SILENCE_CREATE,
        json!({"matchers": {"service": "bill*"}, "for_s": 3600, "created_by": "ann", "comment": "maintenance"}),
    )
    .await?;
    assert!(created.ok, "{created:?}");
    let silence_id = created.id.context("silence id")?;
    let update = next_alert(&mut alerts, "silenced", |a| a["update"] == "silenced").await?;
    assert_eq!(
        (update["id"].as_str(), update["silenced"].as_bool()),
        (Some(id.as_str()), Some(true))
    );
    assert_eq!(update["state"], "firing");
    let js = jetstream::new(client.clone());
    let status_kv = js.get_key_value(subjects::KV_BUCKET).await?;
    wait_stored(&status_kv, "billing", |st| {
        st.alerts.iter().any(|a| a.marks.silenced)
    })
    .await?;
    let list: SilenceList =
        serde_json::from_value(request(&client, subjects::SILENCE_LIST, json!({})).await?)?;
    assert!(list.ok);
    assert_eq!(list.silences.len(), 1);
    assert_eq!(list.silences[0].id, silence_id);
    assert_eq!(list.silences[0].comment, "maintenance");

    // Expire it.
    let expired = reply(&client, subjects::SILENCE_EXPIRE, json!({"id": silence_id})).await?;
    assert!(expired.ok, "{expired:?}");
    let update = next_alert(&mut alerts, "unsilenced", |a| a["update"] == "unsilenced").await?;
    assert_eq!(update["id"], id.as_str());
    assert!(
        update.get("silenced").is_none(),
        "false is left out: {update}"
    );
    let again = reply(&client, subjects::SILENCE_EXPIRE, json!({"id": silence_id})).await?;
    assert!(!again.ok);
    assert_eq!(
        again.error.as_deref(),
        Some(format!("no silence {silence_id}").as_str())
    );

    // Bad requests get the reason, counted.
    let bad = reply(
        &client,
        subjects::SILENCE_CREATE,
        json!({"matchers": {"service": "a"}, "created_by": "ann"}),
    )
    .await?;
    assert!(
        !bad.ok
            && bad
                .error
                .as_deref()
                .unwrap_or("")
                .contains("exactly one of"),
        "{bad:?}"
    );
    let bad = reply(
        &client,
        subjects::ALERT_ACK,
        json!({"id": "nonsense", "by": "ann"}),
    )
    .await?;
    assert!(
        !bad.ok
            && bad
                .error
                .as_deref()
                .unwrap_or("")
                .starts_with("bad request"),
        "{bad:?}"
    );
    let unknown = "billing:SERVICE_DOWN:1";
    let bad = reply(
        &client,
        subjects::ALERT_ACK,
        json!({"id": unknown, "by": "ann"}),
    )
    .await?;
    assert_eq!(
        bad.error.as_deref(),
        Some(format!("no firing alert {unknown}").as_str())
    );
    monitor
        .wait_counter("vitals_monitor_silence_request_errors_total", 4.0)
        .await?;

    // Ack it.
    let acked = reply(&client, subjects::ALERT_ACK, json!({"id": id, "by": "ann"})).await?;
    assert!(acked.ok, "{acked:?}");
    assert_eq!(acked.id.as_deref(), Some(id.as_str()));
    let update = next_alert(&mut alerts, "acked", |a| a["update"] == "acked").await?;
    assert_eq!(update["acked_by"], "ann");
    wait_stored(&status_kv, "billing", |st| {
        st.alerts
            .iter()
            .any(|a| a.marks.acked_by.as_deref() == Some("ann"))
    })
    .await?;
    let silences_kv = js.get_key_value(subjects::SILENCES_BUCKET).await?;
    let ack_key = format!(
        "ack.billing.SERVICE_DOWN.{}",
        id.rsplit(':').next().unwrap_or("")
    );
    assert!(silences_kv.get(&ack_key).await?.is_some());

    // It resolves: the resolve says who acked, and the ack key goes.
    s.healthy("billing").await?;
    s.healthy("billing").await?;
    let resolved = next_alert(&mut alerts, "resolved", |a| a["state"] == "resolved").await?;
    assert_eq!(resolved["acked_by"], "ann");
    let gone = wait_until(SOON, || async {
        matches!(silences_kv.get(&ack_key).await, Ok(None)).then_some(())
    })
    .await;
    assert!(gone.is_some(), "the ack of a resolved alert is deleted");
    Ok(())
}

#[tokio::test]
async fn invalid_values_in_the_silences_bucket_are_refused_and_counted() -> Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let monitor = Monitor::start(&nats, &[]).await?;
    let js = jetstream::new(client.clone());
    let kv = vitals_runtime::silences::silences_bucket(&js).await?;
    kv.put("silence.x1", "not json".into()).await?;
    kv.put(
        "ack.a.SERVICE_DOWN.5",
        r#"{"id":"b:SERVICE_DOWN:5","by":"x","at_ms":1}"#.into(),
    )
    .await?;
    monitor
        .wait_counter("vitals_monitor_silence_refusals_total", 2.0)
        .await?;
    // Still serving.
    let list: SilenceList =
        serde_json::from_value(request(&client, subjects::SILENCE_LIST, json!({})).await?)?;
    assert!(list.ok && list.silences.is_empty(), "{list:?}");
    Ok(())
}

/// A NATS server restart: the KV watch resumes and a silence made afterwards applies.
#[tokio::test]
async fn the_silences_watch_survives_a_nats_restart() -> Result<()> {
    let mut nats = NatsServer::start()?;
    let monitor = Monitor::start(&nats, &["--grace-ms", "0"]).await?;
    nats.restart()?;
    monitor
        .proc
        .wait_for_log("watching KV vitals_silences", SOON)
        .await?;
    let client = nats.client().await?;
    let mut alerts = client.subscribe("health.alert.pay").await?;
    client.flush().await?;
    let mut s = Sender {
        client: &client,
        seq: 0,
    };
    // Until the monitor is back on the new connection, samples may be lost: retry.
    let deadline = tokio::time::Instant::now() + SOON;
    let fired = loop {
        if tokio::time::Instant::now() > deadline {
            bail!("no firing after the restart: {}", monitor.proc.logs());
        }
        s.healthy("pay").await?;
        s.stop("pay").await?;
        if let Ok((_, a)) = next_json_within(&mut alerts, Duration::from_millis(500)).await
            && a["state"] == "firing"
        {
            break a;
        }
    };
    let watching = wait_until(SOON, || async {
        (monitor
            .counter("vitals_monitor_silences_watching")
            .await
            .ok()?
            == 1.0)
            .then_some(())
    })
    .await;
    assert!(watching.is_some(), "{}", monitor.proc.logs());
    let created = reply(
        &client,
        subjects::SILENCE_CREATE,
        json!({"matchers": {"service": "pay", "alert": "SERVICE_DOWN"}, "for_s": 60, "created_by": "ann"}),
    )
    .await?;
    assert!(created.ok, "{created:?}");
    let update = next_alert(&mut alerts, "silenced", |a| a["update"] == "silenced").await?;
    assert_eq!(update["id"], fired["id"]);
    Ok(())
}

#[tokio::test]
async fn ack_requests_get_the_monitors_reply_and_no_stream_ack() -> Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let js = jetstream::new(client.clone());
    // A HEALTH_EVENTS made by an older monitor: it acks what it stores.
    js.create_stream(stream::Config {
        name: subjects::EVENTS_STREAM.into(),
        subjects: vec![subjects::STATUS_ALL.into(), subjects::ALERT_ALL.into()],
        ..Default::default()
    })
    .await?;
    let _monitor = Monitor::start(&nats, &["--grace-ms", "0"]).await?;
    let mut events_stream = js.get_stream(subjects::EVENTS_STREAM).await?;
    assert!(
        events_stream.info().await?.config.no_ack,
        "the existing stream was updated"
    );

    let mut s = Sender {
        client: &client,
        seq: 0,
    };
    let mut alerts = client.subscribe("health.alert.web").await?;
    client.flush().await?;
    s.healthy("web").await?;
    s.stop("web").await?;
    let fired = next_alert(&mut alerts, "firing", |a| a["state"] == "firing").await?;

    let inbox = client.new_inbox();
    let mut replies = client.subscribe(format!("{inbox}.>")).await?;
    client.flush().await?;
    let body = serde_json::to_vec(&json!({"id": fired["id"], "by": "ann"}))?;
    client
        .publish_with_reply(subjects::ALERT_ACK, format!("{inbox}.ack"), body.into())
        .await?;
    let (subject, first) = next_json_within(&mut replies, SOON).await?;
    assert_eq!(subject, format!("{inbox}.ack"));
    let first: SilenceReply = serde_json::from_value(first.clone())
        .with_context(|| format!("not a SilenceReply: {first}"))?;
    assert!(first.ok, "{first:?}");
    // A later request's reply on the same inbox: anything the stream sent for the ack
    // (it stores it before the monitor answers) would have arrived by then.
    client
        .publish_with_reply(subjects::SILENCE_LIST, format!("{inbox}.list"), "{}".into())
        .await?;
    let (subject, _) = next_json_within(&mut replies, SOON).await?;
    assert_eq!(
        subject,
        format!("{inbox}.list"),
        "only the monitor answered the ack"
    );
    // The stream stored the request; the restart path skips it (health.alert.ack is not
    // a service's subject) and a restarted monitor restores cleanly.
    let stored = events_stream
        .get_last_raw_message_by_subject(subjects::ALERT_ACK)
        .await?;
    assert_eq!(stored.subject.as_str(), subjects::ALERT_ACK);
    drop(_monitor);
    let again = Monitor::start(&nats, &["--grace-ms", "0"]).await?;
    assert_eq!(
        again
            .counter("vitals_monitor_restart_repairs_total")
            .await?,
        0.0
    );
    let snap = again.status().await?;
    let web = snap
        .services
        .iter()
        .find(|s| s.service.as_str() == "web")
        .context("web")?;
    assert_eq!(web.status, Status::Down);
    Ok(())
}

fn rules_file(name: &str, text: &str) -> Result<std::path::PathBuf> {
    let path = std::env::temp_dir().join(format!(
        "vitals-monitor-it-{}-{name}.toml",
        std::process::id()
    ));
    std::fs::write(&path, text)?;
    Ok(path)
}

const DEPENDANTS: &str = r#"
[services.billing]
depends_on = ["auth"]
[services.notifications]
depends_on = ["auth"]
"#;

#[tokio::test]
async fn dependants_of_a_down_service_fire_inhibited_and_are_announced_when_it_recovers()
-> Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let rules = rules_file("inhibit", DEPENDANTS)?;
    let rules = rules.to_string_lossy().into_owned();
    let _monitor = Monitor::start(&nats, &["--grace-ms", "0", "--rules", &rules]).await?;
    let mut alerts = client.subscribe("health.alert.*").await?;
    client.flush().await?;
    let mut s = Sender {
        client: &client,
        seq: 0,
    };
    for svc in ["auth", "billing", "notifications"] {
        s.healthy(svc).await?;
    }
    s.stop("auth").await?;
    let auth = next_alert(&mut alerts, "auth down", |a| a["service"] == "auth").await?;
    assert!(auth.get("inhibited_by").is_none(), "{auth}");
    for _ in 0..3 {
        s.hot("billing").await?;
    }
    let cpu = next_alert(&mut alerts, "billing HIGH_CPU", |a| {
        a["service"] == "billing"
    })
    .await?;
    assert_eq!(
        (cpu["alert"].as_str(), cpu["inhibited_by"].as_str()),
        (Some("HIGH_CPU"), Some("auth"))
    );
    assert_eq!(cpu["severity"], "warning");
    s.stop("notifications").await?;
    let down = next_alert(&mut alerts, "notifications down", |a| {
        a["service"] == "notifications"
    })
    .await?;
    assert_eq!(down["inhibited_by"], "auth");
    // auth recovers: both are announced again, no longer inhibited.
    s.healthy("auth").await?;
    s.healthy("auth").await?;
    let mut got = Vec::new();
    while got.len() < 3 {
        let (_, a) = next_json_within(&mut alerts, SOON).await?;
        got.push(a);
    }
    assert_eq!(got[0]["service"], "auth");
    assert_eq!(got[0]["state"], "resolved");
    let mut updates: Vec<(String, String, String)> = got[1..]
        .iter()
        .map(|a| {
            assert!(a.get("inhibited_by").is_none(), "{a}");
            (
                a["id"].as_str().unwrap_or("").to_owned(),
                a["state"].as_str().unwrap_or("").to_owned(),
                a["update"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    updates.sort();
    assert_eq!(
        updates,
        vec![
            (
                cpu["id"].as_str().unwrap_or("").to_owned(),
                "firing".into(),
                "uninhibited".into()
            ),
            (
                down["id"].as_str().unwrap_or("").to_owned(),
                "firing".into(),
                "uninhibited".into()
            ),
        ]
    );
    Ok(())
}

#[tokio::test]
async fn killed_simulators_of_dependants_go_down_inhibited_by_the_root() -> Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let rules = rules_file("killed", DEPENDANTS)?;
    let rules = rules.to_string_lossy().into_owned();
    let monitor = Monitor::start(
        &nats,
        &["--rules", &rules, "--heartbeat-timeout-ms", "1000"],
    )
    .await?;
    let mut sims = Vec::new();
    for svc in ["auth", "billing", "notifications"] {
        sims.push(simulator(&nats, svc, &[]).await?);
    }
    wait_all(
        &monitor,
        &["auth", "billing", "notifications"],
        Status::Healthy,
    )
    .await?;
    let mut alerts = client.subscribe("health.alert.*").await?;
    client.flush().await?;
    sims[0].kill();
    let auth = next_alert(&mut alerts, "auth down", |a| a["service"] == "auth").await?;
    assert_eq!(auth["alert"], "SERVICE_DOWN");
    sims[1].kill();
    sims[2].kill();
    let mut inhibited = Vec::new();
    while inhibited.len() < 2 {
        let a = next_alert(&mut alerts, "a dependant down", |a| {
            a["alert"] == "SERVICE_DOWN"
        })
        .await?;
        inhibited.push((
            a["service"].as_str().unwrap_or("").to_owned(),
            a["inhibited_by"].clone(),
        ));
    }
    inhibited.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        inhibited,
        vec![
            ("billing".to_owned(), json!("auth")),
            ("notifications".to_owned(), json!("auth"))
        ]
    );
    Ok(())
}

#[tokio::test]
async fn a_cycle_in_depends_on_stops_the_monitor_naming_it() -> Result<()> {
    let nats = NatsServer::start()?;
    let rules = rules_file(
        "cycle",
        "[services.a]\ndepends_on = [\"b\"]\n[services.b]\ndepends_on = [\"a\"]\n",
    )?;
    let rules = rules.to_string_lossy().into_owned();
    let url = nats.url();
    let mut proc = vitals_testkit::ChildProc::spawn(
        "monitor",
        &[
            "--nats-url",
            &url,
            "--http-addr",
            "127.0.0.1:0",
            "--rules",
            &rules,
        ],
        &[],
    )?;
    let status = proc.wait_exit(SOON).await?;
    assert!(!status.success(), "{}", proc.logs());
    assert!(
        proc.logs().contains("depends_on has a cycle: a -> b -> a"),
        "{}",
        proc.logs()
    );
    Ok(())
}

async fn login(nats: &NatsServer, user: &str, password: &str) -> Result<async_nats::Client> {
    async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
        .connect(nats.url())
        .await
        .with_context(|| format!("connecting as {user}"))
}

/// The repo's nats.conf: the monitor user can serve and apply silences and acks, and the
/// operator user can ask for them.
#[tokio::test]
async fn silences_and_acks_work_with_the_repo_permissions() -> Result<()> {
    let nats = NatsServer::start_with_config(&vitals_testkit::repo_nats_conf()?)?;
    let monitor = Monitor::start(
        &nats,
        &[
            "--grace-ms",
            "0",
            "--nats-user",
            "monitor",
            "--nats-password",
            "monitor-dev",
        ],
    )
    .await?;
    let operator = login(&nats, "operator", "operator-dev").await?;
    let sender = login(&nats, "simulator", "simulator-dev").await?;
    let mut alerts = operator.subscribe("health.alert.billing").await?;
    operator.flush().await?;
    let mut s = Sender {
        client: &sender,
        seq: 0,
    };
    s.healthy("billing").await?;
    s.stop("billing").await?;
    let fired = next_alert(&mut alerts, "firing", |a| a["state"] == "firing").await?;
    let created = reply(
        &operator,
        subjects::SILENCE_CREATE,
        json!({"matchers": {"service": "billing"}, "for_s": 600, "created_by": "ann"}),
    )
    .await?;
    assert!(created.ok, "{created:?}");
    next_alert(&mut alerts, "silenced", |a| a["update"] == "silenced").await?;
    let acked = reply(
        &operator,
        subjects::ALERT_ACK,
        json!({"id": fired["id"], "by": "ann"}),
    )
    .await?;
    assert!(acked.ok, "{acked:?}");
    let update = next_alert(&mut alerts, "acked", |a| a["update"] == "acked").await?;
    assert_eq!(
        (update["acked_by"].as_str(), update["silenced"].as_bool()),
        (Some("ann"), Some(true))
    );
    let expired = reply(
        &operator,
        subjects::SILENCE_EXPIRE,
        json!({"id": created.id}),
    )
    .await?;
    assert!(expired.ok, "{expired:?}");
    next_alert(&mut alerts, "unsilenced", |a| a["update"] == "unsilenced").await?;
    assert!(
        !monitor.proc.logs().contains("Permissions Violation"),
        "{}",
        monitor.proc.logs()
    );
    Ok(())
}
