//! The gateway's local inbox (`GET /api/inbox`): what it kept of the notifications the
//! notifier posted to it (Alertmanager webhook JSON, version "4"). Text fields are what the
//! sender put in its labels and annotations, bounded by the gateway; empty when absent.

use serde::{Deserialize, Serialize};

use crate::status::AlertState;

/// Body of `GET /api/inbox`: the notifications kept, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
pub struct InboxList {
    pub ok: bool,
    /// Notifications received since the gateway started (kept or not).
    pub received: u64,
    /// How many the gateway keeps.
    pub kept: u32,
    pub notifications: Vec<InboxNotification>,
}

/// One notification as received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
pub struct InboxNotification {
    pub received_ms: u64,
    pub receiver: String,
    /// The notification's status: `firing` when any of its alerts fires.
    pub status: AlertState,
    pub group_key: String,
    pub alerts: Vec<InboxAlert>,
    /// Alerts the sender left out plus those beyond what the inbox keeps.
    pub truncated: u64,
}

/// One alert of a notification, with its own status (a batch may mix them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
pub struct InboxAlert {
    pub status: AlertState,
    pub alertname: String,
    pub service: String,
    pub severity: String,
    pub vitals_id: String,
    pub summary: String,
    pub acked_by: String,
    pub starts_at: String,
    pub ends_at: String,
}
