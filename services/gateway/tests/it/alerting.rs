//! Issue 14 through the gateway, against a real nats-server and the real monitor:
//! `/api/silences` (token, validation, 201/400/404/413, KV vitals_silences), the monitor's
//! update events reaching the gateway's view as marks, `POST /api/alerts/<id>/ack`, and
//! the local inbox (`/api/inbox`).

use anyhow::{Context, Result};
use serde_json::{Value, json};
use vitals_protocol::subjects;
use vitals_testkit::{NatsServer, SOON, wait_until};

use crate::helpers::{Proc, gateway, monitor, publish_sample};

const TOKEN: &str = "op-s3cret";

async fn call(
    gw: &Proc,
    method: reqwest::Method,
    path: &str,
    body: Option<String>,
    token: Option<&str>,
) -> Result<(u16, Value)> {
    let mut req = reqwest::Client::new().request(method, gw.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b);
    }
    let resp = req.send().await?;
    let code = resp.status().as_u16();
    let text = resp.text().await?;
    Ok((
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

/// The marks of `service`'s SERVICE_DOWN alert in the gateway's `/api/status`, once `pred`
/// holds for them.
async fn alert_where(gw: &Proc, service: &str, pred: impl Fn(&Value) -> bool) -> Option<Value> {
    wait_until(SOON, || async {
        let status = gw.get_json("/api/status").await.ok()?;
        let svc = status["services"]
            .as_array()?
            .iter()
            .find(|s| s["service"] == service)?
            .clone();
        let alert = svc["alerts"]
            .as_array()?
            .iter()
            .find(|a| a["alert"] == "SERVICE_DOWN")?
            .clone();
        pred(&alert).then_some(alert)
    })
    .await
}

#[tokio::test]
async fn silences_and_acks_through_the_api_reach_the_view_as_marks() -> Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let _monitor = monitor(&nats).await?;
    let gw = gateway(&nats, &["--operator-token", TOKEN]).await?;
    publish_sample(&client, "pay", 0, false).await?;
    publish_sample(&client, "pay", 1, true).await?;
    let alert = alert_where(&gw, "pay", |_| true)
        .await
        .context("SERVICE_DOWN never fired")?;
    let id = alert["id"].as_str().context("alert id")?.to_owned();
    assert!(alert.get("silenced").is_none(), "{alert}");

    // Reading needs no token; the list starts empty.
    let list = gw.get_json("/api/silences").await?;
    assert_eq!(list, json!({"ok": true, "silences": []}));

    let good = json!({"matchers": {"service": "pa*"}, "for_s": 3600,
        "created_by": "test", "comment": "maintenance"})
    .to_string();
    let post = reqwest::Method::POST;
    let (code, _) = call(&gw, post.clone(), "/api/silences", Some(good.clone()), None).await?;
    assert_eq!(code, 401);
    let (code, _) = call(
        &gw,
        post.clone(),
        "/api/silences",
        Some(good.clone()),
        Some("no"),
    )
    .await?;
    assert_eq!(code, 401);
    for (bad, why) in [
        ("{", "EOF"),
        (
            r#"{"matchers":{"service":"pay"},"created_by":"t"}"#,
            "for_s",
        ),
        (
            r#"{"matchers":{"service":"pay"},"for_s":60,"created_by":"t","x":1}"#,
            "unknown field",
        ),
    ] {
        let (code, body) = call(
            &gw,
            post.clone(),
            "/api/silences",
            Some(bad.into()),
            Some(TOKEN),
        )
        .await?;
        assert_eq!(code, 400, "{bad}: {body}");
        assert_eq!(body["ok"], false);
        let e = body["error"].as_str().unwrap_or_default();
        assert!(e.contains(why), "{bad}: {e}");
    }
    let huge = json!({"matchers": {"service": "pay"}, "for_s": 60, "created_by": "t",
        "comment": "x".repeat(20_000)})
    .to_string();
    let (code, _) = call(&gw, post.clone(), "/api/silences", Some(huge), Some(TOKEN)).await?;
    assert_eq!(code, 413);

    let (code, body) = call(&gw, post.clone(), "/api/silences", Some(good), Some(TOKEN)).await?;
    assert_eq!(code, 201, "{body}");
    let sid = body["id"].as_str().context("silence id")?.to_owned();
    let list = gw.get_json("/api/silences").await?;
    assert_eq!(list["silences"][0]["id"], sid.as_str(), "{list}");
    assert_eq!(list["silences"][0]["matchers"]["service"], "pa*");
    let js = async_nats::jetstream::new(client.clone());
    let kv = js.get_key_value(subjects::SILENCES_BUCKET).await?;
    assert!(kv.get(subjects::silence_key(&sid)).await?.is_some());

    // The monitor applies it and re-publishes the alert; the view takes the marks.
    alert_where(&gw, "pay", |a| {
        a["silenced"] == true && a["id"] == id.as_str()
    })
    .await
    .context("the silenced mark never reached the gateway")?;

    // Ack: token, an alert that fires in the view, a body with `by` only.
    let ack_path = format!("/api/alerts/{id}/ack");
    let by = json!({"by": "ann"}).to_string();
    let (code, _) = call(&gw, post.clone(), &ack_path, Some(by.clone()), None).await?;
    assert_eq!(code, 401);
    let (code, _) = call(
        &gw,
        post.clone(),
        "/api/alerts/pay:SERVICE_DOWN:1/ack",
        Some(by.clone()),
        Some(TOKEN),
    )
    .await?;
    assert_eq!(code, 404, "not firing in the gateway's view");
    for bad in ["{}", r#"{"by":""}"#, r#"{"by":"a","id":"x"}"#, "nope"] {
        let (code, body) =
            call(&gw, post.clone(), &ack_path, Some(bad.into()), Some(TOKEN)).await?;
        assert_eq!(code, 400, "{bad}: {body}");
    }
    let (code, _) = call(
        &gw,
        post.clone(),
        "/api/alerts/garbage/ack",
        Some(by.clone()),
        Some(TOKEN),
    )
    .await?;
    assert_eq!(code, 400);
    let (code, body) = call(&gw, post.clone(), &ack_path, Some(by), Some(TOKEN)).await?;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["by"], "ann");
    alert_where(&gw, "pay", |a| {
        a["acked_by"] == "ann" && a["silenced"] == true
    })
    .await
    .context("the acked mark never reached the gateway")?;

    // Expire: token, unknown id 404, then the mark goes.
    let del = reqwest::Method::DELETE;
    let path = format!("/api/silences/{sid}");
    let (code, _) = call(&gw, del.clone(), &path, None, None).await?;
    assert_eq!(code, 401);
    let (code, _) = call(
        &gw,
        del.clone(),
        "/api/silences/0000000000000000",
        None,
        Some(TOKEN),
    )
    .await?;
    assert_eq!(code, 404);
    let (code, body) = call(&gw, del.clone(), &path, None, Some(TOKEN)).await?;
    assert_eq!(code, 200, "{body}");
    let (code, _) = call(&gw, del, &path, None, Some(TOKEN)).await?;
    assert_eq!(code, 404, "already expired");
    assert_eq!(gw.get_json("/api/silences").await?["silences"], json!([]));
    alert_where(&gw, "pay", |a| {
        a.get("silenced").is_none() && a["acked_by"] == "ann"
    })
    .await
    .context("the silenced mark was never lifted")?;

    let m = |op: &str, outcome: &str| {
        format!("vitals_gateway_silence_requests_total{{op=\"{op}\",outcome=\"{outcome}\"}}")
    };
    assert_eq!(gw.counter(&m("create", "ok")).await?, 1.0);
    assert_eq!(gw.counter(&m("create", "bad_request")).await?, 3.0);
    assert_eq!(gw.counter(&m("create", "too_large")).await?, 1.0);
    assert_eq!(gw.counter(&m("ack", "unknown")).await?, 1.0);
    assert_eq!(gw.counter(&m("expire", "unknown")).await?, 2.0);
    Ok(())
}

/// What the notifier posts (its payload::webhook shape).
fn webhook(receiver: &str, status: &str, service: &str) -> String {
    json!({"version": "4", "groupKey": "{}/{route=0}:{receiver=\"inbox\"}", "truncatedAlerts": 0,
        "status": status, "receiver": receiver, "groupLabels": {}, "commonLabels": {},
        "commonAnnotations": {}, "externalURL": "http://127.0.0.1:8080",
        "alerts": [{"status": status, "labels": {"alertname": "SERVICE_DOWN", "service": service,
            "severity": "critical", "vitals_id": format!("{service}:SERVICE_DOWN:1")},
            "annotations": {"summary": format!("{service} is DOWN"), "acked_by": "ann"},
            "startsAt": "2026-12-02T12:30:57.123Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://x", "fingerprint": "ab"}]})
    .to_string()
}

#[tokio::test]
async fn the_inbox_takes_webhooks_lists_them_newest_first_and_refuses_garbage() -> Result<()> {
    let nats = NatsServer::start()?;
    let gw = gateway(&nats, &[]).await?;
    let post = reqwest::Method::POST;
    assert_eq!(gw.get_json("/api/inbox").await?["notifications"], json!([]));
    for svc in ["a", "b", "c"] {
        let (code, body) = call(
            &gw,
            post.clone(),
            "/api/inbox",
            Some(webhook("inbox", "firing", svc)),
            None,
        )
        .await?;
        assert_eq!(code, 200, "{body}");
    }
    let (code, _) = call(
        &gw,
        post.clone(),
        "/api/inbox",
        Some(webhook("inbox", "resolved", "a")),
        None,
    )
    .await?;
    assert_eq!(code, 200);
    for bad in [
        "garbage".to_owned(),
        "{}".to_owned(),
        webhook("inbox", "firing", "a").replace("\"4\"", "\"3\""),
    ] {
        let (code, body) = call(&gw, post.clone(), "/api/inbox", Some(bad.clone()), None).await?;
        assert_eq!(code, 400, "{bad}: {body}");
    }
    let big = "x".repeat(70 * 1024);
    let (code, _) = call(&gw, post.clone(), "/api/inbox", Some(big), None).await?;
    assert_eq!(code, 413);

    let list = gw.get_json("/api/inbox").await?;
    let n = list["notifications"].as_array().context("notifications")?;
    assert_eq!(n.len(), 4, "{list}");
    assert_eq!(n[0]["status"], "resolved");
    assert_eq!(n[0]["alerts"][0]["service"], "a");
    assert_eq!(n[1]["alerts"][0]["service"], "c");
    assert_eq!(n[3]["alerts"][0]["service"], "a");
    assert_eq!(n[1]["receiver"], "inbox");
    assert_eq!(n[1]["alerts"][0]["acked_by"], "ann");
    assert_eq!(n[1]["alerts"][0]["summary"], "c is DOWN");
    let c = |r: &str| format!("vitals_gateway_inbox_posts_total{{reason=\"{r}\"}}");
    assert_eq!(gw.counter(&c("ok")).await?, 4.0);
    assert_eq!(gw.counter(&c("bad_request")).await?, 3.0);
    assert_eq!(gw.counter(&c("too_large")).await?, 1.0);

    // With --inbox-token a post needs it; with --inbox false there is no inbox.
    let locked = gateway(&nats, &["--inbox-token", "hook"]).await?;
    let (code, _) = call(
        &locked,
        post.clone(),
        "/api/inbox",
        Some(webhook("x", "firing", "a")),
        None,
    )
    .await?;
    assert_eq!(code, 401);
    let (code, _) = call(
        &locked,
        post.clone(),
        "/api/inbox",
        Some(webhook("x", "firing", "a")),
        Some("hook"),
    )
    .await?;
    assert_eq!(code, 200);
    let off = gateway(&nats, &["--inbox", "false"]).await?;
    let (code, _) = call(
        &off,
        post,
        "/api/inbox",
        Some(webhook("x", "firing", "a")),
        None,
    )
    .await?;
    assert_eq!(code, 404);
    let (code, _) = call(&off, reqwest::Method::GET, "/api/inbox", None, None).await?;
    assert_eq!(code, 404);
    Ok(())
}

/// The repo's nats.conf: the gateway user may read and write KV vitals_silences (creating
/// it when the monitor has not yet) and the monitor user applies what it wrote.
#[tokio::test]
async fn the_api_works_with_the_repo_permissions() -> Result<()> {
    let nats = NatsServer::start_with_config(&vitals_testkit::repo_nats_conf()?)?;
    let gw = gateway(
        &nats,
        &[
            "--operator-token",
            TOKEN,
            "--nats-user",
            "gateway",
            "--nats-password",
            "gateway-dev",
        ],
    )
    .await?;
    // Before any monitor: the gateway creates the bucket.
    assert_eq!(gw.get_json("/api/silences").await?["silences"], json!([]));
    let _monitor = Proc::start(
        "monitor",
        &nats,
        &["--nats-user", "monitor", "--nats-password", "monitor-dev"],
        "monitor running",
    )
    .await?;
    let sender = async_nats::ConnectOptions::with_user_and_password(
        "simulator".into(),
        "simulator-dev".into(),
    )
    .connect(nats.url())
    .await?;
    publish_sample(&sender, "pay", 0, false).await?;
    publish_sample(&sender, "pay", 1, true).await?;
    let alert = alert_where(&gw, "pay", |_| true)
        .await
        .context("SERVICE_DOWN never fired")?;
    let id = alert["id"].as_str().context("alert id")?.to_owned();
    let post = reqwest::Method::POST;
    let body = json!({"matchers": {"service": "pay"}, "for_s": 600, "created_by": "t"}).to_string();
    let (code, created) = call(&gw, post.clone(), "/api/silences", Some(body), Some(TOKEN)).await?;
    assert_eq!(code, 201, "{created}");
    alert_where(&gw, "pay", |a| a["silenced"] == true)
        .await
        .context("the silenced mark never reached the gateway")?;
    let (code, acked) = call(
        &gw,
        post,
        &format!("/api/alerts/{id}/ack"),
        Some(json!({"by": "ann"}).to_string()),
        Some(TOKEN),
    )
    .await?;
    assert_eq!(code, 200, "{acked}");
    alert_where(&gw, "pay", |a| a["acked_by"] == "ann")
        .await
        .context("the acked mark never reached the gateway")?;
    let sid = created["id"].as_str().context("id")?;
    let (code, expired) = call(
        &gw,
        reqwest::Method::DELETE,
        &format!("/api/silences/{sid}"),
        None,
        Some(TOKEN),
    )
    .await?;
    assert_eq!(code, 200, "{expired}");
    alert_where(&gw, "pay", |a| a.get("silenced").is_none())
        .await
        .context("the silenced mark was never lifted")?;
    Ok(())
}
