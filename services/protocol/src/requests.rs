//! Request/reply bodies on NATS: `health.snapshot` and `health.retire`.

use serde::{Deserialize, Serialize};

use crate::name::ServiceName;
use crate::status::Status;

/// Body of a `health.snapshot` request. Empty (or `{}`) asks for the first page.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SnapshotRequest {
    /// Page N of the monitor's current copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    /// The services after this name (the previous page's `next_after`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<ServiceName>,
}

impl SnapshotRequest {
    /// Parses a request body; an empty or blank body is the first page.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        let req: Self = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        if req.page.is_some() && req.after.is_some() {
            return Err("give `page` or `after`, not both".into());
        }
        Ok(req)
    }
}

/// Body of a `health.retire` request (and of `DELETE /api/services/<name>`, by path).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RetireRequest {
    /// Checked by the receiver, so a bad name gets its own answer.
    pub service: String,
}

/// The answer to a retire request: what happened, or why nothing did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
pub struct RetireReply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The status the service had before it was retired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Status>,
    /// Ids of the firing alerts that were resolved (reason `retired`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolved: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl RetireReply {
    pub fn refused(service: Option<&str>, error: impl Into<String>) -> Self {
        Self {
            ok: false,
            service: service.map(str::to_owned),
            previous: None,
            resolved: Vec::new(),
            error: Some(error.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_requests() {
        assert_eq!(
            SnapshotRequest::parse(b"").unwrap(),
            SnapshotRequest::default()
        );
        assert_eq!(
            SnapshotRequest::parse(b" \n").unwrap(),
            SnapshotRequest::default()
        );
        assert_eq!(
            SnapshotRequest::parse(b"{}").unwrap(),
            SnapshotRequest::default()
        );
        assert_eq!(
            SnapshotRequest::parse(br#"{"page":3}"#).unwrap().page,
            Some(3)
        );
        assert_eq!(
            SnapshotRequest::parse(br#"{"after":"billing"}"#)
                .unwrap()
                .after
                .unwrap()
                .as_str(),
            "billing"
        );
        for bad in [
            &br#"{"page":-1}"#[..],
            br#"{"after":"a.b"}"#,
            br#"{"pgae":1}"#,
            br#"{"page":1,"after":"a"}"#,
            b"junk",
        ] {
            assert!(SnapshotRequest::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn retire_reply_shapes() {
        let r = RetireReply::refused(Some("x"), "unknown service");
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"ok": false, "service": "x", "error": "unknown service"})
        );
    }
}
