//! Silences and acknowledgements: the values in KV `vitals_silences` and the bodies of
//! `health.silence.*`, `health.alert.ack` and the gateway's `/api/silences`. Validation
//! lives here so every writer (monitor, gateway, a user's script) refuses the same things.

use serde::{Deserialize, Serialize};

use crate::name::ServiceName;
use crate::source::check_text;
use crate::status::AlertName;

/// Longest `created_by` / `by` and `comment`, in characters.
pub const MAX_BY_CHARS: usize = 128;
pub const MAX_COMMENT_CHARS: usize = 1024;
/// Longest service glob (a name is at most 63 bytes; leave room for wildcards).
pub const MAX_GLOB_BYTES: usize = 128;
/// A silence may last at most this long (a forgotten "forever" silence hides real outages).
pub const MAX_SILENCE_MS: u64 = 90 * 86_400_000;
/// Silence ids are made by the writer: `[a-z0-9-]{1,64}`.
pub const MAX_ID_BYTES: usize = 64;
/// Bodies larger than this are refused before parsing.
pub const MAX_BODY_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SilenceError(pub String);

fn err(msg: impl Into<String>) -> SilenceError {
    SilenceError(msg.into())
}

/// What a silence covers: services whose name matches the glob (`*` any run, `?` one
/// character) and, when given, only that alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SilenceMatchers {
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<AlertName>,
}

impl SilenceMatchers {
    pub fn validate(&self) -> Result<(), SilenceError> {
        let g = &self.service;
        if g.is_empty() || g.len() > MAX_GLOB_BYTES {
            return Err(err(format!(
                "matchers.service must be 1-{MAX_GLOB_BYTES} bytes"
            )));
        }
        let ok = |b: u8| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'*' | b'?')
        };
        if !g.bytes().all(ok) {
            return Err(err(
                "matchers.service may only contain a-z, 0-9, '_', '-' and the wildcards '*' and '?'",
            ));
        }
        Ok(())
    }

    pub fn matches(&self, service: &str, alert: AlertName) -> bool {
        self.alert.is_none_or(|a| a == alert) && glob_match(&self.service, service)
    }
}

/// `*` matches any run (also empty), `?` exactly one character; everything else itself.
/// Linear in the lengths (no backtracking blow-up on hostile patterns).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

/// One silence: the value of KV key `silence.<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Silence {
    pub id: String,
    pub matchers: SilenceMatchers,
    pub starts_ms: u64,
    pub ends_ms: u64,
    pub created_by: String,
    #[serde(default)]
    pub comment: String,
}

impl Silence {
    /// Parses and validates a stored value (anyone with write access may have put it).
    pub fn from_json(bytes: &[u8]) -> Result<Self, SilenceError> {
        if bytes.len() > MAX_BODY_BYTES {
            return Err(err(format!("larger than {MAX_BODY_BYTES} bytes")));
        }
        let s: Self = serde_json::from_slice(bytes).map_err(|e| err(e.to_string()))?;
        s.validate()?;
        Ok(s)
    }

    pub fn validate(&self) -> Result<(), SilenceError> {
        check_id(&self.id)?;
        self.matchers.validate()?;
        if self.ends_ms <= self.starts_ms {
            return Err(err("ends_ms must be after starts_ms"));
        }
        if self.ends_ms - self.starts_ms > MAX_SILENCE_MS {
            return Err(err("a silence may last at most 90 days"));
        }
        check_text("created_by", &self.created_by, MAX_BY_CHARS).map_err(|r| err(r.detail))?;
        if !self.comment.is_empty() {
            check_text("comment", &self.comment, MAX_COMMENT_CHARS).map_err(|r| err(r.detail))?;
        }
        Ok(())
    }

    pub fn is_active(&self, now_ms: u64) -> bool {
        self.starts_ms <= now_ms && now_ms < self.ends_ms
    }

    /// Whether it silences this alert of this service at `now_ms`.
    pub fn silences(&self, service: &str, alert: AlertName, now_ms: u64) -> bool {
        self.is_active(now_ms) && self.matchers.matches(service, alert)
    }
}

fn check_id(id: &str) -> Result<(), SilenceError> {
    let ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-';
    if id.is_empty() || id.len() > MAX_ID_BYTES || !id.bytes().all(ok) {
        return Err(err(format!(
            "silence id must be 1-{MAX_ID_BYTES} of a-z, 0-9 and '-'"
        )));
    }
    Ok(())
}

/// Body of `health.silence.create` and `POST /api/silences`. The end is `ends_ms` or
/// `for_s` from the start (exactly one of them); the start is now unless `starts_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SilenceRequest {
    pub matchers: SilenceMatchers,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_s: Option<u64>,
    pub created_by: String,
    #[serde(default)]
    pub comment: String,
}

impl SilenceRequest {
    pub fn parse(body: &[u8]) -> Result<Self, SilenceError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(err(format!("larger than {MAX_BODY_BYTES} bytes")));
        }
        serde_json::from_slice(body).map_err(|e| err(e.to_string()))
    }

    /// The silence this asks for, with the writer's `id`, judged at `now_ms`.
    pub fn into_silence(self, id: String, now_ms: u64) -> Result<Silence, SilenceError> {
        let starts_ms = self.starts_ms.unwrap_or(now_ms);
        let ends_ms = match (self.ends_ms, self.for_s) {
            (Some(end), None) => end,
            (None, Some(s)) => starts_ms.saturating_add(s.saturating_mul(1000)),
            _ => return Err(err("give exactly one of ends_ms and for_s")),
        };
        if ends_ms <= now_ms {
            return Err(err("the silence would already be over"));
        }
        let silence = Silence {
            id,
            matchers: self.matchers,
            starts_ms,
            ends_ms,
            created_by: self.created_by,
            comment: self.comment,
        };
        silence.validate()?;
        Ok(silence)
    }
}

/// Body of `health.silence.expire` (and `DELETE /api/silences/<id>`, by path).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SilenceExpire {
    pub id: String,
}

impl SilenceExpire {
    pub fn parse(body: &[u8]) -> Result<Self, SilenceError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(err(format!("larger than {MAX_BODY_BYTES} bytes")));
        }
        let req: Self = serde_json::from_slice(body).map_err(|e| err(e.to_string()))?;
        check_id(&req.id)?;
        Ok(req)
    }
}

/// Reply to `health.silence.create|expire` and `health.alert.ack`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
pub struct SilenceReply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl SilenceReply {
    pub fn done(id: impl Into<String>) -> Self {
        Self {
            ok: true,
            id: Some(id.into()),
            error: None,
        }
    }

    pub fn refused(error: impl Into<String>) -> Self {
        Self {
            ok: false,
            id: None,
            error: Some(error.into()),
        }
    }
}

/// Reply to `health.silence.list` and body of `GET /api/silences`: silences not yet
/// over (active or pending), by start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
pub struct SilenceList {
    pub ok: bool,
    pub silences: Vec<Silence>,
}

/// Body of `health.alert.ack` and `POST /api/alerts/<id>/ack` (`id` by path there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    /// An AlertEvent id: `service:ALERT:since_ms`.
    pub id: String,
    pub by: String,
}

impl AckRequest {
    pub fn parse(body: &[u8]) -> Result<Self, SilenceError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(err(format!("larger than {MAX_BODY_BYTES} bytes")));
        }
        let req: Self = serde_json::from_slice(body).map_err(|e| err(e.to_string()))?;
        req.validate()?;
        Ok(req)
    }

    pub fn validate(&self) -> Result<(), SilenceError> {
        AlertId::parse(&self.id)?;
        check_text("by", &self.by, MAX_BY_CHARS).map_err(|r| err(r.detail))
    }
}

/// An acknowledgement: the value of KV key `ack.<service>.<ALERT>.<since_ms>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Ack {
    pub id: String,
    pub by: String,
    pub at_ms: u64,
}

impl Ack {
    pub fn from_json(bytes: &[u8]) -> Result<Self, SilenceError> {
        if bytes.len() > MAX_BODY_BYTES {
            return Err(err(format!("larger than {MAX_BODY_BYTES} bytes")));
        }
        let ack: Self = serde_json::from_slice(bytes).map_err(|e| err(e.to_string()))?;
        AlertId::parse(&ack.id)?;
        check_text("by", &ack.by, MAX_BY_CHARS).map_err(|r| err(r.detail))?;
        Ok(ack)
    }
}

/// An AlertEvent id taken apart: `service:ALERT:since_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertId {
    pub service: ServiceName,
    pub alert: AlertName,
    pub since_ms: u64,
}

impl AlertId {
    pub fn parse(id: &str) -> Result<Self, SilenceError> {
        let bad = || {
            err(format!(
                "{id:?} is not an alert id (service:ALERT:since_ms)"
            ))
        };
        let mut parts = id.splitn(3, ':');
        let (Some(service), Some(alert), Some(since)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let service = ServiceName::parse(service).map_err(|_| bad())?;
        let alert = AlertName::ALL
            .into_iter()
            .find(|a| a.as_str() == alert)
            .ok_or_else(bad)?;
        if since.is_empty() || since.len() > 16 || !since.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let since_ms = since.parse().map_err(|_| bad())?;
        Ok(Self {
            service,
            alert,
            since_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        for (p, t, want) in [
            ("*", "billing", true),
            ("bill*", "billing", true),
            ("*ing", "billing", true),
            ("b?lling", "billing", true),
            ("b*l*g", "billing", true),
            ("billing", "billing", true),
            ("billing", "billin", false),
            ("bill", "billing", false),
            ("a*b", "aXXc", false),
            ("?", "", false),
            ("**", "", true),
        ] {
            assert_eq!(glob_match(p, t), want, "{p} ~ {t}");
        }
        // Hostile pattern: linear, not exponential.
        let p = "*a".repeat(60);
        assert!(!glob_match(&p, &"a".repeat(59)));
    }

    fn request(json: &str) -> Result<Silence, SilenceError> {
        SilenceRequest::parse(json.as_bytes())?.into_silence("s1".into(), 1_000)
    }

    #[test]
    fn creating_a_silence() {
        let s =
            request(r#"{"matchers":{"service":"bill*"},"for_s":3600,"created_by":"ann"}"#).unwrap();
        assert_eq!((s.starts_ms, s.ends_ms), (1_000, 3_601_000));
        assert!(s.silences("billing", AlertName::ServiceDown, 2_000));
        assert!(!s.silences("billing", AlertName::ServiceDown, 3_601_000));
        assert!(!s.silences("auth", AlertName::ServiceDown, 2_000));
        let s = request(
            r#"{"matchers":{"service":"auth","alert":"HIGH_CPU"},"ends_ms":5000,"created_by":"ann","comment":"upgrade"}"#,
        )
        .unwrap();
        assert!(s.silences("auth", AlertName::HighCpu, 1_000));
        assert!(!s.silences("auth", AlertName::ServiceDown, 1_000));
    }

    #[test]
    fn bad_silences_are_refused_with_a_reason() {
        for bad in [
            r#"{"matchers":{"service":"a"},"created_by":"ann"}"#,
            r#"{"matchers":{"service":"a"},"for_s":1,"ends_ms":9000,"created_by":"ann"}"#,
            r#"{"matchers":{"service":"a"},"ends_ms":500,"created_by":"ann"}"#,
            r#"{"matchers":{"service":"A.B"},"for_s":1,"created_by":"ann"}"#,
            r#"{"matchers":{"service":""},"for_s":1,"created_by":"ann"}"#,
            r#"{"matchers":{"service":"a","alert":"NOPE"},"for_s":1,"created_by":"ann"}"#,
            r#"{"matchers":{"service":"a"},"for_s":1,"created_by":""}"#,
            r#"{"matchers":{"service":"a"},"for_s":1,"created_by":"a\u202eb"}"#,
            r#"{"matchers":{"service":"a"},"for_s":99999999,"created_by":"ann"}"#,
            r#"{"matchers":{"service":"a"},"for_s":1,"created_by":"ann","extra":1}"#,
            "junk",
        ] {
            let e = request(bad).expect_err(bad);
            assert!(!e.0.is_empty());
        }
    }

    #[test]
    fn stored_values_are_validated() {
        let good = r#"{"id":"ab-1","matchers":{"service":"a"},"starts_ms":1,"ends_ms":2,"created_by":"x"}"#;
        assert!(Silence::from_json(good.as_bytes()).is_ok());
        let bad_id = good.replace("ab-1", "AB 1");
        assert!(Silence::from_json(bad_id.as_bytes()).is_err());
    }

    #[test]
    fn acks_and_alert_ids() {
        let a = AckRequest::parse(br#"{"id":"billing:SERVICE_DOWN:1700","by":"ann"}"#).unwrap();
        assert_eq!(a.by, "ann");
        let id = AlertId::parse("billing:SERVICE_DOWN:1700").unwrap();
        assert_eq!(
            (id.service.as_str(), id.alert, id.since_ms),
            ("billing", AlertName::ServiceDown, 1700)
        );
        for bad in [
            "billing:SERVICE_DOWN",
            "billing:NOPE:1",
            "Bad:SERVICE_DOWN:1",
            "billing:SERVICE_DOWN:1x",
            "billing:SERVICE_DOWN:",
        ] {
            assert!(AlertId::parse(bad).is_err(), "{bad}");
        }
        assert!(AckRequest::parse(br#"{"id":"billing:SERVICE_DOWN:1","by":""}"#).is_err());
    }
}
