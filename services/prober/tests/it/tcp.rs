//! A TCP target open, then closed.

use anyhow::Result;
use vitals_testkit::{NatsServer, SOON};

use crate::helpers::{error_of, monitor, prober, subscribe, targets_file, until};

#[tokio::test]
async fn a_tcp_target_open_then_closed() -> Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let _monitor = monitor(&nats, &[]).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    // Accepts and drops: a connect is all a TCP probe asks for.
    let accept = tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            drop(s);
        }
    });
    let mut samples = subscribe(&client, "metrics.db".into()).await?;
    let mut statuses = subscribe(&client, "health.status.db".into()).await?;
    let (_dir, file) = targets_file(&format!(
        "[[target]]\nservice = \"db\"\nkind = \"tcp\"\naddress = \"{addr}\"\ninterval_ms = 400\ntimeout_ms = 300\n"
    ))?;
    let _prober = prober(&nats, &["--targets", &file]).await?;

    let open = until(&mut samples, "an open port", SOON, |s| {
        s["probe"]["ok"] == true
    })
    .await?;
    let s = open.last().cloned().unwrap_or_default();
    assert_eq!(s["health_url"], "", "nothing a browser could poll");
    assert!(s["probe"].get("status_code").is_none(), "{s}");
    until(&mut statuses, "HEALTHY", SOON, |c| c["status"] == "HEALTHY").await?;

    accept.abort();
    let _ = accept.await;
    let refused = until(&mut samples, "connect refused", SOON, |s| {
        error_of(s) == "connect refused"
    })
    .await?;
    assert_eq!(
        refused.last().cloned().unwrap_or_default()["probe"]["ok"],
        false
    );
    let down = until(&mut statuses, "DOWN", SOON, |c| c["status"] == "DOWN").await?;
    assert_eq!(
        down.last().cloned().unwrap_or_default()["reasons"],
        serde_json::json!(["probe failed: connect refused (2 in a row)"])
    );
    Ok(())
}
