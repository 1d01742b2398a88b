//! MetricSample: what a source (a simulator, a probe, a host agent, any program) publishes
//! on `metrics.<service>`, and how the monitor decides whether to accept one.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::name::{ServiceName, validate_name};
use crate::source::{HostFigures, ProbeResult, Source, check_range};

/// A sample larger than this is refused before it is parsed (a simulator's is ~300 bytes;
/// an agent's on a 512-core host, every field at its widest, about 6 KB).
pub const MAX_SAMPLE_BYTES: usize = 8 * 1024;
/// Longest accepted `instance`, in characters (Unicode scalar values), not bytes.
pub const MAX_INSTANCE_LEN: usize = 128;
pub use crate::url::MAX_URL_LEN;
/// Largest accepted `seq` and `ts_ms`: the largest integer a JSON reader holding numbers as
/// doubles (JavaScript, the dashboard) reads exactly.
pub const MAX_JSON_INT: u64 = (1 << 53) - 1;
/// Largest accepted `latency_ms`: one hour. Anything slower is an outage, not a latency, and
/// the bound keeps every figure derived from it (sums, the f32 window) finite.
pub const MAX_LATENCY_MS: f64 = 3_600_000.0;

/// One heartbeat with the service's current figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
pub struct MetricSample {
    pub service: ServiceName,
    #[cfg_attr(feature = "schema", schemars(length(min = 1, max = 128)))]
    pub instance: String,
    /// Per instance, increasing by one per sample; at most 2^53 - 1.
    #[cfg_attr(feature = "schema", schemars(range(max = 9_007_199_254_740_991u64)))]
    pub seq: u64,
    /// The sender's clock, epoch ms. Informational: health is judged on receipt. At most 2^53 - 1.
    #[cfg_attr(feature = "schema", schemars(range(max = 9_007_199_254_740_991u64)))]
    pub ts_ms: u64,
    /// Absent where the source has no such figure (a probe): rules on it are not judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(range(min = 0.0, max = 100.0)))]
    pub cpu_pct: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(range(min = 0.0, max = 100.0)))]
    pub mem_pct: Option<f64>,
    #[cfg_attr(feature = "schema", schemars(range(min = 0.0, max = 3_600_000.0)))]
    pub latency_ms: f64,
    #[cfg_attr(feature = "schema", schemars(range(min = 0.0, max = 1.0)))]
    pub error_rate: f64,
    /// Where a browser can reach this service's `/health`. Empty only for a probe or an
    /// agent with no endpoint a browser may poll.
    #[cfg_attr(
        feature = "schema",
        schemars(length(max = 512), pattern(r#"^(https?://[!#-;=?-\[\]_a-z~]+)?$"#))
    )]
    pub health_url: String,
    /// Set on the last sample a service sends when told to stop.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopping: bool,
    /// Who sent it; `simulator` when absent.
    #[serde(default, skip_serializing_if = "Source::is_simulator")]
    pub source: Source,
    /// The probe's outcome: present exactly on `source: "probe"` samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeResult>,
    /// The host's figures: only on `source: "agent"` samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostFigures>,
    /// How often this sender publishes, when it is slower than the monitor's heartbeat
    /// timeout allows for: silence is then judged against `silence_intervals` of these (a
    /// target probed every 10 s is not DOWN 3 s after each probe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 86_400_000)))]
    pub interval_ms: Option<u64>,
}

/// Longest accepted `interval_ms`: a day.
pub const MAX_SAMPLE_INTERVAL_MS: u64 = 86_400_000;

/// Why a sample was refused; each reason is a separate counter in `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RefusalReason {
    Empty,
    TooLarge,
    InvalidJson,
    /// Valid JSON of the wrong shape: missing field, wrong type, number out of range for its type.
    Schema,
    BadName,
    SubjectMismatch,
    NotFinite,
    OutOfRange,
    BadInstance,
    BadHealthUrl,
    /// A `seq` at or below one already seen from the same instance.
    Duplicate,
    /// A new service when the monitor already tracks its maximum.
    ServiceCap,
    /// A new instance of a service that already has the most instances tracked at once
    /// (none of them silent long enough to be forgotten).
    InstanceCap,
    /// A source-specific part that breaks its rule: `probe` on a non-probe sample (or
    /// missing on a probe's), unreadable text in `probe.error` or `host.top`, too many
    /// entries in `host.cores` or `host.top`.
    BadField,
}

impl RefusalReason {
    pub const ALL: [RefusalReason; 14] = [
        Self::Empty,
        Self::TooLarge,
        Self::InvalidJson,
        Self::Schema,
        Self::BadName,
        Self::SubjectMismatch,
        Self::NotFinite,
        Self::OutOfRange,
        Self::BadInstance,
        Self::BadHealthUrl,
        Self::Duplicate,
        Self::ServiceCap,
        Self::InstanceCap,
        Self::BadField,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::TooLarge => "too_large",
            Self::InvalidJson => "invalid_json",
            Self::Schema => "schema",
            Self::BadName => "bad_name",
            Self::SubjectMismatch => "subject_mismatch",
            Self::NotFinite => "not_finite",
            Self::OutOfRange => "out_of_range",
            Self::BadInstance => "bad_instance",
            Self::BadHealthUrl => "bad_health_url",
            Self::Duplicate => "duplicate",
            Self::ServiceCap => "service_cap",
            Self::InstanceCap => "instance_cap",
            Self::BadField => "bad_field",
        }
    }
}

/// A refused sample: the counted reason plus a human detail for the (rate-limited) log.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {detail}", reason.as_str())]
pub struct Refusal {
    pub reason: RefusalReason,
    pub detail: String,
}

impl Refusal {
    pub fn new(reason: RefusalReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

mod fast;

/// The wire shape before the name is checked, so a bad name is told apart from bad JSON.
/// Strings are borrowed from the payload when they need no unescaping.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
struct RawSample<'a> {
    #[serde(borrow)]
    service: Cow<'a, str>,
    #[serde(borrow)]
    instance: Cow<'a, str>,
    seq: u64,
    ts_ms: u64,
    #[serde(default)]
    cpu_pct: Option<f64>,
    #[serde(default)]
    mem_pct: Option<f64>,
    latency_ms: f64,
    error_rate: f64,
    #[serde(borrow)]
    health_url: Cow<'a, str>,
    #[serde(default)]
    stopping: bool,
    #[serde(default)]
    source: Source,
    #[serde(default)]
    probe: Option<ProbeResult>,
    #[serde(default)]
    host: Option<HostFigures>,
    #[serde(default)]
    interval_ms: Option<u64>,
}

/// Parses and validates a sample received on `metrics.<subject_service>`.
pub fn parse_sample(subject_service: &str, payload: &[u8]) -> Result<MetricSample, Refusal> {
    parse_sample_known(subject_service, payload, |_, _| false)
}

/// [`parse_sample`], where `known(service, health_url)` may vouch that this service's
/// URL is one that passed the check before (the monitor's last accepted one): the check,
/// a pure function of the text, is then not run again. Every answer is the same.
pub fn parse_sample_known(
    subject_service: &str,
    payload: &[u8],
    known: impl FnOnce(&ServiceName, &str) -> bool,
) -> Result<MetricSample, Refusal> {
    if payload.is_empty() {
        return Err(Refusal::new(RefusalReason::Empty, "empty payload"));
    }
    if payload.len() > MAX_SAMPLE_BYTES {
        return Err(Refusal::new(
            RefusalReason::TooLarge,
            format!("{} bytes > {MAX_SAMPLE_BYTES}", payload.len()),
        ));
    }
    validate_name(subject_service)
        .map_err(|e| Refusal::new(RefusalReason::BadName, format!("subject token: {e}")))?;
    // The common shape is read directly (about a fifth of serde's cost); whatever it does
    // not take is read, and refused, by serde exactly as before.
    let raw = match fast::read(payload) {
        Some(raw) => raw,
        None => read_raw(payload)?,
    };
    accept(subject_service, raw, known)
}

/// The payload read by serde; its error classified into a refusal.
fn read_raw(payload: &[u8]) -> Result<RawSample<'_>, Refusal> {
    serde_json::from_slice(payload).map_err(|e| {
        let reason = match e.classify() {
            // A shape error can be met before the end of a payload that is not JSON at all
            // (`[[[[` fails on its second `[` as "not a string"): only well-formed JSON of
            // the wrong shape is `schema`. The second parse runs on refusals only.
            serde_json::error::Category::Data
                if serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_ok() =>
            {
                RefusalReason::Schema
            }
            serde_json::error::Category::Data => RefusalReason::InvalidJson,
            _ if e.to_string().contains("out of range") => RefusalReason::NotFinite,
            _ => RefusalReason::InvalidJson,
        };
        Refusal::new(reason, e.to_string())
    })
}

/// Checks a read sample against its subject and the contract.
fn accept(
    subject_service: &str,
    raw: RawSample<'_>,
    known: impl FnOnce(&ServiceName, &str) -> bool,
) -> Result<MetricSample, Refusal> {
    let service = ServiceName::parse(&raw.service)
        .map_err(|e| Refusal::new(RefusalReason::BadName, e.to_string()))?;
    if service.as_str() != subject_service {
        return Err(Refusal::new(
            RefusalReason::SubjectMismatch,
            "payload service differs from subject",
        ));
    }
    let sample = MetricSample {
        service,
        instance: raw.instance.into_owned(),
        seq: raw.seq,
        ts_ms: raw.ts_ms,
        cpu_pct: raw.cpu_pct,
        mem_pct: raw.mem_pct,
        latency_ms: raw.latency_ms,
        error_rate: raw.error_rate,
        health_url: raw.health_url.into_owned(),
        stopping: raw.stopping,
        source: raw.source,
        probe: raw.probe,
        host: raw.host,
        interval_ms: raw.interval_ms,
    };
    // Only a non-empty URL: whether an empty one may pass depends on the source too.
    let url_known = !sample.health_url.is_empty() && known(&sample.service, &sample.health_url);
    sample.check(url_known)?;
    Ok(sample)
}

impl MetricSample {
    /// Checks every field against the contract's ranges. Publishers call it too,
    /// so a simulator never sends what the monitor would refuse.
    pub fn validate(&self) -> Result<(), Refusal> {
        self.check(false)
    }

    /// [`Self::validate`], leaving out the health URL's check when it is known to pass.
    fn check(&self, url_known: bool) -> Result<(), Refusal> {
        let ranged: [(&str, Option<f64>, f64, f64); 4] = [
            ("cpu_pct", self.cpu_pct, 0.0, 100.0),
            ("mem_pct", self.mem_pct, 0.0, 100.0),
            ("latency_ms", Some(self.latency_ms), 0.0, MAX_LATENCY_MS),
            ("error_rate", Some(self.error_rate), 0.0, 1.0),
        ];
        for (field, value, lo, hi) in ranged {
            if let Some(value) = value {
                check_range(field, value, lo, hi)?;
            }
        }
        if let Some(every) = self.interval_ms {
            check_range(
                "interval_ms",
                every as f64,
                1.0,
                MAX_SAMPLE_INTERVAL_MS as f64,
            )?;
        }
        for (field, value) in [("seq", self.seq), ("ts_ms", self.ts_ms)] {
            if value > MAX_JSON_INT {
                return Err(Refusal::new(
                    RefusalReason::OutOfRange,
                    format!("{field}={value} above 2^53 - 1"),
                ));
            }
        }
        check_instance(&self.instance)
            .map_err(|why| Refusal::new(RefusalReason::BadInstance, why))?;
        // Only a probe or an agent may have no endpoint a browser can poll.
        if !url_known && (!self.health_url.is_empty() || self.source.is_simulator()) {
            crate::url::check_health_url(&self.health_url).map_err(|why| {
                Refusal::new(
                    RefusalReason::BadHealthUrl,
                    format!("health_url refused: {why}"),
                )
            })?;
        }
        self.validate_source_parts()
    }

    fn validate_source_parts(&self) -> Result<(), Refusal> {
        let misplaced = |what: &str| {
            Refusal::new(
                RefusalReason::BadField,
                format!("{what} on a {} sample", self.source.as_str()),
            )
        };
        match (self.source, &self.probe) {
            (Source::Probe, None) => return Err(misplaced("no probe")),
            (Source::Probe, Some(p)) => p.validate()?,
            (_, Some(_)) => return Err(misplaced("probe")),
            (_, None) => {}
        }
        match (self.source, &self.host) {
            (Source::Agent, Some(h)) => h.validate()?,
            (_, Some(_)) => return Err(misplaced("host")),
            (_, None) => {}
        }
        Ok(())
    }
}

/// The instance rule, shared with the simulator's `--instance`: 1-128 characters (counted
/// as characters, not bytes), no control or bidirectional-override characters, and not made
/// only of whitespace or invisible characters (an id nobody can read or tell apart).
pub fn check_instance(id: &str) -> Result<(), &'static str> {
    if id.is_ascii() {
        // The same rule for ASCII, where a character is a byte: of ASCII, only the
        // controls are refused, and only the space is whitespace that is not one.
        let b = id.as_bytes();
        if b.is_empty() || b.len() > MAX_INSTANCE_LEN {
            return Err("instance must be 1-128 characters");
        }
        if b.iter().any(u8::is_ascii_control) {
            return Err("instance has a control or bidirectional-override character");
        }
        if b.iter().all(|&c| c == b' ') {
            return Err("instance is only whitespace or invisible characters");
        }
        return Ok(());
    }
    let chars = id.chars().count();
    if chars == 0 || chars > MAX_INSTANCE_LEN {
        return Err("instance must be 1-128 characters");
    }
    if id.chars().any(|c| c.is_control() || is_bidi_control(c)) {
        return Err("instance has a control or bidirectional-override character");
    }
    if id.chars().all(|c| c.is_whitespace() || is_invisible(c)) {
        return Err("instance is only whitespace or invisible characters");
    }
    Ok(())
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters that render as nothing (format characters, fillers, blanks) but are not
/// `char::is_whitespace`.
fn is_invisible(c: char) -> bool {
    is_bidi_control(c)
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200D}'
                | '\u{2060}'..='\u{2064}'
                | '\u{206A}'..='\u{206F}'
                | '\u{2800}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{1D159}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E007F}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> serde_json::Value {
        serde_json::json!({
            "service": "auth", "instance": "auth-1", "seq": 7, "ts_ms": 1_700_000_000_000u64,
            "cpu_pct": 12.5, "mem_pct": 40.0, "latency_ms": 21.0, "error_rate": 0.001,
            "health_url": "http://127.0.0.1:3001/health"
        })
    }

    fn reason_for(subject: &str, payload: &[u8]) -> RefusalReason {
        parse_sample(subject, payload).unwrap_err().reason
    }

    fn with(field: &str, value: serde_json::Value) -> Vec<u8> {
        let mut v = good();
        v[field] = value;
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn accepts_a_good_sample_and_round_trips() {
        let bytes = serde_json::to_vec(&good()).unwrap();
        let s = parse_sample("auth", &bytes).unwrap();
        assert_eq!(s.service.as_str(), "auth");
        assert!(!s.stopping);
        let again = serde_json::to_vec(&s).unwrap();
        assert_eq!(parse_sample("auth", &again).unwrap(), s);
        assert!(!String::from_utf8(again).unwrap().contains("stopping"));
    }

    #[test]
    fn stopping_flag_parses() {
        let s = parse_sample("auth", &with("stopping", true.into())).unwrap();
        assert!(s.stopping);
    }

    #[test]
    fn refuses_each_kind_of_bad_input() {
        use RefusalReason::*;
        assert_eq!(reason_for("auth", b""), Empty);
        assert_eq!(
            reason_for("auth", &vec![b' '; MAX_SAMPLE_BYTES + 1]),
            TooLarge
        );
        assert_eq!(reason_for("auth", b"{not json"), InvalidJson);
        assert_eq!(reason_for("auth", b"{\"cpu_pct\": NaN}"), InvalidJson);
        assert_eq!(reason_for("auth", &with("cpu_pct", "high".into())), Schema);
        assert_eq!(reason_for("auth", &with("seq", (-1).into())), Schema);
        assert_eq!(reason_for("auth", b"[1,2,3]"), Schema);
        let huge = String::from_utf8(with("cpu_pct", 1.0.into()))
            .unwrap()
            .replace("\"cpu_pct\":1.0", "\"cpu_pct\":1e400");
        assert_eq!(reason_for("auth", huge.as_bytes()), NotFinite);
        assert_eq!(
            reason_for("auth", &with("cpu_pct", 100.5.into())),
            OutOfRange
        );
        assert_eq!(
            reason_for("auth", &with("mem_pct", (-1.0).into())),
            OutOfRange
        );
        assert_eq!(
            reason_for("auth", &with("latency_ms", (-0.1).into())),
            OutOfRange
        );
        assert_eq!(
            reason_for("auth", &with("error_rate", 1.5.into())),
            OutOfRange
        );
        assert_eq!(
            reason_for("auth", &with("service", "billing".into())),
            SubjectMismatch
        );
        assert_eq!(
            reason_for("auth", &with("service", "<script>".into())),
            BadName
        );
        assert_eq!(
            reason_for("a.b", &serde_json::to_vec(&good()).unwrap()),
            BadName
        );
        assert_eq!(
            reason_for("*", &serde_json::to_vec(&good()).unwrap()),
            BadName
        );
        assert_eq!(
            reason_for("auth", &with("instance", "".into())),
            BadInstance
        );
        assert_eq!(
            reason_for("auth", &with("instance", "a\nb".into())),
            BadInstance
        );
        for url in [
            "javascript:alert(1)",
            "",
            "http://",
            "http://x/ y",
            "ftp://x",
        ] {
            assert_eq!(
                reason_for("auth", &with("health_url", url.into())),
                BadHealthUrl,
                "{url}"
            );
        }
    }

    #[test]
    fn every_numeric_field_is_bounded_to_what_its_readers_hold() {
        use RefusalReason::*;
        // Poisoned the f32 window once (1e39 > f32::MAX): now out of range.
        assert_eq!(
            reason_for("auth", &with("latency_ms", 1e39.into())),
            OutOfRange
        );
        assert_eq!(
            reason_for("auth", &with("latency_ms", (MAX_LATENCY_MS + 1.0).into())),
            OutOfRange
        );
        assert_eq!(
            reason_for("auth", &with("seq", (MAX_JSON_INT + 1).into())),
            OutOfRange
        );
        assert_eq!(
            reason_for("auth", &with("ts_ms", u64::MAX.into())),
            OutOfRange
        );
        // The largest of each is accepted.
        let mut v = good();
        v["latency_ms"] = MAX_LATENCY_MS.into();
        v["seq"] = MAX_JSON_INT.into();
        v["ts_ms"] = MAX_JSON_INT.into();
        v["cpu_pct"] = 100.0.into();
        v["mem_pct"] = 100.0.into();
        v["error_rate"] = 1.0.into();
        assert!(parse_sample("auth", &serde_json::to_vec(&v).unwrap()).is_ok());
    }

    #[test]
    fn unterminated_json_is_invalid_json_not_schema() {
        use RefusalReason::*;
        for junk in ["[[[[", "[", "{\"service\":", "[\"auth\", [", "[1,"] {
            assert_eq!(reason_for("auth", junk.as_bytes()), InvalidJson, "{junk}");
        }
        assert_eq!(reason_for("auth", b"[[]]"), Schema);
    }

    #[test]
    fn instance_ids_are_counted_in_characters_and_must_be_visible() {
        use RefusalReason::*;
        // 128 characters of 2 bytes each: 256 bytes, accepted; 129 are not.
        assert!(parse_sample("auth", &with("instance", "é".repeat(128).into())).is_ok());
        assert_eq!(
            reason_for("auth", &with("instance", "é".repeat(129).into())),
            BadInstance
        );
        for id in [
            "\u{200B}",
            "\u{00A0}",
            "\u{2028}",
            "   ",
            "\u{FEFF}\u{200B} ",
            "\u{3164}",
            "a\u{202E}b",
        ] {
            assert_eq!(
                reason_for("auth", &with("instance", id.into())),
                BadInstance,
                "{id:?}"
            );
        }
        assert!(
            check_instance("auth 1").is_ok(),
            "inner spaces are readable"
        );
    }

    /// The source parts: where `probe` and `host` may appear, their bounds, who may leave
    /// `health_url` empty, and the declared interval's range.
    #[test]
    fn source_parts_are_checked_where_they_enter() {
        use RefusalReason::*;
        let probe = serde_json::json!({"ok": false, "status_code": 503, "error": "status 503"});
        let probe_sample = |patch: &dyn Fn(&mut serde_json::Value)| {
            let mut v = good();
            v["source"] = "probe".into();
            v["probe"] = probe.clone();
            v["health_url"] = "".into();
            v.as_object_mut().map(|o| o.remove("cpu_pct"));
            patch(&mut v);
            serde_json::to_vec(&v).unwrap()
        };
        let s = parse_sample("auth", &probe_sample(&|_| {})).unwrap();
        assert_eq!((s.source, s.cpu_pct), (Source::Probe, None));
        assert_eq!(
            reason_for("auth", &with("health_url", "".into())),
            BadHealthUrl
        );
        assert_eq!(reason_for("auth", &with("probe", probe.clone())), BadField);
        assert_eq!(
            reason_for(
                "auth",
                &probe_sample(&|v| v["probe"] = serde_json::Value::Null)
            ),
            BadField
        );
        assert_eq!(
            reason_for(
                "auth",
                &probe_sample(&|v| v["probe"]["status_code"] = 700.into())
            ),
            OutOfRange
        );
        assert_eq!(
            reason_for(
                "auth",
                &probe_sample(&|v| v["probe"]["error"] = "a\u{202E}b".into())
            ),
            BadField
        );
        assert_eq!(
            reason_for(
                "auth",
                &probe_sample(&|v| v["probe"]["colour"] = "red".into())
            ),
            Schema
        );
        let host = serde_json::json!({"cores": [1.0], "load1": 0.5, "load5": 0.5, "load15": 0.5, "procs": 9, "top": []});
        let agent_sample = |patch: &dyn Fn(&mut serde_json::Value)| {
            let mut v = good();
            v["source"] = "agent".into();
            v["host"] = host.clone();
            patch(&mut v);
            serde_json::to_vec(&v).unwrap()
        };
        assert!(parse_sample("auth", &agent_sample(&|_| {})).is_ok());
        assert_eq!(reason_for("auth", &with("host", host.clone())), BadField);
        assert_eq!(
            reason_for(
                "auth",
                &agent_sample(&|v| v["host"]["cores"] = vec![1.0; 513].into())
            ),
            BadField
        );
        assert_eq!(
            reason_for(
                "auth",
                &agent_sample(&|v| v["host"]["cores"] = vec![101.0].into())
            ),
            OutOfRange
        );
        let six = serde_json::Value::Array(vec![
            serde_json::json!({"name": "a", "pid": 1, "cpu_pct": 1.0, "mem_pct": 1.0});
            6
        ]);
        assert_eq!(
            reason_for("auth", &agent_sample(&|v| v["host"]["top"] = six.clone())),
            BadField
        );
        let hidden =
            serde_json::json!([{"name": "\u{200B}", "pid": 1, "cpu_pct": 1.0, "mem_pct": 1.0}]);
        assert_eq!(
            reason_for(
                "auth",
                &agent_sample(&|v| v["host"]["top"] = hidden.clone())
            ),
            BadField
        );
        assert_eq!(reason_for("auth", &with("source", "robot".into())), Schema);
        assert_eq!(
            reason_for("auth", &with("interval_ms", 0.into())),
            OutOfRange
        );
        assert_eq!(
            reason_for(
                "auth",
                &with("interval_ms", (MAX_SAMPLE_INTERVAL_MS + 1).into())
            ),
            OutOfRange
        );
        assert!(parse_sample("auth", &with("interval_ms", 10_000.into())).is_ok());
    }

    #[test]
    fn every_reason_has_a_distinct_label() {
        let mut labels: Vec<_> = RefusalReason::ALL.iter().map(|r| r.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), RefusalReason::ALL.len());
    }

    /// What `parse_sample` answered before the direct reader: serde for every payload.
    fn parse_by_serde(subject: &str, payload: &[u8]) -> Result<MetricSample, Refusal> {
        if payload.is_empty() || payload.len() > MAX_SAMPLE_BYTES {
            return parse_sample(subject, payload);
        }
        validate_name(subject)
            .map_err(|e| Refusal::new(RefusalReason::BadName, format!("subject token: {e}")))?;
        accept(subject, read_raw(payload)?, |_, _| false)
    }

    /// A JSON object's text from (key, value) pairs, with whitespace between tokens.
    fn object(pairs: &[(String, String)], ws: &[String]) -> String {
        let w = |i: usize| ws.get(i % ws.len().max(1)).cloned().unwrap_or_default();
        let mut s = format!("{}{{", w(0));
        for (i, (k, v)) in pairs.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&format!(
                "{}{k}{}:{}{v}{}",
                w(i + 1),
                w(i + 2),
                w(i + 3),
                w(i + 4)
            ));
        }
        s.push('}');
        s.push_str(&w(pairs.len() + 5));
        s
    }

    fn key() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            8 => proptest::sample::select(vec![
                "service", "instance", "seq", "ts_ms", "cpu_pct", "mem_pct", "latency_ms",
                "error_rate", "health_url", "stopping", "interval_ms", "source", "colour",
            ]).prop_map(|k| format!("\"{k}\"")),
            1 => "\"[a-z_\\\\]{0,12}\"",
        ]
    }

    fn value() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            "-?(0|[1-9][0-9]{0,20})(\\.[0-9]{0,20})?([eE][+-]?[0-9]{1,4})?",
            "[-+.eE0-9]{1,8}",
            "\"(auth|auth-1|http://127\\.0\\.0\\.1:3001/health|[ -~é\u{200B}\\\\]{0,12})\"",
            proptest::sample::select(vec![
                "true",
                "false",
                "null",
                "{}",
                "[]",
                "tru",
                "\"probe\""
            ])
            .prop_map(str::to_owned),
        ]
    }

    proptest::proptest! {
        // The direct reader answers exactly what serde answers: the same sample or the
        // same refusal (reason and detail), for well-formed and broken objects alike.
        #[test]
        fn direct_reader_agrees_with_serde(
            pairs in proptest::collection::vec((key(), value()), 0..14),
            ws in proptest::collection::vec("[ \t\n\r]{0,2}|x", 1..4),
            good_base in proptest::bool::ANY,
        ) {
            let mut pairs = pairs;
            if good_base {
                // Mostly a valid sample with a few fields replaced, moved or repeated.
                let mut base: Vec<(String, String)> = [
                    ("service", "\"auth\""), ("instance", "\"auth-1\""), ("seq", "7"),
                    ("ts_ms", "1700000000000"), ("cpu_pct", "12.5"), ("mem_pct", "40"),
                    ("latency_ms", "21.0"), ("error_rate", "0.001"),
                    ("health_url", "\"http://127.0.0.1:3001/health\""),
                ].iter().map(|(k, v)| (format!("\"{k}\""), (*v).to_owned())).collect();
                let n = pairs.len().min(3);
                for (i, p) in pairs.drain(..n).enumerate() {
                    if i % 2 == 0 {
                        let at = p.1.len() % base.len();
                        base[at].1 = p.1;
                    } else {
                        base.push(p);
                    }
                }
                pairs = base;
            }
            let text = object(&pairs, &ws);
            let got = parse_sample("auth", text.as_bytes());
            let want = parse_by_serde("auth", text.as_bytes());
            proptest::prop_assert_eq!(&got, &want, "{}", text);
            if let Some(raw) = fast::read(text.as_bytes()) {
                let by_serde: RawSample<'_> = serde_json::from_slice(text.as_bytes()).unwrap();
                proptest::prop_assert_eq!(raw, by_serde, "{}", text);
            }
        }

        #[test]
        fn ascii_instance_rule_is_the_general_rule(id in proptest::prop_oneof![
            "[\\x00-\\x7f]{0,130}",
            "[ a\\t\\x7f]{0,3}",
            "[ ]{126,130}",
        ]) {
            let general = {
                let chars = id.chars().count();
                if chars == 0 || chars > MAX_INSTANCE_LEN {
                    Err("instance must be 1-128 characters")
                } else if id.chars().any(|c| c.is_control() || is_bidi_control(c)) {
                    Err("instance has a control or bidirectional-override character")
                } else if id.chars().all(|c| c.is_whitespace() || is_invisible(c)) {
                    Err("instance is only whitespace or invisible characters")
                } else {
                    Ok(())
                }
            };
            proptest::prop_assert_eq!(check_instance(&id), general);
        }

        // Whatever arrives on the wire, parsing returns (never panics) and anything it
        // accepts is within the contract.
        #[test]
        fn parse_never_panics(subject in ".{0,70}", payload in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            if let Ok(s) = parse_sample(&subject, &payload) {
                proptest::prop_assert!(s.validate().is_ok());
            }
        }

        #[test]
        fn mutated_good_samples_never_panic(field in 0usize..10, value in proptest::prelude::any::<f64>(), text in ".{0,40}") {
            let keys = ["service","instance","seq","ts_ms","cpu_pct","mem_pct","latency_ms","error_rate","health_url","stopping"];
            let mut v = good();
            v[keys[field]] = if field % 2 == 0 { serde_json::json!(value) } else { serde_json::json!(text) };
            let bytes = serde_json::to_vec(&v).unwrap();
            if let Ok(s) = parse_sample("auth", &bytes) {
                proptest::prop_assert!(s.validate().is_ok());
            }
        }
    }
}
