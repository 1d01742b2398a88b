//! Targets as they come in, pure: the TOML file (checked whole at start), KV values
//! (refused one by one, with a counted reason), and what a change means for the running
//! set. Validation is the protocol's ([`Target::from_json`]), the same code the gateway's
//! API runs, so every door refuses the same things with the same words.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::Deserialize;
use vitals_protocol::target::MAX_TARGET_BYTES;
use vitals_protocol::{ServiceName, Target};

/// Why the targets file was refused; the binary prints it and exits 2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("targets file is not valid TOML: {0}")]
    Toml(String),
    /// Entry `index` (1-based, in file order), named by its service when it has one.
    #[error("targets file: target {index}{}: {reason}", named(.service))]
    Target {
        index: usize,
        service: Option<String>,
        reason: String,
    },
    #[error("targets file: service {service:?} is given twice (targets {first} and {second})")]
    Duplicate {
        service: String,
        first: usize,
        second: usize,
    },
}

fn named(service: &Option<String>) -> String {
    service
        .as_deref()
        .map(|s| format!(" (service {s:?})"))
        .unwrap_or_default()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    target: Vec<toml::Table>,
}

/// Every target of a targets file, checked, in file order. Each `[[target]]` entry goes
/// through the same JSON validation as a KV value (so unknown fields, bad names, bad URLs
/// and timeouts not below the interval are refused alike); a duplicate service is refused.
pub fn parse_file(text: &str) -> Result<Vec<Target>, FileError> {
    let file: File = toml::from_str(text).map_err(|e| FileError::Toml(e.message().to_owned()))?;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = Vec::with_capacity(file.target.len());
    for (i, entry) in file.target.into_iter().enumerate() {
        let index = i + 1;
        let bad = |service: Option<&str>, reason: String| FileError::Target {
            index,
            service: service.map(str::to_owned),
            reason,
        };
        let service = match entry.get("service") {
            Some(toml::Value::String(s)) => s.clone(),
            Some(_) => return Err(bad(None, "service must be a string".into())),
            None => return Err(bad(None, "service is required".into())),
        };
        let json = serde_json::to_vec(&entry).map_err(|e| bad(Some(&service), e.to_string()))?;
        let target =
            Target::from_json(&service, &json).map_err(|e| bad(Some(&service), e.0.clone()))?;
        if let Some(&first) = seen.get(&service) {
            return Err(FileError::Duplicate {
                service,
                first,
                second: index,
            });
        }
        seen.insert(service, index);
        out.push(target);
    }
    Ok(out)
}

/// Why a KV value was refused: one `/metrics` series each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalReason {
    /// The key is not a service name.
    BadName,
    TooLarge,
    /// Not JSON, or JSON of the wrong shape.
    InvalidJson,
    UnknownField,
    /// Well-formed, but a field breaks its rule (URL, interval, timeout...).
    Invalid,
}

impl RefusalReason {
    pub const ALL: [RefusalReason; 5] = [
        Self::BadName,
        Self::TooLarge,
        Self::InvalidJson,
        Self::UnknownField,
        Self::Invalid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadName => "bad_name",
            Self::TooLarge => "too_large",
            Self::InvalidJson => "invalid_json",
            Self::UnknownField => "unknown_field",
            Self::Invalid => "invalid",
        }
    }
}

/// A refused KV value: the counted reason and the protocol's words for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: RefusalReason,
    pub detail: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.as_str(), self.detail)
    }
}

/// The target stored under `key`, or why it is refused.
pub fn parse_kv_value(key: &str, bytes: &[u8]) -> Result<Target, Refusal> {
    let refuse = |reason, detail: String| Refusal { reason, detail };
    // The protocol checks all of this too; the steps here only tell the reasons apart.
    if let Err(e) = ServiceName::parse(key) {
        return Err(refuse(RefusalReason::BadName, format!("key: {e}")));
    }
    if bytes.len() > MAX_TARGET_BYTES {
        return Err(refuse(
            RefusalReason::TooLarge,
            format!("{} bytes > {MAX_TARGET_BYTES}", bytes.len()),
        ));
    }
    Target::from_json(key, bytes).map_err(|e| {
        let reason = match serde_json::from_slice::<Target>(bytes) {
            Ok(_) => RefusalReason::Invalid,
            Err(_) if e.0.contains("unknown field") => RefusalReason::UnknownField,
            Err(_) => RefusalReason::InvalidJson,
        };
        refuse(reason, e.0)
    })
}

/// Whether the file's target must be written over what KV holds for it (file wins; an
/// equal value, even written differently, is left alone so KV's history stays quiet).
pub fn needs_put(file_target: &Target, stored: Option<&[u8]>) -> bool {
    let Some(service) = file_target.service_name() else {
        return false;
    };
    match stored {
        Some(bytes) => Target::from_json(service.as_str(), bytes).as_ref() != Ok(file_target),
        None => true,
    }
}

/// What an update means for one service's running probe.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Start(Target),
    Replace(Target),
    Stop,
    Unchanged,
}

/// `running` is the target probed now (if any), `wanted` the one the live list holds.
pub fn plan(running: Option<&Target>, wanted: Option<Target>) -> Change {
    match (running, wanted) {
        (None, Some(t)) => Change::Start(t),
        (Some(r), Some(t)) if *r == t => Change::Unchanged,
        (Some(_), Some(t)) => Change::Replace(t),
        (Some(_), None) => Change::Stop,
        (None, None) => Change::Unchanged,
    }
}

/// Running services the live list no longer has (after a full read of it).
pub fn stale<'a>(
    running: impl IntoIterator<Item = &'a ServiceName>,
    present: &HashSet<ServiceName>,
) -> Vec<ServiceName> {
    let mut out: Vec<ServiceName> = running
        .into_iter()
        .filter(|s| !present.contains(*s))
        .cloned()
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[target]]
service = "payments"
kind = "http"
url = "https://pay.example.com/health"
interval_ms = 500
expect_status = [200, "300-302"]
headers = { Authorization = "Bearer x" }

[[target]]
service = "db"
kind = "tcp"
address = "db.internal:5432"
"#;

    #[test]
    fn reads_a_good_file_in_order() {
        let t = parse_file(GOOD).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].service_name().unwrap().as_str(), "payments");
        assert_eq!(t[0].interval_ms(), 500);
        assert!(t[0].status_ok(301) && !t[0].status_ok(204));
        assert_eq!(t[1].endpoint(), "db.internal:5432");
        assert!(parse_file("").unwrap().is_empty());
    }

    #[test]
    fn a_bad_file_names_the_target_and_the_reason() {
        let cases = [
            (
                "[[target]]\nservice = \"a\"\nkind = \"http\"\nurl = \"http://x\"\ninterval_ms = 1000\ntimeout_ms = 1000\n",
                r#"target 1 (service "a"): timeout_ms=1000 must be less than interval_ms=1000"#,
            ),
            (
                "[[target]]\nservice = \"Bad Name\"\nkind = \"tcp\"\naddress = \"x:1\"\n",
                r#"target 1 (service "Bad Name"): service:"#,
            ),
            (
                "[[target]]\nservice = \"a\"\nkind = \"tcp\"\naddress = \"x:1\"\nfrobnicate = 1\n",
                "unknown field `frobnicate`",
            ),
            (
                "[[target]]\nkind = \"tcp\"\naddress = \"x:1\"\n",
                "target 1: service is required",
            ),
            (
                "[[target]]\nservice = \"a\"\nkind = \"tcp\"\naddress = \"x:1\"\n[[target]]\nservice = \"a\"\nkind = \"tcp\"\naddress = \"y:1\"\n",
                r#"service "a" is given twice (targets 1 and 2)"#,
            ),
            ("[[targets]]\nservice = \"a\"\n", "unknown field `targets`"),
            ("[[target]\n", "not valid TOML"),
        ];
        for (text, want) in cases {
            let e = parse_file(text).expect_err(text).to_string();
            assert!(e.contains(want), "{text}\n{e:?} should contain {want:?}");
        }
    }

    #[test]
    fn kv_values_are_refused_by_reason() {
        use RefusalReason::*;
        let ok = br#"{"kind":"tcp","address":"x:1"}"#;
        assert!(parse_kv_value("db", ok).is_ok());
        let cases: [(&str, &[u8], RefusalReason); 6] = [
            ("Bad", ok, BadName),
            ("db", b"{not json", InvalidJson),
            ("db", br#"{"kind":"tcp"}"#, Invalid),
            (
                "db",
                br#"{"kind":"tcp","address":"x:1","x":1}"#,
                UnknownField,
            ),
            ("db", br#"{"kind":"tcp","address":"x"}"#, Invalid),
            ("db", &[b' '; MAX_TARGET_BYTES + 1], TooLarge),
        ];
        for (key, value, reason) in cases {
            let r = parse_kv_value(key, value).unwrap_err();
            assert_eq!(
                r.reason,
                reason,
                "{key} {:?}: {r}",
                String::from_utf8_lossy(value)
            );
        }
        let r = parse_kv_value("db", br#"{"kind":"tcp","address":"x"}"#).unwrap_err();
        assert!(r.to_string().contains("port is required"), "{r}");
    }

    #[test]
    fn the_file_wins_but_an_equal_value_is_left_alone() {
        let t = parse_kv_value("db", br#"{"kind":"tcp","address":"x:1"}"#).unwrap();
        assert!(needs_put(&t, None));
        assert!(!needs_put(
            &t,
            Some(br#"{ "address": "x:1", "kind": "tcp" }"#)
        ));
        assert!(needs_put(&t, Some(br#"{"kind":"tcp","address":"x:2"}"#)));
        assert!(needs_put(&t, Some(b"junk")));
    }

    #[test]
    fn plans_each_change() {
        let a = parse_kv_value("a", br#"{"kind":"tcp","address":"x:1"}"#).unwrap();
        let b = parse_kv_value("a", br#"{"kind":"tcp","address":"x:2"}"#).unwrap();
        assert_eq!(plan(None, Some(a.clone())), Change::Start(a.clone()));
        assert_eq!(plan(Some(&a), Some(a.clone())), Change::Unchanged);
        assert_eq!(plan(Some(&a), Some(b.clone())), Change::Replace(b));
        assert_eq!(plan(Some(&a), None), Change::Stop);
        assert_eq!(plan(None, None), Change::Unchanged);
    }

    #[test]
    fn stale_services_are_the_running_ones_not_present() {
        let names: Vec<ServiceName> = ["a", "b", "c"]
            .iter()
            .map(|n| ServiceName::parse(n).unwrap())
            .collect();
        let present: HashSet<ServiceName> = [names[1].clone()].into();
        let s = stale(&names, &present);
        assert_eq!(s, vec![names[0].clone(), names[2].clone()]);
    }
}
