//! Set-up for the gateway tests: real nats-server, monitor and gateway processes, and
//! WebSocket clients (tokio-tungstenite). Every wait is bounded.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use vitals_testkit::{ChildProc, NatsServer, SOON};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct Proc {
    pub proc: ChildProc,
    pub http: SocketAddr,
}

impl Proc {
    pub async fn start(bin: &str, nats: &NatsServer, extra: &[&str], ready: &str) -> Result<Self> {
        let url = nats.url();
        let mut args = vec!["--nats-url", &url, "--http-addr", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let proc = ChildProc::spawn(bin, &args, &[])?;
        let http = proc.http_addr().await?;
        proc.wait_for_log(ready, SOON).await?;
        Ok(Self { proc, http })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.http)
    }

    pub async fn get_json(&self, path: &str) -> Result<Value> {
        Ok(reqwest::get(self.url(path))
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    pub async fn counter(&self, series: &str) -> Result<f64> {
        let text = reqwest::get(self.url("/metrics")).await?.text().await?;
        Ok(vitals_testkit::metric_sum(&text, series))
    }
}

pub async fn monitor(nats: &NatsServer) -> Result<Proc> {
    Proc::start("monitor", nats, &[], "monitor running").await
}

/// A gateway whose view is synced (it has NATS and a snapshot).
pub async fn gateway(nats: &NatsServer, extra: &[&str]) -> Result<Proc> {
    let g = Proc::start("gateway", nats, extra, "gateway running").await?;
    g.proc.wait_for_log("view synced", SOON).await?;
    Ok(g)
}

pub async fn connect(url: &str, origin: Option<&str>) -> Result<Ws> {
    let mut request = url.into_client_request()?;
    if let Some(o) = origin {
        request.headers_mut().insert("origin", o.parse()?);
    }
    let (ws, _) = tokio::time::timeout(SOON, tokio_tungstenite::connect_async(request)).await??;
    Ok(ws)
}

/// The HTTP status a refused upgrade got.
pub async fn refused_status(url: &str, origin: Option<&str>) -> Result<u16> {
    match connect(url, origin).await {
        Ok(_) => bail!("upgrade was accepted"),
        Err(e) => match e.downcast_ref::<tokio_tungstenite::tungstenite::Error>() {
            Some(tokio_tungstenite::tungstenite::Error::Http(resp)) => Ok(resp.status().as_u16()),
            _ => bail!("not an HTTP refusal: {e}"),
        },
    }
}

/// The next JSON text message (pings and pongs skipped), within `timeout`.
pub async fn next_msg(ws: &mut Ws, timeout: Duration) -> Result<Value> {
    tokio::time::timeout(timeout, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    return serde_json::from_str(&t).context("frame is not JSON");
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(other)) => bail!("unexpected frame {other:?}"),
                Some(Err(e)) => bail!("socket error: {e}"),
                None => bail!("socket closed"),
            }
        }
    })
    .await
    .context("no message in time")?
}

/// Reads messages (checking `seq` is contiguous from `*next_seq`) until `pred` holds.
pub async fn until(
    ws: &mut Ws,
    next_seq: &mut u64,
    timeout: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let m = next_msg(ws, left).await?;
        if m["seq"] != *next_seq {
            bail!("seq gap: expected {next_seq}, got {}", m["seq"]);
        }
        *next_seq += 1;
        if pred(&m) {
            return Ok(m);
        }
    }
}

pub async fn send_text(ws: &mut Ws, text: &str) -> Result<()> {
    ws.send(Message::Text(text.into())).await?;
    Ok(())
}

pub fn sample(service: &str, seq: u64, stopping: bool) -> Value {
    json!({
        "service": service, "instance": format!("{service}-t"), "seq": seq,
        "ts_ms": vitals_runtime::epoch_ms(), "cpu_pct": 10.0, "mem_pct": 30.0,
        "latency_ms": 20.0, "error_rate": 0.0, "health_url": "http://127.0.0.1:3999/health",
        "stopping": stopping
    })
}

/// Makes the monitor publish a status change: a first sample (-> HEALTHY) or a stopping
/// sample (-> DOWN at once).
pub async fn publish_sample(
    client: &async_nats::Client,
    service: &str,
    seq: u64,
    stopping: bool,
) -> Result<()> {
    client
        .publish(
            format!("metrics.{service}"),
            serde_json::to_vec(&sample(service, seq, stopping))?.into(),
        )
        .await?;
    client.flush().await?;
    Ok(())
}

pub fn is_status(m: &Value, service: &str, status: &str) -> bool {
    m["type"] == "status" && m["data"]["service"] == service && m["data"]["status"] == status
}

pub fn snapshot_status(snapshot: &Value, service: &str) -> Option<String> {
    snapshot["services"]
        .as_array()?
        .iter()
        .find(|s| s["service"] == service)
        .and_then(|s| s["status"].as_str().map(str::to_owned))
}

/// A client's view of every service right after it joined: its snapshot with the frames
/// that follow it applied (a snapshot may be a recent shared one plus catch-up frames),
/// up to a marker service published (through the monitor) after the snapshot arrived.
pub async fn joined_view(
    ws: &mut Ws,
    seq: &mut u64,
    client: &async_nats::Client,
    marker: &str,
) -> Result<std::collections::BTreeMap<String, Value>> {
    let snap = until(ws, seq, SOON, |_| true).await?;
    if snap["type"] != "snapshot" {
        bail!("first message is not a snapshot: {snap}");
    }
    let mut view: std::collections::BTreeMap<String, Value> = snap["services"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| Some((s["service"].as_str()?.to_owned(), s.clone())))
        .collect();
    publish_sample(client, marker, 0, false).await?;
    loop {
        let m = until(ws, seq, SOON, |_| true).await?;
        let Some(svc) = m["data"]["service"].as_str() else {
            continue;
        };
        let entry = view
            .entry(svc.to_owned())
            .or_insert_with(|| json!({"service": svc, "alerts": []}));
        match m["type"].as_str() {
            Some("status") if m["data"]["status"] == "RETIRED" => {
                view.remove(svc);
            }
            Some("status") => entry["status"] = m["data"]["status"].clone(),
            Some("alert") => {
                let alerts = entry["alerts"].as_array_mut().context("alerts")?;
                alerts.retain(|a| a["id"] != m["data"]["id"]);
                if m["data"]["state"] == "firing" {
                    alerts.push(m["data"].clone());
                }
            }
            _ => {}
        }
        if is_status(&m, marker, "HEALTHY") {
            return Ok(view);
        }
    }
}
