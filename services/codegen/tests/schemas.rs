//! The published schemas accept what Vitals really writes (values serialized by serde, and
//! frames a real gateway sent) and refuse what it never writes; the TypeScript keeps the
//! shapes serde gives; `check` notices every kind of stale file.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::{Value, json};
use vitals_protocol::{
    ActiveAlert, AlertEvent, AlertName, AlertState, ChaosReply, ChaosRequest, ClientMessage,
    FaultMode, FeedMessage, FeedSnapshot, Figures, GatewayState, History, HistoryEntry,
    HostFigures, MetricSample, MonitorHeartbeat, ProbeResult, RetireReply, RetireRequest,
    ServiceName, ServiceState, ServiceSummary, Snapshot, SnapshotRequest, Source, Status,
    StatusChange, Target, TopProcess,
};

fn validators() -> BTreeMap<&'static str, (boon::Schemas, boon::SchemaIndex)> {
    let mut out = BTreeMap::new();
    for (name, schema) in codegen::schemas() {
        let mut schemas = boon::Schemas::new();
        let mut compiler = boon::Compiler::new();
        let url = format!("mem:///{name}.json");
        compiler.add_resource(&url, schema).unwrap();
        let index = compiler
            .compile(&url, &mut schemas)
            .unwrap_or_else(|e| panic!("{name}.json does not compile: {e:#}"));
        out.insert(name, (schemas, index));
    }
    out
}

fn errors(
    v: &BTreeMap<&str, (boon::Schemas, boon::SchemaIndex)>,
    name: &str,
    value: &Value,
) -> Option<String> {
    let (schemas, index) = v.get(name).unwrap_or_else(|| panic!("no schema {name}"));
    schemas
        .validate(value, *index)
        .err()
        .map(|e| format!("{e}"))
}

fn to_value<T: Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap()
}

fn name(s: &str) -> ServiceName {
    ServiceName::parse(s).unwrap()
}

fn figures() -> Figures {
    Figures {
        cpu_pct: Some(23.4),
        mem_pct: Some(41.0),
        error_rate: 0.004,
        latency_ms: 38.2,
        latency_avg_ms: 35.1,
        latency_p95_ms: 52.0,
        latency_p99_ms: 61.3,
        uptime_pct: 100.0,
        samples: 60,
        window_s: 60,
        apdex: Some(0.93),
        apdex_t_ms: Some(100),
    }
}

fn state(service: &str, status: Status) -> ServiceState {
    ServiceState {
        service: name(service),
        status,
        since_ms: 1_763_900_000_000,
        last_seen_ms: if status == Status::Unknown {
            None
        } else {
            Some(1_763_900_004_000)
        },
        reasons: vec!["no sample for 3.1 s".into()],
        alerts: vec![ActiveAlert {
            id: format!("{service}:SERVICE_DOWN:1763900004211"),
            alert: AlertName::ServiceDown,
            value: 3.1,
            threshold: 3.0,
            since_ms: 1_763_900_004_211,
            marks: vitals_protocol::AlertMarks {
                severity: Some("critical".into()),
                ..Default::default()
            },
        }],
        instance: format!("{service}-3f9a2c"),
        health_url: "http://127.0.0.1:3002/health".into(),
        figures: figures(),
        last_alert: Some(vitals_protocol::AlertMark {
            id: format!("{service}:SERVICE_DOWN:1763900004211"),
            state: vitals_protocol::AlertState::Firing,
        }),
        interval_ms: Some(1000),
        source: Default::default(),
        probe: None,
        host: None,
    }
}

/// From JSON, so fields the monitor adds with a serde default need no edit here.
fn heartbeat() -> MonitorHeartbeat {
    serde_json::from_value(json!({
        "monitor_id": "m-1", "version": "0.1.0", "at_ms": 1_763_900_005_000_u64,
        "started_ms": 1_763_900_000_000_u64, "uptime_s": 5, "interval_ms": 1000,
        "heartbeat_timeout_ms": 3000, "services": 4, "samples_total": 20, "samples_per_s": 4.0,
        "refused_total": 1, "refusals": {"bad_name": 1}, "slow_consumer_drops": 0,
        "publish_drops": 0, "in_grace": false
    }))
    .unwrap()
}

fn alert(state: AlertState, reason: Option<&str>) -> AlertEvent {
    AlertEvent {
        id: "billing:SERVICE_DOWN:1763900004211".into(),
        service: name("billing"),
        alert: AlertName::ServiceDown,
        state,
        value: 3.1,
        threshold: 3.0,
        since_ms: 1_763_900_004_211,
        at_ms: 1_763_900_004_211,
        reason: reason.map(str::to_owned),
        marks: vitals_protocol::AlertMarks {
            severity: Some("critical".into()),
            ..Default::default()
        },
        update: None,
    }
}

fn status_change(status: Status) -> StatusChange {
    StatusChange {
        service: name("billing"),
        status,
        previous: Status::Healthy,
        at_ms: 1_763_900_004_211,
        reasons: vec!["stopped".into()],
    }
}

fn gateway(live: bool) -> GatewayState {
    GatewayState {
        nats_connected: true,
        at_ms: 1_763_900_000_000,
        source: "monitor".into(),
        live,
        problem: (!live).then(|| "subscription ended".to_owned()),
        health_origins: vec!["http://127.0.0.1:3001".into(), "http://localhost:*".into()],
    }
}

fn frame(seq: u64, msg: &FeedMessage) -> Value {
    let mut v = to_value(msg);
    v.as_object_mut().unwrap().insert("seq".into(), json!(seq));
    v
}

/// A value of every payload type, serialized by serde as the services do, in every shape
/// serde can give it (optional fields present and absent, each enum variant).
fn real_values() -> Vec<(&'static str, Value)> {
    let sample = |stopping| MetricSample {
        service: name("billing"),
        instance: "billing-3f9a2c".into(),
        seq: 41,
        ts_ms: 1_763_900_000_000,
        cpu_pct: Some(23.4),
        mem_pct: Some(41.0),
        latency_ms: 38.2,
        error_rate: 0.004,
        health_url: "http://127.0.0.1:3002/health".into(),
        stopping,
        source: Default::default(),
        probe: None,
        host: None,
        interval_ms: None,
    };
    let probe_result = ProbeResult {
        ok: false,
        status_code: Some(503),
        error: Some("status 503".into()),
        apdex_t_ms: Some(100),
        cert_expires_ms: Some(1_764_159_200_000),
        cert_warn_days: Some(14),
    };
    let probe_sample = MetricSample {
        service: name("payments"),
        instance: "prober-a1b2c3".into(),
        source: Source::Probe,
        cpu_pct: None,
        mem_pct: None,
        latency_ms: 212.0,
        error_rate: 0.1,
        health_url: String::new(),
        probe: Some(probe_result.clone()),
        interval_ms: Some(10_000),
        ..sample(false)
    };
    let host = HostFigures {
        cores: vec![12.5, 80.0, 3.1, 0.0],
        load1: 1.2,
        load5: 0.9,
        load15: 0.7,
        disk_used_pct: Some(61.4),
        procs: 312,
        top: vec![TopProcess {
            name: "postgres".into(),
            pid: 812,
            cpu_pct: 140.5,
            mem_pct: 12.0,
        }],
    };
    let agent_sample = MetricSample {
        service: name("web-1"),
        instance: "agent-web-1-9f8e7d".into(),
        source: Source::Agent,
        latency_ms: 0.0,
        error_rate: 0.0,
        health_url: String::new(),
        host: Some(host.clone()),
        ..sample(false)
    };
    let snapshot = |next_after: Option<&str>| Snapshot {
        monitor_id: "m-1".into(),
        at_ms: 1_763_900_005_000,
        version: 7,
        page: 0,
        pages: 2,
        total: 3,
        next_after: next_after.map(name),
        services: vec![
            state("auth", Status::Healthy),
            state("billing", Status::Down),
        ],
    };
    let summary = ServiceSummary {
        service: name("billing"),
        status: Status::Healthy,
        at_ms: 1_763_900_001_000,
        last_seen_ms: Some(1_763_900_000_990),
        instance: "billing-3f9a2c".into(),
        health_url: "http://127.0.0.1:3002/health".into(),
        figures: figures(),
        source: Default::default(),
        probe: None,
        host: None,
    };
    let probe_summary = ServiceSummary {
        service: name("payments"),
        health_url: String::new(),
        figures: Figures {
            cpu_pct: None,
            mem_pct: None,
            ..figures()
        },
        source: Source::Probe,
        probe: Some(probe_result),
        ..summary.clone()
    };
    let agent_summary = ServiceSummary {
        service: name("web-1"),
        source: Source::Agent,
        host: Some(host),
        ..summary.clone()
    };
    let feed_snapshot = |monitor: Option<MonitorHeartbeat>| {
        FeedMessage::Snapshot(FeedSnapshot {
            resync: monitor.is_none(),
            at_ms: 1_763_900_005_000,
            gateway: gateway(true),
            monitor_seen_ms: monitor.as_ref().map(|m| m.at_ms),
            monitor,
            services: vec![
                state("auth", Status::Healthy),
                state("new", Status::Unknown),
                state("billing", Status::Degraded),
            ],
        })
    };
    let messages = [
        feed_snapshot(Some(heartbeat())),
        feed_snapshot(None),
        FeedMessage::Status {
            data: status_change(Status::Retired),
        },
        FeedMessage::Alert {
            data: alert(AlertState::Resolved, Some("retired")),
        },
        FeedMessage::Metrics {
            data: summary.clone(),
        },
        FeedMessage::Monitor { data: heartbeat() },
        FeedMessage::Gateway {
            data: gateway(false),
        },
    ];
    let mut out = vec![
        ("MetricSample", to_value(&sample(false))),
        ("MetricSample", to_value(&sample(true))),
        ("MetricSample", to_value(&probe_sample)),
        ("MetricSample", to_value(&agent_sample)),
        ("ServiceSummary", to_value(&probe_summary)),
        ("ServiceSummary", to_value(&agent_summary)),
        ("StatusChange", to_value(&status_change(Status::Down))),
        ("StatusChange", to_value(&status_change(Status::Retired))),
        ("AlertEvent", to_value(&alert(AlertState::Firing, None))),
        (
            "AlertEvent",
            to_value(&alert(AlertState::Resolved, Some("retired"))),
        ),
        ("ServiceSummary", to_value(&summary)),
        ("ServiceState", to_value(&state("billing", Status::Down))),
        ("ServiceState", to_value(&state("fresh", Status::Unknown))),
        ("Snapshot", to_value(&snapshot(Some("billing")))),
        ("Snapshot", to_value(&snapshot(None))),
        ("MonitorHeartbeat", to_value(&heartbeat())),
        (
            "History",
            to_value(&History {
                events: vec![
                    HistoryEntry::Status {
                        stream_seq: 9,
                        data: status_change(Status::Down),
                    },
                    HistoryEntry::Alert {
                        stream_seq: 10,
                        data: alert(AlertState::Firing, None),
                    },
                ],
            }),
        ),
        ("ClientMessage", to_value(&ClientMessage::Resync)),
        (
            "Target",
            to_value(
                &Target::from_json(
                    "payments",
                    br#"{"kind":"http","url":"https://pay.example/health","interval_ms":500,"expect_status":[200,"300-399"],"method":"HEAD","headers":{"X-Probe":"vitals"},"apdex_t_ms":80}"#,
                )
                .unwrap(),
            ),
        ),
        (
            "Target",
            to_value(&Target::from_json("db", br#"{"kind":"tcp","address":"db:5432"}"#).unwrap()),
        ),
        ("SnapshotRequest", to_value(&SnapshotRequest::default())),
        (
            "SnapshotRequest",
            to_value(&SnapshotRequest {
                page: Some(3),
                after: None,
            }),
        ),
        (
            "RetireRequest",
            to_value(&RetireRequest {
                service: "billing".into(),
            }),
        ),
        (
            "RetireReply",
            to_value(&RetireReply {
                ok: true,
                service: Some("billing".into()),
                previous: Some(Status::Down),
                resolved: vec!["billing:SERVICE_DOWN:1".into()],
                error: None,
            }),
        ),
        (
            "RetireReply",
            to_value(&RetireReply::refused(Some("nope"), "unknown service")),
        ),
        (
            "ChaosRequest",
            to_value(&ChaosRequest {
                mode: FaultMode::Latency,
                for_s: Some(30.0),
            }),
        ),
        (
            "ChaosRequest",
            to_value(&ChaosRequest {
                mode: FaultMode::Clear,
                for_s: None,
            }),
        ),
        (
            "ChaosReply",
            to_value(&ChaosReply {
                ok: true,
                service: "billing".into(),
                mode: FaultMode::Latency,
                until_ms: Some(1_763_900_030_000),
                error: None,
            }),
        ),
    ];
    for (seq, m) in messages.iter().enumerate() {
        out.push(("FeedMessage", frame(seq as u64, m)));
    }
    out.extend(alerting_values());
    out
}

/// Silences, acknowledgements, a marked alert and a dead letter, as their writers make them.
fn alerting_values() -> Vec<(&'static str, Value)> {
    use vitals_protocol::{
        Ack, AckRequest, AlertMarks, AlertUpdate, DeadLetter, Silence, SilenceExpire, SilenceList,
        SilenceMatchers, SilenceReply, SilenceRequest,
    };
    let request = SilenceRequest {
        matchers: SilenceMatchers {
            service: "bill*".into(),
            alert: Some(AlertName::HighLatency),
        },
        starts_ms: None,
        ends_ms: None,
        for_s: Some(3600),
        created_by: "ann".into(),
        comment: "db migration".into(),
    };
    let silence: Silence = request
        .clone()
        .into_silence("0f3a9c2d1b7e4a65".into(), 1_763_900_000_000)
        .expect("a valid silence");
    let marked = AlertEvent {
        update: Some(AlertUpdate::Acked),
        marks: AlertMarks {
            severity: Some("warning".into()),
            inhibited_by: Some(name("auth")),
            silenced: true,
            acked_by: Some("ann".into()),
        },
        ..alert(AlertState::Firing, None)
    };
    let inbox = vitals_protocol::InboxList {
        ok: true,
        received: 1,
        kept: 200,
        notifications: vec![vitals_protocol::InboxNotification {
            received_ms: 1_763_900_005_300,
            receiver: "inbox".into(),
            status: AlertState::Firing,
            group_key: "{}/{route=0}:{receiver=\"inbox\"}".into(),
            alerts: vec![vitals_protocol::InboxAlert {
                status: AlertState::Firing,
                alertname: "SERVICE_DOWN".into(),
                service: "billing".into(),
                severity: "critical".into(),
                vitals_id: "billing:SERVICE_DOWN:1763900004211".into(),
                summary: "billing is DOWN: no sample for 3.1 s".into(),
                acked_by: String::new(),
                starts_at: "2025-11-23T12:13:24.211Z".into(),
                ends_at: "0001-01-01T00:00:00Z".into(),
            }],
            truncated: 0,
        }],
    };
    vec![
        ("AlertEvent", to_value(&marked)),
        ("InboxList", to_value(&inbox)),
        ("SilenceRequest", to_value(&request)),
        ("Silence", to_value(&silence)),
        (
            "SilenceExpire",
            to_value(&SilenceExpire {
                id: silence.id.clone(),
            }),
        ),
        ("SilenceReply", to_value(&SilenceReply::done(&silence.id))),
        (
            "SilenceReply",
            to_value(&SilenceReply::refused("unknown silence")),
        ),
        (
            "SilenceList",
            to_value(&SilenceList {
                ok: true,
                silences: vec![silence],
            }),
        ),
        (
            "AckRequest",
            to_value(&AckRequest {
                id: "billing:SERVICE_DOWN:1763900004211".into(),
                by: "ann".into(),
            }),
        ),
        (
            "Ack",
            to_value(&Ack {
                id: "billing:SERVICE_DOWN:1763900004211".into(),
                by: "ann".into(),
                at_ms: 1_763_900_010_000,
            }),
        ),
        (
            "DeadLetter",
            to_value(&DeadLetter {
                receiver: "ops".into(),
                alert_id: "billing:SERVICE_DOWN:1763900004211".into(),
                state: AlertState::Firing,
                reason: "status 500".into(),
                attempts: 8,
                at_ms: 1_763_900_004_211,
                dead_ms: 1_763_900_100_000,
            }),
        ),
    ]
}

#[test]
fn every_schema_accepts_what_serde_writes() {
    let v = validators();
    let values = real_values();
    for (name, value) in &values {
        if let Some(e) = errors(&v, name, value) {
            panic!("{name} refused a real value {value}:\n{e}");
        }
    }
    // Every published schema is exercised.
    for name in v.keys() {
        assert!(
            values.iter().any(|(n, _)| n == name),
            "no real value for {name}"
        );
    }
}

#[test]
fn feed_schema_accepts_frames_a_real_gateway_sent() {
    // Frames recorded from a real gateway by its integration test: the committed copy the
    // dashboard's tests use, read by the Rust types and written again (so an older recording
    // is held to today's writer), and as sent when scripts/test.sh has just recorded a fresh
    // copy (FEED_FIXTURE_OUT, written by the gateway's tests in the same run).
    let committed =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../frontend/src/lib/fixtures/feed.json");
    let read = |path: &Path| -> Vec<Value> {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let v = validators();
    let frames = read(&committed);
    assert!(!frames.is_empty());
    for f in &frames {
        let msg: FeedMessage = serde_json::from_value(f.clone())
            .unwrap_or_else(|e| panic!("a recorded frame does not parse ({e}): {f}"));
        let again = frame(f["seq"].as_u64().unwrap(), &msg);
        if let Some(e) = errors(&v, "FeedMessage", &again) {
            panic!("a recorded frame, written again, is refused: {again}\n{e}");
        }
    }
    if let Some(fresh) = std::env::var_os("FEED_FIXTURE_OUT").map(std::path::PathBuf::from) {
        if fresh.exists() {
            for f in &read(&fresh) {
                if let Some(e) = errors(&v, "FeedMessage", f) {
                    panic!("a frame the gateway just sent is refused: {f}\n{e}");
                }
            }
        }
    }
}

#[test]
fn schemas_refuse_what_vitals_never_writes() {
    let v = validators();
    // The last value of each type (for FeedMessage: a `gateway` frame).
    let good: BTreeMap<&str, Value> = real_values().into_iter().collect();
    let bad = |name: &str, edit: &dyn Fn(&mut Value)| {
        let mut value = good[name].clone();
        edit(&mut value);
        assert!(
            errors(&v, name, &value).is_some(),
            "{name} accepted {value}"
        );
    };
    bad("StatusChange", &|x| x["status"] = json!("SIDEWAYS"));
    bad("StatusChange", &|x| x["service"] = json!("a.b"));
    bad("StatusChange", &|x| x["at_ms"] = json!("1763900004211"));
    bad("StatusChange", &|x| {
        x.as_object_mut().unwrap().remove("reasons");
    });
    bad("AlertEvent", &|x| x["state"] = json!("pending"));
    bad("AlertEvent", &|x| x["at_ms"] = json!(-1));
    bad("MetricSample", &|x| x["cpu_pct"] = json!(100.5));
    bad("MetricSample", &|x| x["error_rate"] = json!(-0.1));
    bad("MetricSample", &|x| {
        x["health_url"] = json!("javascript:alert(1)")
    });
    bad("MetricSample", &|x| x["instance"] = json!(""));
    bad("ServiceState", &|x| x["last_seen_ms"] = json!(1.5));
    bad("Snapshot", &|x| x["services"] = json!({}));
    bad("FeedMessage", &|x| {
        x.as_object_mut().unwrap().remove("seq");
    });
    bad("FeedMessage", &|x| x["type"] = json!("subscribe"));
    bad("FeedMessage", &|x| x["data"]["live"] = json!("no"));
    bad("ClientMessage", &|x| x["type"] = json!("subscribe"));
    bad("ClientMessage", &|x| x["extra"] = json!(1));
    bad("ChaosRequest", &|x| x["mode"] = json!("meltdown"));
    bad("SnapshotRequest", &|x| x["pgae"] = json!(1));
}

#[test]
fn typescript_keeps_the_wire_shapes() {
    let ts = codegen::typescript();
    assert!(!ts.contains("bigint"), "u64 must be a number");
    for needle in [
        "export type Status = \"UNKNOWN\" | \"HEALTHY\" | \"DEGRADED\" | \"DOWN\" | \"RETIRED\";",
        // Written only when set: optional.
        "  reason?: string | null;",
        "  problem?: string | null;",
        "  next_after?: ServiceName | null;",
        "  stopping?: boolean;",
        "  resolved?: Array<string>;",
        // Always written, even when None: required, nullable.
        "  last_seen_ms: number | null;",
        "  monitor: MonitorHeartbeat | null;",
        // serde(default) on read, always written: required.
        "  live: boolean;",
        "  version: number;",
        "export type ServiceName = string;",
        "  | { \"type\": \"gateway\", data: GatewayState };",
        "  | { \"kind\": \"alert\", stream_seq: number, data: AlertEvent };",
    ] {
        assert!(ts.contains(needle), "missing `{needle}` in\n{ts}");
    }
}

#[test]
fn check_names_every_stale_file_and_write_repairs_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let files = codegen::generate();
    let first = codegen::check(root, &files).unwrap();
    assert_eq!(first.len(), files.len(), "all missing at first");
    assert!(
        first
            .iter()
            .all(|s| matches!(s, codegen::Stale::Missing(_)))
    );

    codegen::write(root, &files).unwrap();
    assert_eq!(codegen::check(root, &files).unwrap(), vec![]);

    // A hand edit, a leftover schema of a removed type, a deleted file.
    let ts = root.join(codegen::TS_FILE);
    std::fs::write(
        &ts,
        std::fs::read_to_string(&ts)
            .unwrap()
            .replace("RETIRED", "GONE"),
    )
    .unwrap();
    let old = root.join(codegen::SCHEMA_DIR).join("OldPayload.json");
    std::fs::write(&old, "{}").unwrap();
    std::fs::write(root.join(codegen::SCHEMA_DIR).join("notes.md"), "not ours").unwrap();
    std::fs::remove_file(root.join(codegen::SCHEMA_DIR).join("StatusChange.json")).unwrap();
    let stale = codegen::check(root, &files).unwrap();
    let message = codegen::stale_message(&stale);
    for expected in [
        "frontend/src/lib/generated/protocol.ts differs",
        "docs/schema/StatusChange.json is missing",
        "docs/schema/OldPayload.json is no longer generated",
        "cargo run -p codegen",
    ] {
        assert!(
            message.contains(expected),
            "`{expected}` not in:\n{message}"
        );
    }
    assert_eq!(stale.len(), 3, "{message}");

    codegen::write(root, &files).unwrap();
    assert_eq!(codegen::check(root, &files).unwrap(), vec![]);
    assert!(!old.exists());
    assert!(root.join(codegen::SCHEMA_DIR).join("notes.md").exists());
}

#[test]
fn generation_is_deterministic() {
    assert_eq!(codegen::generate(), codegen::generate());
}
