//! Raw TCP clients for HTTP limit tests: connections that start a request and never
//! finish it (slowloris), connections from a chosen loopback address (127.0.0.0/8 is all
//! local on Linux, so a test can be "another host"), a bounded wait for the server to
//! close a connection, and a plain `GET` with `Connection: close`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Connects to `addr`, from `from` when given (port chosen by the system).
pub async fn connect_from(addr: SocketAddr, from: Option<IpAddr>) -> Result<TcpStream> {
    let Some(local) = from else {
        return Ok(TcpStream::connect(addr).await?);
    };
    let socket = match local {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(local, 0))?;
    Ok(socket.connect(addr).await?)
}

/// Opens `n` connections that each send `prefix` (maybe nothing) and then nothing more.
pub async fn open_unfinished(
    addr: SocketAddr,
    n: usize,
    prefix: &[u8],
    from: Option<IpAddr>,
) -> Result<Vec<TcpStream>> {
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        let mut s = connect_from(addr, from)
            .await
            .with_context(|| format!("connection {i} to {addr}"))?;
        if !prefix.is_empty() {
            s.write_all(prefix).await?;
            s.flush().await?;
        }
        held.push(s);
    }
    Ok(held)
}

/// Whether the server closes `stream` (end of stream or an error; whatever it sends first,
/// such as a 408, is read and ignored) within `timeout`.
pub async fn closed_within(stream: &mut TcpStream, timeout: Duration) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(timeout, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// How many of `streams` the server closed within `timeout` (all watched at once).
pub async fn count_closed_within(streams: &mut [TcpStream], timeout: Duration) -> usize {
    let waits = streams.iter_mut().map(|s| closed_within(s, timeout));
    futures::future::join_all(waits)
        .await
        .into_iter()
        .filter(|closed| *closed)
        .count()
}

/// Whether `stream` is still open: nothing to read and no end of stream within `watch`.
pub async fn still_open(stream: &mut TcpStream, watch: Duration) -> bool {
    let mut buf = [0u8; 1];
    matches!(
        tokio::time::timeout(watch, stream.read(&mut buf)).await,
        Err(_elapsed)
    )
}

/// `GET path` over a fresh connection (from `from` when given), bounded by `timeout`:
/// the status code and the body.
pub async fn http_get(
    addr: SocketAddr,
    path: &str,
    from: Option<IpAddr>,
    timeout: Duration,
) -> Result<(u16, String)> {
    let exchange = async {
        let mut s = connect_from(addr, from).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            bail!("no complete response from {addr}{path}: {text:?}");
        };
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .with_context(|| format!("bad status line: {head:?}"))?;
        anyhow::Ok((code, body.to_owned()))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .with_context(|| format!("GET {addr}{path} timed out"))?
}

/// The slowloris check for a server started with a short header read timeout: connections
/// that send part of a request head, and connections that send nothing, are all closed by
/// the server (each wait bounded by `within`); a normal `GET path` works meanwhile and after.
pub async fn check_unfinished_requests_are_closed(
    addr: SocketAddr,
    path: &str,
    within: Duration,
) -> Result<()> {
    let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nX-Slow: ");
    let mut partial = open_unfinished(addr, 100, head.as_bytes(), None).await?;
    let mut line = open_unfinished(addr, 25, b"GET /heal", None).await?;
    let mut silent = open_unfinished(addr, 50, b"", None).await?;
    let (code, _) = http_get(addr, path, None, within).await?;
    anyhow::ensure!(code == 200, "GET {path} beside the slow clients: {code}");
    for (what, conns) in [
        ("partial headers", &mut partial),
        ("partial request line", &mut line),
        ("nothing sent", &mut silent),
    ] {
        let closed = count_closed_within(conns, within).await;
        anyhow::ensure!(
            closed == conns.len(),
            "{what}: the server closed {closed} of {} within {within:?}",
            conns.len()
        );
    }
    let (code, _) = http_get(addr, path, None, within).await?;
    anyhow::ensure!(code == 200, "GET {path} after the slow clients: {code}");
    Ok(())
}

/// The per-address cap check for a server on 127.0.0.1 started with `--http-max-conns-per-ip
/// cap` (and a long header timeout): `cap` idle connections from 127.0.0.1 are held, more
/// from there are closed at once, another address (127.0.0.2) is still served, and once
/// one held connection goes, 127.0.0.1 is served again.
pub async fn check_per_address_cap(
    addr: SocketAddr,
    path: &str,
    cap: usize,
    within: Duration,
) -> Result<()> {
    let here: IpAddr = [127, 0, 0, 1].into();
    let other: IpAddr = [127, 0, 0, 2].into();
    let mut held = open_unfinished(addr, cap, b"", Some(here)).await?;
    let mut extra = open_unfinished(addr, 5, b"", Some(here)).await?;
    let closed = count_closed_within(&mut extra, within).await;
    anyhow::ensure!(closed == 5, "beyond the cap: {closed} of 5 closed");
    let (code, _) = http_get(addr, path, Some(other), within).await?;
    anyhow::ensure!(code == 200, "GET {path} from another address: {code}");
    // The held ones were not the ones closed.
    for (i, s) in held.iter_mut().enumerate() {
        anyhow::ensure!(
            still_open(s, Duration::from_millis(20)).await,
            "held connection {i} was closed"
        );
    }
    held.pop();
    let served = crate::wait_until(within, || async {
        http_get(addr, path, Some(here), within)
            .await
            .ok()
            .filter(|(code, _)| *code == 200)
    })
    .await;
    served.context("127.0.0.1 never served again after a held connection closed")?;
    drop(held);
    Ok(())
}
