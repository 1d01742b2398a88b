//! Helpers: start a simulator, read its samples, talk to it over NATS and HTTP.

use std::net::SocketAddr;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use serde_json::Value;
use vitals_protocol::{ChaosReply, MetricSample, ServiceName, parse_sample, subjects};
use vitals_testkit::{ChildProc, SOON, next_within};

/// Long enough to see several 100 ms intervals go by.
pub const QUIET_WINDOW: Duration = Duration::from_millis(800);

pub struct Sim {
    pub proc: ChildProc,
    pub addr: SocketAddr,
}

impl Sim {
    /// `simulator --service auth` at a 100 ms interval on a free port, plus `extra` args.
    pub async fn start(nats_url: &str, extra: &[&str]) -> Self {
        let mut args = vec![
            "--service",
            "auth",
            "--nats-url",
            nats_url,
            "--http-addr",
            "127.0.0.1:0",
            "--interval-ms",
            "100",
        ];
        args.extend_from_slice(extra);
        Self::start_args(&args).await
    }

    pub async fn start_args(args: &[&str]) -> Self {
        let proc = ChildProc::spawn("simulator", args, &[]).expect("spawn simulator");
        let addr = proc.http_addr().await.expect("simulator listening");
        Self { proc, addr }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        get_json(&self.url(path), SOON).await.expect("GET")
    }

    pub async fn post(&self, path: &str, body: &str) -> (u16, Value) {
        let resp = http(SOON)
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("POST");
        let code = resp.status().as_u16();
        (code, resp.json().await.expect("JSON body"))
    }

    pub async fn healthz_field(&self, field: &str) -> Value {
        self.get("/healthz").await.1[field].clone()
    }
}

pub fn http(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .no_proxy()
        .build()
        .expect("http client")
}

pub async fn get_json(url: &str, timeout: Duration) -> reqwest::Result<(u16, Value)> {
    let resp = http(timeout).get(url).send().await?;
    let code = resp.status().as_u16();
    Ok((code, resp.json().await?))
}

pub fn name(raw: &str) -> ServiceName {
    ServiceName::parse(raw).expect("valid name")
}

pub async fn subscribe(client: &async_nats::Client, service: &str) -> async_nats::Subscriber {
    let sub = client
        .subscribe(subjects::metrics(&name(service)))
        .await
        .expect("subscribe");
    client.flush().await.expect("flush");
    sub
}

/// The next sample, checked exactly as the monitor would check it.
pub async fn next_sample(sub: &mut async_nats::Subscriber) -> MetricSample {
    let msg = next_within(sub, SOON).await.expect("a sample");
    let token = subjects::service_of_metrics(&msg.subject).expect("metrics subject");
    parse_sample(token, &msg.payload).expect("a valid sample")
}

/// Reads samples until one satisfies `pred` (bounded by SOON overall).
pub async fn sample_where(
    sub: &mut async_nats::Subscriber,
    what: &str,
    pred: impl Fn(&MetricSample) -> bool,
) -> MetricSample {
    let found = tokio::time::timeout(SOON, async {
        loop {
            let s = next_sample(sub).await;
            if pred(&s) {
                return s;
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("no sample where {what} within {SOON:?}"))
}

/// Throws away what is already buffered: after a chaos reply, everything the simulator
/// published before it has arrived (one connection, in order).
pub fn drain(sub: &mut async_nats::Subscriber) -> usize {
    let mut n = 0;
    while let Some(Some(_)) = sub.next().now_or_never() {
        n += 1;
    }
    n
}

/// A chaos request; "no responders" is retried (bounded) because a simulator that just
/// started may not have subscribed yet.
pub async fn chaos(client: &async_nats::Client, service: &str, body: &str) -> ChaosReply {
    let subject = subjects::chaos(&name(service));
    let msg = tokio::time::timeout(SOON, async {
        loop {
            match client
                .request(subject.clone(), body.to_owned().into())
                .await
            {
                Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                other => return other,
            }
        }
    })
    .await
    .expect("chaos reply in time")
    .expect("chaos request");
    serde_json::from_slice(&msg.payload).expect("a ChaosReply")
}
