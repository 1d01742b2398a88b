//! HTTP listener limits (docs/SECURITY.md): slow and silent connections are closed after
//! the header read timeout and one address cannot hold more than its share, while normal
//! requests are served; SIGTERM still ends the monitor cleanly.

use nix::sys::signal::Signal;
use vitals_testkit::{NatsServer, SOON, slow};

use crate::helpers::Monitor;

#[tokio::test]
async fn unfinished_requests_are_closed_after_the_header_timeout() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let monitor = Monitor::start(&nats, &["--http-header-timeout-ms", "300"]).await?;
    slow::check_unfinished_requests_are_closed(monitor.http, "/healthz", SOON).await?;
    let (code, _) = slow::http_get(monitor.http, "/api/status", None, SOON).await?;
    assert_eq!(code, 200);
    Ok(())
}

#[tokio::test]
async fn connections_beyond_the_per_address_cap_are_refused() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let mut monitor = Monitor::start(
        &nats,
        &[
            "--http-max-conns-per-ip",
            "8",
            "--http-header-timeout-ms",
            "600000",
        ],
    )
    .await?;
    slow::check_per_address_cap(monitor.http, "/healthz", 8, SOON).await?;
    let _slow = slow::open_unfinished(monitor.http, 3, b"GET /healthz HTTP/1.1\r\n", None).await?;
    monitor.proc.signal(Signal::SIGTERM)?;
    let status = monitor.proc.wait_exit(SOON).await?;
    assert_eq!(status.code(), Some(0), "{}", monitor.proc.logs());
    Ok(())
}
