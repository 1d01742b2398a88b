//! HTTP listener limits (docs/SECURITY.md): slow and silent connections are closed after
//! the header read timeout, one address cannot hold more than its share, and WebSocket
//! upgrades still work through the shared server; SIGTERM still ends it cleanly.

use nix::sys::signal::Signal;
use vitals_testkit::{NatsServer, SOON, slow};

use crate::helpers::{connect, gateway, next_msg};

#[tokio::test]
async fn unfinished_requests_are_closed_after_the_header_timeout() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let gw = gateway(&nats, &["--http-header-timeout-ms", "300"]).await?;
    // A WebSocket open beside the slow clients keeps working: it is no longer HTTP.
    let mut ws = connect(&gw.ws_url(), None).await?;
    assert_eq!(next_msg(&mut ws, SOON).await?["type"], "snapshot");
    slow::check_unfinished_requests_are_closed(gw.http, "/healthz", SOON).await?;
    let mut ws2 = connect(&gw.ws_url(), None).await?;
    assert_eq!(next_msg(&mut ws2, SOON).await?["type"], "snapshot");
    Ok(())
}

#[tokio::test]
async fn connections_beyond_the_per_address_cap_are_refused() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let mut gw = gateway(
        &nats,
        &[
            "--http-max-conns-per-ip",
            "8",
            "--http-header-timeout-ms",
            "600000",
        ],
    )
    .await?;
    slow::check_per_address_cap(gw.http, "/healthz", 8, SOON).await?;
    // Upgrades go through the same server and count against the cap while they live.
    let mut sockets = Vec::new();
    for _ in 0..8 {
        let mut ws = connect(&gw.ws_url(), None).await?;
        assert_eq!(next_msg(&mut ws, SOON).await?["type"], "snapshot");
        sockets.push(ws);
    }
    let mut extra = slow::open_unfinished(gw.http, 1, b"", None).await?;
    assert_eq!(slow::count_closed_within(&mut extra, SOON).await, 1);
    // Shutdown with a held slow connection and open sockets still ends cleanly.
    let _slow = slow::open_unfinished(
        gw.http,
        1,
        b"GET /healthz HTTP/1.1\r\n",
        Some([127, 0, 0, 2].into()),
    )
    .await?;
    gw.proc.signal(Signal::SIGTERM)?;
    let status = gw.proc.wait_exit(SOON).await?;
    assert_eq!(status.code(), Some(0), "{}", gw.proc.logs());
    Ok(())
}
