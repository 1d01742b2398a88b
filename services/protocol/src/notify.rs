//! What the notifier publishes: a delivery it gave up on, on `notify.dead.<receiver>`
//! (kept in stream `NOTIFY_DEAD`).

use serde::{Deserialize, Serialize};

use crate::status::AlertState;

/// One alert transition a receiver never accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
pub struct DeadLetter {
    pub receiver: String,
    /// The AlertEvent id and the transition that was not delivered.
    pub alert_id: String,
    pub state: AlertState,
    /// The last attempt's error (`status 500`, `timeout after 5000 ms`, `connect: ...`).
    pub reason: String,
    pub attempts: u32,
    /// When the alert event happened and when the notifier gave up.
    pub at_ms: u64,
    pub dead_ms: u64,
}
