//! What a web page on another origin, a forged reply subject and a slow client can do to
//! a simulator (docs/SECURITY.md): nothing but read `/health` and `/data`.

use std::time::Duration;

use vitals_testkit::{NatsServer, SOON, collect_for, slow, wait_until};

use crate::support::{QUIET_WINDOW, Sim, chaos, http};

const EVIL: &str = "http://evil.example";

async fn post_raw(
    sim: &Sim,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, serde_json::Value) {
    let mut req = http(SOON).post(sim.url(path)).body(body.to_owned());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("POST");
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(serde_json::Value::Null))
}

async fn mode(sim: &Sim) -> String {
    sim.get("/faults").await.1["mode"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// A cross-site form post (what any page can send without asking) with a crash body is
/// refused, counted, and the simulator keeps running.
#[tokio::test]
async fn a_cross_site_form_post_cannot_crash_a_simulator() {
    let nats = NatsServer::start().unwrap();
    let mut sim = Sim::start(&nats.url(), &[]).await;
    let crash = r#"{"mode":"crash"}"#;
    for path in ["/faults", "/services/auth/faults"] {
        for ct in [
            "application/x-www-form-urlencoded",
            "text/plain",
            "multipart/form-data",
        ] {
            let (code, _) =
                post_raw(&sim, path, &[("origin", EVIL), ("content-type", ct)], crash).await;
            assert_eq!(code, 415, "{path} {ct}");
        }
        // JSON from a page (only possible after a preflight, which it does not pass) or a
        // rebound DNS name: refused too without an operator token.
        let (code, _) = post_raw(
            &sim,
            path,
            &[("origin", EVIL), ("content-type", "application/json")],
            crash,
        )
        .await;
        assert_eq!(code, 403, "{path} JSON with Origin");
    }
    assert!(
        sim.proc.wait_exit(QUIET_WINDOW).await.is_err(),
        "the simulator exited: {}",
        sim.proc.logs()
    );
    assert_eq!(sim.get("/healthz").await.0, 200);
    assert_eq!(sim.healthz_field("http_writes_refused").await, 8);
    assert_eq!(mode(&sim).await, "clear");

    // The allowed path: JSON without Origin (curl, a script).
    let (code, reply) = post_raw(
        &sim,
        "/faults",
        &[("content-type", "application/json")],
        r#"{"mode":"latency","for_s":30}"#,
    )
    .await;
    assert_eq!((code, reply["mode"].as_str()), (200, Some("latency")));
}

/// CORS: the dashboard's reads answer any origin; a preflight for POST /faults from a
/// foreign origin gets no allow headers, and nothing else answers CORS at all.
#[tokio::test]
async fn only_health_and_data_answer_cors() {
    let nats = NatsServer::start().unwrap();
    let sim = Sim::start(&nats.url(), &[]).await;
    let client = http(SOON);
    let allow_headers = |resp: &reqwest::Response| -> Vec<String> {
        resp.headers()
            .keys()
            .map(|k| k.as_str().to_owned())
            .filter(|k| k.starts_with("access-control-allow"))
            .collect()
    };
    for path in ["/faults", "/services/auth/faults"] {
        let resp = client
            .request(reqwest::Method::OPTIONS, sim.url(path))
            .header("origin", EVIL)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
            .await
            .unwrap();
        assert_eq!(
            allow_headers(&resp),
            Vec::<String>::new(),
            "preflight {path}"
        );
    }
    for path in [
        "/health",
        "/data",
        "/services/auth/health",
        "/services/auth/data",
    ] {
        let resp = client
            .get(sim.url(path))
            .header("origin", EVIL)
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.headers()
                .get("access-control-allow-origin")
                .and_then(|v| v.to_str().ok()),
            Some("*"),
            "{path}"
        );
        assert!(
            resp.headers()
                .get("access-control-allow-credentials")
                .is_none()
        );
    }
    for path in ["/faults", "/healthz", "/metrics"] {
        let resp = client
            .get(sim.url(path))
            .header("origin", EVIL)
            .send()
            .await
            .unwrap();
        assert_eq!(allow_headers(&resp), Vec::<String>::new(), "GET {path}");
    }
}

/// With --operator-token, a write needs it (Bearer), whatever else it carries.
#[tokio::test]
async fn the_operator_token_guards_faults() {
    let nats = NatsServer::start().unwrap();
    let sim = Sim::start(&nats.url(), &["--operator-token", "s3cret"]).await;
    let json = ("content-type", "application/json");
    let body = r#"{"mode":"cpu","for_s":30}"#;
    let (code, _) = post_raw(&sim, "/faults", &[json], body).await;
    assert_eq!(code, 401, "no token");
    let (code, _) = post_raw(
        &sim,
        "/faults",
        &[json, ("authorization", "Bearer nope")],
        body,
    )
    .await;
    assert_eq!(code, 401, "wrong token");
    let (code, _) = post_raw(
        &sim,
        "/faults",
        &[
            ("content-type", "text/plain"),
            ("authorization", "Bearer s3cret"),
        ],
        body,
    )
    .await;
    assert_eq!(code, 415, "the token does not make a form post JSON");
    assert_eq!(mode(&sim).await, "clear");
    let (code, reply) = post_raw(
        &sim,
        "/faults",
        &[json, ("authorization", "Bearer s3cret")],
        body,
    )
    .await;
    assert_eq!((code, reply["mode"].as_str()), (200, Some("cpu")));
    assert_eq!(sim.healthz_field("http_writes_refused").await, 3);
}

/// A chaos request whose reply subject is not an inbox is not acted on and nothing is
/// published on that subject (the simulator would otherwise speak there as itself).
#[tokio::test]
async fn chaos_with_a_reply_outside_an_inbox_publishes_nothing() {
    let nats = NatsServer::start().unwrap();
    let client = nats.client().await.unwrap();
    let sim = Sim::start(&nats.url(), &[]).await;
    // Answered at all only once it has subscribed.
    assert!(chaos(&client, "auth", r#"{"mode":"clear"}"#).await.ok);
    let targets = [
        "health.status.x",
        "metrics.billing",
        "$KV.health_status.x",
        "$JS.API.INFO",
    ];
    let mut subs = Vec::new();
    for t in targets {
        subs.push(client.subscribe(t).await.unwrap());
    }
    client.flush().await.unwrap();
    for t in targets {
        client
            .publish_with_reply("chaos.auth", t, r#"{"mode":"cpu","for_s":60}"#.into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    let refused = wait_until(SOON, || async {
        (sim.healthz_field("chaos_bad_reply").await == targets.len()).then_some(())
    })
    .await;
    assert!(refused.is_some(), "{}", sim.proc.logs());
    for (t, sub) in targets.iter().zip(subs.iter_mut()) {
        let got = collect_for(sub, Duration::from_millis(200)).await;
        assert!(
            got.is_empty(),
            "{t}: {} message(s) published there",
            got.len()
        );
    }
    assert_eq!(
        mode(&sim).await,
        "clear",
        "a refused request changes nothing"
    );
    // An inbox still works.
    assert!(
        chaos(&client, "auth", r#"{"mode":"cpu","for_s":1}"#)
            .await
            .ok
    );
}

#[tokio::test]
async fn unfinished_requests_are_closed_after_the_header_timeout() {
    let nats = NatsServer::start().unwrap();
    let sim = Sim::start(&nats.url(), &["--http-header-timeout-ms", "300"]).await;
    slow::check_unfinished_requests_are_closed(sim.addr, "/health", SOON)
        .await
        .unwrap();
    assert_eq!(sim.get("/healthz").await.0, 200);
}

#[tokio::test]
async fn connections_beyond_the_per_address_cap_are_refused() {
    let nats = NatsServer::start().unwrap();
    let sim = Sim::start(
        &nats.url(),
        &[
            "--http-max-conns-per-ip",
            "8",
            "--http-header-timeout-ms",
            "600000",
        ],
    )
    .await;
    slow::check_per_address_cap(sim.addr, "/health", 8, SOON)
        .await
        .unwrap();
}

/// A connection on which nothing moves (a request parked by the hang fault) is closed
/// after the idle timeout; the simulator is fine.
#[tokio::test]
async fn a_connection_with_nothing_moving_is_closed_after_the_idle_timeout() {
    let nats = NatsServer::start().unwrap();
    let client = nats.client().await.unwrap();
    let sim = Sim::start(&nats.url(), &["--http-idle-timeout-ms", "300"]).await;
    assert!(chaos(&client, "auth", r#"{"mode":"hang"}"#).await.ok);
    let head = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut parked = slow::open_unfinished(sim.addr, 3, head.as_bytes(), None)
        .await
        .unwrap();
    assert_eq!(slow::count_closed_within(&mut parked, SOON).await, 3);
    assert!(chaos(&client, "auth", r#"{"mode":"clear"}"#).await.ok);
    assert_eq!(sim.get("/health").await.0, 200);
}
