//! Issue 12, point 10 at the gateway: an oversized client message gets a 1009 close, and
//! refusals at the connection cap are counted and logged at a bounded rate.

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use vitals_testkit::{NatsServer, SOON};

use crate::helpers::*;

#[tokio::test]
async fn an_oversized_client_message_gets_a_1009_close_frame() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let _monitor = monitor(&nats).await?;
    let gw = gateway(&nats, &["--max-client-message", "1024"]).await?;
    let mut ws = connect(&gw.ws_url(), None).await?;
    let mut seq = 0;
    until(&mut ws, &mut seq, SOON, |m| m["type"] == "snapshot").await?;
    ws.send(Message::Text("x".repeat(64 * 1024).into())).await?;
    let close = tokio::time::timeout(SOON, async {
        while let Some(msg) = ws.next().await {
            match msg {
                Ok(Message::Close(frame)) => return Some(frame),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
        None
    })
    .await?;
    let frame = close.flatten();
    assert_eq!(
        frame.map(|f| f.code),
        Some(CloseCode::Size),
        "1009 before the end"
    );
    assert_eq!(
        gw.counter("vitals_gateway_client_drops_total{reason=\"too_large\"}")
            .await?,
        1.0
    );
    Ok(())
}

#[tokio::test]
async fn refusals_at_the_connection_cap_are_counted_and_logged_at_a_bounded_rate()
-> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let gw = gateway(&nats, &["--max-clients", "1"]).await?;
    let _held = connect(&gw.ws_url(), None).await?;
    for _ in 0..50 {
        assert_eq!(refused_status(&gw.ws_url(), None).await?, 503);
    }
    assert_eq!(
        gw.counter("vitals_gateway_refusals_total{reason=\"capacity\"}")
            .await?,
        50.0
    );
    let logs = gw.proc.logs();
    let cap_lines = logs
        .lines()
        .filter(|l| l.contains("connection cap reached"))
        .count();
    assert_eq!(cap_lines, 1, "one line for 50 refusals within 10 s");
    let errors = logs.lines().filter(|l| l.contains("ERROR")).count();
    assert_eq!(errors, 0, "no ERROR line per 503:\n{logs}");
    Ok(())
}
