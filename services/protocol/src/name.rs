//! Service names: the one place the naming rule lives.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize};

/// Longest accepted name (the rule is `^[a-z0-9][a-z0-9_-]{0,62}$`).
pub const MAX_NAME_LEN: usize = 63;

/// A validated service name: one NATS subject token, safe to store and to show.
///
/// Cheap to clone (shared), since every event about a service carries its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
#[serde(transparent)]
pub struct ServiceName(
    #[cfg_attr(feature = "schema", schemars(pattern(r"^[a-z0-9][a-z0-9_-]{0,62}$")))] Arc<str>,
);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("service name is empty")]
    Empty,
    #[error("service name is {0} bytes long; at most {MAX_NAME_LEN} are allowed")]
    TooLong(usize),
    #[error("service name must start with a-z or 0-9")]
    BadStart,
    #[error("service name may only contain a-z, 0-9, '_' and '-'")]
    BadChar,
    #[error("service name {0:?} is reserved (health.alert.ack is the acknowledge request)")]
    Reserved(&'static str),
}

/// Names that are valid by the rule but taken by a request subject in the same place.
pub const RESERVED_NAMES: [&str; 1] = ["ack"];

pub fn is_reserved(raw: &str) -> bool {
    RESERVED_NAMES.contains(&raw)
}

impl ServiceName {
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        validate_name(raw)?;
        Ok(Self(Arc::from(raw)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks `raw` against the naming rule without allocating.
pub fn validate_name(raw: &str) -> Result<(), NameError> {
    let bytes = raw.as_bytes();
    let Some(&first) = bytes.first() else {
        return Err(NameError::Empty);
    };
    if bytes.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(bytes.len()));
    }
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err(NameError::BadStart);
    }
    let ok = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-';
    if !bytes.iter().all(ok) {
        return Err(NameError::BadChar);
    }
    if let Some(r) = RESERVED_NAMES.iter().find(|r| **r == raw) {
        return Err(NameError::Reserved(r));
    }
    Ok(())
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ServiceName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl AsRef<str> for ServiceName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for ServiceName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_contract_names() {
        for ok in ["auth", "billing", "a", "0", "svc_1-x", &"a".repeat(63)] {
            assert!(ServiceName::parse(ok).is_ok(), "{ok} should be accepted");
        }
    }

    #[test]
    fn refuses_hostile_names() {
        let cases: &[(&str, NameError)] = &[
            ("", NameError::Empty),
            ("a.b", NameError::BadChar),
            ("*", NameError::BadStart),
            (">", NameError::BadStart),
            ("_x", NameError::BadStart),
            ("-x", NameError::BadStart),
            ("Auth", NameError::BadStart),
            ("aB", NameError::BadChar),
            ("a b", NameError::BadChar),
            ("<script>", NameError::BadStart),
            ("x<script>", NameError::BadChar),
            ("zürich", NameError::BadChar),
            ("a\u{0}", NameError::BadChar),
            ("ack", NameError::Reserved("ack")),
        ];
        for (raw, want) in cases {
            assert_eq!(ServiceName::parse(raw).unwrap_err(), *want, "{raw:?}");
        }
        assert_eq!(
            ServiceName::parse(&"a".repeat(300)).unwrap_err(),
            NameError::TooLong(300)
        );
    }

    #[test]
    fn deserialising_validates() {
        assert!(serde_json::from_str::<ServiceName>("\"ok\"").is_ok());
        assert!(serde_json::from_str::<ServiceName>("\"a.b\"").is_err());
    }
}
