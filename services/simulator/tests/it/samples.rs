//! What a healthy simulator publishes and serves.

use std::collections::BTreeSet;

use vitals_testkit::{NatsServer, SOON, next_within};

use crate::support::{Sim, chaos, get_json, http, next_sample, sample_where, subscribe};

#[tokio::test]
async fn samples_arrive_in_order_and_point_at_a_live_health_endpoint() {
    let nats = NatsServer::start().unwrap();
    let client = nats.client().await.unwrap();
    let mut sub = subscribe(&client, "auth").await;
    let sim = Sim::start(&nats.url(), &[]).await;

    let mut samples = Vec::new();
    for _ in 0..5 {
        samples.push(next_sample(&mut sub).await);
    }
    let seqs: Vec<u64> = samples.iter().map(|s| s.seq).collect();
    assert_eq!(seqs, [0, 1, 2, 3, 4]);
    let first = &samples[0];
    assert_eq!(first.service.as_str(), "auth");
    assert!(first.instance.starts_with("auth-"), "{}", first.instance);
    assert!(
        samples
            .iter()
            .all(|s| s.instance == first.instance && !s.stopping)
    );
    assert!(samples.windows(2).all(|w| w[0].ts_ms <= w[1].ts_ms));
    assert_eq!(first.health_url, format!("http://{}/health", sim.addr));

    let (code, body) = get_json(&first.health_url, SOON).await.unwrap();
    assert_eq!(code, 200);
    assert_eq!(body["service"], "auth");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["mode"], "clear");
    assert_eq!(body["instance"], first.instance.as_str());

    let (code, data) = sim.get("/data").await;
    assert_eq!(code, 200);
    assert_eq!(data["service"], "auth");
    assert!(!data["items"].as_array().unwrap().is_empty());

    let (code, healthz) = sim.get("/healthz").await;
    assert_eq!(code, 200);
    assert!(healthz["samples_sent"].as_u64().unwrap() >= 5, "{healthz}");
    assert_eq!(healthz["nats_connected"], true);

    let metrics = http(SOON).get(sim.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status().as_u16(), 200);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("simulator_samples_sent_total"), "{text}");
    assert!(text.contains("simulator_nats_connected 1"), "{text}");
}

#[tokio::test]
async fn health_is_open_to_the_dashboard_origin() {
    let nats = NatsServer::start().unwrap();
    let sim = Sim::start(&nats.url(), &[]).await;
    let resp = http(SOON)
        .get(sim.url("/health"))
        .header("origin", "http://localhost:5173")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn one_process_can_simulate_many_services() {
    let nats = NatsServer::start().unwrap();
    let client = nats.client().await.unwrap();
    let mut sub = client.subscribe("metrics.*").await.unwrap();
    client.flush().await.unwrap();
    let url = nats.url();
    let sim = Sim::start_args(&[
        "--count",
        "20",
        "--prefix",
        "load-",
        "--nats-url",
        &url,
        "--http-addr",
        "127.0.0.1:0",
        "--interval-ms",
        "100",
    ])
    .await;

    let mut seen = BTreeSet::new();
    let mut health_urls = Vec::new();
    tokio::time::timeout(SOON, async {
        while seen.len() < 20 {
            let msg = next_within(&mut sub, SOON).await.unwrap();
            let token = vitals_protocol::subjects::service_of_metrics(&msg.subject)
                .unwrap()
                .to_owned();
            let s = vitals_protocol::parse_sample(&token, &msg.payload).unwrap();
            if seen.insert(token) {
                health_urls.push(s.health_url);
            }
        }
    })
    .await
    .expect("samples from 20 services");
    let want: BTreeSet<String> = (0..20).map(|i| format!("load-{i}")).collect();
    assert_eq!(seen, want);

    for url in health_urls.iter().take(3) {
        assert!(
            url.starts_with(&format!("http://{}/services/load-", sim.addr)),
            "{url}"
        );
        let (code, body) = get_json(url, SOON).await.unwrap();
        assert_eq!(code, 200, "{url}");
        assert_eq!(body["status"], "ok");
    }
    let (code, _) = sim.get("/services/nope/health").await;
    assert_eq!(code, 404);

    // Chaos reaches one service of the many, and only that one.
    let reply = chaos(&client, "load-7", r#"{"mode":"cpu"}"#).await;
    assert!(reply.ok && reply.service == "load-7", "{reply:?}");
    let mut sub7 = crate::support::subscribe(&client, "load-7").await;
    sample_where(&mut sub7, "load-7 cpu > 85", |s| {
        s.cpu_pct.is_some_and(|c| c > 85.0)
    })
    .await;
    let (_, other) = sim.get("/services/load-8/health").await;
    assert_eq!(other["mode"], "clear");
    let (_, seven) = sim.get("/services/load-7/health").await;
    assert_eq!(seven["status"], "degraded");
}
