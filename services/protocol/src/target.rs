//! A probe target: what the prober checks, as a TOML `[[target]]` entry or the JSON value
//! of KV `vitals_targets` (key = service). One validation for every door it enters by
//! (the targets file, KV, the gateway's API), so each refuses the same things with the
//! same words.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::name::ServiceName;

pub const DEFAULT_INTERVAL_MS: u64 = 1_000;
pub const MIN_INTERVAL_MS: u64 = 100;
/// Longest interval: a day (a slower check is not monitoring).
pub const MAX_INTERVAL_MS: u64 = 86_400_000;
/// The default timeout, or half the interval when that is shorter (a timeout must be
/// shorter than the interval, so probes of one target never overlap).
pub const DEFAULT_TIMEOUT_MS: u64 = 2_000;
pub const MIN_TIMEOUT_MS: u64 = 10;
pub const MAX_TARGET_URL_LEN: usize = 2_048;
pub const MAX_BODY_CONTAINS_LEN: usize = 1_024;
pub const MAX_HEADERS: usize = 32;
pub const MAX_HEADER_VALUE_LEN: usize = 1_024;
/// A target's JSON larger than this is refused unread.
pub const MAX_TARGET_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Http,
    Tcp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    #[default]
    Get,
    Head,
}

/// `expect_status` as written: `200`, `"200-399"`, or a list of either.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
#[serde(untagged)]
pub enum StatusSpec {
    One(StatusItem),
    Many(Vec<StatusItem>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
#[serde(untagged)]
pub enum StatusItem {
    Code(u16),
    Range(String),
}

/// One target, as written. Absent fields take the defaults the accessors give; the value
/// is kept as written so what an operator reads back is what they put.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Required in the targets file; in KV the key names the service (if given, it must match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceName>,
    pub kind: TargetKind,
    /// `http://` or `https://` URL (kind `http`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `host:port` (kind `tcp`); IPv6 in brackets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_status: Option<StatusSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<HttpMethod>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// Apdex threshold T; the monitor's default (100 ms) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apdex_t_ms: Option<u32>,
    /// What the dashboard polls when its live feed is down (default: the URL, when it
    /// passes the health URL rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_url: Option<String>,
}

/// Why a target was refused: shown as is (log line, exit message, 400 body).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct TargetError(pub String);

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn bad(msg: impl Into<String>) -> TargetError {
    TargetError(msg.into())
}

impl Target {
    /// Parses and validates the JSON value of KV key (or API path) `service`.
    pub fn from_json(service: &str, bytes: &[u8]) -> Result<Target, TargetError> {
        let name = ServiceName::parse(service).map_err(|e| bad(format!("service: {e}")))?;
        if bytes.len() > MAX_TARGET_BYTES {
            return Err(bad(format!(
                "target is {} bytes > {MAX_TARGET_BYTES}",
                bytes.len()
            )));
        }
        let mut t: Target = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        match &t.service {
            Some(s) if *s != name => {
                return Err(bad(format!(
                    "service {s:?} in the body differs from {service:?}"
                )));
            }
            _ => t.service = Some(name),
        }
        t.validate()?;
        Ok(t)
    }

    /// The JSON stored in KV (and returned by the API).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn service_name(&self) -> Option<&ServiceName> {
        self.service.as_ref()
    }

    pub fn interval_ms(&self) -> u64 {
        self.interval_ms.unwrap_or(DEFAULT_INTERVAL_MS)
    }

    pub fn timeout_ms(&self) -> u64 {
        self.timeout_ms
            .unwrap_or_else(|| DEFAULT_TIMEOUT_MS.min(self.interval_ms() / 2))
    }

    pub fn method(&self) -> HttpMethod {
        self.method.unwrap_or_default()
    }

    /// Whether an HTTP status counts as up.
    pub fn status_ok(&self, code: u16) -> bool {
        match &self.expect_status {
            None => (200..=399).contains(&code),
            Some(spec) => spec
                .items()
                .iter()
                .any(|i| i.bounds().is_ok_and(|(lo, hi)| (lo..=hi).contains(&code))),
        }
    }

    /// The health URL the samples carry: the explicit one, else the URL if a browser may
    /// be pointed at it, else none (empty).
    pub fn sample_health_url(&self) -> String {
        match (&self.health_url, &self.url) {
            (Some(h), _) => h.clone(),
            (None, Some(u)) if crate::url::is_acceptable_health_url(u) => u.clone(),
            _ => String::new(),
        }
    }

    /// What a person reads for this target: its URL or address.
    pub fn endpoint(&self) -> &str {
        self.url
            .as_deref()
            .or(self.address.as_deref())
            .unwrap_or("")
    }

    /// Checks every field; the error names the field and says what is wrong.
    pub fn validate(&self) -> Result<(), TargetError> {
        if self.service.is_none() {
            return Err(bad("service is required"));
        }
        match self.kind {
            TargetKind::Http => {
                let url = self
                    .url
                    .as_deref()
                    .ok_or_else(|| bad("url is required for kind http"))?;
                check_probe_url(url).map_err(|e| bad(format!("url: {e}")))?;
                if self.address.is_some() {
                    return Err(bad("address is for kind tcp; use url"));
                }
            }
            TargetKind::Tcp => {
                let addr = self
                    .address
                    .as_deref()
                    .ok_or_else(|| bad("address (host:port) is required for kind tcp"))?;
                check_address(addr).map_err(|e| bad(format!("address: {e}")))?;
                if self.url.is_some() {
                    return Err(bad("url is for kind http; use address"));
                }
                let http_only = [
                    ("expect_status", self.expect_status.is_some()),
                    ("body_contains", self.body_contains.is_some()),
                    ("method", self.method.is_some()),
                    ("headers", self.headers.is_some()),
                ];
                if let Some((field, _)) = http_only.iter().find(|(_, set)| *set) {
                    return Err(bad(format!("{field} is for kind http only")));
                }
            }
        }
        let interval = self.interval_ms();
        if !(MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&interval) {
            return Err(bad(format!(
                "interval_ms={interval} outside [{MIN_INTERVAL_MS}, {MAX_INTERVAL_MS}]"
            )));
        }
        let timeout = self.timeout_ms();
        if timeout < MIN_TIMEOUT_MS {
            return Err(bad(format!("timeout_ms={timeout} below {MIN_TIMEOUT_MS}")));
        }
        if timeout >= interval {
            return Err(bad(format!(
                "timeout_ms={timeout} must be less than interval_ms={interval}"
            )));
        }
        if let Some(spec) = &self.expect_status {
            let items = spec.items();
            if items.is_empty() {
                return Err(bad("expect_status is empty"));
            }
            for i in items {
                i.bounds().map_err(|e| bad(format!("expect_status: {e}")))?;
            }
        }
        if let Some(body) = &self.body_contains
            && (body.is_empty() || body.chars().count() > MAX_BODY_CONTAINS_LEN)
        {
            return Err(bad(format!(
                "body_contains must be 1-{MAX_BODY_CONTAINS_LEN} characters"
            )));
        }
        if let Some(headers) = &self.headers {
            if headers.len() > MAX_HEADERS {
                return Err(bad(format!("more than {MAX_HEADERS} headers")));
            }
            for (name, value) in headers {
                check_header(name, value).map_err(|e| bad(format!("header {name:?}: {e}")))?;
            }
        }
        if let Some(t) = self.apdex_t_ms
            && !(1..=3_600_000).contains(&t)
        {
            return Err(bad(format!("apdex_t_ms={t} outside [1, 3600000]")));
        }
        if let Some(h) = &self.health_url {
            crate::url::check_health_url(h).map_err(|e| bad(format!("health_url: {e}")))?;
        }
        Ok(())
    }
}

impl StatusSpec {
    fn items(&self) -> Vec<&StatusItem> {
        match self {
            Self::One(i) => vec![i],
            Self::Many(v) => v.iter().collect(),
        }
    }
}

impl StatusItem {
    fn bounds(&self) -> Result<(u16, u16), String> {
        let (lo, hi) = match self {
            Self::Code(c) => (*c, *c),
            Self::Range(r) => {
                let parse = |s: &str| {
                    s.trim()
                        .parse::<u16>()
                        .map_err(|_| format!("{r:?} is not a status or a range like \"200-399\""))
                };
                match r.split_once('-') {
                    Some((a, b)) => (parse(a)?, parse(b)?),
                    None => {
                        let c = parse(r)?;
                        (c, c)
                    }
                }
            }
        };
        if !(100..=599).contains(&lo) || !(100..=599).contains(&hi) || lo > hi {
            return Err(format!("{lo}-{hi} is not within 100-599"));
        }
        Ok((lo, hi))
    }
}

/// `http(s)://host[:port][/path][?query]`: ASCII, no spaces or controls, no user info
/// (credentials belong in `headers`, not in a URL every reader sees).
fn check_probe_url(url: &str) -> Result<(), String> {
    if url.len() > MAX_TARGET_URL_LEN {
        return Err(format!("longer than {MAX_TARGET_URL_LEN} characters"));
    }
    if url.chars().any(|c| !c.is_ascii_graphic()) {
        return Err("space, control or non-ASCII character (percent-encode it)".into());
    }
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or("must start with http:// or https://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err("user info is not allowed (put credentials in headers)".into());
    }
    check_host_port(authority, false)
}

fn check_address(addr: &str) -> Result<(), String> {
    if addr.len() > 300 || addr.chars().any(|c| !c.is_ascii_graphic()) {
        return Err("must be host:port in plain ASCII".into());
    }
    check_host_port(addr, true)
}

/// `host[:port]` (port required when `need_port`); IPv6 in brackets.
fn check_host_port(authority: &str, need_port: bool) -> Result<(), String> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or("unclosed [ in the host")?;
        v6.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("{v6:?} is not an IPv6 address"))?;
        match after {
            "" => (v6, None),
            p => (v6, Some(p.strip_prefix(':').ok_or("junk after ]")?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._:".contains(c))
    {
        return Err(format!("{host:?} is not a host name or address"));
    }
    match port {
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(()),
            _ => Err(format!("port {p:?} is not 1-65535")),
        },
        None if need_port => Err("a port is required (host:port)".into()),
        None => Ok(()),
    }
}

fn check_header(name: &str, value: &str) -> Result<(), String> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || name.len() > 64 || !name.chars().all(token) {
        return Err("a header name is 1-64 token characters".into());
    }
    if value.len() > MAX_HEADER_VALUE_LEN {
        return Err(format!("value longer than {MAX_HEADER_VALUE_LEN}"));
    }
    if value
        .chars()
        .any(|c| !(c == ' ' || c == '\t' || c.is_ascii_graphic()))
    {
        return Err("value has a control or non-ASCII character".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Target, TargetError> {
        Target::from_json("payments", json.as_bytes())
    }

    #[test]
    fn a_minimal_http_target_takes_the_defaults() {
        let t = parse(r#"{"kind":"http","url":"https://example.com/health"}"#).unwrap();
        assert_eq!(t.service.as_ref().unwrap().as_str(), "payments");
        assert_eq!(t.interval_ms(), 1000);
        assert_eq!(t.timeout_ms(), 500, "half the interval when under 2 s");
        assert!(t.status_ok(200) && t.status_ok(302) && !t.status_ok(404));
        assert_eq!(t.method(), HttpMethod::Get);
        assert_eq!(t.sample_health_url(), "https://example.com/health");
        let slow = parse(r#"{"kind":"http","url":"http://x/","interval_ms":10000}"#).unwrap();
        assert_eq!(slow.timeout_ms(), 2000);
    }

    #[test]
    fn expect_status_takes_codes_ranges_and_lists() {
        let t =
            parse(r#"{"kind":"http","url":"http://x","expect_status":[204,"300-302"]}"#).unwrap();
        assert!(t.status_ok(204) && t.status_ok(301) && !t.status_ok(200));
        let t = parse(r#"{"kind":"http","url":"http://x","expect_status":"200"}"#).unwrap();
        assert!(t.status_ok(200) && !t.status_ok(201));
    }

    #[test]
    fn a_tcp_target_needs_host_and_port() {
        let t = parse(r#"{"kind":"tcp","address":"db.internal:5432"}"#).unwrap();
        assert_eq!(t.endpoint(), "db.internal:5432");
        assert_eq!(t.sample_health_url(), "");
        assert!(parse(r#"{"kind":"tcp","address":"[::1]:6379"}"#).is_ok());
    }

    #[test]
    fn bad_targets_are_refused_with_their_reason() {
        let cases = [
            (r#"{"kind":"http"}"#, "url is required"),
            (r#"{"kind":"http","url":"ftp://x"}"#, "http:// or https://"),
            (r#"{"kind":"http","url":"http://u:p@x/"}"#, "user info"),
            (r#"{"kind":"http","url":"http://x/ y"}"#, "space"),
            (r#"{"kind":"http","url":"http://:80/"}"#, "no host"),
            (r#"{"kind":"http","url":"http://x:99999/"}"#, "port"),
            (r#"{"kind":"tcp","address":"x"}"#, "port is required"),
            (
                r#"{"kind":"tcp","address":"x:1","body_contains":"a"}"#,
                "http only",
            ),
            (
                r#"{"kind":"http","url":"http://x","interval_ms":50}"#,
                "interval_ms=50",
            ),
            (
                r#"{"kind":"http","url":"http://x","interval_ms":1000,"timeout_ms":1000}"#,
                "less than interval_ms",
            ),
            (
                r#"{"kind":"http","url":"http://x","expect_status":"abc"}"#,
                "expect_status",
            ),
            (
                r#"{"kind":"http","url":"http://x","expect_status":[]}"#,
                "empty",
            ),
            (
                r#"{"kind":"http","url":"http://x","expect_status":"500-200"}"#,
                "within",
            ),
            (
                r#"{"kind":"http","url":"http://x","frobnicate":1}"#,
                "unknown field",
            ),
            (r#"{"kind":"udp","address":"x:1"}"#, "unknown variant"),
            (
                r#"{"kind":"http","url":"http://x","method":"POST"}"#,
                "unknown variant",
            ),
            (
                r#"{"kind":"http","url":"http://x","headers":{"X\nY":"1"}}"#,
                "header",
            ),
            (
                r#"{"kind":"http","url":"http://x","headers":{"X":"a\r\nb"}}"#,
                "control",
            ),
            (
                r#"{"kind":"http","url":"http://x","health_url":"javascript:1"}"#,
                "health_url",
            ),
            (
                r#"{"service":"other","kind":"http","url":"http://x"}"#,
                "differs",
            ),
            ("not json", "expected"),
        ];
        for (json, why) in cases {
            let err = parse(json).expect_err(json).0;
            assert!(err.contains(why), "{json}: {err:?} should mention {why:?}");
        }
        assert!(Target::from_json("Bad Name", br#"{"kind":"tcp","address":"x:1"}"#).is_err());
        let huge = format!(
            r#"{{"kind":"http","url":"http://x","body_contains":"{}"}}"#,
            "a".repeat(MAX_TARGET_BYTES)
        );
        assert!(parse(&huge).unwrap_err().0.contains("bytes"));
    }

    #[test]
    fn round_trips_as_written() {
        let json = r#"{"kind":"http","url":"http://x/health","interval_ms":500,"expect_status":"200-299"}"#;
        let t = parse(json).unwrap();
        let again = Target::from_json("payments", &t.to_json()).unwrap();
        assert_eq!(again, t);
        let v: serde_json::Value = serde_json::from_slice(&t.to_json()).unwrap();
        assert!(v.get("timeout_ms").is_none(), "defaults are not written in");
    }
}
